"""`pldiffix uninstall`: removes pldiffix from one database and never changes another's.

The roles are cluster-wide. Another database uses them while pg_shdepend records an object
there owned by, or a privilege granted to, one of them (every install leaves such entries, and
CREATE DATABASE ... TEMPLATE copies them into clones); they are then kept, and only this
database's objects and privileges are removed.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql

from pldiffix_installer.install import (
    DBLINK_SCHEMA,
    EVENT_TRIGGERS,
    ROLES,
    InstallError,
    check_superuser,
    connect,
    installed_version,
)

# pg_identify_object's type → the keyword of ALTER ... OWNER TO and of REVOKE ... ON
OWNER_KEYWORDS = {
    "table": "TABLE",
    "view": "VIEW",
    "materialized view": "MATERIALIZED VIEW",
    "foreign table": "FOREIGN TABLE",
    "sequence": "SEQUENCE",
    "function": "FUNCTION",
    "procedure": "PROCEDURE",
    "aggregate": "AGGREGATE",
    "schema": "SCHEMA",
    "type": "TYPE",
    "domain": "DOMAIN",
}
GRANT_KEYWORDS = {
    "table": "TABLE",
    "view": "TABLE",
    "materialized view": "TABLE",
    "foreign table": "TABLE",
    "sequence": "SEQUENCE",
    "function": "ROUTINE",
    "procedure": "ROUTINE",
    "aggregate": "ROUTINE",
    "schema": "SCHEMA",
    "type": "TYPE",
    "domain": "DOMAIN",
    "language": "LANGUAGE",
}
EXPORTED = {
    "audit_log": "SELECT * FROM diffix.audit_log ORDER BY id",
    "budget_ledger": "SELECT * FROM diffix.budget_ledger ORDER BY id",
    "privacy_budgets": (
        "SELECT r.rolname AS role, b.* FROM diffix.privacy_budgets b "
        "LEFT JOIN pg_catalog.pg_roles r ON r.oid = b.roleid ORDER BY b.roleid"
    ),
}


@dataclass(frozen=True)
class Dependency:
    """One pg_shdepend entry of this database on a pldiffix role."""

    role: str
    kind: str  # 'o' owner, 'a' privilege, other kinds are reported, not handled
    object_type: str
    identity: str
    description: str


def release_statement(dependency: Dependency) -> sql.Composed | None:
    """The statement that ends one dependency, or None when it is left to the DBA."""
    role = sql.Identifier(dependency.role)
    target = sql.SQL(dependency.identity)  # pg_identify_object's identity is quoted already
    if dependency.kind == "o" and dependency.object_type in OWNER_KEYWORDS:
        keyword = sql.SQL(OWNER_KEYWORDS[dependency.object_type])
        return sql.SQL("ALTER {} {} OWNER TO CURRENT_USER").format(keyword, target)
    if dependency.kind == "a" and dependency.object_type in GRANT_KEYWORDS:
        keyword = sql.SQL(GRANT_KEYWORDS[dependency.object_type])
        return sql.SQL("REVOKE ALL ON {} {} FROM {}").format(keyword, target, role)
    return None


def _table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _count(conn: psycopg.Connection, table: str) -> int:
    if not _table_exists(conn, table):
        return 0
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()[0]


def losses(conn: psycopg.Connection) -> list[str]:
    """What cannot be recovered after the uninstall, one line each."""
    lines = [
        f"{_count(conn, 'diffix.audit_log')} audit log rows (every analyst query, accepted or "
        "refused)",
        f"{_count(conn, 'diffix.budget_ledger')} ledger entries and "
        f"{_count(conn, 'diffix.privacy_budgets')} privacy budgets (what each role spent and has)",
        f"labels of {_count(conn, 'diffix.table_labels')} tables and "
        f"{_count(conn, 'diffix.column_labels')} columns (personal tables become ordinary tables)",
    ]
    perturbed = _count(conn, "diffix.microdata_tables")
    if _count(conn, "diffix.microdata_key"):
        lines.append(
            f"the perturbation key ({perturbed} row-perturbed tables): their perturbed values "
            "cannot be reproduced without it"
        )
    cellkey = _count(conn, "diffix.perturbation_configs")
    if cellkey:
        lines.append(f"{cellkey} cell-key/Laplace configurations")
    lines.append("the salt: anonymized answers differ after a new install")
    return lines


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _rows(conn: psycopg.Connection, query: str) -> tuple[list[str], list[list[Any]]]:
    with conn.cursor() as cur:
        cur.execute(query)
        return [c.name for c in cur.description], [[_plain(v) for v in r] for r in cur.fetchall()]


def export(conn: psycopg.Connection, path: Path) -> list[Path]:
    """Writes the audit log, the ledger and the budgets: one JSON document, or with a .csv name
    one CSV file each (<name>.csv, <name>.budget_ledger.csv, <name>.privacy_budgets.csv)."""
    tables = {
        name: _rows(conn, query)
        for name, query in EXPORTED.items()
        if _table_exists(conn, f"diffix.{name}")
    }
    try:
        if path.suffix.lower() != ".csv":
            document = {
                name: [dict(zip(headers, row, strict=True)) for row in rows]
                for name, (headers, rows) in tables.items()
            }
            path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
            return [path]
        written = []
        for name, (headers, rows) in tables.items():
            target = path if name == "audit_log" else path.with_suffix(f".{name}.csv")
            with target.open("w", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(headers)
                writer.writerows(rows)
            written.append(target)
        return written
    except OSError as error:
        raise InstallError(f"cannot write the export: {error}; nothing was dropped") from None


def _dependencies_here(conn: psycopg.Connection, roles: Sequence[str]) -> list[Dependency]:
    rows = conn.execute(
        """
        SELECT DISTINCT r.rolname, s.deptype, o.type, o.identity,
               pg_catalog.pg_describe_object(s.classid, s.objid, 0)
        FROM pg_catalog.pg_shdepend s
        JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid
        CROSS JOIN LATERAL pg_catalog.pg_identify_object(s.classid, s.objid, 0) o
        WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
          AND s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d
                        WHERE d.datname = pg_catalog.current_database())
          AND r.rolname = ANY (%s)
        ORDER BY 1, 2, 3, 4
        """,
        (list(roles),),
    ).fetchall()
    return [Dependency(*row) for row in rows]


def databases_using(conn: psycopg.Connection, roles: Sequence[str]) -> list[str]:
    """The other databases with an object owned by, or a privilege granted to, one of roles."""
    rows = conn.execute(
        """
        SELECT DISTINCT d.datname
        FROM pg_catalog.pg_shdepend s
        JOIN pg_catalog.pg_database d ON d.oid = s.dbid
        WHERE s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
          AND s.refobjid IN (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = ANY (%s))
          AND d.datname <> pg_catalog.current_database()
        ORDER BY 1
        """,
        (list(roles),),
    ).fetchall()
    return [name for (name,) in rows]


def _release_here(conn: psycopg.Connection, roles: Sequence[str], out: TextIO) -> None:
    """Ends what this database's objects owe to the roles: owned objects go to the uninstalling
    superuser, privileges are revoked. Nothing is dropped, nothing outside this database changes."""
    for dependency in _dependencies_here(conn, roles):
        statement = release_statement(dependency)
        if statement is None:
            print(
                f"left for you: {dependency.description} depends on role {dependency.role} "
                f"(pg_shdepend kind {dependency.kind})",
                file=out,
            )
        else:
            conn.execute(statement)


def _restore_dblink(conn: psycopg.Connection, out: TextIO) -> None:
    """Puts a dblink pldiffix moved back where it was; one pldiffix created goes with its schema."""
    if not _table_exists(conn, "diffix.dblink_origin"):
        return
    row = conn.execute(
        "SELECT o.schema_name FROM diffix.dblink_origin o "
        "WHERE pg_catalog.to_regnamespace(pg_catalog.quote_ident(o.schema_name)) IS NOT NULL"
    ).fetchone()
    placed = conn.execute(
        "SELECT e.extnamespace::pg_catalog.regnamespace::pg_catalog.text "
        "FROM pg_catalog.pg_extension e WHERE e.extname = 'dblink'"
    ).fetchone()
    if row and placed and placed[0] == DBLINK_SCHEMA:
        conn.execute(sql.SQL("ALTER EXTENSION dblink SET SCHEMA {}").format(sql.Identifier(row[0])))
        print(
            f"moved dblink back to schema {row[0]}; EXECUTE on its functions stays revoked from "
            "PUBLIC: grant it to the roles that use dblink",
            file=out,
        )


def _login_roles(conn: psycopg.Connection) -> list[str]:
    if not _table_exists(conn, "diffix.ledger_link"):
        return []
    return [name for (name,) in conn.execute("SELECT login_role FROM diffix.ledger_link")]


def _drop_roles(
    conn: psycopg.Connection, roles: Sequence[str], users: Sequence[str], out: TextIO
) -> None:
    if users:
        for role in roles:
            print(f"kept role {role}: used in database {', '.join(users)}", file=out)
        return
    for role in roles:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
            print(f"dropped role {role}", file=out)
        except psycopg.errors.DependentObjectsStillExist as error:
            detail = " ".join((error.diag.message_detail or "").split())
            print(f"kept role {role}: {detail or 'something still depends on it'}", file=out)


def uninstall(
    dsn: str,
    out: TextIO | None = None,
    *,
    confirm: Callable[[str], bool] | None = None,
    export_to: Path | None = None,
) -> None:
    """Says what is lost, exports if asked, asks `confirm` (None: confirmed), then removes this
    database's pldiffix objects and the roles no other database uses; all in one transaction."""
    out = out or sys.stdout
    conn = connect(dsn)
    try:
        with conn.transaction():
            check_superuser(conn)
            if installed_version(conn) is None:
                print("pldiffix is not installed in this database; nothing to do", file=out)
                return
            database = conn.info.dbname
            print(f"Uninstalling pldiffix from database {database} drops for good:", file=out)
            for line in losses(conn):
                print(f"  - {line}", file=out)
            if export_to is not None:
                for path in export(conn, export_to):
                    print(f"exported to {path}", file=out)
            if confirm is not None and not confirm(database):
                raise InstallError("not confirmed; nothing was dropped")
            _remove_here(conn, out)
    except psycopg.Error as error:
        raise InstallError(
            f"uninstall rolled back: {error.diag.message_primary or error}"
        ) from None
    finally:
        conn.close()
    print("pldiffix uninstalled; grants revoked by mark_personal were not restored", file=out)


def _remove_here(conn: psycopg.Connection, out: TextIO) -> None:
    logins = _login_roles(conn)
    labeled = _count(conn, "diffix.table_labels")
    _restore_dblink(conn, out)
    conn.execute("DROP SCHEMA IF EXISTS diffix_perturbed CASCADE")
    conn.execute("DROP SCHEMA IF EXISTS diffix_synthetic CASCADE")
    for trigger in EVENT_TRIGGERS:
        conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(trigger)))
    conn.execute("DROP SCHEMA diffix CASCADE")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(DBLINK_SCHEMA)))
    existing = [
        name
        for (name,) in conn.execute(
            "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY (%s) ORDER BY 1",
            (list(ROLES) + logins,),
        )
    ]
    _release_here(conn, existing, out)
    print(f"removed the diffix schema ({labeled} labeled tables unlabeled)", file=out)
    shared = [role for role in ROLES if role in existing]
    _drop_roles(conn, shared, databases_using(conn, shared), out)
    for login in (role for role in logins if role in existing):
        _drop_roles(conn, [login], databases_using(conn, [login]), out)
