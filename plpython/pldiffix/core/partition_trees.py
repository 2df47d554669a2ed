"""Partition trees of personal tables (docs/scale-out.md): which partitions a table partitioned on
its AID column has, so that work per AID can be issued per partition (a unit never crosses
partitions)."""

from __future__ import annotations

from typing import Any

from pldiffix.core import catalog

_AID_PARTITIONS = """
SELECT n.nspname::pg_catalog.text AS s, c.relname::pg_catalog.text AS r,
       pg_catalog.has_table_privilege(c.oid, 'SELECT') AS readable
FROM pg_catalog.pg_partitioned_table p
JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) p.partrelid
  AND a.attnum OPERATOR(pg_catalog.=) p.partattrs[0]
JOIN pg_catalog.pg_inherits i ON i.inhparent OPERATOR(pg_catalog.=) p.partrelid
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
WHERE p.partrelid OPERATOR(pg_catalog.=) $1 AND p.partnatts OPERATOR(pg_catalog.=) 1
  AND a.attname OPERATOR(pg_catalog.=) $2
ORDER BY c.oid
"""


def partitions_on(plpy: Any, relid: int, aid: str) -> list[tuple[str, str]]:
    """(schema, name) of the partitions of table `relid` when it is partitioned on exactly its
    column `aid` and the engine may read each; none otherwise (a partition attached since
    marking is not readable yet: the table is read through its root)."""
    rows = catalog.query(plpy, _AID_PARTITIONS, ("oid", "name"), (relid, aid))
    if not all(row["readable"] for row in rows):
        return []
    return [(row["s"], row["r"]) for row in rows]
