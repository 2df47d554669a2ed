"""The validated DP query as SQL: contribution bounding and per-group statistics in the executor.

Bounding without sorting the rows: the rows are first aggregated per (group, privacy unit) (a
hash aggregate: in parallel workers without GROUP BY; with one, materialized for the steps
below and run in one process, where it costs several times a plain GROUP BY when a unit's rows
fall in many groups: docs/benchmarks.md, "The 3x target on `tx`"), and only the aggregated rows
of crowded units are ranked per unit by a keyed hash of the group (a fresh random key per
query, so the choice is pseudo-random and the same in every statement of one query). Two kinds
of bounds (docs/dp.md, "Contribution bounding"):

- per partition (`max_groups_per_unit` L0, `max_rows_per_group` Linf): a unit keeps its first L0
  groups in hash order and at most Linf rows' worth in each;
- total (`max_contributions` k, L1): a unit keeps its groups in hash order until k rows are
  used, the last one partly.

A unit's kept rows in a group are `kept` <= its rows there; its statistics are bounded by `kept`:
counts are least(count, kept), sums clamped to +-kept * the largest grid value, the sums of an
average or a variance scaled by kept / count. Numeric values are clamped to the admin's bounds
(NULLs kept) and put on a grid of integers (`grid.py`), so that sums are
integers and get discrete noise; the integers are int8 or numeric and their sums numeric, so sums
are exact at any size. When the AID column carries a unique index, a unit has at most one row: no
bounding is needed and one level of aggregation suffices.

No expression over the rows can fail, whatever a row holds (an error would tell whether some
row exists): conversions, products and casts are guarded so that none overflows or underflows
(the per-row values: `grid.py`; the bounding here).

Each statistic of a group is an integer column `a<i>_<part>` (count `n`, sum `s`, sum of squares
`q`); `units` counts the group's privacy units (partition selection). Quantiles read the bounded
rows' values per group on the grid (`histogram_sql`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.sqltext import identifier
from pldiffix.core.statements import QueryError
from pldiffix.dp.grid import (
    INT8_SQUARE_LIMIT,
    Bounds,
    clamp,
    double_literal,
    grid_step,
    grid_units,
    grid_value,
    numeric_literal,
    quantile_grid,
)
from pldiffix.dp.query import DpAggregate, DpQuery

MAX_DOMAIN_CELLS = 10_000  # declared keys released at most (the cross product of the domains)
_LE = "OPERATOR(pg_catalog.<=)"


@dataclass(frozen=True)
class TableMetadata:
    """What admins declared for a table (never derived from the data), and its unique AID."""

    max_contributions: int = 1  # L1: rows of one unit over all groups
    unique_aid: bool = False
    bounds: dict[str, Bounds] = field(default_factory=dict)
    domains: dict[str, list[str]] = field(default_factory=dict)  # values as text
    # per-partition bounds (both or neither); when set they replace max_contributions
    max_groups_per_unit: int | None = None  # L0
    max_rows_per_group: int | None = None  # Linf
    # the bounds and domains of the columns of the other joined tables, by their alias (their
    # contribution fields are unused: the primary table's bound the joined rows)
    joined: dict[str, TableMetadata] = field(default_factory=dict)

    def bounds_of(self, table: str, column: str) -> Bounds | None:
        """The bounds of a column of the primary table ("") or of a joined one (its alias)."""
        return (self.joined[table] if table else self).bounds.get(column)

    def domain_of(self, table: str, column: str) -> list[str] | None:
        return (self.joined[table] if table else self).domains.get(column)

    @property
    def per_partition(self) -> bool:
        return self.max_groups_per_unit is not None and not self.unique_aid

    @property
    def max_partitions(self) -> int:
        """Groups one unit is in at most, after bounding (L0)."""
        if self.unique_aid:
            return 1
        if self.max_groups_per_unit is not None:
            return self.max_groups_per_unit
        return self.max_contributions

    @property
    def rows_per_partition(self) -> int:
        """Rows of one unit in one group at most, after bounding (Linf)."""
        if self.unique_aid:
            return 1
        if self.max_rows_per_group is not None:
            return self.max_rows_per_group
        return self.max_contributions

    @property
    def contributions(self) -> int:
        """Rows one unit contributes at most over all groups, after bounding: the L1 sensitivity
        of a count (L0 * Linf with per-partition bounds)."""
        if self.unique_aid:
            return 1
        if self.max_groups_per_unit is not None and self.max_rows_per_group is not None:
            return self.max_groups_per_unit * self.max_rows_per_group
        return self.max_contributions


@dataclass(frozen=True)
class Statistic:
    """One integer column per group and its L1 sensitivity over all groups."""

    name: str
    sensitivity: int


@dataclass(frozen=True)
class AggregatePlan:
    aggregate: DpAggregate
    statistics: tuple[Statistic, ...]  # empty for quantiles
    bounds: Bounds | None = None
    step: float = 1.0
    contributions: int = 1  # rows of one unit, at most: the quantile utility's sensitivity


@dataclass(frozen=True)
class Plan:
    sql: str  # per group: g0.. (grouping values), units, then each statistic
    aggregates: tuple[AggregatePlan, ...]
    group_count: int
    declared_keys: bool  # every grouping key comes from a declared domain: no partition selection
    seed: int

    def histogram_sql(self, query: DpQuery, metadata: TableMetadata, index: int) -> str:
        """Per group and grid point: the bounded rows whose clamped value of the quantile's
        column rounds to it. Grid points are `bin` in [-half, half], the value middle + bin *
        step (`quantile_grid`). Ordered by group, so that a reader holds one group at a time."""
        plan = self.aggregates[index]
        assert plan.bounds is not None and plan.aggregate.column is not None
        groups = [f"g{i}" for i in range(self.group_count)]
        value = f"x{index}"
        half = quantile_grid(plan.bounds, plan.step)
        offset = f"({value} OPERATOR(pg_catalog.-) {double_literal(plan.bounds.middle)})"
        bin_sql = grid_units(offset, plan.step, half)
        column = _column_sql(query, plan.aggregate)
        clamped = {value: clamp(column, plan.aggregate.column_type, plan.bounds)}
        keys = ", ".join([*groups, "bin"])
        return (
            f"WITH bounded AS ({bounded_rows(query, metadata, self.seed, clamped)}) "
            f"SELECT {', '.join([*groups, ''])}{bin_sql} AS bin, pg_catalog.count(*) AS n "
            f"FROM bounded WHERE {value} IS NOT NULL GROUP BY {keys} ORDER BY {keys}"
        )


def plan(query: DpQuery, metadata: TableMetadata, seed: int) -> Plan:
    k = metadata.contributions
    aggregates: list[AggregatePlan] = []
    row_columns: dict[str, str] = {}  # row column -> expression
    per_unit: dict[str, str] = {}  # statistic -> aggregate over one unit's rows in a group
    bounded: dict[str, str] = {}  # statistic -> that aggregate bounded by `kept` (a column)
    for index, aggregate in enumerate(query.aggregates):
        name = f"a{index}"
        kind = aggregate.kind
        if kind == "count_units":
            stats = (Statistic(f"{name}_n", metadata.max_partitions),)
            aggregates.append(AggregatePlan(aggregate, stats))
            continue
        if kind == "count_star":
            per_unit[f"{name}_n"] = "pg_catalog.count(*)"
            bounded[f"{name}_n"] = "kept"
            aggregates.append(AggregatePlan(aggregate, (Statistic(f"{name}_n", k),)))
            continue
        assert aggregate.column is not None
        column = _column_sql(query, aggregate)
        if kind == "count":
            row_columns[f"c{index}"] = f"CASE WHEN {column} IS NULL THEN 0 ELSE 1 END"
            per_unit[f"{name}_n"] = f"pg_catalog.sum(c{index})"
            bounded[f"{name}_n"] = f"LEAST({name}_n, kept)"
            aggregates.append(AggregatePlan(aggregate, (Statistic(f"{name}_n", k),)))
            continue
        bounds = metadata.bounds_of(aggregate.table, aggregate.column)
        assert bounds is not None
        step = grid_step(bounds, aggregate.column_type)
        if kind == "quantile":
            aggregates.append(AggregatePlan(aggregate, (), bounds, step, k))
            continue
        if kind == "sum":
            largest = math.ceil(max(abs(bounds.lower), abs(bounds.upper)) / step)
            row_columns[f"y{index}"] = grid_value(
                column, aggregate.column_type, bounds, step, largest, None
            )
            per_unit[f"{name}_s"] = f"pg_catalog.sum(y{index})"
            bounded[f"{name}_s"] = _clamped_sum(f"{name}_s", largest)
            aggregates.append(
                AggregatePlan(aggregate, (Statistic(f"{name}_s", k * largest),), bounds, step)
            )
            continue
        # avg, variance, stddev: centred on the middle of the bounds, |y| <= half
        half = math.ceil((bounds.upper - bounds.lower) / 2.0 / step)
        # grid_step leaves fewer than 10^5 steps across the bounds: squares of int8 grid values fit
        assert half <= INT8_SQUARE_LIMIT
        row_columns[f"y{index}"] = grid_value(
            column, aggregate.column_type, bounds, step, half, bounds.middle
        )
        centred = f"CAST(y{index} AS pg_catalog.int8)"
        per_unit[f"{name}_n"] = f"pg_catalog.count(y{index})"
        per_unit[f"{name}_s"] = f"pg_catalog.sum(y{index})"
        bounded[f"{name}_n"] = f"LEAST({name}_n, kept)"
        bounded[f"{name}_s"] = _scaled(f"{name}_s", f"{name}_n")
        stats = [Statistic(f"{name}_n", k), Statistic(f"{name}_s", k * half)]
        if kind in ("variance", "stddev"):
            width = bounds.upper - bounds.lower
            if not math.isfinite(width * width):
                raise QueryError(
                    f"the bounds of {aggregate.column} are too wide for a variance: its largest "
                    "value is beyond double precision",
                    hint="an administrator narrows them with diffix.set_dp_bounds",
                )
            per_unit[f"{name}_q"] = f"pg_catalog.sum({centred} OPERATOR(pg_catalog.*) {centred})"
            bounded[f"{name}_q"] = _scaled(f"{name}_q", f"{name}_n")
            stats.append(Statistic(f"{name}_q", k * half * half))
        aggregates.append(AggregatePlan(aggregate, tuple(stats), bounds, step))

    declared = bool(query.groups) and all(
        g.kind == "column" and _domain(query, metadata, i) is not None
        for i, g in enumerate(query.groups)
    )
    sql = _group_sql(query, metadata, seed, row_columns, per_unit, bounded, aggregates)
    if declared:
        sql = _over_domains(query, metadata, sql, aggregates)
    return Plan(sql, tuple(aggregates), len(query.groups), declared, seed)


def domain_cells(query: DpQuery, metadata: TableMetadata) -> int:
    cells = 1
    for index in range(len(query.groups)):
        cells *= len(_domain(query, metadata, index) or ())
    return cells


def _domain(query: DpQuery, metadata: TableMetadata, index: int) -> list[str] | None:
    """The declared domain of grouping column `index`, in whichever joined table it is."""
    column = query.groups[index].column
    return metadata.domain_of(query.table_of(column.alias), column.name)


def _qualified(query: DpQuery, column: str) -> str:
    return f"{identifier(query.alias)}.{identifier(column)}"


def _column_sql(query: DpQuery, aggregate: DpAggregate) -> str:
    """The aggregated column, qualified by its table's alias."""
    assert aggregate.column is not None
    alias = aggregate.table or query.alias
    return f"{identifier(alias)}.{identifier(aggregate.column)}"


def _from_where(query: DpQuery) -> str:
    """The table, or the joined tables (the validated join tree, qualified), and the filters."""
    if query.joined:
        table = query.from_sql
    else:
        relation = sqltext.qualified(query.relation.schema, query.relation.name)
        table = f"{relation} AS {identifier(query.alias)}"
    return f"FROM {table} WHERE {_qualified(query, query.aid)} IS NOT NULL AND {query.where_sql}"


def _clamped_sum(name: str, largest: int) -> str:
    """A unit's sum of grid values in a group clamped to +-kept * largest: kept rows' worth.
    NULL (no values) is 0 first: GREATEST and LEAST skip NULLs, and would return the bound.
    When the unit keeps all its m rows there (m <= kept) the sum is within that already (each
    row's value is within +-largest), and the numeric arithmetic is skipped."""
    limit = f"(CAST(kept AS pg_catalog.numeric) OPERATOR(pg_catalog.*) {numeric_literal(largest)})"
    return (
        f"CASE WHEN m {_LE} kept THEN COALESCE({name}, 0) ELSE LEAST(GREATEST(COALESCE({name}, "
        f"0), OPERATOR(pg_catalog.-) {limit}), {limit}) END"
    )


def _scaled(name: str, count: str) -> str:
    """A unit's sum (of grid values or their squares) scaled by kept / count when it has more
    values than it keeps: |sum| <= count * bound becomes <= kept * bound (then rounded to an
    integer, which keeps the integer bound). The division only runs when count > kept >= 1."""
    return (
        f"CASE WHEN {count} {_LE} kept THEN {name} ELSE pg_catalog.round((CAST({name} AS "
        f"pg_catalog.numeric) OPERATOR(pg_catalog.*) kept) OPERATOR(pg_catalog./) {count}) END"
    )


def _rows(
    query: DpQuery, row_columns: dict[str, str], extra: Sequence[str] = (), *, fence: bool = False
) -> str:
    """The rows before bounding: u (the unit), g0.. (grouping values), the row columns.

    `fence` (OFFSET 0) keeps PostgreSQL from flattening the subquery, which would copy a row
    column's expression into every place that reads it (the quantiles' clamped value is read 3
    times by a grid point); it also keeps the scan out of parallel workers, so the statistics'
    row columns are written to read their column once instead (_grid_value) and go unfenced."""
    items = [f"{_qualified(query, query.aid)} AS u"]
    items += [f"{sqltext.render(g.expression)} AS g{i}" for i, g in enumerate(query.groups)]
    items += [f"{expression} AS {name}" for name, expression in row_columns.items()]
    return f"SELECT {', '.join([*items, *extra])} {_from_where(query)}" + (
        " OFFSET 0" if fence else ""
    )


def _group_order(groups: Sequence[str], seed: int) -> str:
    """A unit's groups in a pseudo-random order keyed by the query's seed: a hash of their text
    (total: every type has a text form), then the values themselves, which break ties of the
    hash so that the order depends on the unit's own groups only."""
    text = f"CAST(ROW({', '.join(groups)}) AS pg_catalog.text)"
    return f"pg_catalog.hashtextextended({text}, {seed}), {', '.join(groups)}"


def _kept(metadata: TableMetadata, groups: Sequence[str], seed: int) -> str:
    """Rows of the unit kept in the group (0: the group is dropped), over per-(group, unit)
    rows with `m` the unit's rows in the group, ranked among the unit's groups."""
    if metadata.per_partition:
        linf = metadata.rows_per_partition
        if not groups:
            return f"LEAST(m, {linf})"
        rank = (
            f"pg_catalog.row_number() OVER (PARTITION BY u ORDER BY {_group_order(groups, seed)})"
        )
        return f"CASE WHEN {rank} {_LE} {metadata.max_partitions} THEN LEAST(m, {linf}) ELSE 0 END"
    k = metadata.max_contributions
    if not groups:
        return f"LEAST(m, {k})"
    used_before = (
        f"(pg_catalog.sum(m) OVER (PARTITION BY u ORDER BY {_group_order(groups, seed)} "
        f"ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING))"
    )
    return f"GREATEST(LEAST(m, {k} OPERATOR(pg_catalog.-) COALESCE({used_before}, 0)), 0)"


def _uncrowded(metadata: TableMetadata) -> tuple[str, str]:
    """(the condition on a unit's per-(group, unit) rows under which its bounds keep every
    group, aggregated per unit; `kept` for such a unit's groups). Per partition: at most L0
    groups, so every group keeps least(rows, Linf); in total: at most k rows, so every group
    keeps its rows. The same `kept` as _kept's ranking gives them, without ranking."""
    if metadata.per_partition:
        return (
            f"pg_catalog.count(*) {_LE} {metadata.max_partitions}",
            f"LEAST(m, {metadata.rows_per_partition})",
        )
    return f"pg_catalog.sum(m) {_LE} {metadata.max_contributions}", "m"


def _group_sql(
    query: DpQuery,
    metadata: TableMetadata,
    seed: int,
    row_columns: dict[str, str],
    per_unit: dict[str, str],
    bounded: dict[str, str],
    aggregates: list[AggregatePlan],
) -> str:
    groups = [f"g{i}" for i in range(len(query.groups))]
    names = [s.name for a in aggregates for s in a.statistics]
    rows = _rows(query, row_columns)
    group_by = f" GROUP BY {', '.join(groups)}" if groups else ""
    if metadata.unique_aid:
        # One row per unit: a unit is a row, and the statistics are aggregates of the rows.
        selected = [*groups, "pg_catalog.count(*) AS units"]
        for name in names:
            selected.append(f"{_one_level(name, per_unit)} AS {name}")
        return f"WITH bounded AS ({rows}) SELECT {', '.join(selected)} FROM bounded{group_by}"
    unit_items = [*groups, "u", "pg_catalog.count(*) AS m"]
    # a count(*) per (group, unit) is m itself, and its bounded form `kept`
    statistics = [n for n, e in per_unit.items() if e != "pg_catalog.count(*)"]
    unit_items += [f"{per_unit[n]} AS {n}" for n in statistics]
    selected = [*groups, "pg_catalog.count(*) AS units"]
    for name in names:
        if name in bounded:
            selected.append(f"COALESCE(pg_catalog.sum({bounded[name]}), 0) AS {name}")
        else:  # count(DISTINCT aid): the units themselves
            selected.append(f"pg_catalog.count(*) AS {name}")
    per_unit = (
        f"SELECT {', '.join(unit_items)} FROM ({rows}) AS r GROUP BY {', '.join([*groups, 'u'])}"
    )
    kept = _kept(metadata, groups, seed)
    if not groups:
        ranked = f"SELECT per_unit.*, {kept} AS kept FROM per_unit"
        return (
            f"WITH per_unit AS ({per_unit}), ranked AS ({ranked}) SELECT {', '.join(selected)} "
            "FROM ranked WHERE kept OPERATOR(pg_catalog.>) 0"
        )
    # Only the units whose bounds may drop a group (crowded) are ranked: the others keep every
    # group, and sorting all (group, unit) rows by unit for a window cost more than the rest.
    uncrowded, plain_kept = _uncrowded(metadata)
    columns = ", ".join(f"p.{c}" for c in [*groups, "u", "m", *statistics])
    same_unit = "c.u OPERATOR(pg_catalog.=) p.u"
    ranked = (
        f"SELECT {columns}, {plain_kept} AS kept FROM per_unit AS p LEFT JOIN crowded AS c "
        f"ON {same_unit} WHERE c.u IS NULL "
        f"UNION ALL SELECT q.*, {kept} AS kept FROM (SELECT {columns} FROM per_unit AS p "
        f"JOIN crowded AS c ON {same_unit}) AS q"
    )
    return (
        f"WITH per_unit AS MATERIALIZED ({per_unit}), "
        f"crowded AS (SELECT u FROM per_unit GROUP BY u HAVING NOT {uncrowded}), "
        f"ranked AS ({ranked}) "
        f"SELECT {', '.join(selected)} FROM ranked WHERE kept OPERATOR(pg_catalog.>) 0{group_by}"
    )


def _one_level(name: str, per_unit: dict[str, str]) -> str:
    if name not in per_unit:
        return "pg_catalog.count(*)"
    expression = per_unit[name]
    return f"COALESCE({expression}, 0)" if expression.startswith("pg_catalog.sum") else expression


def bounded_rows(
    query: DpQuery, metadata: TableMetadata, seed: int, row_columns: dict[str, str]
) -> str:
    """Rows of the table bounded one by one (for quantiles, which need values, not sums): the
    same groups per unit as the statistics keep (same hash order), and in them at most Linf
    rows (per partition) or k rows in all (total), chosen by a keyed hash of the row's ctid."""
    if metadata.unique_aid:
        return _rows(query, row_columns, fence=True)
    groups = [f"g{i}" for i in range(len(query.groups))]
    # a joined row: the hashes of the ctids of all its tables' rows
    row_hash = ", ".join(
        f"pg_catalog.hashtidextended({identifier(alias)}.ctid, {seed})"
        for alias in [query.alias, *query.joined]
    )
    if metadata.per_partition:
        unit_group = [_qualified(query, query.aid), *_group_expressions(query)]
        within = f"PARTITION BY {', '.join(unit_group)}"
        extra = [f"pg_catalog.row_number() OVER ({within} ORDER BY {row_hash}) AS rr"]
        keep = f"rr {_LE} {metadata.rows_per_partition}"
        if groups:
            order = _group_order(_group_expressions(query), seed)
            extra.append(
                f"pg_catalog.dense_rank() OVER (PARTITION BY {_qualified(query, query.aid)} "
                f"ORDER BY {order}) AS gr"
            )
            keep += f" AND gr {_LE} {metadata.max_partitions}"
    else:
        order = (
            f"{_group_order(_group_expressions(query), seed)}, {row_hash}" if groups else row_hash
        )
        extra = [
            f"pg_catalog.row_number() OVER (PARTITION BY {_qualified(query, query.aid)} "
            f"ORDER BY {order}) AS rr"
        ]
        keep = f"rr {_LE} {metadata.max_contributions}"
    return f"SELECT * FROM ({_rows(query, row_columns, extra, fence=True)}) AS ranked WHERE {keep}"


def _group_expressions(query: DpQuery) -> list[str]:
    return [sqltext.render(g.expression) for g in query.groups]


def _over_domains(
    query: DpQuery, metadata: TableMetadata, per_group: str, aggregates: list[AggregatePlan]
) -> str:
    """Every key of the declared domains, with the statistics of its group (0 when absent)."""
    keys = []
    for i, group in enumerate(query.groups):
        info = query.relation_of(query.table_of(group.column.alias)).column(group.column.name)
        domain = _domain(query, metadata, i)
        assert info is not None and domain is not None
        values = exp.Array(expressions=[exp.Literal.string(v) for v in domain])
        keys.append(
            f"pg_catalog.unnest(CAST(CAST({sqltext.render(values)} AS text[]) AS "
            f"{info.type}[])) AS d{i}(g{i})"
        )
    names = ["units", *(s.name for a in aggregates for s in a.statistics)]
    joined = " AND ".join(f"p.g{i} = d{i}.g{i}" for i in range(len(query.groups)))
    selected = [f"d{i}.g{i}" for i in range(len(query.groups))]
    selected += [f"COALESCE(p.{name}, 0) AS {name}" for name in names]
    return (
        f"SELECT {', '.join(selected)} FROM {' CROSS JOIN '.join(keys)} "
        f"LEFT JOIN ({per_group}) AS p ON {joined}"
    )
