"""The validated DP query as SQL: contribution bounding and per-group statistics in the executor.

Bounding without sorting the rows: the rows are first aggregated per (group, privacy unit) (a
hash aggregate, parallel), and only those aggregated rows, far fewer, are ranked per unit by a
keyed hash of the group (a fresh random key per query, so the choice is pseudo-random and the
same in every statement of one query). Two kinds of bounds (docs/dp.md, "Contribution
bounding"):

- per partition (`max_groups_per_unit` L0, `max_rows_per_group` Linf): a unit keeps its first L0
  groups in hash order and at most Linf rows' worth in each;
- total (`max_contributions` k, L1): a unit keeps its groups in hash order until k rows are
  used, the last one partly.

A unit's kept rows in a group are `kept` <= its rows there; its statistics are bounded by `kept`:
counts are least(count, kept), sums clamped to +-kept * the largest grid value, the sums of an
average or a variance scaled by kept / count. Numeric values are clamped to the admin's bounds
(greatest/least, NULLs kept) and put on a grid of integers (`grid_step`), so that sums are
integers and get discrete noise; the integers are int8 or numeric and their sums numeric, so sums
are exact at any size. When the AID column carries a unique index, a unit has at most one row: no
bounding is needed and one level of aggregation suffices.

No expression over the rows can fail, whatever a row holds (an error would tell whether some
row exists): conversions, products and casts are guarded so that none overflows or underflows.

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
from pldiffix.dp.query import DpAggregate, DpQuery

MAX_DOMAIN_CELLS = 10_000  # declared keys released at most (the cross product of the domains)
INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
INT8_LIMIT = 2**62  # grid values up to this are int8
INT8_SQUARE_LIMIT = 3_037_000_499  # the largest n with n * n < 2^63
_LE = "OPERATOR(pg_catalog.<=)"
TINY_NUMERIC = 1e-300  # numerics of smaller magnitude count as 0 (their cast to double can fail)


@dataclass(frozen=True)
class Bounds:
    lower: float
    upper: float

    @property
    def middle(self) -> float:
        return (self.lower + self.upper) / 2.0


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


def grid_step(bounds: Bounds, column_type: str | None) -> float:
    """The grid values are rounded to: a power of ten giving at least 10^4 steps across the
    bounds (1 at least for integer columns)."""
    step = 10.0 ** math.floor(math.log10((bounds.upper - bounds.lower) / 1e4))
    if column_type in INTEGER_TYPES:
        step = max(1.0, step)
    return step


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
        offset = f"({value} OPERATOR(pg_catalog.-) {_num(plan.bounds.middle)})"
        bin_sql = _grid_units(offset, plan.step, half)
        clamped = {
            value: _clamped(query, plan.aggregate.column, plan.aggregate.column_type, plan.bounds)
        }
        keys = ", ".join([*groups, "bin"])
        return (
            f"WITH bounded AS ({bounded_rows(query, metadata, self.seed, clamped)}) "
            f"SELECT {', '.join([*groups, ''])}{bin_sql} AS bin, pg_catalog.count(*) AS n "
            f"FROM bounded WHERE {value} IS NOT NULL GROUP BY {keys} ORDER BY {keys}"
        )


def quantile_grid(bounds: Bounds, step: float) -> int:
    """half: the quantile's candidates are middle + j * step for j in [-half, half] (clamped
    to the bounds), fewer than 10^5 + 3 of them (grid_step)."""
    return math.ceil((bounds.upper - bounds.lower) / 2.0 / step)


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
        column = _qualified(query, aggregate.column)
        if kind == "count":
            row_columns[f"c{index}"] = f"CASE WHEN {column} IS NULL THEN 0 ELSE 1 END"
            per_unit[f"{name}_n"] = f"pg_catalog.sum(c{index})"
            bounded[f"{name}_n"] = f"LEAST({name}_n, kept)"
            aggregates.append(AggregatePlan(aggregate, (Statistic(f"{name}_n", k),)))
            continue
        bounds = metadata.bounds[aggregate.column]
        step = grid_step(bounds, aggregate.column_type)
        row_columns[f"x{index}"] = _clamped(query, aggregate.column, aggregate.column_type, bounds)
        if kind == "quantile":
            aggregates.append(AggregatePlan(aggregate, (), bounds, step, k))
            continue
        if kind == "sum":
            largest = math.ceil(max(abs(bounds.lower), abs(bounds.upper)) / step)
            per_unit[f"{name}_s"] = f"pg_catalog.sum({_grid_units(f'x{index}', step, largest)})"
            bounded[f"{name}_s"] = _clamped_sum(f"{name}_s", largest)
            aggregates.append(
                AggregatePlan(aggregate, (Statistic(f"{name}_s", k * largest),), bounds, step)
            )
            continue
        # avg, variance, stddev: centred on the middle of the bounds, |y| <= half
        half = math.ceil((bounds.upper - bounds.lower) / 2.0 / step)
        # grid_step leaves fewer than 10^5 steps across the bounds: squares of int8 grid values fit
        assert half <= INT8_SQUARE_LIMIT
        offset = f"(x{index} OPERATOR(pg_catalog.-) {_num(bounds.middle)})"
        centred = _grid_units(offset, step, half)
        per_unit[f"{name}_n"] = f"pg_catalog.count(x{index})"
        per_unit[f"{name}_s"] = f"pg_catalog.sum({centred})"
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
        g.kind == "column" and g.column.name in metadata.domains for g in query.groups
    )
    sql = _group_sql(query, metadata, seed, row_columns, per_unit, bounded, aggregates)
    if declared:
        sql = _over_domains(query, metadata, sql, aggregates)
    return Plan(sql, tuple(aggregates), len(query.groups), declared, seed)


def domain_cells(query: DpQuery, metadata: TableMetadata) -> int:
    cells = 1
    for group in query.groups:
        cells *= len(metadata.domains.get(group.column.name, ()))
    return cells


def _num(value: float) -> str:
    """A float as an SQL literal of type double precision."""
    return f"CAST({value!r} AS double precision)"


def _decimal(value: float | int) -> str:
    """A number as an SQL literal of type numeric (a float's shortest decimal form)."""
    return f"CAST('{value!r}' AS pg_catalog.numeric)"


def _qualified(query: DpQuery, column: str) -> str:
    return f"{identifier(query.alias)}.{identifier(column)}"


def _clamped(query: DpQuery, column: str, column_type: str | None, bounds: Bounds) -> str:
    """The value clamped to the bounds as double precision; NULL stays NULL (which greatest and
    least alone would replace by a bound), NaN becomes the upper bound.

    Integers and floats convert to double precision whatever their value. A numeric does not:
    beyond the range of a double, or so close to 0 that it would round to 0, the cast fails. So
    a numeric is clamped as a numeric first, and a magnitude below 1e-300 counts as 0 (then
    clamped again, in case 0 is outside the bounds)."""
    value = _qualified(query, column)
    lower, upper = _num(bounds.lower), _num(bounds.upper)
    if column_type != "numeric":
        converted = f"CAST({value} AS double precision)"
    else:
        within = f"LEAST(GREATEST({value}, {_decimal(bounds.lower)}), {_decimal(bounds.upper)})"
        converted = (
            f"CASE WHEN pg_catalog.abs({value}) < {_decimal(TINY_NUMERIC)} "
            f"THEN {_num(0.0)} ELSE CAST({within} AS double precision) END"
        )
    return (
        f"CASE WHEN {value} IS NULL THEN NULL ELSE LEAST(GREATEST({converted}, {lower}), "
        f"{upper}) END"
    )


def _grid_units(value: str, step: float, limit: int) -> str:
    """round(value / step) for a double `value` (NULL stays NULL), as an integer clamped to
    [-limit, limit], which the sensitivity assumes whatever the floating-point rounding did:
    pg_catalog.int8 up to INT8_LIMIT (exact: a double at most 2^62 casts to int8 exactly), else
    pg_catalog.numeric (then the cast keeps 15 significant digits). Their sums are numeric,
    exact at any size. `limit` is the ceiling of a double, so a double itself: the clamp is exact.

    Total over any row: a magnitude below step / 4 rounds to 0 without the multiplication, which
    PostgreSQL would otherwise refuse as an underflow when it rounds to 0; the product of a
    clamped value and 1 / step is far from overflowing; the cast to int8 comes after the clamp."""
    rounded = f"pg_catalog.round(({value} OPERATOR(pg_catalog.*) {_num(1 / step)}))"
    if limit <= INT8_LIMIT:
        zero = "CAST(0 AS pg_catalog.int8)"
        clamped = f"LEAST(GREATEST({rounded}, {_num(float(-limit))}), {_num(float(limit))})"
        units = f"CAST({clamped} AS pg_catalog.int8)"
    else:
        zero = "CAST(0 AS pg_catalog.numeric)"
        units = (
            f"LEAST(GREATEST(CAST({rounded} AS pg_catalog.numeric), {_decimal(-limit)}), "
            f"{_decimal(limit)})"
        )
    return (
        f"CASE WHEN {value} IS NULL THEN NULL WHEN pg_catalog.abs({value}) < {_num(step / 4)} "
        f"THEN {zero} ELSE {units} END"
    )


def _from_where(query: DpQuery) -> str:
    relation = sqltext.qualified(query.relation.schema, query.relation.name)
    table = f"{relation} AS {identifier(query.alias)}"
    return f"FROM {table} WHERE {_qualified(query, query.aid)} IS NOT NULL AND {query.where_sql}"


def _clamped_sum(name: str, largest: int) -> str:
    """A unit's sum of grid values in a group clamped to +-kept * largest: kept rows' worth.
    NULL (no values) is 0 first: GREATEST and LEAST skip NULLs, and would return the bound."""
    limit = f"(CAST(kept AS pg_catalog.numeric) OPERATOR(pg_catalog.*) {_decimal(largest)})"
    return f"LEAST(GREATEST(COALESCE({name}, 0), OPERATOR(pg_catalog.-) {limit}), {limit})"


def _scaled(name: str, count: str) -> str:
    """A unit's sum (of grid values or their squares) scaled by kept / count when it has more
    values than it keeps: |sum| <= count * bound becomes <= kept * bound (then rounded to an
    integer, which keeps the integer bound). The division only runs when count > kept >= 1."""
    return (
        f"CASE WHEN {count} {_LE} kept THEN {name} ELSE pg_catalog.round((CAST({name} AS "
        f"pg_catalog.numeric) OPERATOR(pg_catalog.*) kept) OPERATOR(pg_catalog./) {count}) END"
    )


def _rows(query: DpQuery, row_columns: dict[str, str], extra: Sequence[str] = ()) -> str:
    """The rows before bounding: u (the unit), g0.. (grouping values), the row columns.

    OFFSET 0 keeps PostgreSQL from flattening the subquery, which would copy a row column's
    expression into every place that reads it (the clamp is read 3 times by a grid value):
    computed once per row, a sum over 300 000 rows took 0.9 s instead of 1.3."""
    items = [f"{_qualified(query, query.aid)} AS u"]
    items += [f"{sqltext.render(g.expression)} AS g{i}" for i, g in enumerate(query.groups)]
    items += [f"{expression} AS {name}" for name, expression in row_columns.items()]
    return f"SELECT {', '.join([*items, *extra])} {_from_where(query)} OFFSET 0"


def _group_order(groups: Sequence[str], seed: int) -> str:
    """A unit's groups in a pseudo-random order keyed by the query's seed: a hash of their text
    (total: every type has a text form), then the values themselves, which break ties of the
    hash so that the order depends on the unit's own groups only."""
    text = f"CAST(ROW({', '.join(groups)}) AS pg_catalog.text)"
    return f"pg_catalog.hashtextextended({text}, {seed}), {', '.join(groups)}"


def _kept(metadata: TableMetadata, groups: Sequence[str], seed: int) -> str:
    """Rows of the unit kept in the group (0: the group is dropped), over per-(group, unit)
    rows with `m` the unit's rows in the group."""
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
    unit_items += [f"{e} AS {n}" for n, e in per_unit.items()]
    selected = [*groups, "pg_catalog.count(*) AS units"]
    for name in names:
        if name in bounded:
            selected.append(f"COALESCE(pg_catalog.sum({bounded[name]}), 0) AS {name}")
        else:  # count(DISTINCT aid): the units themselves
            selected.append(f"pg_catalog.count(*) AS {name}")
    kept = _kept(metadata, groups, seed)
    return (
        f"WITH per_unit AS (SELECT {', '.join(unit_items)} FROM ({rows}) AS r "
        f"GROUP BY {', '.join([*groups, 'u'])}), "
        f"ranked AS (SELECT per_unit.*, {kept} AS kept FROM per_unit) "
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
        return _rows(query, row_columns)
    groups = [f"g{i}" for i in range(len(query.groups))]
    row_hash = f"pg_catalog.hashtidextended({identifier(query.alias)}.ctid, {seed})"
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
    return f"SELECT * FROM ({_rows(query, row_columns, extra)}) AS ranked WHERE {keep}"


def _group_expressions(query: DpQuery) -> list[str]:
    return [sqltext.render(g.expression) for g in query.groups]


def _over_domains(
    query: DpQuery, metadata: TableMetadata, per_group: str, aggregates: list[AggregatePlan]
) -> str:
    """Every key of the declared domains, with the statistics of its group (0 when absent)."""
    keys = []
    for i, group in enumerate(query.groups):
        info = query.relation.column(group.column.name)
        assert info is not None
        values = exp.Array(
            expressions=[exp.Literal.string(v) for v in metadata.domains[group.column.name]]
        )
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
