"""Sharded tables: the row estimate read from EXPLAIN (FORMAT JSON), the per-partition
statement."""

from __future__ import annotations

import json

import pytest

from pldiffix.core.query_model import RangeEntry, RelationRef
from pldiffix.core.relations import RelationKind
from pldiffix.diffix.shards import per_partition_sql, plan_rows
from pldiffix.dp.partitions import statistics_sql as dp_statistics_sql


def test_plan_rows_reads_the_top_node() -> None:
    document = [{"Plan": {"Node Type": "Append", "Plan Rows": 3000, "Plans": []}}]
    assert plan_rows(document) == 3000.0
    assert plan_rows(json.dumps(document)) == 3000.0


@pytest.mark.parametrize("document", [[], [{}], [{"Plan": {}}], [{"Plan": {"Plan Rows": -1}}]])
def test_plan_rows_without_an_estimate(document: object) -> None:
    assert plan_rows(document) is None


ENTRY = RangeEntry("t", RelationRef("public", "tx", RelationKind.PERSONAL), ("aid",))
LEAVES = [RelationRef("s", f"tx p{k}", RelationKind.PERSONAL) for k in (0, 1)]


def test_per_partition_sql_names_each_partition_once_in_partition_order() -> None:
    bucket = 'SELECT l0, count(*) FROM (SELECT kind AS l0 FROM "public"."tx" AS "t") b GROUP BY l0'
    text = per_partition_sql(bucket, ENTRY, LEAVES)
    assert '"public"."tx"' not in text
    assert text.index('"s"."tx p0" AS "t"') < text.index('"s"."tx p1" AS "t"')
    assert text.count(" UNION ALL ") == 1 and text.endswith("ORDER BY __part")


def test_per_partition_sql_refuses_a_query_naming_its_relation_twice() -> None:
    bucket = 'SELECT 1 FROM "public"."tx" AS "t" JOIN "public"."tx" AS "t" ON TRUE'
    with pytest.raises(ValueError):
        per_partition_sql(bucket, ENTRY, LEAVES)


class _Shape:
    def __init__(self, columns: list[tuple[str, int]]) -> None:
        self.columns = columns

    def colnames(self) -> list[str]:
        return [name for name, _ in self.columns]

    def coltypes(self) -> list[int]:
        return [oid for _, oid in self.columns]


class _Plpy:
    def __init__(self, columns: list[tuple[str, int]]) -> None:
        self.columns, self.executed, self.messages = columns, [], []

    def execute(self, sql: str) -> _Shape:
        self.executed.append(sql)
        return _Shape(self.columns)

    def debug(self, message: str) -> None:
        self.messages.append(message)


STATISTICS = 'SELECT g0, count(*) AS units, sum(x) AS a0_s FROM "public"."tx" AS "t" GROUP BY g0'
DP_LEAVES = [("public", "tx_p0"), ("shard", "tx_p1")]


def test_dp_statistics_add_up_over_the_partitions() -> None:
    plpy = _Plpy([("g0", 25), ("units", 20), ("a0_s", 1700)])
    sql = dp_statistics_sql(plpy, STATISTICS, ("public", "tx"), DP_LEAVES)
    assert sql == (
        'SELECT "g0", CAST(pg_catalog.sum("units") AS pg_catalog.int8) AS "units", '
        'CAST(pg_catalog.sum("a0_s") AS pg_catalog.numeric) AS "a0_s" FROM (('
        'SELECT g0, count(*) AS units, sum(x) AS a0_s FROM "public"."tx_p0" AS "t" GROUP BY g0'
        ") UNION ALL ("
        'SELECT g0, count(*) AS units, sum(x) AS a0_s FROM "shard"."tx_p1" AS "t" GROUP BY g0'
        ')) AS parts GROUP BY "g0"'
    )
    assert plpy.messages == ["pldiffix: DP statistics read per partition (2 partitions)"]


@pytest.mark.parametrize(
    ("statistics", "columns", "leaves"),
    [
        (STATISTICS, [("g0", 25), ("units", 20), ("a0_s", 701)], DP_LEAVES),  # a float: the root
        (STATISTICS, [("g0", 25), ("units", 20)], DP_LEAVES[:1]),  # one partition
        (STATISTICS + " UNION ALL " + STATISTICS, [("units", 20)], DP_LEAVES),  # named twice
    ],
)
def test_dp_statistics_read_through_the_root_otherwise(statistics, columns, leaves) -> None:
    plpy = _Plpy(columns)
    assert dp_statistics_sql(plpy, statistics, ("public", "tx"), leaves) == statistics
    assert plpy.messages == []
