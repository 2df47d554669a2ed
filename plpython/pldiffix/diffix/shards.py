"""Personal tables partitioned over plain and postgres_fdw foreign leaves (docs/scale-out.md).

The label of the partitioned root covers every partition (sql/core/44_partition_trees.sql); the
engine reads the rows through the root with its own privileges, and postgres_fdw reaches the
shards with diffix_engine's user mappings. Before reading, the engine checks the tree again:
partitions attached after the table was marked must still be plain tables or postgres_fdw foreign
tables, unlabeled, without inheritance children.
"""

from __future__ import annotations

from typing import Any

from pldiffix.core import catalog

_REFUSAL = "SELECT diffix._partition_tree_refusal($1) AS refusal"


def check_tree(plpy: Any, relid: int, shown: str) -> None:
    """Raises PermissionError when the partition tree rooted at `relid` may not be read."""
    refusal = catalog.query(plpy, _REFUSAL, ("oid",), (relid,))[0]["refusal"]
    if refusal is not None:
        raise PermissionError(f"{shown} cannot be read in an anonymizing query: {refusal}")
