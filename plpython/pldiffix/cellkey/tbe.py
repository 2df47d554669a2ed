"""Cell-key ("TBE") perturbation of counts, sums and means, with optional scope keys.

Pure Python, standard library only. The SQL side aggregates the records of each output cell into a
few numbers (see `CellInput`); this module turns those into perturbed values, once per cell, under
a configuration parsed and validated by `cellkey/tbe_config.py`. Definitions and the project's
reading of the algorithm: docs/tbe.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from pldiffix.cellkey.tbe_config import (
    Number,
    TbeConfig,
    TbeInputError,
    as_int,
    validate_record_key,
)

# --------------------------------------------------------------------------------------------
# Keys and rounding
# --------------------------------------------------------------------------------------------


def cell_key(key_sum: int, big_n: int) -> int:
    """The cell key: the sum of the cell's record keys, mod bigN."""
    return key_sum % big_n


def total_key(ck: int, sk: int, big_n: int) -> int:
    """tk = (ck + sk - 1) mod bigN: the scope key adjustment is always 1."""
    return (ck + sk - 1) % big_n


def round_half_away_from_zero(value: Number) -> int:
    """Nearest integer, halves away from zero (as PostgreSQL's round(numeric))."""
    if isinstance(value, int):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise TbeInputError(f"cannot round {value!r}")
    return int(Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------
# Perturbation
# --------------------------------------------------------------------------------------------


def count_perturbation(config: TbeConfig, ck: int, n: int, sk: int | None = None) -> int:
    """The perturbation p of a cell with cell key ck, n records and scope key sk.

    Without scope keys: P[row(ck)][col(n)]. With them, tk = (ck + sk - 1) mod bigN replaces ck;
    in the additive variant p0 = P[row(ck)][col(n)] and p = p0 + Pscope[row(tk)][col(n + p0)]
    unless p0 = 0 (then p = 0) or n + p0 < 1 (col undefined: p = p0, the cell is already at 0).
    """
    if config.scoped and sk is None:
        raise TbeInputError("scope-based perturbation is configured: a scope key is required")
    if not config.scoped and sk is not None:
        raise TbeInputError("no scope key declarations are configured: pass no scope key")
    if sk is None:
        return config.p_matrix[config.row(ck)][config.col(n)]
    tk = total_key(ck, sk, config.big_n)
    if not config.use_additive_scope_perturbation:
        return config.p_matrix[config.row(tk)][config.col(n)]
    p0 = config.p_matrix[config.row(ck)][config.col(n)]
    if p0 == 0:
        return 0
    if n + p0 < 1:
        return p0
    return p0 + config.effective_scope_p_matrix[config.row(tk)][config.col(n + p0)]


def perturbed_count(n: int, p: int) -> int:
    return max(0, n + p)


def sum_perturbation(config: TbeConfig, key: int, top: Sequence[Number]) -> Number:
    """sum_i m_i * y_i * S[row(key)][i-1] over the first min(len(m), len(top)) values of `top`.

    `top` must be ordered by |y| descending (ties by the tiebreaker ascending).
    """
    row = config.s_matrix[config.row(key)]
    k = min(len(config.m), len(top))
    values = list(top[:k])
    if _use_decimal(values):
        return sum(
            (
                Decimal(repr(config.m[i])) * Decimal(values[i]) * Decimal(repr(row[i]))
                for i in range(k)
            ),
            Decimal(0),
        )
    return math.fsum(config.m[i] * float(values[i]) * row[i] for i in range(k))


def _use_decimal(values: Iterable[Number | None]) -> bool:
    return all(v is None or isinstance(v, int | Decimal) for v in values)


@dataclass(frozen=True)
class SumInput:
    """What SQL computes per cell for one summed column y (NULL y ignored):

    total: sum(y), None when no record of the cell has a y;
    top: y of the first len(m) records (or more) ordered by abs(y) DESC, tiebreaker ASC, y ASC.
    """

    total: Number | None
    top: Sequence[Number] = ()


@dataclass(frozen=True)
class CellInput:
    """What SQL computes per output cell: n = count(*), key_sum = sum(record key) (numeric),
    optionally key_min/key_max = min/max(record key) for a range check, and one SumInput per
    summed column."""

    n: int
    key_sum: int | Decimal
    sums: Mapping[str, SumInput] = field(default_factory=dict)
    key_min: int | None = None
    key_max: int | None = None


@dataclass(frozen=True)
class CellOutput:
    count: int
    sums: dict[str, Number | None]
    means: dict[str, Number | None]


def perturb_cell(
    config: TbeConfig, cell: CellInput, scope_key: int | None = None
) -> CellOutput | None:
    """Perturbed count, sums and means of one cell; None for an empty cell (not output).

    With scope keys on, `scope_key` is required and the total key replaces the cell key for the
    count (non-additive variant) and for the s-matrix row (both variants).
    """
    n = as_int(cell.n, "cell count")
    if n < 0:
        raise TbeInputError(f"cell count {n} is negative")
    if n == 0:
        return None
    key_sum = as_int(cell.key_sum, "sum of record keys")
    for what, bound in (("minimum", cell.key_min), ("maximum", cell.key_max)):
        if bound is not None:
            try:
                validate_record_key(bound, config.big_n)
            except TbeInputError as exc:
                raise TbeInputError(f"{what} record key of the cell: {exc}") from None
    if not 0 <= key_sum <= n * (config.big_n - 1):
        raise TbeInputError(
            f"sum of record keys {key_sum} is impossible for {n} keys in [0, bigN={config.big_n})"
        )
    ck = cell_key(key_sum, config.big_n)
    p = count_perturbation(config, ck, n, scope_key)
    count = perturbed_count(n, p)
    s_key = ck if scope_key is None else total_key(ck, scope_key, config.big_n)

    sums: dict[str, Number | None] = {}
    means: dict[str, Number | None] = {}
    for name, sum_input in cell.sums.items():
        total, top = sum_input.total, list(sum_input.top or ())
        _check_sum_input(name, total, top, n)
        if total is None or count == 0:
            sums[name] = means[name] = None
            continue
        perturbation = sum_perturbation(config, s_key, top)
        if _use_decimal([total, *top[: len(config.m)]]):
            value: Number = Decimal(total) + Decimal(perturbation)
            sums[name] = value
            means[name] = value / Decimal(count)
        else:
            value = float(total) + float(perturbation)
            sums[name] = value
            means[name] = value / count
    return CellOutput(count=count, sums=sums, means=means)


def _check_sum_input(name: str, total: Number | None, top: list[Number], n: int) -> None:
    if total is None:
        if top:
            raise TbeInputError(f"sum {name!r}: no total but {len(top)} top values")
        return
    if not top:
        raise TbeInputError(f"sum {name!r}: a total but no top values")
    if len(top) > n:
        raise TbeInputError(f"sum {name!r}: {len(top)} top values for a cell of {n} records")
    for i, y in enumerate(top):
        if y is None or isinstance(y, bool) or not isinstance(y, int | float | Decimal):
            raise TbeInputError(f"sum {name!r}: top value {i + 1} is {y!r}, not a number")
        if i and abs(y) > abs(top[i - 1]):
            raise TbeInputError(
                f"sum {name!r}: top values are not ordered by |y| descending ({top[i - 1]}, {y})"
            )
