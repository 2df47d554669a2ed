"""Queries read in row ranges (docs/engine.md, "Row ranges") answer exactly as when read at once:
the ranges are read in block order, so even float sums add their rows in the same order. Only the
order of the buckets differs, which shows where LED merges float sums of several buckets (their
last bits)."""

from __future__ import annotations

import pytest
from engine_reads import read_reported

ROWS = 200_000

QUERIES = [
    "SELECT grp, count(*) FROM shop GROUP BY grp",
    "SELECT grp, count(*), count(amount), sum(amount), avg(price), sum(price) FROM shop "
    "GROUP BY grp",
    "SELECT count(*), count(DISTINCT uid), sum(amount), diffix.sum_noise(price) FROM shop",
    "SELECT diffix.floor_by(uid, 1000), count(price) FROM shop WHERE grp = 'b' GROUP BY 1",
]
LED = "SELECT grp, sub, diffix.floor_by(amount, 5), count(*), sum(price) FROM shop GROUP BY 1, 2, 3"


@pytest.fixture
def shop(db):
    # int8 AIDs: never split into passes, so only the ranges differ between the two reads
    db.admin.execute(
        "CREATE TABLE shop AS SELECT "
        "  CASE WHEN i % 37 = 0 THEN NULL ELSE (i::int8 * 7919 % 30000) END AS uid, "
        "  (ARRAY['a', 'b', 'c', NULL])[1 + i % 4] AS grp, "
        "  i % 23 AS sub, "
        "  CASE WHEN i % 19 = 0 THEN NULL ELSE (i * 7) % 23 - 5 END AS amount, "
        "  CASE WHEN i % 11 = 0 THEN NULL ELSE ((i * 13) % 97) * 0.1::float8 END AS price "
        f"FROM generate_series(1, {ROWS}) i"
    )
    db.admin.execute("ANALYZE shop")
    db.admin.execute("CALL diffix.mark_personal('shop', 'uid')")
    db.admin.execute("CALL diffix.configure('salt', 'ranges')")
    return db, db.as_role(db.create_role("anonymized_trusted"))


def _answer(conn, sql: str) -> tuple[list, int]:
    """The rows and the number of row ranges the engine read the query in (in one pass)."""
    read = read_reported(conn, sql)
    assert read.passes == 1 and not read.again
    return read.rows, read.ranges


def _both(db, conn, sql: str) -> tuple[list, list]:
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole, one = _answer(conn, sql)
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    ranged, ranges = _answer(conn, sql)
    assert one == 1 and ranges > 10
    return whole, ranged


@pytest.mark.parametrize("sql", QUERIES)
def test_row_ranges_give_the_answers_of_one_read(shop, sql) -> None:
    whole, ranged = _both(*shop, sql)
    assert ranged == whole  # exactly, floats included


def test_led_merges_float_sums_of_buckets_in_another_order(shop) -> None:
    whole, ranged = _both(*shop, LED)
    assert len(ranged) == len(whole) > 100
    for row, reference in zip(ranged, whole, strict=True):
        assert row[:4] == reference[:4]
        assert row[4] == pytest.approx(reference[4], rel=1e-12)


def test_count_only_buckets_count_their_rows_as_the_ranges_come(db) -> None:
    """Over a million rows of a thousand AIDs: the rows are counted per AID before the last
    range (`BucketRows`), with the answer of one read."""
    db.admin.execute(
        "CREATE TABLE visits AS SELECT (i % 1000)::int8 AS uid, i % 3 AS day "
        "FROM generate_series(1, 1200000) i"
    )
    db.admin.execute("ANALYZE visits")
    db.admin.execute("CALL diffix.mark_personal('visits', 'uid')")
    conn = db.as_role(db.create_role("anonymized_trusted"))
    for sql in ("SELECT count(*) FROM visits", "SELECT day, count(*) FROM visits GROUP BY day"):
        db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
        whole, _ = _answer(conn, sql)
        db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
        ranged, ranges = _answer(conn, sql)
        assert ranges > 100 and ranged == whole
        assert whole[0][-1] == pytest.approx(1_200_000 / (1 if len(whole) == 1 else 3), rel=0.01)
