"""The DP query subset, its SQL plan and the release of derived aggregates (no database)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pldiffix.core.relations import (
    ColumnInfo,
    FunctionInfo,
    RelationInfo,
    RelationKind,
    StaticCatalog,
)
from pldiffix.core.statements import QueryError
from pldiffix.core.validation import ValidationError
from pldiffix.dp import planner, release
from pldiffix.dp.query import parse

CATALOG = StaticCatalog(
    relations={
        ("public", "customers"): RelationInfo(
            "public",
            "customers",
            RelationKind.PERSONAL,
            (
                ColumnInfo("id", "integer", is_aid=True),
                ColumnInfo("city", "text"),
                ColumnInfo("age", "integer"),
                ColumnInfo("amount", "numeric"),
            ),
        ),
        ("public", "couples"): RelationInfo(
            "public",
            "couples",
            RelationKind.PERSONAL,
            (ColumnInfo("a", "integer", is_aid=True), ColumnInfo("b", "integer", is_aid=True)),
        ),
        ("public", "cities"): RelationInfo(
            "public", "cities", RelationKind.PUBLIC, (ColumnInfo("name", "text"),)
        ),
    },
    functions={("diffix", "floor_by"): FunctionInfo("diffix", "floor_by")},
)
BOUNDS = {"amount": planner.Bounds(0.0, 1000.0), "age": planner.Bounds(18.0, 90.0)}

ONE_ROW = planner.TableMetadata(unique_aid=True)  # one row per unit


def test_the_supported_aggregates_and_generalized_groups() -> None:
    query = parse(
        "SELECT diffix.floor_by(age, 10) AS decade, count(*), count(DISTINCT id), count(city), "
        "sum(amount), avg(amount), stddev(amount), var_pop(age), median(amount), "
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY amount) FROM customers "
        "WHERE city = 'Rome' GROUP BY 1",
        CATALOG,
    )
    kinds = [(a.kind, a.column, a.quantile, a.population) for a in query.aggregates]
    assert kinds == [
        ("count_star", None, None, False),
        ("count_units", "id", None, False),
        ("count", "city", None, False),
        ("sum", "amount", None, False),
        ("avg", "amount", None, False),
        ("stddev", "amount", None, False),
        ("variance", "age", None, True),
        ("quantile", "amount", 0.5, False),
        ("quantile", "amount", 0.9, False),
    ]
    assert [o.name for o in query.outputs][:3] == ["decade", "count", "count"]
    assert query.outputs[0].group_index == 0
    assert [g.expression.sql() for g in query.groups] == ['diffix.floor_by("customers"."age", 10)']
    assert query.where_sql == '("customers"."city") = (\'Rome\')'


@pytest.mark.parametrize(
    ("sql", "message", "hint"),
    [
        ("SELECT name FROM cities", "reads no personal table", "diffix.query_json"),
        ("SELECT max(age) FROM customers", "is not supported", "percentile_cont"),
        ("SELECT count(DISTINCT city) FROM customers", "only supported over the AID", "id"),
        ("SELECT sum(city) FROM customers", "needs a numeric column", "numeric"),
        ("SELECT city, count(*) * 2 FROM customers GROUP BY city", "grouping expression", "outer"),
        ("SELECT city, count(*) FROM customers GROUP BY 1 HAVING count(*) > 1", "HAVING", "wrap"),
        ("SELECT count(*) FROM customers LEFT JOIN cities ON city = name", "LEFT JOIN", "inner"),
        ("SELECT count(*) FROM couples", "2 AID columns", "single column"),
        ("SELECT city FROM customers GROUP BY city", "at least one aggregate", "count(*)"),
        (
            "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM customers)",
            "exactly one SELECT",
            "own call",
        ),
        ("SELECT sum(amount + 1) FROM customers", "plain column", "set_dp_bounds"),
        ("SELECT DISTINCT city, count(*) FROM customers GROUP BY 1", "DISTINCT", "group by"),
    ],
)
def test_refusals_say_what_to_write_instead(sql: str, message: str, hint: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(sql, CATALOG)
    assert message in caught.value.message
    assert hint in (caught.value.hint or "")


def test_filters_and_groups_go_through_the_diffix_validator() -> None:
    with pytest.raises(ValidationError, match="equality"):
        parse("SELECT count(*) FROM customers WHERE age > 30", CATALOG)
    with pytest.raises(ValidationError):
        parse("SELECT count(*) FROM customers GROUP BY nosuch", CATALOG)


def test_post_processing_around_the_dp_subquery_is_kept() -> None:
    query = parse(
        "SELECT city, c * 2 FROM (SELECT city, count(*) AS c FROM customers GROUP BY city) t",
        CATALOG,
    )
    assert query.node is not query.tree
    assert [o.name for o in query.outputs] == ["city", "c"]


def test_order_by_and_limit_never_reach_the_aggregation() -> None:
    """They order and cut the released rows (dp/placement.py); a LIMIT in the plan would decide
    which rows are counted."""
    from pldiffix.dp import placement

    query = parse(
        "SELECT city AS c, count(*) AS n, diffix.dp_ci_low(count(*)) FROM customers "
        "GROUP BY city ORDER BY n DESC, customers.city, 3 LIMIT 1 OFFSET 2",
        CATALOG,
    )
    sql = planner.plan(query, planner.TableMetadata(1, False, BOUNDS), seed=1).sql
    # (the planner's own OFFSET 0 fences are no cut)
    assert "LIMIT" not in sql and "OFFSET 2" not in sql and "ORDER BY n" not in sql
    finishing = {key: clause.sql("postgres") for key, clause in placement.finishing(query).items()}
    assert finishing == {
        "order": "ORDER BY 2 DESC, 1, 3",
        "limit": "LIMIT 1",
        "offset": "OFFSET 2",
    }


def test_interval_markers_show_an_aggregate_of_the_list_or_their_own() -> None:
    query = parse(
        "SELECT diffix.dp_ci_high(sum(amount)) AS hi, count(*), diffix.dp_ci_low(count(*)), "
        "diffix.dp_budget_remaining() FROM customers",
        CATALOG,
    )
    assert [a.kind for a in query.aggregates] == ["count_star", "sum"]
    assert [(o.name, o.aggregate_index, o.marker) for o in query.outputs] == [
        ("hi", 1, "dp_ci_high"),
        ("count", 0, None),
        ("dp_ci_low", 0, "dp_ci_low"),
        ("dp_budget_remaining", None, "dp_budget_remaining"),
    ]


def test_plan_bounds_contributions_unless_the_aid_is_unique() -> None:
    """Total bounds (L1, k = 3): rows aggregated per (group, unit) first, then a unit's groups
    in keyed-hash order until 3 rows are used, with no window over the raw rows."""
    query = parse("SELECT city, count(*), sum(amount) FROM customers GROUP BY city", CATALOG)
    bounded = planner.plan(query, planner.TableMetadata(3, False, BOUNDS), seed=42)
    per_unit, ranked = bounded.sql.split("ranked AS")
    assert "GROUP BY g0, u" in per_unit and " OVER " not in per_unit
    assert "pg_catalog.hashtextextended(CAST(ROW(g0) AS pg_catalog.text), 42), g0" in ranked
    assert "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING" in ranked
    assert "LEAST(m, 3 OPERATOR(pg_catalog.-)" in ranked
    assert "smaller(pg_catalog." in bounded.sql  # clamping
    count, total = bounded.aggregates
    assert count.statistics[0].sensitivity == 3
    # a unit's 3 rows each contribute at most 1000 / 0.1 grid steps
    assert total.step == 0.1 and total.statistics[0].sensitivity == 3 * 10_000
    unique = planner.plan(query, planner.TableMetadata(3, True, BOUNDS), seed=42)
    assert "row_number" not in unique.sql and "per_unit" not in unique.sql
    assert unique.aggregates[0].statistics[0].sensitivity == 1
    assert not unique.declared_keys


def test_per_partition_bounds_set_the_sensitivities() -> None:
    """L0 = 3 groups per unit, Linf = 2 rows per group: a count moves by at most L0 * Linf = 6
    over all groups, a count of units by L0 = 3, a sum by 6 times the largest grid value, an
    avg's count and sum by 6 and 6 * half; quantiles' utility by 6."""
    query = parse(
        "SELECT city, count(*), count(DISTINCT id), sum(amount), avg(age), "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM customers GROUP BY city",
        CATALOG,
    )
    metadata = planner.TableMetadata(7, False, BOUNDS, max_groups_per_unit=3, max_rows_per_group=2)
    assert (metadata.contributions, metadata.max_partitions, metadata.rows_per_partition) == (
        6,
        3,
        2,
    )
    plan = planner.plan(query, metadata, seed=5)
    count, units, total, average, median = plan.aggregates
    assert count.statistics[0].sensitivity == 6 and units.statistics[0].sensitivity == 3
    assert total.statistics[0].sensitivity == 6 * 10_000
    assert [s.sensitivity for s in average.statistics] == [6, 6 * 36]
    assert median.contributions == 6
    assert "row_number() OVER (PARTITION BY u ORDER BY pg_catalog.hashtextextended" in plan.sql
    assert "OPERATOR(pg_catalog.<=) 3 THEN LEAST(m, 2) ELSE 0 END" in plan.sql
    histogram = plan.histogram_sql(query, metadata, 4)
    assert "dense_rank() OVER" in histogram and "gr OPERATOR(pg_catalog.<=) 3" in histogram
    assert "rr OPERATOR(pg_catalog.<=) 2" in histogram and "hashtidextended" in histogram
    unique = planner.TableMetadata(7, True, BOUNDS, max_groups_per_unit=3, max_rows_per_group=2)
    assert (unique.contributions, unique.max_partitions, unique.rows_per_partition) == (1, 1, 1)


def test_a_global_aggregate_bounds_rows_without_ranking_groups() -> None:
    query = parse("SELECT count(*) FROM customers", CATALOG)
    total = planner.plan(query, planner.TableMetadata(4, False, BOUNDS), seed=1)
    assert "LEAST(m, 4) AS kept" in total.sql and " OVER " not in total.sql
    metadata = planner.TableMetadata(4, False, BOUNDS, max_groups_per_unit=2, max_rows_per_group=3)
    per_partition = planner.plan(query, metadata, seed=1)
    assert "LEAST(m, 3) AS kept" in per_partition.sql and " OVER " not in per_partition.sql
    assert per_partition.aggregates[0].statistics[0].sensitivity == 6


def test_declared_domains_release_every_key() -> None:
    query = parse("SELECT city, count(*) FROM customers GROUP BY city", CATALOG)
    metadata = planner.TableMetadata(1, True, {}, {"city": ["Rome", "O'Hara"]})
    plan = planner.plan(query, metadata, seed=1)
    assert plan.declared_keys
    assert "'O''Hara'" in plan.sql and "LEFT JOIN" in plan.sql
    assert planner.domain_cells(query, metadata) == 2


def test_grid_step_is_a_power_of_ten_and_whole_for_integers() -> None:
    assert planner.grid_step(planner.Bounds(0, 1000), "numeric") == 0.1
    assert planner.grid_step(planner.Bounds(0, 1), "float8") == 0.0001
    assert planner.grid_step(planner.Bounds(18, 90), "int4") == 1.0


def test_avg_and_variance_are_released_within_the_bounds() -> None:
    query = parse("SELECT avg(amount), variance(amount) FROM customers", CATALOG)
    plan = planner.plan(query, planner.TableMetadata(1, True, BOUNDS), seed=1)
    # 1000 rows at 700 (centred on 500 in steps of 0.1: y = 2000), so the variance is 0
    row = {"units": 1000, "a0_n": 1000, "a0_s": 2_000_000, "a1_n": 1000, "a1_s": 2_000_000}
    row["a1_q"] = 1000 * 2000 * 2000
    budget = release.Budget(Fraction(100), 0.0, 2, False)
    covered = 0
    for _ in range(200):  # a 95% interval: it covers the true 700 in about 95% of releases
        (released,) = release.release(plan, budget, [row], {}, ONE_ROW)
        average, variance = released.values
        assert average.value == pytest.approx(700, abs=5)
        assert average.interval is not None
        covered += average.interval[0] <= 700 <= average.interval[1]
        assert 0.0 <= variance.value <= 500.0**2
    assert covered >= 175  # P(fewer than 175 of 200 at 95%) < 1e-4
    report = release.noise_report(plan, budget)
    assert report[0]["epsilon"] == 50.0 and set(report[0]["noise_scale"]) == {"n", "s"}


def test_partition_selection_takes_an_equal_share() -> None:
    budget = release.Budget(Fraction(3, 2), 1e-6, 2, True)
    assert budget.share == Fraction(1, 2) and budget.delta_spent == 1e-6
    assert release.Budget(Fraction(1), 1e-6, 2, False).delta_spent == 0.0


def test_partition_selection_by_a_count_takes_no_share_of_its_own() -> None:
    budget = release.Budget(Fraction(3, 2), 1e-6, 2, True, selection_by_count=True)
    assert budget.share == Fraction(3, 4) and budget.delta_spent == 1e-6


def test_the_selecting_count_prefers_units_then_rows() -> None:
    def selecting(sql: str) -> int | None:
        plan = planner.plan(parse(sql, CATALOG), planner.TableMetadata(2, False, BOUNDS), 1)
        return release.selection_count(plan)

    assert selecting("SELECT city, sum(amount), count(*) FROM customers GROUP BY city") == 1
    sql = "SELECT city, count(age), count(*), count(DISTINCT id) FROM customers GROUP BY city"
    assert selecting(sql) == 2
    assert selecting("SELECT city, count(age) FROM customers GROUP BY city") == 0
    assert selecting("SELECT city, avg(age) FROM customers GROUP BY city") is None
