"""`pldiffix perturb-report` and `perturb-export`: a perturbed table's utility and risk figures,
and its perturbed view written to CSV for sharing outside the database."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import psycopg
from psycopg import sql

from pldiffix_installer.install import InstallError, connect
from pldiffix_installer.tables import format_table

_PROGRESS_EVERY = 1.0  # seconds between progress lines


def _failure(error: psycopg.Error) -> InstallError:
    message = error.diag.message_primary or str(error).strip()
    hint = f" ({error.diag.message_hint})" if error.diag.message_hint else ""
    return InstallError(message + hint)


def report(dsn: str, table: str, out: TextIO | None = None) -> None:
    """Prints diffix.perturbation_report(table) (administrators only)."""
    out = out or sys.stdout
    with connect(dsn) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM diffix.perturbation_report(%s)", (table,))
                rows = cur.fetchall()
                headers = [column.name for column in cur.description or []]
        except psycopg.Error as error:
            raise _failure(error) from None
    print(f"Perturbation report for {table}:", file=out)
    print(format_table(headers, rows), file=out)


def _view_of(conn: psycopg.Connection, table: str) -> tuple[sql.Composed, str]:
    """The table's perturbed view, as SQL and as a name to show."""
    row = conn.execute(
        "SELECT view_schema::text, view_name::text FROM diffix.microdata_tables"
        " WHERE relid = pg_catalog.to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None:
        raise InstallError(
            f"table {table} is not perturbed (CALL diffix.mark_perturbed(table, row_key) first)"
        )
    return sql.SQL("{}.{}").format(sql.Identifier(row[0]), sql.Identifier(row[1])), ".".join(row)


def export(dsn: str, table: str, csv_path: str, err: TextIO | None = None) -> int:
    """Writes the table's perturbed view to `csv_path` (CSV with a header) through COPY, with
    progress on `err`; returns the number of rows. Any role that may read the view can export."""
    err = err or sys.stderr
    target = Path(csv_path)
    partial = target.with_name(target.name + ".partial")
    with connect(dsn) as conn:
        try:
            view, view_name = _view_of(conn, table)
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(view)).fetchone()[0]
            copy = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT WITH (FORMAT csv, HEADER)").format(
                view
            )
            rows, written, last = -1, 0, time.monotonic()
            with partial.open("wb") as file, conn.cursor() as cur, cur.copy(copy) as stream:
                for chunk in stream:
                    data = bytes(chunk)
                    file.write(data)
                    written += len(data)
                    rows += data.count(b"\n")
                    if time.monotonic() - last >= _PROGRESS_EVERY:
                        last = time.monotonic()
                        share = f" ({100 * rows / total:.0f}%)" if total else ""
                        print(f"  {rows:,} of {total:,} rows{share}, {written:,} bytes", file=err)
        except psycopg.Error as error:
            partial.unlink(missing_ok=True)
            raise _failure(error) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(target)
    print(f"wrote {total:,} rows of {view_name} to {target}", file=err)
    return total
