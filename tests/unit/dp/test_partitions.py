"""DP statements over a table partitioned on its AID, per partition and added up."""

from __future__ import annotations

import pytest

from pldiffix.dp.partitions import per_partition_sql as dp_statistics_sql


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


HISTOGRAM = (
    'WITH bounded AS (SELECT * FROM "public"."tx" AS "t") SELECT g0, bin, count(*) AS n '
    "FROM bounded GROUP BY g0, bin ORDER BY g0, bin"
)


def test_dp_histograms_add_up_over_the_partitions_in_order() -> None:
    # bin is a key, not a statistic, though it is an int8 too
    plpy = _Plpy([("g0", 25), ("bin", 20), ("n", 20)])
    sql = dp_statistics_sql(
        plpy, HISTOGRAM, ("public", "tx"), DP_LEAVES, "histogram", keys=("bin",), ordered=True
    )
    assert sql.startswith(
        'SELECT "g0", "bin", CAST(pg_catalog.sum("n") AS pg_catalog.int8) AS "n" FROM ((WITH '
    )
    assert '"public"."tx_p0" AS "t"' in sql and '"shard"."tx_p1" AS "t"' in sql
    assert sql.endswith(') AS parts GROUP BY "g0", "bin" ORDER BY "g0", "bin"')
    assert plpy.messages == ["pldiffix: DP histogram read per partition (2 partitions)"]


def test_dp_statistics_of_a_join_read_per_partition_of_the_named_table() -> None:
    joined = (
        'SELECT g0, count(*) AS units FROM "public"."customers" AS "c" '
        'JOIN "public"."tx" AS "t" ON "c"."id" = "t"."aid" GROUP BY g0'
    )
    sql = dp_statistics_sql(_Plpy([("g0", 25), ("units", 20)]), joined, ("public", "tx"), DP_LEAVES)
    assert sql.count('"public"."customers" AS "c" JOIN "public"."tx_p0" AS "t"') == 1
    assert sql.count('"public"."customers" AS "c" JOIN "shard"."tx_p1" AS "t"') == 1


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
