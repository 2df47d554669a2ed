"""`pldiffix synthetic-report`: a synthetic twin's utility and risk figures against its source."""

from __future__ import annotations

import sys
from typing import TextIO

import psycopg

from pldiffix_installer.install import InstallError, connect
from pldiffix_installer.tables import format_table


def report(dsn: str, name: str, out: TextIO | None = None) -> None:
    """Prints diffix.synthetic_report(name) (administrators only)."""
    out = out or sys.stdout
    with connect(dsn) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM diffix.synthetic_report(%s)", (name,))
                rows = cur.fetchall()
                headers = [column.name for column in cur.description or []]
        except psycopg.Error as error:
            hint = f" ({error.diag.message_hint})" if error.diag.message_hint else ""
            raise InstallError((error.diag.message_primary or str(error).strip()) + hint) from None
    print(f"Synthetic data report for diffix_synthetic.{name}:", file=out)
    print(format_table(headers, rows), file=out)
