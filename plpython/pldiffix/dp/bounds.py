"""diffix.dp_suggest_bounds: clamping bounds for a numeric column, estimated with DP.

Administrators otherwise guess the bounds of set_dp_bounds. Here two DP quantiles of the column
(LOW_QUANTILE and HIGH_QUANTILE) are drawn with the exact exponential mechanism of
mechanisms.exponential_quantile (Smith 2011), each with half the epsilon (basic composition),
over a fixed logarithmic grid that never depends on the data: 0, and +-2^(m / STEPS_PER_OCTAVE)
for m in [LOWEST, HIGHEST], about 1e-6 to 1.8e19 in steps of 19%. A value is counted in the
grid cell it falls in (magnitudes below the smallest cell are 0, beyond the largest are the
largest, NaN the largest positive); the suggestion is the lower edge of the low quantile's
cell and the upper edge of the high quantile's, rounded outwards to 3 significant digits
(post-processing).

Contribution bounding as DP queries do (planner.py): each privacy unit keeps at most
`contributions` non-NULL values (1 when the AID is unique), chosen by a keyed hash of the row's
ctid with a fresh random key, so that a unit moves the quantiles' ranks by at most that much:
the sensitivity of exponential_quantile.

`suggest` runs inside diffix._dp_suggest_bounds (SECURITY DEFINER, owner diffix_engine), for
administrators only. As a synthesis does (synth/engine.py): everything that can refuse comes
first, then the charge to the calling administrator's own budget through the ledger (mechanism
'dp_bounds'), then the read of the personal rows; the outcome is written to the audit log.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from fractions import Fraction
from typing import Any

from pldiffix.core import audit, catalog, ledger, sqltext
from pldiffix.core.errors import UserError, reports_errors
from pldiffix.core.exact_sampling import rational_epsilon
from pldiffix.core.sqltext import identifier
from pldiffix.dp import mechanisms

MECHANISM = "dp_bounds"
LOW_QUANTILE = 0.01
HIGH_QUANTILE = 0.99
STEPS_PER_OCTAVE = 4
LOWEST = -20 * STEPS_PER_OCTAVE  # the smallest cell starts at 2^-20 (about 1e-6)
HIGHEST = 64 * STEPS_PER_OCTAVE  # the largest ends at 2^64.25 (about 2.2e19)
MAGNITUDES = HIGHEST - LOWEST + 1
CELLS = 2 * MAGNITUDES + 1  # negative magnitudes, zero, positive magnitudes
ZERO = MAGNITUDES  # the index of the zero cell
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})
_HUGE = 1e300  # beyond any cell; numerics past it are clamped before their cast to double


def _edge(m: int) -> float:
    """2^(m / STEPS_PER_OCTAVE): where the cells of magnitude m start."""
    return 2.0 ** (m / STEPS_PER_OCTAVE)


def cell_range(index: int) -> tuple[float, float]:
    """The values counted in cell `index` (0 .. CELLS - 1, in increasing order of value)."""
    if not 0 <= index < CELLS:
        raise ValueError(f"no cell {index}")
    if index == ZERO:
        return -_edge(LOWEST), _edge(LOWEST)
    if index > ZERO:
        m = LOWEST + index - ZERO - 1
        return _edge(m), _edge(m + 1)
    m = HIGHEST - index
    return -_edge(m + 1), -_edge(m)


def cell_of(value: float) -> int:
    """The cell of a value, as the SQL of `cell_sql` computes it (the unit tests compare them)."""
    if math.isnan(value):
        value = _HUGE
    value = min(max(value, -_HUGE), _HUGE)
    if abs(value) < _edge(LOWEST):
        return ZERO
    m = math.floor(math.log(abs(value)) * (STEPS_PER_OCTAVE / math.log(2.0)))
    m = min(max(m, LOWEST), HIGHEST)
    return ZERO + 1 + m - LOWEST if value > 0 else HIGHEST - m


def _num(value: float) -> str:
    return f"CAST({value!r} AS double precision)"


def cell_sql(value: str, column_type: str) -> str:
    """The cell of `value` (a column of type `column_type`, not NULL), as an int4 expression
    that no row can make fail (an error would tell that some row exists): a numeric is clamped
    to +-1e300 as a numeric before its cast to double (which fails beyond the double's range),
    NaN goes up (it sorts above every number), and the logarithm only sees magnitudes of at
    least 2^LOWEST."""
    if column_type == "numeric":
        huge = f"CAST('{_HUGE!r}' AS pg_catalog.numeric)"
        double = (
            f"CASE WHEN {value} OPERATOR(pg_catalog.>) {huge} THEN {_num(_HUGE)} "
            f"WHEN {value} OPERATOR(pg_catalog.<) OPERATOR(pg_catalog.-) {huge} "
            f"THEN {_num(-_HUGE)} "
            f"WHEN pg_catalog.abs({value}) OPERATOR(pg_catalog.<) CAST('1e-300' AS "
            f"pg_catalog.numeric) THEN {_num(0.0)} ELSE CAST({value} AS double precision) END"
        )
    else:
        double = (
            f"LEAST(GREATEST(CAST({value} AS double precision), {_num(-_HUGE)}), {_num(_HUGE)})"
        )
    magnitude = (
        f"CAST(LEAST(GREATEST(pg_catalog.floor(pg_catalog.ln(pg_catalog.abs(d)) "
        f"OPERATOR(pg_catalog.*) {_num(STEPS_PER_OCTAVE / math.log(2.0))}), {_num(LOWEST)}), "
        f"{_num(HIGHEST)}) AS pg_catalog.int4)"
    )
    return (
        f"(SELECT CASE WHEN pg_catalog.abs(d) OPERATOR(pg_catalog.<) {_num(_edge(LOWEST))} "
        f"THEN {ZERO} WHEN d OPERATOR(pg_catalog.>) {_num(0.0)} "
        f"THEN {ZERO + 1 - LOWEST} OPERATOR(pg_catalog.+) {magnitude} "
        f"ELSE {HIGHEST} OPERATOR(pg_catalog.-) {magnitude} END FROM (SELECT {double} AS d) AS v)"
    )


@dataclass(frozen=True)
class Source:
    schema: str
    table: str
    aid: str
    column: str
    column_type: str  # one of NUMERIC_TYPES
    contributions: int  # values one unit keeps at most (1 when the AID is unique)
    unique_aid: bool  # a unique index on the AID: one row per unit, nothing to bound


def histogram_sql(source: Source, seed: int) -> str:
    """Rows (cell, n): how many bounded values fall in each cell."""
    relation = f"{sqltext.qualified(source.schema, source.table)} AS t"
    aid, value = f"t.{identifier(source.aid)}", f"t.{identifier(source.column)}"
    where = f"{aid} IS NOT NULL AND {value} IS NOT NULL"
    cell = cell_sql(value, source.column_type)
    if source.unique_aid:
        rows = f"SELECT {cell} AS cell FROM {relation} WHERE {where}"
    else:
        rank = (
            f"pg_catalog.row_number() OVER (PARTITION BY {aid} "
            f"ORDER BY pg_catalog.hashtidextended(t.ctid, {int(seed)}))"
        )
        rows = (
            f"SELECT r.cell FROM (SELECT {cell} AS cell, {rank} AS rr FROM {relation} "
            f"WHERE {where}) AS r WHERE r.rr OPERATOR(pg_catalog.<=) {source.contributions}"
        )
    return f"SELECT b.cell, pg_catalog.count(*) AS n FROM ({rows}) AS b GROUP BY b.cell"


def counts_of(rows: list[dict[str, Any]]) -> list[int]:
    """The histogram's rows as counts per cell, in increasing order of value."""
    counts = [0] * CELLS
    for row in rows:
        counts[int(row["cell"])] += int(row["n"])
    return counts


def rounded_out(low: float, high: float) -> tuple[float, float]:
    """low rounded down and high up to 3 significant digits (never inwards)."""

    def rounded(value: float, rounding: str) -> float:
        if value == 0.0:
            return 0.0
        step = Decimal(1).scaleb(math.floor(math.log10(abs(value))) - 2)
        quantized = Decimal(repr(value)).quantize(step, rounding=rounding)
        return float(Context(prec=17).create_decimal(quantized))

    return rounded(low, ROUND_FLOOR), rounded(high, ROUND_CEILING)


def suggested(counts: list[int], epsilon: Fraction, contributions: int) -> tuple[float, float]:
    """The bounds from the histogram: two DP quantiles, epsilon / 2 each."""
    half = epsilon / 2
    low = mechanisms.exponential_quantile(counts, LOW_QUANTILE, half, contributions)
    high = mechanisms.exponential_quantile(counts, HIGH_QUANTILE, half, contributions)
    low, high = min(low, high), max(low, high)
    return rounded_out(cell_range(low)[0], cell_range(high)[1])


@reports_errors
def suggest(
    plpy: Any, relid: int, column: str | None, epsilon: float | None
) -> list[tuple[float, float]]:
    role = catalog.invoking_role(plpy)
    if not catalog.role_facts(plpy, role).is_admin:
        raise PermissionError("only superusers and members of diffix_admin can suggest DP bounds")
    epsilon = _checked_epsilon(epsilon, catalog.effective_settings(plpy)["dp_max_epsilon"])
    source = _source(plpy, relid, column)
    description = (
        f"dp_suggest_bounds {source.schema}.{source.table}.{source.column} (epsilon {epsilon:g})"
    )
    # Paid before any personal row is read: a suggestion that then fails has still spent.
    ledger.charge(plpy, epsilon=epsilon, delta=0.0, sql=description, mechanism=MECHANISM)
    try:
        rows = list(plpy.execute(histogram_sql(source, secrets.randbits(62))))
        bounds = suggested(counts_of(rows), rational_epsilon(epsilon), source.contributions)
    except Exception as error:
        audit.record_publication(
            plpy,
            mechanism=MECHANISM,
            sql=description,
            accepted=False,
            reason=audit.reason_of(error),
            epsilon=epsilon,
            delta=0.0,
        )
        raise
    audit.record_publication(
        plpy,
        mechanism=MECHANISM,
        sql=description,
        accepted=True,
        rows=1,
        epsilon=epsilon,
        delta=0.0,
    )
    return [bounds]


def _checked_epsilon(epsilon: float | None, maximum: float) -> float:
    if epsilon is None or not math.isfinite(epsilon) or epsilon <= 0:
        raise UserError(
            f"epsilon must be a positive number, not {epsilon}",
            hint="e.g. diffix.dp_suggest_bounds(table, column, 0.5)",
        )
    if epsilon > maximum:
        raise UserError(
            f"epsilon {epsilon:g} exceeds the per-query maximum dp_max_epsilon = {maximum:g}",
            hint=f"ask for at most {maximum:g}",
        )
    return float(epsilon)


def _source(plpy: Any, relid: int, column: str | None) -> Source:
    """The table and column, refused unless the table is personal with one AID and the column
    numeric and not the AID (diffix._dp_target gives those errors)."""
    if column is None:
        raise UserError("column name must not be NULL")
    attnum = catalog.query(
        plpy,
        "SELECT diffix._dp_target($1, $2, 'suggest DP bounds') AS a",
        ("oid", "text"),
        (relid, column),
    )[0]["a"]
    row = catalog.query(
        plpy,
        "SELECT n.nspname, c.relname, a.attname, t.typname, tn.nspname AS typschema, "
        "COALESCE(d.max_contributions, 1) AS k, d.max_groups_per_unit, d.max_rows_per_group, "
        "(SELECT pg_catalog.array_agg(aa.attname) FROM diffix.column_labels cl "
        " JOIN pg_catalog.pg_attribute aa ON aa.attrelid OPERATOR(pg_catalog.=) cl.relid "
        " AND aa.attnum OPERATOR(pg_catalog.=) cl.attnum "
        " WHERE cl.relid OPERATOR(pg_catalog.=) c.oid AND cl.label OPERATOR(pg_catalog.=) 'aid')"
        " AS aids "
        "FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace "
        "JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.oid "
        "AND a.attnum OPERATOR(pg_catalog.=) $2 "
        "JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid "
        "JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace "
        "LEFT JOIN diffix.dp_tables d ON d.relid OPERATOR(pg_catalog.=) c.oid "
        "WHERE c.oid OPERATOR(pg_catalog.=) $1",
        ("oid", "int2"),
        (relid, attnum),
    )[0]
    table = f"{row['nspname']}.{row['relname']}"
    if row["typschema"] != "pg_catalog" or row["typname"] not in NUMERIC_TYPES:
        raise UserError(
            f'column "{column}" of {table} is not numeric',
            "42804",  # datatype_mismatch, as set_dp_bounds
            hint="bounds apply to integer, real, double precision and numeric columns",
        )
    aids = list(row["aids"] or [])
    if len(aids) != 1:
        raise UserError(
            f"{table} has {len(aids)} AID columns; bounds are suggested for one privacy unit"
        )
    unique = catalog.has_unique_index(plpy, relid, aids[0])
    return Source(
        row["nspname"],
        row["relname"],
        aids[0],
        row["attname"],
        row["typname"],
        1 if unique else contributions(row),
        bool(unique),
    )


def contributions(row: dict[str, Any]) -> int:
    """Values one unit keeps over the whole table: max_contributions, or with per-partition
    bounds their product (a column-wide quantile has no groups to bound separately)."""
    if row["max_groups_per_unit"] is not None and row["max_rows_per_group"] is not None:
        return int(row["max_groups_per_unit"]) * int(row["max_rows_per_group"])
    return int(row["k"])
