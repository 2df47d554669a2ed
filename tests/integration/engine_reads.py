"""How the engine read a query, as it reports it at DEBUG2, and answers compared (shared by the
passes and row-range tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest


@dataclass
class Read:
    rows: list  # sorted: reads in parts return buckets in another order
    passes: int
    ranges: int  # per pass
    again: bool  # the parts disagreed and the query was read again at once
    spilled: int  # AID partitions its rows were spilled into (0: none)
    partitioning: str  # how ("blocks of N AIDs", "hashed AIDs"); "" if not spilled


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
    spill = r"pldiffix: spilled the rows to disk in (\d+) AID partitions \((.+)\)"
    spills = [re.fullmatch(spill, m) for m in reported]
    spilled = [m for m in spills if m]
    assert len(spilled) <= 1, reported
    if not spilled:
        return Read(sorted(rows, key=repr), passes, ranges, again, 0, "")
    count, partitioning = int(spilled[0].group(1)), spilled[0].group(2)
    return Read(sorted(rows, key=repr), passes, ranges, again, count, partitioning)


def same_answer(got: list, expected: list) -> None:
    """Equal rows, except that floats with a fraction may differ in their last bits: a read in
    parts adds the parts' float totals in another order."""
    assert len(got) == len(expected)
    for row, reference in zip(got, expected, strict=True):
        for value, wanted in zip(row, reference, strict=True):
            if isinstance(wanted, float) and not float(wanted).is_integer():
                assert value == pytest.approx(wanted, rel=1e-12)
            else:
                assert value == wanted
