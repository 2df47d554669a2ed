"""Personal tables partitioned over plain and postgres_fdw foreign leaves (docs/scale-out.md).

The label of the partitioned root covers every partition (sql/core/44_partition_trees.sql); the
engine reads the rows through the root with its own privileges, and postgres_fdw reaches the
shards with diffix_engine's user mappings. Before reading, the engine checks the tree again:
partitions attached after the table was marked must still be plain tables or postgres_fdw foreign
tables, unlabeled, without inheritance children.
"""

from __future__ import annotations

import json
from typing import Any

from pldiffix.core import catalog
from pldiffix.core.sqltext import identifier
from pldiffix.diffix.query_model import AnonymizingQuery

_REFUSAL = "SELECT diffix._partition_tree_refusal($1) AS refusal"


def check_tree(plpy: Any, relid: int, shown: str) -> None:
    """Raises PermissionError when the partition tree rooted at `relid` may not be read."""
    refusal = catalog.query(plpy, _REFUSAL, ("oid",), (relid,))[0]["refusal"]
    if refusal is not None:
        raise PermissionError(f"{shown} cannot be read in an anonymizing query: {refusal}")


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
