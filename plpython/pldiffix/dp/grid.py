"""The grid of DP's numeric statistics: a column's values clamped to the admin's bounds and
rounded to a grid of integers (`grid_step`), so that sums are integers and get discrete noise.

The SQL here runs over every row of a personal table, so none of it may fail whatever a row
holds (an error would tell whether some row exists): conversions, products and casts are guarded
so that none overflows or underflows (docs/security.md, "Errors").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
INT8_LIMIT = 2**62  # grid values up to this are int8
INT8_SQUARE_LIMIT = 3_037_000_499  # the largest n with n * n < 2^63
TINY_NUMERIC = 1e-300  # numerics of smaller magnitude count as 0 (their cast to double can fail)


@dataclass(frozen=True)
class Bounds:
    lower: float
    upper: float

    @property
    def middle(self) -> float:
        return (self.lower + self.upper) / 2.0


def grid_step(bounds: Bounds, column_type: str | None) -> float:
    """The grid values are rounded to: a power of ten giving at least 10^4 steps across the
    bounds (1 at least for integer columns)."""
    step = 10.0 ** math.floor(math.log10((bounds.upper - bounds.lower) / 1e4))
    if column_type in INTEGER_TYPES:
        step = max(1.0, step)
    return step


def quantile_grid(bounds: Bounds, step: float) -> int:
    """half: the quantile's candidates are middle + j * step for j in [-half, half] (clamped
    to the bounds), fewer than 10^5 + 3 of them (grid_step)."""
    return math.ceil((bounds.upper - bounds.lower) / 2.0 / step)


def double_literal(value: float) -> str:
    """A float as an SQL literal of type double precision."""
    return f"CAST({value!r} AS double precision)"


def numeric_literal(value: float | int) -> str:
    """A number as an SQL literal of type numeric (a float's shortest decimal form)."""
    return f"CAST('{value!r}' AS pg_catalog.numeric)"


def _between(typ: str, value: str, lower: str, upper: str) -> str:
    """`value` (float8 or numeric) clamped to [lower, upper] by the type's larger/smaller
    functions, as LEAST(GREATEST()) would (NaN, the largest, becomes `upper`; NULL stays NULL):
    functions postgres_fdw ships to a shard, where it ships no LEAST or GREATEST, so that a
    partition's per-unit aggregation runs there (docs/scale-out.md)."""
    prefix = {"float8": "float8", "numeric": "numeric_"}[typ]
    return f"pg_catalog.{prefix}smaller(pg_catalog.{prefix}larger({value}, {lower}), {upper})"


def clamp(value: str, column_type: str | None, bounds: Bounds) -> str:
    """The value clamped to the bounds as double precision; NULL stays NULL (which greatest and
    least alone would replace by a bound), NaN becomes the upper bound.

    Integers and floats convert to double precision whatever their value. A numeric does not:
    beyond the range of a double, or so close to 0 that it would round to 0, the cast fails. So
    a numeric is clamped as a numeric first, and a magnitude below 1e-300 counts as 0 (then
    clamped again, in case 0 is outside the bounds)."""
    lower, upper = double_literal(bounds.lower), double_literal(bounds.upper)
    if column_type != "numeric":
        converted = f"CAST({value} AS double precision)"
    else:
        within = _between(
            "numeric", value, numeric_literal(bounds.lower), numeric_literal(bounds.upper)
        )
        converted = (
            f"CASE WHEN pg_catalog.abs({value}) < {numeric_literal(TINY_NUMERIC)} "
            f"THEN {double_literal(0.0)} ELSE CAST({within} AS double precision) END"
        )
    clamped = _between("float8", converted, lower, upper)
    return f"CASE WHEN {value} IS NULL THEN NULL ELSE {clamped} END"


def grid_units(value: str, step: float, limit: int) -> str:
    """round(value / step) for a double `value` (NULL stays NULL), as an integer clamped to
    [-limit, limit], which the sensitivity assumes whatever the floating-point rounding did:
    pg_catalog.int8 up to INT8_LIMIT (exact: a double at most 2^62 casts to int8 exactly), else
    pg_catalog.numeric (then the cast keeps 15 significant digits). Their sums are numeric,
    exact at any size. `limit` is the ceiling of a double, so a double itself: the clamp is exact.

    Total over any row: a magnitude below step / 4 rounds to 0 without the multiplication, which
    PostgreSQL would otherwise refuse as an underflow when it rounds to 0; the product of a
    clamped value and 1 / step is far from overflowing; the cast to int8 comes after the clamp."""
    rounded = f"pg_catalog.round(({value} OPERATOR(pg_catalog.*) {double_literal(1 / step)}))"
    if limit <= INT8_LIMIT:
        zero = "CAST(0 AS pg_catalog.int8)"
        clamped = _between(
            "float8", rounded, double_literal(float(-limit)), double_literal(float(limit))
        )
        units = f"CAST({clamped} AS pg_catalog.int8)"
    else:
        zero = "CAST(0 AS pg_catalog.numeric)"
        as_numeric = f"CAST({rounded} AS pg_catalog.numeric)"
        units = _between("numeric", as_numeric, numeric_literal(-limit), numeric_literal(limit))
    return (
        f"CASE WHEN {value} IS NULL THEN NULL "
        f"WHEN pg_catalog.abs({value}) < {double_literal(step / 4)} THEN {zero} ELSE {units} END"
    )


def grid_value(
    column: str,
    column_type: str | None,
    bounds: Bounds,
    step: float,
    limit: int,
    centre: float | None,
) -> str:
    """A row's grid value: round((clamp(value) - centre) / step) as an integer in [-limit, limit]
    (centre 0 when None); NULL stays NULL.

    A numeric column is computed in numeric from start to end, without converting to double
    precision (PostgreSQL converts a numeric to a double through its text, which cost more than
    the rest of the row's work): clamped by numeric_larger and numeric_smaller (strict, so NULL
    stays NULL; NaN is the largest numeric and becomes the upper bound), multiplied by the
    integer 1 / step (step is a power of ten; when step > 1, divided by step), cast to int8
    (which rounds) and clamped to +-limit in int8 (beyond INT8_LIMIT: rounded and clamped as a
    numeric). Total: a product with an
    integer keeps the value's scale, a quotient's scale is capped, and numeric has no underflow.
    Each function reads the column once, so the planner may inline it into the aggregate (no
    OFFSET 0 fence), which lets the per-row work run in parallel workers."""
    if column_type != "numeric":
        clamped = clamp(column, column_type, bounds)
        offset = (
            clamped
            if centre is None
            else f"({clamped} OPERATOR(pg_catalog.-) {double_literal(centre)})"
        )
        return grid_units(offset, step, limit)
    value = (
        f"pg_catalog.numeric_smaller(pg_catalog.numeric_larger({column}, "
        f"{numeric_literal(bounds.lower)}), {numeric_literal(bounds.upper)})"
    )
    if centre is not None:
        value = f"({value} OPERATOR(pg_catalog.-) {numeric_literal(centre)})"
    if step <= 1:
        value = f"({value} OPERATOR(pg_catalog.*) {numeric_literal(round(1 / step))})"
    else:
        value = f"({value} OPERATOR(pg_catalog./) {numeric_literal(step)})"
    if limit <= INT8_LIMIT:
        # the cast rounds (half away from zero) and cannot fail: the exact quotient is within
        # the bounds' largest grid value, which Python rounded up in double precision (a relative
        # error of 1e-16: far below 2^63 - 2^62); the clamp in int8 makes it exact
        rounded = f"CAST({value} AS pg_catalog.int8)"
        return (
            f"pg_catalog.int8smaller(pg_catalog.int8larger({rounded}, "
            f"CAST({-limit} AS pg_catalog.int8)), CAST({limit} AS pg_catalog.int8))"
        )
    return (
        f"pg_catalog.numeric_smaller(pg_catalog.numeric_larger(pg_catalog.round({value}), "
        f"{numeric_literal(-limit)}), {numeric_literal(limit)})"
    )
