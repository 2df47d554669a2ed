"""Installer: install, upgrade in place, uninstall, status, and its errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pldiffix_installer import cli, install, modules, uninstall
from pldiffix_tools.cluster import EmbeddedCluster


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


ROUTINES = """
SELECT p.oid::regprocedure::text, p.prosrc, p.proconfig, p.proowner::regrole::text,
       p.proacl::text, p.prosecdef
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname ~ '^diffix' ORDER BY 1
"""


def test_reinstall_leaves_every_routine_as_a_fresh_install_makes_it(db):
    """Sources (with the shared code in place), pinned settings, owners and grants; `db` is a
    copy of the template's fresh install."""
    fresh = db.execute(ROUTINES)
    assert not [name for name, source, *_ in fresh if "#@" in source or "--@" in source]
    install.install(db.dsn(), out=io.StringIO())
    assert db.execute(ROUTINES) == fresh


# An install from before the label registry: the labels in a CHECK constraint, one relabel
# trigger per folder (DP's metadata shown; cell-key's is in test_cellkey_tables.py), nothing
# registered. (The registry's tables and view stay: the routines of this version read them.)
BEFORE_THE_REGISTRY = """
ALTER TABLE diffix.table_labels DROP CONSTRAINT table_labels_label_fkey;
DROP TRIGGER forget_on_relabel ON diffix.table_labels;
DROP FUNCTION diffix._forget_on_relabel();
DELETE FROM diffix.label_metadata;
DELETE FROM diffix.registered_labels;
ALTER TABLE diffix.table_labels ADD CONSTRAINT table_labels_label_check
  CHECK (label IN ('personal', 'public', 'cellkey'));
CREATE FUNCTION diffix._forget_dp_metadata() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.label <> 'personal' THEN
    DELETE FROM diffix.dp_tables t WHERE t.relid = NEW.relid;
    DELETE FROM diffix.dp_columns c WHERE c.relid = NEW.relid;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER forget_dp_metadata AFTER UPDATE OF label ON diffix.table_labels
  FOR EACH ROW EXECUTE FUNCTION diffix._forget_dp_metadata();
"""


def test_an_upgrade_replaces_the_label_check_and_relabel_triggers_by_the_registry(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    empty_db.admin.execute(
        """
        CREATE TABLE t (id int, amount numeric);
        CALL diffix.mark_personal('t', 'id');
        CALL diffix.set_dp_bounds('t', 'amount', 0, 100);
        """
    )
    empty_db.admin.execute(BEFORE_THE_REGISTRY)
    labels = empty_db.execute("SELECT * FROM diffix.show_labels()")
    install.install(empty_db.dsn(), out=io.StringIO())
    assert empty_db.execute("SELECT * FROM diffix.show_labels()") == labels
    assert empty_db.execute("SELECT count(*) FROM diffix.dp_columns") == [(1,)]
    assert empty_db.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'diffix.table_labels'::regclass"
        " AND contype IN ('c', 'f') ORDER BY 1"
    ) == [("table_labels_label_fkey",)]
    assert empty_db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'diffix.table_labels'::regclass"
        " AND NOT tgisinternal"
    ) == [("forget_on_relabel",)]
    assert empty_db.execute("SELECT to_regprocedure('diffix._forget_dp_metadata()')") == [(None,)]
    empty_db.admin.execute("CALL diffix.mark_public('t', force => true)")
    assert empty_db.execute("SELECT count(*) FROM diffix.dp_columns") == [(0,)]


def test_uninstall_removes_everything_and_is_idempotent(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    empty_db.admin.execute("CREATE TABLE t (id int); CALL diffix.mark_personal('t', 'id')")
    out = io.StringIO()
    uninstall.uninstall(empty_db.dsn(), out=out)
    assert not _schema_exists(empty_db)
    assert empty_db.execute(
        "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'diffix%'"
    ) == [(0,)]
    if "dropped role diffix_engine" not in out.getvalue():  # another database still uses it
        assert empty_db.execute("SELECT has_table_privilege('diffix_engine', 't', 'SELECT')") == [
            (False,)
        ]
    again = io.StringIO()
    uninstall.uninstall(empty_db.dsn(), out=again)
    assert "not installed" in again.getvalue()


def test_install_then_uninstall_then_install_again(empty_db):
    install.install(empty_db.dsn(), out=io.StringIO())
    uninstall.uninstall(empty_db.dsn(), out=io.StringIO())
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


@pytest.mark.parametrize(
    "body",
    [
        "LANGUAGE sql AS $$ SELECT n FROM diffix.no_such_table $$",
        "LANGUAGE plpgsql AS $$ BEGIN RETURN 1 END $$",
        "LANGUAGE plpython3u AS $python$\nreturn (\n$python$",
    ],
)
def test_a_routine_body_that_does_not_compile_fails_the_install(
    empty_db, monkeypatch, tmp_path, body
):
    """Bodies are checked after every folder is applied, as CREATE FUNCTION would have."""
    late = tmp_path / "dp" / "98_broken.sql"
    late.parent.mkdir()
    late.write_text(f"CREATE FUNCTION diffix._broken() RETURNS integer {body};")
    original = install.sql_files
    monkeypatch.setattr(install, "sql_files", lambda: [*original()[:-1], late, original()[-1]])
    with pytest.raises(install.InstallError, match="installation rolled back"):
        install.install(empty_db.dsn(), out=io.StringIO())
    assert not _schema_exists(empty_db)


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


@pytest.mark.parametrize(
    ("numpy", "expected"),
    [("1.24.2", ", numpy 1.24.2)"), (None, "apt-get install python3-numpy")],
)
def test_install_tells_whether_the_engine_is_vectorized(numpy, expected):
    versions = {"python": "3.11.2", "sqlglot": "30.30.0", "numpy": numpy}
    result = SimpleNamespace(fetchone=lambda: [versions])
    conn = SimpleNamespace(execute=lambda sql: result)
    assert expected in install._verify_python(conn)


# --- uninstall: one database at a time, and only after saying what is lost ---


def test_uninstall_in_another_database_keeps_this_ones_roles_and_levels(bank, empty_db):
    """bank and empty_db share the cluster: uninstalling from empty_db must not touch bank."""
    analyst = bank.create_role("anonymized_untrusted")
    install.install(empty_db.dsn(), out=io.StringIO())
    empty_db.admin.execute(
        "CREATE TABLE t (id int, v int); CALL diffix.mark_personal('t', 'id');"
        "CREATE TABLE own (x int)"
    )
    empty_db.admin.execute("GRANT SELECT ON own TO diffix_direct")
    empty_db.admin.execute("ALTER TABLE own OWNER TO diffix_admin")
    login = empty_db.execute("SELECT login_role FROM diffix.ledger_link")[0][0]
    out = io.StringIO()
    uninstall.uninstall(empty_db.dsn(), out=out)
    text = out.getvalue()
    dropped = [line for line in text.splitlines() if line.startswith("dropped role")]
    assert dropped == [f"dropped role {login}"]  # this database's own loopback login
    kept = text.split("kept role diffix_anonymized_untrusted: used in database ")[1]
    assert bank.name in kept.splitlines()[0]
    assert bank.execute(
        "SELECT label FROM diffix.show_labels() WHERE objname = %s", (analyst,)
    ) == [("anonymized_untrusted",)]
    assert bank.as_role(analyst).execute("SELECT diffix.access_level()").fetchone() == (
        "anonymized_untrusted",
    )
    assert bank.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ('diffix_direct', 'diffix_engine', "
        "'diffix_ledger', 'diffix_anonymized_untrusted', 'diffix_admin', 'diffix_perturbed')"
    ) == [(6,)]
    # the analyst still only reads personal rows anonymized after an ordinary GRANT in bank
    bank.admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bank.as_role(analyst).execute("SELECT * FROM customers")
    # in empty_db nothing depends on a pldiffix role any more; its own objects were kept
    assert empty_db.execute(
        "SELECT count(*) FROM pg_shdepend s JOIN pg_roles r ON r.oid = s.refobjid "
        "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND r.rolname LIKE 'diffix%'"
    ) == [(0,)]
    assert empty_db.execute("SELECT count(*) FROM own") == [(0,)]
    assert empty_db.execute(
        "SELECT relowner::regrole::text FROM pg_class WHERE relname = 'own'"
    ) == [("postgres",)]


def test_uninstall_says_what_is_lost_and_stops_unless_confirmed(db):
    analyst = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0)", (analyst,))
    db.as_role(analyst).execute("SELECT diffix.query_json('SELECT 1 AS one')")
    asked = []
    out = io.StringIO()
    with pytest.raises(install.InstallError, match="not confirmed; nothing was dropped"):
        uninstall.uninstall(db.dsn(), out=out, confirm=lambda name: asked.append(name) or False)
    assert asked == [db.name]
    text = out.getvalue()
    assert "1 audit log rows" in text and "1 privacy budgets" in text and "the salt" in text
    assert _schema_exists(db)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_uninstall_exports_the_audit_log_and_budgets_first(db, tmp_path, suffix):
    analyst = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 2, 0)", (analyst,))
    db.as_role(analyst).execute("SELECT diffix.query_json('SELECT 1 AS one')")
    target = tmp_path / f"kept{suffix}"
    uninstall.uninstall(db.dsn(), out=io.StringIO(), export_to=target)
    assert not _schema_exists(db)
    if suffix == ".json":
        document = json.loads(target.read_text())
        [row] = document["audit_log"]
        assert (row["effective_role"], row["sql"], row["accepted"]) == (
            analyst,
            "SELECT 1 AS one",
            True,
        )
        assert [(b["role"], b["epsilon_total"]) for b in document["privacy_budgets"]] == [
            (analyst, "2")
        ]
        assert document["budget_ledger"] == []
    else:
        [row] = list(csv.DictReader(target.open()))
        assert (row["effective_role"], row["sql"]) == (analyst, "SELECT 1 AS one")
        budgets = list(csv.DictReader((tmp_path / "kept.privacy_budgets.csv").open()))
        assert [(b["role"], b["epsilon_total"]) for b in budgets] == [(analyst, "2")]


def test_an_export_that_cannot_be_written_drops_nothing(db, tmp_path):
    with pytest.raises(install.InstallError, match="cannot write the export"):
        uninstall.uninstall(db.dsn(), out=io.StringIO(), export_to=tmp_path / "no" / "x.json")
    assert _schema_exists(db)


# --- the `pldiffix` command as a DBA runs it: errors are one line, never a traceback ---


def _pldiffix(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(str(root / d) for d in ("plpython", "installer", "tools", "proxy"))
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("PLDIFFIX_DSN", None)
    return subprocess.run(
        [sys.executable, "-m", "pldiffix_installer.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_cli_prints_libpq_whole_connection_message():
    result = _pldiffix("install", "--dsn", "host=/nonexistent-socket-dir port=1 user=x dbname=x")
    assert result.returncode == 2
    assert result.stderr.startswith("pldiffix install: cannot connect to the database: ")
    assert '"/nonexistent-socket-dir/.s.PGSQL.1" failed' in result.stderr
    assert "Is the server running locally" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("dsn", ["port=5432 dbname=health user", "dbname = x y", "host='open"])
def test_cli_reports_a_malformed_dsn_in_one_line(dsn):
    result = _pldiffix("status", "--dsn", dsn)
    assert result.returncode == 2
    assert result.stderr.startswith("pldiffix status: invalid connection string (--dsn): ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_cli_status_shows_a_non_admin_what_they_may_see(bank):
    analyst = bank.create_role("anonymized_trusted")
    result = _pldiffix("status", "--dsn", bank.dsn(analyst))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"connected as {analyst}, access level anonymized_trusted" in result.stdout
    assert "public.customers" in result.stdout and "Settings:" in result.stdout
    assert "Security findings:\n  (administrators only)" in result.stdout


def test_cli_audit_reports_an_unknown_role(bank):
    result = _pldiffix("audit", "--dsn", bank.dsn(), "--role", "nosuchrole")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        'pldiffix audit: role "nosuchrole" does not exist (and has no audited queries)'
    )
    known = bank.create_role("anonymized_trusted")
    result = _pldiffix("audit", "--dsn", bank.dsn(), "--role", known)
    assert (result.returncode, result.stdout.strip()) == (0, "(no audited queries)")


def test_cli_uninstall_without_a_terminal_needs_yes(db):
    result = _pldiffix("uninstall", "--dsn", db.dsn())
    assert result.returncode == 2
    assert "drops for good" in result.stdout and "audit log rows" in result.stdout
    assert result.stderr.strip() == (
        "pldiffix uninstall: not confirmed (no terminal to ask on): run again with --yes; "
        "nothing was dropped"
    )
    assert _schema_exists(db)
    result = _pldiffix("uninstall", "--dsn", db.dsn(), "--yes")
    assert result.returncode == 0, result.stderr
    assert not _schema_exists(db)


def test_the_last_database_to_uninstall_drops_the_cluster_wide_roles():
    """A cluster of its own, so that no template or test database holds the roles."""
    try:
        cluster = EmbeddedCluster().start()
    except RuntimeError as error:
        pytest.skip(f"no embedded cluster: {error}")
    try:
        with psycopg.connect(cluster.dsn, autocommit=True) as admin:
            admin.execute("CREATE DATABASE first")
            admin.execute("CREATE DATABASE second")
        first, second = (make_conninfo(cluster.dsn, dbname=name) for name in ("first", "second"))
        install.install(first, out=io.StringIO())
        install.install(second, out=io.StringIO())
        with psycopg.connect(first, autocommit=True) as conn:
            conn.execute("CREATE ROLE analyst LOGIN")
            conn.execute("CALL diffix.mark_role('analyst', 'anonymized_trusted')")
        out = io.StringIO()
        uninstall.uninstall(second, out=out)
        assert "kept role diffix_anonymized_trusted: used in database first" in out.getvalue()
        with psycopg.connect(make_conninfo(first, user="analyst"), autocommit=True) as conn:
            assert conn.execute("SELECT diffix.access_level()").fetchone() == (
                "anonymized_trusted",
            )
        out = io.StringIO()
        uninstall.uninstall(first, out=out)
        for role in install.ROLES:
            assert f"dropped role {role}\n" in out.getvalue()
        with psycopg.connect(cluster.dsn, autocommit=True) as admin:
            left = admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'diffix%'")
            assert left.fetchall() == []
    finally:
        cluster.stop()


def test_uninstall_in_a_clone_keeps_the_login_role_it_shares(db, template_db):
    login = db.execute("SELECT login_role FROM diffix.ledger_link")[0][0]
    out = io.StringIO()
    uninstall.uninstall(db.dsn(), out=out, confirm=lambda name: name == db.name)
    kept = f"kept role {login}: used in database "
    assert kept in out.getvalue() and template_db in out.getvalue().split(kept)[1].splitlines()[0]
    assert db.execute("SELECT to_regrole(%s) IS NOT NULL", (login,)) == [(True,)]
