"""Queries read in passes over disjoint AID partitions (`max_pass_mb`, docs/engine.md "Passes"),
here over a materialized view, answer exactly as when read in one pass; only float sums may
differ in their last bits, because their rows are added partition by partition."""

from __future__ import annotations

import pytest
from engine_reads import read_reported, same_answer

SALT = "passes"
ROWS = 400_000  # 1.6 MB of packed AIDs for count(*): 2 passes at max_pass_mb = 1

QUERIES = [
    "SELECT grp, count(*) FROM shop GROUP BY grp",
    "SELECT grp, count(*), count(amount), sum(amount), avg(price), sum(price) FROM shop "
    "GROUP BY grp",
    "SELECT count(*), count(DISTINCT uid), sum(amount), diffix.sum_noise(price) FROM shop",
    # three labels: LED runs, buckets keep every AID, many are low-count (the suppress bin)
    "SELECT grp, sub, diffix.floor_by(amount, 5), count(*), sum(price) FROM shop GROUP BY 1, 2, 3",
    "SELECT diffix.floor_by(uid, 1000), count(*) FROM shop WHERE grp = 'b' GROUP BY 1",
]


@pytest.fixture(scope="module")
def shop(module_db):
    db = module_db
    # A materialized view: it has no row ranges, which would spill instead of taking passes.
    # One value printed two ways: 1.00 exactly where the AID falls into the second of two passes.
    db.admin.execute(
        "CREATE MATERIALIZED VIEW shop AS SELECT *, CASE "
        "  WHEN uid IS NOT NULL AND (hashint4(uid) & 2147483647) % 2 = 1 THEN 1.00 ELSE 1.0 END"
        "  AS one FROM (SELECT "
        "  CASE WHEN i % 37 = 0 THEN NULL WHEN i % 10 = 0 THEN 7"
        "    ELSE (i::int8 * 7919 % 90000)::int4 END"
        "    AS uid, "
        "  (ARRAY['a', 'b', 'c', NULL])[1 + i % 4] AS grp, "
        "  i % 23 AS sub, "
        "  CASE WHEN i % 19 = 0 THEN NULL ELSE (i * 7) % 23 - 5 END AS amount, "
        "  ((i * 13) % 97) * 0.75::float8 AS price "
        f"FROM generate_series(1, {ROWS}) i) rows"
    )
    db.admin.execute("ANALYZE shop")
    db.admin.execute("CALL diffix.mark_personal('shop', 'uid')")
    db.admin.execute("CALL diffix.configure('salt', %s)", (SALT,))
    return db, db.as_role(db.create_role("anonymized_trusted"))


def _answer(conn, sql: str, fallback: bool = False) -> tuple[list, int]:
    """The rows and the number of passes the engine read the query in; `fallback`: that it then
    read the query again in one pass."""
    read = read_reported(conn, sql)
    assert read.again is fallback
    return read.rows, read.passes


def _whole_and_split(shop, sql: str, fallback: bool = False) -> tuple[list, int, list, int]:
    """The answer and passes at the largest budget (512 MiB), then at the smallest (1 MiB)."""
    db, conn = shop
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole, one = _answer(conn, sql)
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    split, passes = _answer(conn, sql, fallback)
    return whole, one, split, passes


@pytest.mark.parametrize("sql", QUERIES)
def test_passes_give_the_answers_of_one_pass(shop, sql) -> None:
    whole, one, split, passes = _whole_and_split(shop, sql)
    assert one == 1 and passes > 1
    same_answer(split, whole)


def test_labels_printed_differently_by_the_parts_read_the_query_again(shop) -> None:
    sql = "SELECT one, count(*) FROM shop GROUP BY one"  # 1.0 in one pass, 1.00 in the other
    whole, _, again, _ = _whole_and_split(shop, sql, fallback=True)
    assert again == whole and len(whole) == 1


def test_the_number_of_passes_follows_the_budget(shop) -> None:
    db, conn = shop
    sql = "SELECT grp, count(*), sum(amount) FROM shop GROUP BY grp"  # 16 bytes per row
    passes = {}
    for budget in ("512", "7", "4", "2", "1"):
        db.admin.execute("CALL diffix.configure('max_pass_mb', %s)", (budget,))
        passes[budget] = _answer(conn, sql)[1]
    # 400,000 rows x 16 bytes = 6.10 MiB
    assert passes == {"512": 1, "7": 1, "4": 2, "2": 4, "1": 7}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT grp, count(DISTINCT amount) FROM shop GROUP BY grp",  # per-value AID sets
        "SELECT diffix.count_histogram(uid) FROM shop",
    ],
)
def test_queries_whose_parts_do_not_combine_take_one_pass(shop, sql) -> None:
    whole, _, split, passes = _whole_and_split(shop, sql)
    assert passes == 1
    assert split == whole


@pytest.mark.parametrize("value", ["0", "513", "many"])
def test_the_budget_is_checked(shop, value) -> None:
    db, _ = shop
    with pytest.raises(Exception, match="max_pass_mb"):
        db.admin.execute("CALL diffix.configure('max_pass_mb', %s)", (value,))
