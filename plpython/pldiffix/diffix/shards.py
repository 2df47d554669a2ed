"""Personal tables partitioned over plain and postgres_fdw foreign leaves (docs/scale-out.md).

The label of the partitioned root covers every partition (sql/core/44_partition_trees.sql); the
engine reads the rows with its own privileges, and postgres_fdw reaches the shards with
diffix_engine's user mappings. Before reading, the engine checks the tree again: partitions
attached after the table was marked must still be plain tables or postgres_fdw foreign tables,
unlabeled, without inheritance children.

When the table is partitioned on its only AID column, no AID crosses partitions: each partition
is a pass (`anonymization.partitions`). The bucket query is then issued once per partition, as
branches of one UNION ALL (postgres_fdw runs foreign branches concurrently when the server is
`async_capable`), each aggregating over its partition alone, so that postgres_fdw can ship the
aggregation to the shard; the parts of a bucket are combined by its key like those of passes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pldiffix.core import catalog, partition_trees
from pldiffix.core.query_model import AnonymizingQuery, RangeEntry, RelationRef
from pldiffix.core.sqltext import identifier
from pldiffix.diffix import bucket_query, rewrite
from pldiffix.diffix.anonymization import Bucket, partitions


def estimated_rows(plpy: Any, model: AnonymizingQuery, live: catalog.LiveCatalog) -> float | None:
    """The planner's row estimate of a partitioned table holding the query's first AID: the sum
    over its partitions, each foreign one estimated by its shard when it has use_remote_estimate
    (else by its local statistics). None for other relations, whose estimate is the catalog's."""
    if not model.aid_columns:
        return None
    relation = model.aid_columns[0].relation
    details = live.details.get((relation.schema, relation.name))
    if details is None or details.relkind != "p":
        return None
    name = f"{identifier(relation.schema)}.{identifier(relation.name)}"
    plan = plpy.execute(f"EXPLAIN (FORMAT JSON) SELECT FROM {name}")[0]["QUERY PLAN"]
    return plan_rows(plan)


def plan_rows(document: Any) -> float | None:
    """Plan Rows of the top node of an EXPLAIN (FORMAT JSON) document (text or parsed)."""
    parsed = json.loads(document) if isinstance(document, str) else document
    try:
        rows = parsed[0]["Plan"]["Plan Rows"]
    except (IndexError, KeyError, TypeError):
        return None
    return float(rows) if isinstance(rows, int | float) and rows >= 0 else None


# The partitions of a table partitioned on exactly one column (not an expression) named $2.
def aid_partitions(
    plpy: Any, model: AnonymizingQuery, live: catalog.LiveCatalog
) -> list[RelationRef]:
    """The partitions of the query's only relation when it is partitioned on its only AID
    column (each holds the rows of its AIDs alone) and the engine may read each (mark_personal
    grants it, a partition attached since is read through the root); none otherwise."""
    entry = model.from_tree
    if not isinstance(entry, RangeEntry) or len(model.aid_columns) != 1:
        return []
    details = live.details.get((entry.relation.schema, entry.relation.name))
    if details is None or details.relkind != "p":
        return []
    leaves = partition_trees.partitions_on(plpy, details.oid, model.aid_columns[0].name)
    return [RelationRef(schema, name, entry.relation.kind) for schema, name in leaves]


_SELECT = "SELECT "


def per_partition_sql(bucket_sql: str, entry: RangeEntry, leaves: Sequence[RelationRef]) -> str:
    """`bucket_sql` (over `entry` only) once per partition, as branches of a UNION ALL, rows in
    partition order. Raises ValueError when it is no SELECT naming the relation exactly once."""
    root = rewrite.from_sql(entry)
    if bucket_sql.count(root) != 1 or not bucket_sql.startswith(_SELECT):
        raise ValueError("the bucket query is no SELECT naming its relation once")
    branches = []
    for index, leaf in enumerate(leaves):
        over_leaf = bucket_sql.replace(
            root, rewrite.from_sql(dataclasses.replace(entry, relation=leaf))
        )
        # The partition number goes into the branch's own select list: a wrapping subquery
        # would leave a Subquery Scan between the Append and each Foreign Scan, and postgres_fdw
        # runs a foreign branch asynchronously only when it is the Append's direct child.
        branches.append(f"{_SELECT}{index} AS __part, {over_leaf[len(_SELECT) :]}")
    # Parts in partition order, whatever order concurrent branches finish in: float totals are
    # then combined in the same order run after run.
    return f"SELECT * FROM ({' UNION ALL '.join(branches)}) parts ORDER BY __part"


ReadFn = Callable[[Any, Any, str], Iterator[tuple[Bucket, int]]]


def read_partitions(
    plpy: Any,
    reader: Any,
    make_query: Callable[..., bucket_query.BucketQuery],
    entry: RangeEntry,
    leaves: Sequence[RelationRef],
    passes: int,
    read: ReadFn,
) -> list[Bucket]:
    """The buckets of a query over a table partitioned on its AID, read per partition (within
    each of `passes` passes), parts combined by bucket key; raises `PartsDisagree` when they
    cannot be."""
    buckets: dict[int, Bucket] = {}
    capacity = reader.params.top_capacity
    for index in range(passes):
        partition = bucket_query.Partition(index, passes) if passes > 1 else None
        reader.query = make_query(partition=partition, keyed=True, sent=True)
        for bucket, key in read(plpy, reader, per_partition_sql(reader.query.sql, entry, leaves)):
            if key in buckets:
                partitions.combine(buckets[key], bucket, capacity)
            else:
                buckets[key] = bucket
    plpy.debug(f"pldiffix: read {len(leaves)} partitions in {passes} passes")
    return list(buckets.values())
