"""DP statements over a personal table partitioned on its AID column (docs/scale-out.md, "DP over
shards"): the plan's statistics and quantile histograms computed per partition and added up on
the coordinator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.core.sqltext import identifier, qualified

# Types of the DP statistics' columns that a sum over the partitions' rows casts back to.
_STATISTIC_TYPES = {20: "pg_catalog.int8", 23: "pg_catalog.int4", 1700: "pg_catalog.numeric"}


def per_partition_sql(
    plpy: Any,
    sql: str,
    root: tuple[str, str],
    leaves: Sequence[tuple[str, str]],
    what: str = "statistics",
    keys: Sequence[str] = (),
    ordered: bool = False,
) -> str:
    """A DP statement (`dp.planner.Plan.sql`, the per-group statistics, or `Plan.histogram_sql`,
    the bounded rows per group and grid point) that reads `root` (schema and name) computed per
    partition and added up, when no unit crosses partitions (the table is partitioned on its
    AID). Contribution bounding is per unit, so each partition bounds its own units, and every
    statistic (units, bounded counts and sums, rows per grid point) adds over disjoint sets of
    units. A join keeps this: joins are inner and on the unit, so each joined row has the unit of
    its row of `root`, in one partition. Each branch's per-(group, unit) aggregation is over one
    partition, which postgres_fdw ships to its shard.

    `what` names the statement in the debug message. The result's key columns are its groups
    (`g<i>`) and `keys`; with `ordered` its rows are ordered by them. `sql` unchanged when `root`
    is not named exactly once or a statistic's type does not add (the root is read then)."""
    named = f"{qualified(*root)} AS "
    if len(leaves) < 2 or sql.count(named) != 1:
        return sql
    shape = plpy.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
    groups, added = [], []
    for name, oid in zip(shape.colnames(), shape.coltypes(), strict=True):
        if (name[:1] == "g" and name[1:].isdigit()) or name in keys:
            groups.append(identifier(name))
        elif oid in _STATISTIC_TYPES:
            column = identifier(name)
            added.append(f"CAST(pg_catalog.sum({column}) AS {_STATISTIC_TYPES[oid]}) AS {column}")
        else:
            return sql
    branches = [
        "(" + sql.replace(named, f"{qualified(schema, name)} AS ") + ")" for schema, name in leaves
    ]
    group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
    order_by = f" ORDER BY {', '.join(groups)}" if groups and ordered else ""
    plpy.debug(f"pldiffix: DP {what} read per partition ({len(leaves)} partitions)")
    return (
        f"SELECT {', '.join([*groups, *added])} FROM ({' UNION ALL '.join(branches)}) AS parts"
        f"{group_by}{order_by}"
    )
