"""Queries read in passes over disjoint AID partitions (`max_pass_mb`, docs/engine.md "Passes")
answer exactly as when read in one pass; only float sums may differ in their last bits, because
their rows are added partition by partition."""

from __future__ import annotations

import pytest

SALT = "passes"
ROWS = 400_000  # 1.6 MB of packed AIDs for count(*): 2 passes at max_pass_mb = 1

QUERIES = [
    "SELECT grp, count(*) FROM shop GROUP BY grp",
    "SELECT grp, count(*), count(amount), sum(amount), avg(price), sum(price) FROM shop "
    "GROUP BY grp",
    "SELECT count(*), count(DISTINCT uid), sum(amount), diffix.sum_noise(price) FROM shop",
    # three labels: LED runs, buckets keep every AID, many are low-count (the suppress bin)
    "SELECT grp, sub, diffix.floor_by(amount, 5), count(*), sum(price) FROM shop GROUP BY 1, 2, 3",
    # float labels: 0 and -0 group together but print differently; NULL labels
    "SELECT zero, count(*) FROM shop GROUP BY zero",
    "SELECT diffix.floor_by(uid, 1000), count(*) FROM shop WHERE grp = 'b' GROUP BY 1",
]


@pytest.fixture
def shop(db):
    db.admin.execute(
        "CREATE TABLE shop AS SELECT "
        "  CASE WHEN i % 37 = 0 THEN NULL WHEN i % 10 = 0 THEN 7 ELSE (i * 7919) % 90000 END"
        "    AS uid, "
        "  (ARRAY['a', 'b', 'c', NULL])[1 + i % 4] AS grp, "
        "  i % 23 AS sub, "
        "  CASE WHEN i % 19 = 0 THEN NULL ELSE (i * 7) % 23 - 5 END AS amount, "
        "  ((i * 13) % 97) * 0.75::float8 AS price, "
        "  CASE WHEN i % 3 = 0 THEN '-0'::float8 WHEN i % 3 = 1 THEN 0 END AS zero "
        f"FROM generate_series(1, {ROWS}) i"
    )
    db.admin.execute("ANALYZE shop")
    db.admin.execute("CALL diffix.mark_personal('shop', 'uid')")
    db.admin.execute("CALL diffix.configure('salt', %s)", (SALT,))
    return db, db.as_role(db.create_role("anonymized_trusted"))


def _answer(conn, sql: str) -> tuple[list, int]:
    """The rows (sorted: passes return buckets in another order) and how many scans of shop
    the query made, counted in its transaction."""
    with conn.transaction():
        rows = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]
        scans = conn.execute("SELECT pg_catalog.pg_stat_get_xact_numscans('shop'::regclass)")
        count = scans.fetchone()[0]
    return sorted(rows, key=repr), count


def _same(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for row, reference in zip(got, expected, strict=True):
        for value, wanted in zip(row, reference, strict=True):
            if isinstance(wanted, float) and not float(wanted).is_integer():
                assert value == pytest.approx(wanted, rel=1e-12)
            else:
                assert value == wanted


@pytest.mark.parametrize("sql", QUERIES)
def test_passes_give_the_answers_of_one_pass(shop, sql) -> None:
    db, conn = shop
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole, one_pass_scans = _answer(conn, sql)
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    split, split_scans = _answer(conn, sql)
    assert split_scans > one_pass_scans  # it was read in several passes
    _same(split, whole)


def test_the_number_of_passes_follows_the_budget(shop) -> None:
    db, conn = shop
    sql = "SELECT grp, count(*), sum(amount) FROM shop GROUP BY grp"  # 13 bytes per row
    scans = {}
    for budget in ("512", "2", "1"):
        db.admin.execute("CALL diffix.configure('max_pass_mb', %s)", (budget,))
        scans[budget] = _answer(conn, sql)[1]
    # 400,000 rows x 13 bytes = 5.0 MiB: one pass, then 3, then 5
    assert scans["2"] - scans["512"] == 2
    assert scans["1"] - scans["512"] == 4


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT grp, count(DISTINCT amount) FROM shop GROUP BY grp",  # per-value AID sets
        "SELECT diffix.count_histogram(uid) FROM shop",
    ],
)
def test_queries_whose_parts_do_not_combine_take_one_pass(shop, sql) -> None:
    db, conn = shop
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole, one_pass_scans = _answer(conn, sql)
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    split, split_scans = _answer(conn, sql)
    assert split_scans == one_pass_scans
    assert split == whole


@pytest.mark.parametrize("value", ["0", "513", "many"])
def test_the_budget_is_checked(shop, value) -> None:
    db, _ = shop
    with pytest.raises(Exception, match="max_pass_mb"):
        db.admin.execute("CALL diffix.configure('max_pass_mb', %s)", (value,))
