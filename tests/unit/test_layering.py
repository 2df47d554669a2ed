"""Import rules of plpython/pldiffix, read from the source with ast (nothing is imported):

- a mechanism package (diffix, cellkey, dp, perturb, synth) does not import another one; what they
  share lives in core/;
- a module docs/architecture.md lists as not touching the database imports none that does, and
  neither imports plpy, nor takes it as a parameter, nor calls it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "plpython" / "pldiffix"
ARCHITECTURE = REPO / "docs" / "architecture.md"

MECHANISMS = ("diffix", "cellkey", "dp", "perturb", "synth")

# Imports across mechanisms that predate the rule. Empty since DP's grouping and filters are
# validated by core/validation/ (issue 29); a new crossing fails.
KNOWN_CROSSINGS: set[tuple[str, str]] = set()

# Pure modules importing one that touches the database, from before the rule (issue 29):
# `reports_errors`, the entry points' wrapper in core/errors.py, enters the security context of
# core/context.py; it belongs beside the entry points, not with the error types every pure module
# raises. Remove an entry when its import goes; a new one fails.
KNOWN_IMPURE = {("pldiffix.core.errors", "pldiffix.core.context")}

# Whatever the table says, these run statements through plpy.
DATABASE_MODULES = {
    "pldiffix.core.catalog",
    "pldiffix.core.context",
    "pldiffix.core.audit",
    "pldiffix.core.ledger",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def imports_of(name: str, source: str, is_package: bool) -> set[str]:
    """The pldiffix modules `source` (module `name`) imports, anywhere in its body; for
    `from package import name` the submodule when there is one, else the package."""
    found: set[str] = set()
    own_package = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = own_package[: len(own_package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
    return {module for module in found if module == "pldiffix" or module.startswith("pldiffix.")}


def _imports(name: str) -> set[str]:
    path = MODULES[name]
    return imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def _mechanism(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in MECHANISMS else None


def mechanism_crossings(imports: Mapping[str, set[str]]) -> set[tuple[str, str]]:
    """(module, imported) for each import of one mechanism package by another."""
    return {
        (name, imported)
        for name, imported_modules in imports.items()
        for imported in imported_modules
        if _mechanism(name) is not None
        and _mechanism(imported) is not None
        and _mechanism(imported) != _mechanism(name)
    }


_ROW = re.compile(r"^\|\s*(?P<paths>`[^|]+`)\s*\|[^|]*\|\s*(?P<touches>[^|]+?)\s*\|\s*$")


def architecture_table() -> dict[str, bool]:
    """docs/architecture.md's module table: module or package path -> touches the database."""
    rows = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        touches = match["touches"]
        assert touches.startswith(("yes", "no")), line
        for path in re.findall(r"`([^`]+)`", match["paths"]):
            rows[path] = touches.startswith("yes")
    return rows


def _named_modules(path: str) -> list[str]:
    """The modules a table row names: one file, or every module under a directory."""
    target = PACKAGE / path
    if path.endswith("/"):
        return [name for name, file in MODULES.items() if target in file.parents]
    return [_module_name(target)]


def test_the_module_table_names_existing_modules():
    table = architecture_table()
    assert len(table) > 20
    for path in table:
        assert (PACKAGE / path).exists(), f"docs/architecture.md names {path}, which is not there"


def test_no_mechanism_imports_another_outside_the_known_crossings():
    crossings = mechanism_crossings({name: _imports(name) for name in MODULES})
    assert crossings - KNOWN_CROSSINGS == set(), "a mechanism imports another: move it to core/"
    assert KNOWN_CROSSINGS - crossings == set(), "an import is gone: drop it from KNOWN_CROSSINGS"


def test_modules_that_touch_no_database_import_none_that_does():
    table = architecture_table()
    touching = set(DATABASE_MODULES)
    pure = set()
    for path, touches in table.items():
        (touching if touches else pure).update(_named_modules(path))
    assert pure and not pure & touching
    offending = {(name, imported) for name in pure for imported in _imports(name) & touching}
    assert offending - KNOWN_IMPURE == set(), "a pure module imports one that touches the database"
    assert KNOWN_IMPURE - offending == set(), "an import is gone: drop it from KNOWN_IMPURE"


def names_plpy(source: str) -> bool:
    """Whether `source` imports plpy, takes it as a parameter or uses one of its attributes."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name == "plpy" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "plpy":
            return True
        if isinstance(node, ast.arg) and node.arg == "plpy":
            return True
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "plpy"
        ):
            return True
    return False


def test_modules_that_touch_no_database_never_name_plpy():
    table = architecture_table()
    pure = {name for path, touches in table.items() if not touches for name in _named_modules(path)}
    known = {name for name, _ in KNOWN_IMPURE}
    naming = {name for name in pure if names_plpy(MODULES[name].read_text(encoding="utf-8"))}
    assert naming - known == set(), "a module marked pure takes or imports plpy"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import plpy", True),
        ("from plpy import execute", True),
        ("def f(plpy):\n    return 1", True),
        ("def f(x):\n    return plpy.execute(x)", True),
        ("class Request:\n    plpy: object", False),
        ("def f(catalog):\n    return catalog.get_relation('s', 'plpy')", False),
    ],
)
def test_plpy_is_found_in_every_spelling(source, expected):
    assert names_plpy(source) is expected


@pytest.mark.parametrize(
    ("name", "source", "expected"),
    [
        ("pldiffix.dp.query", "from pldiffix.diffix import rewrite", {"pldiffix.diffix.rewrite"}),
        ("pldiffix.dp.query", "from ..diffix import validation", {"pldiffix.diffix.validation"}),
        (
            "pldiffix.dp.query",
            "def f():\n import pldiffix.cellkey.tbe",
            {"pldiffix.cellkey.tbe"},
        ),
        ("pldiffix.dp", "from . import query", {"pldiffix.dp.query"}),
        ("pldiffix.dp.query", "import sqlglot\nfrom typing import Any", set()),
    ],
)
def test_imports_are_read_in_every_spelling(name, source, expected):
    assert imports_of(name, source, name == "pldiffix.dp") == expected


def test_crossings_are_imports_between_two_mechanisms():
    imports = {
        "pldiffix.cellkey.engine": {"pldiffix.perturb.methods", "pldiffix.cellkey.tbe"},
        "pldiffix.synth.model": {"pldiffix.core.errors"},
        "pldiffix.core.catalog": {"pldiffix.diffix.engine"},
    }
    assert mechanism_crossings(imports) == {("pldiffix.cellkey.engine", "pldiffix.perturb.methods")}
