"""DP joins on the privacy unit and the bounding SQL's structure (no database)."""

from __future__ import annotations

import pytest

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.core.statements import QueryError
from pldiffix.core.validation import ValidationError
from pldiffix.dp import joins, planner
from pldiffix.dp.query import DpAggregate, parse

CATALOG = StaticCatalog(
    relations={
        ("public", "tx"): RelationInfo(
            "public",
            "tx",
            RelationKind.PERSONAL,
            (
                ColumnInfo("cid", "integer", is_aid=True),
                ColumnInfo("kind", "integer"),
                ColumnInfo("amount", "numeric"),
            ),
        ),
        ("public", "customers"): RelationInfo(
            "public",
            "customers",
            RelationKind.PERSONAL,
            (
                ColumnInfo("id", "integer", is_aid=True),
                ColumnInfo("segment", "text"),
                ColumnInfo("age", "integer"),
                ColumnInfo("amount", "numeric"),
            ),
        ),
        ("public", "kinds"): RelationInfo(
            "public",
            "kinds",
            RelationKind.PUBLIC,
            (ColumnInfo("kind", "integer"), ColumnInfo("label", "text")),
        ),
    }
)
SEGMENTS = (
    "SELECT c.segment, count(*), count(DISTINCT c.id), sum(t.amount), avg(c.age) "
    "FROM tx t JOIN customers c ON t.cid = c.id WHERE c.age = 30 AND t.kind = 2 "
    "GROUP BY c.segment"
)


def _metadata(**kwargs) -> planner.TableMetadata:
    return planner.TableMetadata(
        20,
        False,
        {"amount": planner.Bounds(0.0, 1000.0)},
        joined={"c": planner.TableMetadata(bounds={"age": planner.Bounds(0.0, 100.0)})},
        **kwargs,
    )


def test_a_join_on_the_unit_reads_both_tables_under_the_primary_unit() -> None:
    query = parse(SEGMENTS, CATALOG)
    assert (query.alias, query.aid, list(query.joined), query.personal_aliases) == (
        "t",
        "cid",
        ["c"],
        ("c",),
    )
    assert query.aggregates == (
        DpAggregate("count_star", None, None),
        DpAggregate("count_units", "cid", None),
        DpAggregate("sum", "amount", "numeric"),
        DpAggregate("avg", "age", "int4", table="c"),
    )
    plan = planner.plan(query, _metadata(), seed=4)
    assert (
        '("public"."tx" AS "t" INNER JOIN "public"."customers" AS "c" ON "t"."cid" '
        'OPERATOR(pg_catalog.=) "c"."id")' in plan.sql
    )
    assert '"t"."cid" AS u' in plan.sql and '"c"."segment" AS g0' in plan.sql
    assert '("c"."age") = (30)' in plan.sql and '("t"."kind") = (2)' in plan.sql
    # the bounds of each column come from its own table, the contributions from the primary
    count, units, total, average = plan.aggregates
    assert count.statistics[0].sensitivity == 20 and units.statistics[0].sensitivity == 20
    assert total.bounds == planner.Bounds(0.0, 1000.0) and average.bounds == planner.Bounds(
        0.0, 100.0
    )


def test_public_tables_join_on_any_equality_and_their_columns_group() -> None:
    query = parse(
        "SELECT k.label, count(*) FROM tx JOIN kinds k ON tx.kind = k.kind GROUP BY k.label",
        CATALOG,
    )
    assert query.personal_aliases == () and list(query.joined) == ["k"]
    metadata = planner.TableMetadata(5, False, joined={"k": planner.TableMetadata()})
    plan = planner.plan(query, metadata, seed=1)
    assert '"k"."label" AS g0' in plan.sql and not plan.declared_keys
    median = parse(
        "SELECT k.label, median(tx.amount) FROM tx JOIN kinds k ON tx.kind = k.kind GROUP BY 1",
        CATALOG,
    )
    bounded = planner.TableMetadata(
        5, False, {"amount": planner.Bounds(0.0, 10.0)}, joined={"k": planner.TableMetadata()}
    )
    histogram = planner.plan(median, bounded, seed=1).histogram_sql(median, bounded, 0)
    # a joined row is ordered by the ctids of all its tables' rows
    assert 'hashtidextended("tx".ctid, 1), pg_catalog.hashtidextended("k".ctid, 1)' in histogram


def test_declared_domains_of_a_joined_table_release_every_key() -> None:
    query = parse(
        "SELECT c.segment, count(*) FROM tx t JOIN customers c ON t.cid = c.id GROUP BY 1",
        CATALOG,
    )
    metadata = planner.TableMetadata(
        3, False, joined={"c": planner.TableMetadata(domains={"segment": ["a", "b"]})}
    )
    plan = planner.plan(query, metadata, seed=1)
    assert plan.declared_keys and planner.domain_cells(query, metadata) == 2
    assert "ARRAY['a', 'b']" in plan.sql


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT count(*) FROM tx t JOIN customers c ON t.kind = c.id", "not joined on their AID"),
        ("SELECT count(*) FROM tx t JOIN customers c ON t.cid = c.age", "not joined on their AID"),
        (
            "SELECT count(*) FROM tx t JOIN kinds k ON t.cid = k.kind "
            "JOIN customers c ON k.kind = c.id",
            "not joined on their AID",
        ),
        ("SELECT count(*) FROM tx t LEFT JOIN customers c ON t.cid = c.id", "LEFT JOIN"),
        ("SELECT count(*) FROM tx t JOIN kinds k ON t.kind = k.label", "compares"),
        (
            "SELECT sum(amount) FROM tx t JOIN customers c ON t.cid = c.id",
            "ambiguous",
        ),
        ("SELECT count(DISTINCT k.kind) FROM tx JOIN kinds k ON tx.kind = k.kind", "AID"),
    ],
)
def test_joins_off_the_unit_are_refused(sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse(sql, CATALOG)


def test_joins_the_validator_refuses_stay_refused() -> None:
    with pytest.raises(ValidationError, match=r"JOIN \.\.\. ON"):
        parse("SELECT count(*) FROM tx t, customers c WHERE t.cid = c.id", CATALOG)
    with pytest.raises(ValidationError, match="plain column"):
        parse("SELECT count(*) FROM tx t JOIN kinds k ON t.kind = k.kind + 1", CATALOG)


def test_personal_tables_share_a_unit_only_through_declared_paths() -> None:
    query = parse(SEGMENTS, CATALOG)
    oids = {"": 10, "c": 20}
    joins.check_units(query, oids, {10: 20})  # tx -> customers
    joins.check_units(query, oids, {10: 30, 20: 30})  # both -> a third table
    with pytest.raises(QueryError, match="no declared path") as caught:
        joins.check_units(query, oids, {})
    assert "set_dp_unit_path('public.customers', 'id', 'public.tx', 'cid')" in (
        caught.value.hint or ""
    )
    assert joins.unit_of({1: 2, 2: 1}, 1) in (1, 2)  # a cycle (refused on insert) ends


def test_only_crowded_units_are_ranked() -> None:
    """Units with at most L0 groups (per partition) or k rows (total) keep every group without
    a window; only the others are sorted and ranked."""
    query = parse("SELECT kind, count(*), sum(amount) FROM tx GROUP BY kind", CATALOG)
    per_partition = planner.plan(
        query, _metadata(max_groups_per_unit=4, max_rows_per_group=2), seed=9
    ).sql
    assert "crowded AS (SELECT u FROM per_unit GROUP BY u HAVING NOT pg_catalog.count(*) " in (
        per_partition
    )
    plain, ranked = per_partition.split("UNION ALL")
    assert "LEAST(m, 2) AS kept" in plain and "WHERE c.u IS NULL" in plain and "OVER" not in plain
    assert "row_number() OVER (PARTITION BY u" in ranked and "JOIN crowded" in ranked
    total = planner.plan(query, _metadata(), seed=9).sql
    assert "HAVING NOT pg_catalog.sum(m) OPERATOR(pg_catalog.<=) 20" in total
    assert "m AS kept" in total.split("UNION ALL")[0]
    # no OFFSET fence: the per-row work may run in parallel workers
    assert "OFFSET 0" not in total


def test_numeric_grid_values_never_convert_to_double() -> None:
    query = parse("SELECT sum(amount), avg(amount) FROM tx", CATALOG)
    sql = planner.plan(query, _metadata(), seed=1).sql
    assert "double precision" not in sql
    assert 'pg_catalog.numeric_larger("tx"."amount"' in sql
    wide = planner.TableMetadata(1, False, {"amount": planner.Bounds(-1e9, 1e9)})
    assert "OPERATOR(pg_catalog./) CAST('100000.0' AS pg_catalog.numeric)" in (
        planner.plan(query, wide, seed=1).sql
    )
