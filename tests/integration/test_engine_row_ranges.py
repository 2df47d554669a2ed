"""Queries read in row ranges (docs/engine.md, "Row ranges") answer exactly as when read at once:
the ranges are read in block order, so even float sums add their rows in the same order. Only the
order of the buckets differs, which shows where LED merges float sums of several buckets (their
last bits). Rows spilled by AID partition ("Spilling") add a bucket's float totals part by part,
which can show in their last bits too."""

from __future__ import annotations

import pytest
from engine_reads import Read, read_reported, same_answer

ROWS = 60_000

QUERIES = [
    "SELECT grp, count(*) FROM shop GROUP BY grp",
    "SELECT grp, count(*), count(amount), sum(amount), avg(price), sum(price) FROM shop "
    "GROUP BY grp",
    "SELECT count(*), count(DISTINCT uid), sum(amount), diffix.sum_noise(price) FROM shop",
    "SELECT diffix.floor_by(uid, 1000), count(price) FROM shop WHERE grp = 'b' GROUP BY 1",
]
LED = "SELECT grp, sub, diffix.floor_by(amount, 5), count(*), sum(price) FROM shop GROUP BY 1, 2, 3"


# AID type, AIDs (from the row number i), and how they are spilled (None: kept in memory). The
# serial AIDs fill their range even in the few rows kept before spilling at max_pass_mb = 1; a
# prime modulus keeps them spread in every residue class when a query filters on i % 4 (grp).
SHOPS = {
    "int8": ("int8", "i::int8 * 7919 % 30000", None),
    "int4 serial": ("int4", "i::int8 * 7919 % 3001", "blocks of "),
    "int4 sparse": ("int4", "i::int8 * 7919 % 30000 * 65537", "hashed AIDs"),
}


@pytest.fixture(scope="module", params=list(SHOPS))
def shop(request, module_db):
    """int8 AIDs keep every range's rows in memory; int4 AIDs spill them by AID partition
    (`RowSpill`) at max_pass_mb = 1 beyond 64 KiB: blocks of serial AIDs, hashes of sparse ones.
    `one` is 1.0 in the first half of the table (in scan order) and 1.00 in the second."""
    aid, aids, partitioning = SHOPS[request.param]
    db = module_db
    db.admin.execute("DROP TABLE IF EXISTS shop")  # the previous parameter's
    db.admin.execute(
        f"CREATE TABLE shop AS SELECT *, CASE WHEN i <= {ROWS // 2} THEN 1.0 ELSE 1.00 END "
        "  AS one FROM (SELECT i, "
        f"  CASE WHEN i % 37 = 0 THEN NULL ELSE ({aids})::{aid} END "
        "  AS uid, "
        "  (ARRAY['a', 'b', 'c', NULL])[1 + i % 4] AS grp, "
        "  i % 23 AS sub, "
        "  CASE WHEN i % 19 = 0 THEN NULL ELSE (i * 7) % 23 - 5 END AS amount, "
        "  CASE WHEN i % 11 = 0 THEN NULL ELSE ((i * 13) % 97) * 0.1::float8 END AS price "
        f"FROM generate_series(1, {ROWS}) i) rows ORDER BY i"
    )
    db.admin.execute("ANALYZE shop")
    db.admin.execute("CALL diffix.mark_personal('shop', 'uid')")
    db.admin.execute("CALL diffix.configure('salt', 'ranges')")
    return db, db.as_role(db.create_role("anonymized_trusted")), partitioning


def _answer(conn, sql: str) -> Read:
    """How the engine read the query: in one pass, never again at once."""
    read = read_reported(conn, sql)
    assert read.passes == 1 and not read.again
    return read


def _both(db, conn, sql: str) -> tuple[Read, Read]:
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole = _answer(conn, sql)
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    ranged = _answer(conn, sql)
    assert whole.ranges == 1 and whole.spilled == 0 and ranged.ranges > 10
    return whole, ranged


@pytest.mark.parametrize("sql", QUERIES)
def test_row_ranges_give_the_answers_of_one_read(shop, sql) -> None:
    db, conn, partitioning = shop
    whole, ranged = _both(db, conn, sql)
    if partitioning:  # the parts' float totals add in another order
        assert ranged.spilled > 1 and ranged.partitioning.startswith(partitioning)
        same_answer(ranged.rows, whole.rows)
    else:
        assert ranged.spilled == 0
        assert ranged.rows == whole.rows  # exactly, floats included


def test_led_merges_float_sums_of_buckets_in_another_order(shop) -> None:
    db, conn, _ = shop
    whole, ranged = _both(db, conn, LED)
    assert len(ranged.rows) == len(whole.rows) > 100
    for row, reference in zip(ranged.rows, whole.rows, strict=True):
        assert row[:4] == reference[:4]
        assert row[4] == pytest.approx(reference[4], rel=1e-12)


def test_a_label_printed_two_ways_comes_as_one_read_prints_it(shop) -> None:
    """1.0 and 1.00 group together; the first ranges show 1.0, the last 1.00. A bucket takes the
    labels of the first range that shows it, spilled or not, where passes, each grouping its own
    rows, may disagree (test_engine_passes.py)."""
    db, conn, _ = shop
    sql = "SELECT one, count(*) FROM shop GROUP BY one"
    whole, ranged = _both(db, conn, sql)
    assert ranged.rows == whole.rows and len(whole.rows) == 1
    text = "SELECT diffix.query_json(%s)->'rows'->0->>0"
    assert conn.execute(text, (sql,)).fetchone()[0] == "1.0"  # max_pass_mb is 1: ranges


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
        whole = _answer(conn, sql).rows
        db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
        read = _answer(conn, sql)
        assert read.ranges > 100 and read.rows == whole
        assert whole[0][-1] == pytest.approx(1_200_000 / (1 if len(whole) == 1 else 3), rel=0.01)
