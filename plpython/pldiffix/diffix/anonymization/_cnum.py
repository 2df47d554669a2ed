"""Numeric helpers that reproduce C semantics where Python's differ."""

from __future__ import annotations

import math

UINT64_MASK = 0xFFFFFFFFFFFFFFFF
UINT32_MASK = 0xFFFFFFFF


def c_max(x: float, y: float) -> float:
    """The ``Max`` macro of PostgreSQL: ``x > y ? x : y`` (so NaN loses to ``y``)."""
    return x if x > y else y


def c_round(x: float) -> float:
    """C ``round()``: halves go away from zero (Python's ``round`` goes to even)."""
    if math.isnan(x) or math.isinf(x):
        return x
    magnitude = abs(x)
    floor = math.floor(magnitude)
    rounded = floor + 1.0 if magnitude - floor >= 0.5 else float(floor)
    return math.copysign(rounded, x)


def c_round_to_int(x: float) -> int:
    """``(int64) round(x)`` for the finite values that occur in practice."""
    return int(c_round(x))


def to_int32(value: int) -> int:
    """Truncates an integer to a signed 32-bit C ``int``."""
    value &= UINT32_MASK
    return value - (1 << 32) if value >= 1 << 31 else value


def c_div(numerator: int, denominator: int) -> int:
    """C integer division, truncating towards zero."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient
