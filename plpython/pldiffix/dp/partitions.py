"""DP statistics over a personal table partitioned on its AID column (docs/scale-out.md, "DP over
shards"): the plan's statistics computed per partition and added up on the coordinator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.core.sqltext import identifier, qualified

# Types of the DP statistics' columns that a sum over the partitions' rows casts back to.
_STATISTIC_TYPES = {20: "pg_catalog.int8", 23: "pg_catalog.int4", 1700: "pg_catalog.numeric"}


def statistics_sql(
    plpy: Any, statistics_sql: str, root: tuple[str, str], leaves: Sequence[tuple[str, str]]
) -> str:
    """The DP plan's per-group statistics (`dp.planner.Plan.sql`, reading `root`, schema and
    name) computed per partition and added up, when no unit crosses
    partitions (the table is partitioned on its AID): contribution bounding is per unit, so
    each partition bounds its own units, and every statistic (units, bounded counts and sums)
    adds over disjoint sets of units. Each branch's per-(group, unit) aggregation is over one
    partition, which postgres_fdw ships to its shard. `statistics_sql` unchanged when its
    relation is not named once or a statistic's type does not add (the root is read then)."""
    named = f"FROM {qualified(*root)} AS "
    if len(leaves) < 2 or statistics_sql.count(named) != 1:
        return statistics_sql
    shape = plpy.execute(f"SELECT * FROM ({statistics_sql}) AS q LIMIT 0")
    groups, added = [], []
    for name, oid in zip(shape.colnames(), shape.coltypes(), strict=True):
        if name[:1] == "g" and name[1:].isdigit():
            groups.append(identifier(name))
        elif oid in _STATISTIC_TYPES:
            column = identifier(name)
            added.append(f"CAST(pg_catalog.sum({column}) AS {_STATISTIC_TYPES[oid]}) AS {column}")
        else:
            return statistics_sql
    branches = [
        "(" + statistics_sql.replace(named, f"FROM {qualified(schema, name)} AS ") + ")"
        for schema, name in leaves
    ]
    group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
    plpy.debug(f"pldiffix: DP statistics read per partition ({len(leaves)} partitions)")
    return (
        f"SELECT {', '.join([*groups, *added])} FROM ({' UNION ALL '.join(branches)}) AS parts"
        f"{group_by}"
    )
