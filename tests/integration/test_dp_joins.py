"""DP joins on the privacy unit (docs/dp.md, "Joins on the privacy unit"): unit paths, bounded
statistics of joined rows, answers, refusals, attacks, and neighbouring datasets."""

from __future__ import annotations

import math
from collections import Counter

import psycopg
import pytest

from pldiffix.core.exact_sampling import rational_epsilon
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import planner, release
from pldiffix.dp.query import parse

# customers 1..40: gold when even, north when divisible by 3; each has 1 + id % 4 transactions
# spread over the kinds 1..3, except customer 1, who has 5 transactions of 500 in every kind.
DATA = """
CREATE TABLE customers (id integer PRIMARY KEY, segment text, region text);
INSERT INTO customers SELECT i, CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END,
  CASE WHEN i % 3 = 0 THEN 'north' ELSE 'south' END FROM generate_series(1, 40) i;
CREATE TABLE transactions (cid integer, kind integer, amount numeric);
INSERT INTO transactions SELECT i, 1 + (i + r) % 3, 10 * r
  FROM generate_series(2, 40) i, generate_series(1, 1 + i % 4) r;
INSERT INTO transactions SELECT 1, k, 500 FROM generate_series(1, 3) k, generate_series(1, 5) r;
CREATE TABLE visits (pid integer, place text);
INSERT INTO visits SELECT i, 'x' FROM generate_series(1, 40) i;
CREATE TABLE kinds (kind integer, label text, weight double precision);
INSERT INTO kinds VALUES (1, 'food', 1.5), (2, 'rent', 2.5), (3, 'fun', 3.5);
CREATE TABLE secret_kinds (kind integer, label text);
INSERT INTO secret_kinds VALUES (1, 'a'), (2, 'b'), (3, 'c');
GRANT SELECT ON kinds TO PUBLIC;
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_personal('transactions', 'cid');
CALL diffix.mark_personal('visits', 'pid');
CALL diffix.mark_public('kinds');
CALL diffix.mark_public('secret_kinds');
CALL diffix.set_dp_unit_path('transactions', 'cid', 'customers', 'id');
CALL diffix.set_dp_bounds('transactions', 'amount', 0, 100);
CALL diffix.set_dp_bounds_per_partition('transactions', 2, 2);
CALL diffix.set_dp_domain('transactions', 'kind', ARRAY[1, 2, 3]);
CALL diffix.set_dp_domain('customers', 'segment', ARRAY['gold', 'basic']);
"""
BY_SEGMENT = (
    "SELECT c.segment, count(*), sum(t.amount) FROM transactions t JOIN customers c "
    "ON t.cid = c.id GROUP BY c.segment"
)


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(DATA)
    return module_db


def _catalog() -> StaticCatalog:
    customers = RelationInfo(
        "public",
        "customers",
        RelationKind.PERSONAL,
        (
            ColumnInfo("id", "integer", is_aid=True),
            ColumnInfo("segment", "text"),
            ColumnInfo("region", "text"),
        ),
    )
    transactions = RelationInfo(
        "public",
        "transactions",
        RelationKind.PERSONAL,
        (
            ColumnInfo("cid", "integer", is_aid=True),
            ColumnInfo("kind", "integer"),
            ColumnInfo("amount", "numeric"),
        ),
    )
    return StaticCatalog(
        {("public", "customers"): customers, ("public", "transactions"): transactions}
    )


PER_PARTITION = planner.TableMetadata(
    1,
    False,
    {"amount": planner.Bounds(0.0, 100.0)},
    max_groups_per_unit=2,
    max_rows_per_group=2,
    joined={"c": planner.TableMetadata()},
)
TOTAL = planner.TableMetadata(
    3, False, {"amount": planner.Bounds(0.0, 100.0)}, joined={"c": planner.TableMetadata()}
)


def _rows(db, sql: str) -> dict:
    with db.admin.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return {row["g0"]: row for row in cur.execute(sql).fetchall()}


def _analyst(db, epsilon: float = 10.0, delta: float = 1e-3) -> str:
    role = db.create_role("anonymized_dp")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (role, epsilon, delta))
    return role


def _spent(db, role: str) -> tuple[float, float]:
    row = db.execute(
        "SELECT epsilon_spent, delta_spent FROM diffix.privacy_budget() WHERE role = %s", (role,)
    )
    return float(row[0][0]), float(row[0][1])


def _dp(conn, sql: str, epsilon: float, delta: float = 0.0) -> dict:
    return conn.execute(
        "SELECT diffix.dp_query_json(%s, %s, %s)", (sql, epsilon, delta)
    ).fetchone()[0]


# --- unit paths ------------------------------------------------------------------------------


def test_unit_paths_are_declared_by_administrators_only(shop):
    paths = "SELECT relid::regclass::text, target_relid::regclass::text FROM diffix.dp_unit_paths"
    assert shop.execute(paths) == [("transactions", "customers")]
    role = _analyst(shop)
    with shop.as_role(role) as conn:
        assert conn.execute(paths).fetchall() == [("transactions", "customers")]  # readable
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CALL diffix.set_dp_unit_path('visits', 'pid', 'customers', 'id')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "SELECT diffix._set_dp_unit_path('visits'::regclass, 'pid', "
                "'customers'::regclass, 'id')"
            )
    for call, message in [
        ("'transactions', 'kind', 'customers', 'id'", "not the single AID"),
        ("'kinds', 'kind', 'customers', 'id'", "not personal"),
        ("'customers', 'id', 'transactions', 'cid'", "cycle"),
        ("'customers', 'id', 'customers', 'id'", "two different tables"),
    ]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            shop.admin.execute(f"CALL diffix.set_dp_unit_path({call})")
    assert shop.execute(paths) == [("transactions", "customers")]
    shop.admin.execute("CALL diffix.set_dp_unit_path('visits', 'pid', 'customers', 'id')")
    shop.admin.execute("CALL diffix.set_dp_unit_path('visits', 'pid', NULL, NULL)")
    assert shop.execute(paths) == [("transactions", "customers")]


# --- bounded statistics of joined rows -------------------------------------------------------


def test_joined_rows_are_bounded_per_unit(shop):
    """By segment, each customer is in one group and keeps least(rows, Linf = 2) of its
    transactions, amounts clamped to [0, 100] on a grid of 0.01, whatever the join."""
    plan = planner.plan(parse(BY_SEGMENT, _catalog()), PER_PARTITION, seed=3)
    got = _rows(shop, plan.sql)
    expected = shop.execute(
        "SELECT c.segment, count(*), sum(LEAST(t.n, 2)) FROM (SELECT cid, count(*) AS n "
        "FROM transactions GROUP BY cid) t JOIN customers c ON c.id = t.cid GROUP BY 1"
    )
    for segment, units, rows in expected:
        assert (got[segment]["units"], got[segment]["a0_n"]) == (units, rows)
    # customer 1 (basic) keeps 2 rows of 500 clamped to 100
    assert got["basic"]["a1_s"] > 2 * 100 / 0.01
    filtered = planner.plan(
        parse(
            "SELECT t.kind, count(*) FROM transactions t JOIN customers c ON t.cid = c.id "
            "WHERE c.region = 'north' AND c.segment = 'gold' GROUP BY t.kind",
            _catalog(),
        ),
        PER_PARTITION,
        seed=3,
    )
    truth = dict(
        shop.execute(
            "SELECT t.kind, count(*) FROM transactions t JOIN customers c ON t.cid = c.id "
            "WHERE c.region = 'north' AND c.segment = 'gold' GROUP BY 1"
        )
    )
    got = _rows(shop, filtered.sql)
    assert set(got) == set(truth) and all(got[k]["a0_n"] <= truth[k] for k in truth)


@pytest.mark.parametrize("metadata", [PER_PARTITION, TOTAL], ids=["L0=2 Linf=2", "k=3"])
def test_neighbouring_datasets_through_the_join(shop, metadata):
    """Customer 1 has 5 transactions in each of 3 kinds. Without it (its customer row and its
    transactions: the neighbouring database), the counts by kind over the join move by exactly
    the sensitivity in L1 (L0 * Linf = 4, or k = 3). Then 6000 releases of each at epsilon 1,
    post-processed into the total of the 3 noisy counts in bins of 4: for every bin seen at
    least 300 times in both, the ratio of its frequencies stays within e^epsilon * 1.3 (about 3
    standard errors of such a ratio)."""
    sql = (
        "SELECT t.kind, count(*) FROM transactions t JOIN customers c ON t.cid = c.id "
        "GROUP BY t.kind"
    )
    metadata = planner.TableMetadata(
        metadata.max_contributions,
        False,
        {},
        {"kind": ["1", "2", "3"]},
        metadata.max_groups_per_unit,
        metadata.max_rows_per_group,
        joined={"c": planner.TableMetadata()},
    )
    plan = planner.plan(parse(sql, _catalog()), metadata, seed=8)
    full = _rows(shop, plan.sql)
    without = _rows(shop, plan.sql.replace('"t"."cid" IS NOT NULL', '"t"."cid" <> 1'))
    assert plan.sql.count('"t"."cid" IS NOT NULL') == 1
    sensitivity = plan.aggregates[0].statistics[0].sensitivity
    assert sensitivity == metadata.contributions
    moved = sum(abs(full[k]["a0_n"] - without[k]["a0_n"]) for k in full)
    assert moved == sensitivity
    budget = release.Budget(rational_epsilon(1.0), 0.0, 1, False)

    def totals(rows: dict) -> Counter[int]:
        groups = list(rows.values())
        return Counter(
            sum(r.values[0].value for r in release.release(plan, budget, groups, {}, metadata)) // 4
            for _ in range(6000)
        )

    larger, smaller = totals(full), totals(without)
    compared = [v for v in larger if larger[v] >= 300 and smaller[v] >= 300]
    assert compared
    bound = math.e * 1.3
    for value in compared:
        assert 1 / bound <= larger[value] / smaller[value] <= bound, value


# --- answers ---------------------------------------------------------------------------------


def test_counts_by_customer_segment_over_transactions(shop):
    role = _analyst(shop)
    truth = dict(
        shop.execute(
            "SELECT c.segment, sum(LEAST(t.n, 2)) FROM (SELECT cid, count(*) AS n FROM "
            "transactions GROUP BY cid) t JOIN customers c ON c.id = t.cid GROUP BY 1"
        )
    )
    with shop.as_role(role) as conn:
        doc = _dp(conn, BY_SEGMENT, 1.0)
        report = doc["dp"]
        assert (report["max_groups_per_unit"], report["max_rows_per_group"]) == (2, 2)
        assert report["partition_selection"] is None  # declared domain of customers.segment
        rows = {row[0]: row for row in report["rows"]}
        assert set(rows) == {"gold", "basic"}
        # count noise: scale 4 / 0.5 (two aggregates share epsilon 1)
        for segment, count in truth.items():
            assert abs(rows[segment][1]["value"] - count) <= 60
        both = _dp(
            conn,
            "SELECT t.kind, count(*) FROM transactions t JOIN customers c ON t.cid = c.id "
            "WHERE c.region = 'north' AND t.kind = 2 GROUP BY t.kind",
            0.5,
        )
        assert [row[0] for row in both["dp"]["rows"]] == [1, 2, 3]
        public = _dp(
            conn,
            "SELECT k.label, count(*) FROM transactions t JOIN kinds k ON t.kind = k.kind "
            "GROUP BY k.label",
            0.5,
            1e-5,
        )
        assert {row[0] for row in public["dp"]["rows"]} <= {"food", "rent", "fun"}
    assert _spent(shop, role) == (pytest.approx(2.0), pytest.approx(1e-5))


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "SELECT count(*) FROM visits v JOIN customers c ON v.pid = c.id",
            "FeatureNotSupported",
            "no declared path",
        ),
        (
            "SELECT count(*) FROM transactions t JOIN customers c ON t.kind = c.id",
            "FeatureNotSupported",
            "not joined on their AID",
        ),
        (
            "SELECT count(*) FROM transactions t LEFT JOIN customers c ON t.cid = c.id",
            "FeatureNotSupported",
            "LEFT JOIN",
        ),
        (
            "SELECT count(*) FROM transactions t, customers c WHERE t.cid = c.id",
            "FeatureNotSupported",
            "JOIN ... ON",
        ),
        (
            "SELECT count(*) FROM transactions t JOIN kinds k ON t.kind = CAST(k.label AS int)",
            "FeatureNotSupported",
            "plain column",
        ),
        (
            "SELECT count(*) FROM transactions t JOIN kinds k ON t.amount = k.weight",
            "FeatureNotSupported",
            "numeric",
        ),
        (
            "SELECT count(*) FROM transactions t JOIN kinds k ON t.kind = k.label",
            "FeatureNotSupported",
            "same type",
        ),
        (
            "SELECT sum(k.weight) FROM transactions t JOIN kinds k ON t.kind = k.kind",
            "FeatureNotSupported",
            "needs clamping bounds",
        ),
        (
            "SELECT count(*) FROM transactions t JOIN secret_kinds s ON t.kind = s.kind",
            "InsufficientPrivilege",
            "secret_kinds",
        ),
    ],
)
def test_other_joins_are_refused_for_free(shop, sql, error, message):
    role = _analyst(shop)
    with shop.as_role(role) as conn, pytest.raises(getattr(psycopg.errors, error), match=message):
        _dp(conn, sql, 0.5)
    assert _spent(shop, role) == (0.0, 0.0)


def test_a_hostile_search_path_reads_nothing_of_its_own(shop):
    """The analyst's own temporary `customers` (every customer gold, many times over) first on
    its search_path: the join names that unlabeled table and is refused for free; naming
    public.customers reads the labeled table, not the analyst's."""
    role = _analyst(shop)
    with shop.as_role(role) as conn:
        conn.execute(
            "CREATE TEMP TABLE customers AS SELECT i AS id, 'gold' AS segment, 'north' AS region "
            "FROM generate_series(1, 40) i, generate_series(1, 50)"
        )
        conn.execute("SET search_path = pg_temp, public")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no anonymization label"):
            _dp(conn, BY_SEGMENT, 1.0)
        assert _spent(shop, role) == (0.0, 0.0)
        doc = _dp(
            conn,
            "SELECT c.segment, count(*) FROM transactions t JOIN public.customers c "
            "ON t.cid = c.id GROUP BY c.segment",
            1.0,
        )
        rows = {row[0]: row[1]["value"] for row in doc["dp"]["rows"]}
    # bounded truth: basic 40, gold 30 (the analyst's table: gold 80, basic 0); noise scale 4,
    # each side fails with probability about 1e-3
    assert rows["basic"] > 15 and rows["gold"] < 55
