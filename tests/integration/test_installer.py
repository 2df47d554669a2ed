"""Installer: install, upgrade in place, uninstall, status, and its errors."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from pldiffix_installer import cli, install, modules


def _schema_exists(database) -> bool:
    return database.execute("SELECT to_regnamespace('diffix') IS NOT NULL")[0][0]


def test_install_reports_every_step_and_records_version(empty_db):
    out = io.StringIO()
    install.install(empty_db.dsn(), out=out)
    text = out.getvalue()
    assert "[1/" in text and "verify server-side Python ... ok" in text
    assert ", numpy " in text  # make test installs python3-numpy: the vectorized engine
    assert "installed; nothing was changed unless all steps succeeded" in text
    assert empty_db.execute("SELECT version FROM diffix.installation") == [("0.1.0",)]
    assert (
        empty_db.execute("SELECT count(*) FROM diffix.python_modules WHERE module = 'pldiffix'")[0][
            0
        ]
        == 1
    )


def test_reinstall_upgrades_in_place_keeping_labels_settings_roles_and_salt(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    role = empty_db.create_role()
    empty_db.admin.execute(
        """
        CREATE TABLE t (id int, v text);
        CALL diffix.mark_personal('t', 'id');
        CALL diffix.mark_not_filterable('t', 'v');
        CALL diffix.configure('low_count_min_threshold', '5');
        """
    )
    empty_db.admin.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (role,))
    before = empty_db.execute("SELECT * FROM diffix.show_labels()")
    salt = empty_db.execute("SELECT value FROM diffix.database_settings WHERE name = 'salt'")
    out = io.StringIO()
    install.install(empty_db.dsn(), out=out)
    assert "kept existing salt" in out.getvalue() and "upgraded" in out.getvalue()
    assert empty_db.execute("SELECT * FROM diffix.show_labels()") == before
    assert (
        empty_db.execute("SELECT value FROM diffix.database_settings WHERE name = 'salt'") == salt
    )
    assert empty_db.execute(
        "SELECT value FROM diffix.database_settings WHERE name = 'low_count_min_threshold'"
    ) == [("5",)]
    assert empty_db.execute("SELECT upgraded_at IS NOT NULL FROM diffix.installation") == [(True,)]


def test_uninstall_removes_everything_and_is_idempotent(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    empty_db.admin.execute("CREATE TABLE t (id int); CALL diffix.mark_personal('t', 'id')")
    out = io.StringIO()
    install.uninstall(empty_db.dsn(), out=out)
    assert not _schema_exists(empty_db)
    assert empty_db.execute(
        "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'diffix%'"
    ) == [(0,)]
    if "dropped role diffix_engine" not in out.getvalue():  # another database still uses it
        assert empty_db.execute("SELECT has_table_privilege('diffix_engine', 't', 'SELECT')") == [
            (False,)
        ]
    again = io.StringIO()
    install.uninstall(empty_db.dsn(), out=again)
    assert "not installed" in again.getvalue()


def test_install_then_uninstall_then_install_again(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    install.uninstall(empty_db.dsn(), out=io.StringIO())
    install.install(empty_db.dsn(), out=io.StringIO())
    assert empty_db.execute("SELECT diffix.access_level()") == [("direct",)]


def test_install_refuses_a_non_superuser_and_changes_nothing(empty_db):
    role = empty_db.create_role()
    with pytest.raises(install.InstallError, match="is not a superuser"):
        install.install(empty_db.dsn(role), out=io.StringIO())
    assert not _schema_exists(empty_db)


def test_install_reports_an_unreachable_server():
    with pytest.raises(install.InstallError, match="cannot connect"):
        install.install("host=/nonexistent-socket-dir port=1 user=x dbname=x", out=io.StringIO())


def test_failed_install_rolls_back_completely(empty_db, monkeypatch):
    broken = modules.Module("pldiffix.server", False, "this is not python")
    original = modules.server_modules
    monkeypatch.setattr(
        install,
        "server_modules",
        lambda: [m for m in original() if m.name != "pldiffix.server"] + [broken],
    )
    with pytest.raises(install.InstallError, match="cannot import the deployed code"):
        install.install(empty_db.dsn(), out=io.StringIO())
    assert not _schema_exists(empty_db)
    assert empty_db.execute("SELECT count(*) FROM pg_event_trigger") == [(0,)]


class _FakeConnection:
    def __init__(self, version: int, rows: list):
        self.info = SimpleNamespace(server_version=version)
        self._rows = rows

    def execute(self, *args):
        return SimpleNamespace(fetchone=lambda: self._rows.pop(0) if self._rows else None)


def test_too_old_server_is_named():
    with pytest.raises(install.InstallError, match="PostgreSQL 13 is too old"):
        install._check_server(_FakeConnection(130011, []))


def test_missing_plpython_says_which_package_to_install():
    with pytest.raises(install.InstallError, match="apt-get install postgresql-plpython3-15"):
        install._check_plpython(_FakeConnection(150004, []))


def test_status_lists_labels_settings_and_findings(bank, capsys):
    unlabeled = bank.create_role()
    assert install.status(bank.dsn()) == 0
    out = capsys.readouterr().out
    assert "pldiffix 0.1.0" in out
    assert "public.customers" in out and "personal" in out
    assert "low_count_min_threshold" in out
    assert unlabeled in out and "no access level label" in out


def test_status_counts_critical_findings_and_cli_exits_nonzero(bank, capsys):
    reader = bank.create_role(login=False)
    bank.admin.execute(f'GRANT SELECT ON customers TO "{reader}"')
    analyst = bank.create_role("anonymized_untrusted")
    bank.admin.execute(f'GRANT "{reader}" TO "{analyst}"')
    assert cli.main(["status", "--dsn", bank.dsn()]) == 1
    out = capsys.readouterr().out
    assert f"{analyst} (anonymized_untrusted) can read it through role membership" in out


def test_cli_requires_a_dsn(monkeypatch, capsys):
    monkeypatch.delenv("PLDIFFIX_DSN", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["install"])
    assert exit_info.value.code == 2
    assert "--dsn is required" in capsys.readouterr().err


def test_cli_reports_errors_without_a_traceback(capsys):
    code = cli.main(["install", "--dsn", "host=/nonexistent-socket-dir port=1 user=x dbname=x"])
    assert code == 2
    assert capsys.readouterr().err.startswith("pldiffix install: cannot connect")


@pytest.mark.parametrize(
    ("numpy", "expected"),
    [("1.24.2", ", numpy 1.24.2)"), (None, "apt-get install python3-numpy")],
)
def test_install_tells_whether_the_engine_is_vectorized(numpy, expected):
    versions = {"python": "3.11.2", "sqlglot": "30.30.0", "numpy": numpy}
    result = SimpleNamespace(fetchone=lambda: [versions])
    conn = SimpleNamespace(execute=lambda sql: result)
    assert expected in install._verify_python(conn)
