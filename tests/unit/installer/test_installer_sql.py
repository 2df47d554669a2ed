"""The installer's SQL: the order it applies the files in, and the shared routine code it puts in
place of the directives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pldiffix_installer.paths import SQL_DIR, sql_files
from pldiffix_installer.templates import TemplateError, expand


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")


def test_core_then_each_mechanism_folder_then_cores_final_step(tmp_path):
    _tree(
        tmp_path,
        [
            "core/00_roles.sql",
            "core/70_security.sql",
            "core/90_event_triggers.sql",
            "core/99_routine_settings.sql",
            "dp/10_budgets.sql",
            "dp/05_metadata.sql",
            "cellkey/90_tbe.sql",
            "perturb/00_roles.sql",
        ],
    )
    order = [f"{p.parent.name}/{p.name}" for p in sql_files(tmp_path)]
    assert order == [
        "core/00_roles.sql",
        "core/70_security.sql",
        "cellkey/90_tbe.sql",
        "dp/05_metadata.sql",
        "dp/10_budgets.sql",
        "perturb/00_roles.sql",
        "core/90_event_triggers.sql",
        "core/99_routine_settings.sql",
    ]


def test_a_file_dropped_into_a_folder_moves_no_other_folder(tmp_path):
    names = ["core/10_schema.sql", "dp/55_metadata.sql", "synth/85_synth.sql"]
    _tree(tmp_path, names)
    before = sql_files(tmp_path)
    _tree(tmp_path, ["dp/99_late.sql"])
    after = sql_files(tmp_path)
    assert [p for p in after if p.parent.name != "dp"] == [
        p for p in before if p.parent.name != "dp"
    ]
    assert after.index(tmp_path / "dp/99_late.sql") < after.index(tmp_path / "synth/85_synth.sql")


def test_the_tree_applies_core_first_and_routine_settings_last():
    files = sql_files()
    assert files[0] == SQL_DIR / "core/00_roles.sql"
    assert files[-1] == SQL_DIR / "core/99_routine_settings.sql"
    assert len(files) == len(list(SQL_DIR.glob("*/*.sql")))


def test_load_imports_the_module_after_loading_pldiffix_once():
    body = "AS $python$\n#@load pldiffix.perturb.admin\nreturn admin.mark(plpy)\n$python$;"
    assert expand(body) == (
        "AS $python$\n"
        "import sys\n"
        'if "pldiffix.perturb.admin" not in sys.modules:\n'
        '    plpy.execute("SELECT diffix._load_python()")\n'
        "from pldiffix.perturb import admin\n"
        "return admin.mark(plpy)\n"
        "$python$;"
    )


def test_load_may_name_the_module_otherwise():
    assert expand("#@load pldiffix.cellkey.config as cellkey_config").endswith(
        "from pldiffix.cellkey import config as cellkey_config"
    )


def test_reraise_ends_the_block_with_the_shared_handler():
    body = "BEGIN\n  RETURN diffix._set(name, value);\n--@reraise\nEND"
    expanded = expand(body)
    assert expanded.startswith("BEGIN\n  RETURN diffix._set(name, value);\nEXCEPTION WHEN OTHERS")
    assert "PERFORM diffix._reraise(SQLSTATE, message, detail, hint);" in expanded
    assert expanded.endswith("  END;\nEND")


@pytest.mark.parametrize(
    "line",
    ["#@lod pldiffix.server", "#@load sys", "#@load pldiffix.server as", "--@re-raise", "--@"],
)
def test_an_unknown_directive_is_refused(line):
    with pytest.raises(TemplateError):
        expand(f"BEGIN\n{line}\nEND")


def test_no_copy_of_the_shared_code_is_left_in_the_sql_files():
    """Entry points use the directives; diffix.query keeps its own handler (it adds a hint)."""
    handlers, loaders = {}, {}
    for path in SQL_DIR.glob("*/*.sql"):
        text = path.read_text()
        name = f"{path.parent.name}/{path.name}"
        handlers[name] = len(re.findall(r"GET STACKED DIAGNOSTICS", text))
        loaders[name] = len(re.findall(r"not in sys\.modules", text))
        expand(text)  # every directive is known
    assert {name: n for name, n in handlers.items() if n} == {"core/60_query.sql": 1}
    assert not any(loaders.values())
