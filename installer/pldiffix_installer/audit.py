"""`pldiffix audit`: the audit log of analyst queries, for administrators.

diffix.show_audit renders stored text visibly already (diffix._visible: control characters,
bidirectional overrides and backslashes as escapes); `_printable` escapes again whatever the
terminal would still act on, so that no row can hide another or pass for one.
"""

from __future__ import annotations

import sys
import unicodedata
from datetime import datetime
from typing import TextIO

import psycopg

from pldiffix_installer.install import InstallError, connect, installed_version
from pldiffix_installer.tables import format_table

COLUMNS = (
    "logged_at",
    "session_role",
    "effective_role",
    "level",
    "mechanism",
    "accepted",
    "rows_returned",
    "epsilon",
    "delta",
    "reason",
    "sql_bytes",
    "sql",
)


def show(dsn: str, role: str | None, since: str | None, out: TextIO | None = None) -> int:
    """Prints the log's rows (all, or one role's, since a time); returns how many."""
    out = out or sys.stdout
    conn = connect(dsn)
    try:
        if installed_version(conn) is None:
            raise InstallError("pldiffix is not installed in this database")
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT " + ", ".join(COLUMNS) + " FROM diffix.show_audit(%s, %s::timestamptz)",
                    (role, since),
                )
                rows = cur.fetchall()
            if role is not None and not rows and not _role_exists(conn, role):
                raise InstallError(f'role "{role}" does not exist (and has no audited queries)')
        except psycopg.Error as error:
            raise InstallError(error.diag.message_primary or str(error)) from None
    finally:
        conn.rollback()
        conn.close()
    shown = [[_printable(value) for value in row] for row in rows]
    print(format_table(list(COLUMNS), shown) if shown else "(no audited queries)", file=out)
    return len(rows)


def _role_exists(conn: psycopg.Connection, role: str) -> bool:
    """A dropped role's rows stay in the log: only a name with neither is an error."""
    return conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %s)", (role,)
    ).fetchone()[0]


def _printable(value: object) -> object:
    """One line per row, nothing the terminal acts on: timestamps to the second, every control
    (C0, DEL, C1), format (bidirectional overrides and isolates, zero-width characters) and
    line or paragraph separator character as a visible escape."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, str):
        return "".join(_escaped(c) if _acts_on_terminal(c) else c for c in value)
    return value


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _acts_on_terminal(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp")


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
