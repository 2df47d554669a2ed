"""Sharded tables: the row estimate read from EXPLAIN (FORMAT JSON), the per-partition
statement."""

from __future__ import annotations

import json

import pytest

from pldiffix.core.query_model import RangeEntry, RelationRef
from pldiffix.core.relations import RelationKind
from pldiffix.diffix.shards import per_partition_sql, plan_rows


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
    # each branch is the bucket query itself, its partition number first (no wrapping subquery)
    assert "SELECT 0 AS __part, l0, count(*) FROM (SELECT kind" in text
    assert " UNION ALL SELECT 1 AS __part, l0, count(*) FROM (SELECT kind" in text


@pytest.mark.parametrize(
    "bucket",
    [
        'SELECT 1 FROM "public"."tx" AS "t" JOIN "public"."tx" AS "t" ON TRUE',
        'WITH w AS (SELECT 1) SELECT 1 FROM "public"."tx" AS "t"',
    ],
)
def test_per_partition_sql_refuses_other_shapes(bucket: str) -> None:
    with pytest.raises(ValueError):
        per_partition_sql(bucket, ENTRY, LEAVES)
