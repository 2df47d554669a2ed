"""install and status over an ordinary connection, each in one transaction (see uninstall.py)."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from psycopg import sql

import pldiffix
from pldiffix_installer.modules import server_modules
from pldiffix_installer.paths import sql_files
from pldiffix_installer.tables import format_table
from pldiffix_installer.templates import expand

MIN_SERVER_VERSION = 140000  # SQL-standard function bodies (BEGIN ATOMIC) need PostgreSQL 14
ROLES = (
    "diffix_direct",
    "diffix_anonymized_trusted",
    "diffix_anonymized_untrusted",
    "diffix_anonymized_dp",
    "diffix_admin",
    "diffix_engine",
    "diffix_perturbed",
    "diffix_perturb_owner",
    "diffix_ledger",
)
EVENT_TRIGGERS = (
    "diffix_forget_dropped_objects",
    "diffix_note_acls_before_grant",
    "diffix_refuse_exposing_grants",
)


DBLINK_SCHEMA = "diffix_dblink"


class InstallError(Exception):
    """A problem the DBA has to fix; the message says how."""


@dataclass
class Progress:
    out: TextIO = sys.stdout
    total: int = 0
    done: int = 0

    def step(self, label: str, action: Callable[[], Any]) -> Any:
        self.done += 1
        prefix = f"[{self.done}/{self.total}] {label} ..."
        print(prefix, end="", flush=True, file=self.out)
        try:
            result = action()
        except Exception:
            print(" failed", file=self.out, flush=True)
            raise
        suffix = f" {result}" if isinstance(result, str) and result else ""
        print(f" ok{suffix}", file=self.out, flush=True)
        return result


def connection_failure(error: psycopg.Error) -> str:
    """libpq's whole message on one line (it names the socket or host it tried, then why)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text.removeprefix("connection is bad: ") or "no reason given"


def connect(dsn: str) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.ProgrammingError as error:
        reason = connection_failure(error)
        raise InstallError(f"invalid connection string (--dsn): {reason}") from None
    except psycopg.OperationalError as error:
        raise InstallError(f"cannot connect to the database: {connection_failure(error)}") from None


def _dblink_schema(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e "
        "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'dblink'"
    ).fetchone()
    return row[0] if row else None


def installed_version(conn: psycopg.Connection) -> str | None:
    exists = conn.execute(
        "SELECT pg_catalog.to_regclass('diffix.installation') IS NOT NULL"
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT version FROM diffix.installation").fetchone()
    return row[0] if row else None


def _check_server(conn: psycopg.Connection) -> str:
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise InstallError(
            f"PostgreSQL {version // 10000} is too old; pldiffix needs PostgreSQL 14 or newer"
        )
    return f"PostgreSQL {version // 10000}.{version % 10000}"


def check_superuser(conn: psycopg.Connection) -> str:
    user, is_superuser = conn.execute(
        "SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    ).fetchone()
    if not is_superuser:
        raise InstallError(
            f"role {user} is not a superuser; installing PL/Python functions, event triggers and "
            "roles needs one (connect as postgres or another superuser)"
        )
    return user


def _check_plpython(conn: psycopg.Connection) -> str:
    row = conn.execute(
        "SELECT default_version FROM pg_catalog.pg_available_extensions WHERE name = 'plpython3u'"
    ).fetchone()
    if row is None:
        major = conn.info.server_version // 10000
        raise InstallError(
            "PL/Python (plpython3u) is not installed on the database server. "
            f"On Debian/Ubuntu run: apt-get install postgresql-plpython3-{major} "
            "(on the server host), then run the installer again"
        )
    conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
    return ""


def _run_sql_files(conn: psycopg.Connection, progress: Progress) -> None:
    """Folder by folder (paths.sql_files). A function body may name objects of a folder applied
    later, so bodies are checked once every file has run (_check_routine_bodies)."""
    conn.execute("SET LOCAL check_function_bodies = off")
    for path in sql_files():
        progress.step(
            f"apply {path.parent.name}/{path.name}",
            lambda p=path: conn.execute(expand(p.read_text())) and "",
        )
    conn.execute("SET LOCAL check_function_bodies = on")


def _check_routine_bodies(conn: psycopg.Connection) -> str:
    """Runs each pldiffix routine's language validator, as CREATE FUNCTION would have."""
    routines = conn.execute(
        "SELECT p.oid, vn.nspname, v.proname FROM pg_catalog.pg_proc p "
        "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "JOIN pg_catalog.pg_language l ON l.oid = p.prolang "
        "JOIN pg_catalog.pg_proc v ON v.oid = l.lanvalidator "
        "JOIN pg_catalog.pg_namespace vn ON vn.oid = v.pronamespace "
        "WHERE n.nspname ~ '^diffix' AND p.prokind IN ('f', 'p') AND l.lanname <> 'c'"
    ).fetchall()
    for oid, schema, validator in routines:
        conn.execute(
            sql.SQL("SELECT {}(%s::pg_catalog.oid)").format(sql.Identifier(schema, validator)),
            (oid,),
        )
    return f"({len(routines)} routines)"


def _deploy_modules(conn: psycopg.Connection) -> str:
    modules = server_modules()
    conn.execute("DELETE FROM diffix.python_modules")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO diffix.python_modules (module, is_package, source) VALUES (%s, %s, %s)",
            [(m.name, m.is_package, m.source) for m in modules],
        )
    size = sum(len(m.source) for m in modules)
    return f"({len(modules)} modules, {size // 1024} KiB)"


def _compile_modules(conn: psycopg.Connection) -> str:
    """Bytecode compiled by the server's Python, so that sessions need not compile sources."""
    compiled = conn.execute("SELECT diffix._compile_python()").fetchone()[0]
    return f"({compiled} modules)"


def _initialize_settings(conn: psycopg.Connection) -> str:
    inserted = conn.execute(
        "INSERT INTO diffix.database_settings (name, value) VALUES ('salt', %s) "
        "ON CONFLICT (name) DO NOTHING",
        (secrets.token_hex(32),),
    ).rowcount
    return "(new random salt)" if inserted else "(kept existing salt)"


def _verify_python(conn: psycopg.Connection) -> str:
    try:
        versions = conn.execute("SELECT diffix._python_versions()").fetchone()[0]
    except psycopg.Error as error:
        raise InstallError(
            f"the server's PL/Python cannot import the deployed code: {error.diag.message_primary}"
        ) from None
    found = f"server Python {versions['python']}, sqlglot {versions['sqlglot']}"
    if versions.get("numpy"):
        return f"({found}, numpy {versions['numpy']})"
    return (
        f"({found}; no numpy: per-AID work runs in pure Python, 3-5x slower; "
        "install it for the server's Python, e.g. apt-get install python3-numpy)"
    )


def _record_version(conn: psycopg.Connection, previous: str | None) -> str:
    conn.execute(
        "INSERT INTO diffix.installation (version) VALUES (%s) ON CONFLICT (singleton) "
        "DO UPDATE SET version = EXCLUDED.version, upgraded_at = pg_catalog.now()",
        (pldiffix.__version__,),
    )
    return f"({previous} -> {pldiffix.__version__})" if previous else f"({pldiffix.__version__})"


def _choose_ledger_link(conn: psycopg.Connection) -> str:
    """How the ledger's loopback connection reaches the server; only possible once the install
    (which may have created its login role) has committed."""
    with conn.transaction():
        options, reasons = conn.execute(
            "SELECT options, reasons FROM diffix._ledger_choose_link()"
        ).fetchone()
        login = conn.execute("SELECT login_role FROM diffix.ledger_link").fetchone()[0]
    if options is None:
        raise InstallError(
            f"installed, but the ledger loopback cannot log in as {login}; analyst queries are "
            f"refused until it works.\n{reasons}\n"
            "Let members of diffix_ledger log in with a password over the unix socket or "
            "localhost, e.g. with this first line in pg_hba.conf:\n"
            "  local all +diffix_ledger scram-sha-256\n"
            "then SELECT pg_reload_conf() and run pldiffix install again "
            "(docs/security.md, 'The loopback connection')"
        )
    return f"({options})"


def _rebuild_perturbed_views(conn: psycopg.Connection) -> str:
    """Perturbed views hold the expressions of the version that built them: an upgrade builds
    them again (their values change only where the expressions did, e.g. rounding)."""
    tables = conn.execute(
        "SELECT m.relid FROM diffix.microdata_tables m ORDER BY m.relid"
    ).fetchall()
    for (relid,) in tables:
        conn.execute("SELECT diffix._perturb_admin('rebuild', %s, '{}')", (relid,))
    return f"({len(tables)} views)" if tables else ""


def install(dsn: str, out: TextIO | None = None) -> None:
    """Installs or upgrades in place; all or nothing. Then connects the ledger's loopback."""
    out = out or sys.stdout
    files = sql_files()
    progress = Progress(out, total=len(files) + 12)
    conn = progress.step("connect", lambda: connect(dsn))
    try:
        with conn.transaction():
            progress.step("check server version", lambda: _check_server(conn))
            progress.step("check superuser", lambda: check_superuser(conn))
            conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(8723450912)")
            previous = installed_version(conn)
            progress.step("check PL/Python", lambda: _check_plpython(conn))
            dblink_before = _dblink_schema(conn)
            _run_sql_files(conn, progress)
            progress.step("check routine bodies", lambda: _check_routine_bodies(conn))
            progress.step("deploy server-side Python", lambda: _deploy_modules(conn))
            progress.step("compile server-side Python", lambda: _compile_modules(conn))
            progress.step("initialize settings", lambda: _initialize_settings(conn))
            progress.step("verify server-side Python", lambda: _verify_python(conn))
            progress.step("rebuild perturbed views", lambda: _rebuild_perturbed_views(conn))
            progress.step("record version", lambda: _record_version(conn, previous))
    except psycopg.Error as error:
        conn.close()
        raise InstallError(
            f"installation rolled back: {error.diag.message_primary or error}"
        ) from None
    try:
        progress.step("connect the ledger loopback", lambda: _choose_ledger_link(conn))
    finally:
        conn.close()
    if dblink_before not in (None, DBLINK_SCHEMA):
        print(
            f"note: moved the dblink extension from schema {dblink_before} to {DBLINK_SCHEMA}, "
            "where only superusers can create objects (the ledger's loopback sends its password "
            f"through it); other users of dblink must now write {DBLINK_SCHEMA}.dblink(...), "
            "and only diffix_ledger may execute it",
            file=out,
        )
    verb = "upgraded" if previous else "installed"
    print(
        f"pldiffix {pldiffix.__version__} {verb}; nothing was changed unless all steps succeeded",
        file=out,
    )


def _is_admin(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "SELECT r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'diffix_admin', 'MEMBER') "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
    ).fetchone()[0]


STATUS_SECTIONS = (
    ("Labels", "SELECT objtype, objname, label FROM diffix.show_labels()"),
    (
        "Settings",
        "SELECT name, CASE WHEN name = 'salt' THEN '(hidden)' ELSE setting END AS setting,"
        " source FROM diffix.show_settings()",
    ),
    (
        "Privacy budgets",
        "SELECT role, epsilon_total, delta_total, epsilon_spent, delta_spent, renews_at"
        " FROM diffix.privacy_budget()",
    ),
    (
        "Audit log",
        "SELECT relation, row_count, total_bytes, total_size FROM diffix.audit_storage()",
    ),
)
FINDINGS = "SELECT severity, object, finding, fix FROM diffix.check_security()"


def _print_section(conn: psycopg.Connection, title: str, query: str, out: TextIO) -> list:
    """Prints one section; one the role may not see says so instead of failing the others."""
    print(f"\n{title}:", file=out)
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall()
            headers = [column.name for column in cur.description]
    except psycopg.Error as error:
        print(f"  (not visible to this role: {error.diag.message_primary})", file=out)
        return []
    print(format_table(headers, rows) if rows else "  (none)", file=out)
    return rows


def status(dsn: str, out: TextIO | None = None) -> int:
    """Prints version, labels, settings, budgets and, to administrators, the security findings.
    Returns the number of critical findings."""
    out = out or sys.stdout
    conn = connect(dsn)
    try:
        version = installed_version(conn)
        if version is None:
            print("pldiffix is not installed in this database", file=out)
            return 0
        installed_at, upgraded_at = conn.execute(
            "SELECT installed_at, upgraded_at FROM diffix.installation"
        ).fetchone()
        print(
            f"pldiffix {version} (installed {installed_at:%Y-%m-%d %H:%M}"
            + (f", upgraded {upgraded_at:%Y-%m-%d %H:%M})" if upgraded_at else ")"),
            file=out,
        )
        admin = _is_admin(conn)
        if not admin:
            user, level = conn.execute("SELECT current_user, diffix.access_level()").fetchone()
            print(f"connected as {user}, access level {level} (not an administrator)", file=out)
        for title, query in STATUS_SECTIONS:
            _print_section(conn, title, query, out)
        if not admin:
            print("\nSecurity findings:\n  (administrators only)", file=out)
            return 0
        rows = _print_section(conn, "Security findings", FINDINGS, out)
        return sum(1 for row in rows if row[0] == "critical")
    finally:
        conn.rollback()
        conn.close()
