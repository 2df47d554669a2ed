"""How the engine read a query, as it reports it at DEBUG2 (shared by the passes and row-range
tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Read:
    rows: list  # sorted: reads in parts return buckets in another order
    passes: int
    ranges: int  # per pass
    again: bool  # the parts disagreed and the query was read again at once


def read_reported(conn, sql: str) -> Read:
    reported: list[str] = []
    conn.add_notice_handler(lambda diagnostic: reported.append(diagnostic.message_primary or ""))
    conn.execute("SET client_min_messages = debug2")
    try:
        rows = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]
    finally:
        conn.execute("RESET client_min_messages")
    parts = [re.fullmatch(r"pldiffix: reading the query in (\d+) passes of (\d+) row ranges", m)
             for m in reported]  # fmt: skip
    found = [m for m in parts if m]
    assert len(found) <= 1, reported
    passes, ranges = (int(found[0].group(1)), int(found[0].group(2))) if found else (1, 1)
    again = any(m.startswith("pldiffix: reading the query again") for m in reported)
    return Read(sorted(rows, key=repr), passes, ranges, again)
