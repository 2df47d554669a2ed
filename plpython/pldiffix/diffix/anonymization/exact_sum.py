"""Float totals that do not depend on the order of their terms.

A float sum added term by term depends on the order of the terms in its last bits, so a bucket
read in parts (passes, row ranges, the partitions of a sharded table) would not total exactly
as one read does, and a sharded answer could change between runs. An ``ExactTotal`` is a float
(the exact sum rounded once, to nearest) that also keeps the exact sum: every finite float8 is an
integer multiple of 2**-1074, so the exact sum is an integer number of such units, and adding two
``ExactTotal`` adds their integers. The rounded value is thus the same whatever the order and
grouping of the terms.

Non-finite terms (NaN, infinity) have no exact sum: the total is then the float sum, which is NaN
or infinite in any order (the terms of one leg all have one sign), and stays inexact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Units of 2**-_SHIFT: a float8's mantissa (53 bits) times 2**(exponent - 53), with frexp's
# exponent down to -1073, is a whole number of them.
_SHIFT = 1074 + 53
# Mantissa pieces summed as float64 by numpy: 2**27 per piece, exact for up to 2**26 terms a chunk.
_PIECE_BITS = 27
_CHUNK = 1 << 26


class ExactTotal(float):
    """A float total that also holds its exact value (``units`` of 2**-1127), or None if a term
    was not finite; ``+`` of two keeps it exact, anything else is float arithmetic."""

    __slots__ = ("units",)
    units: int | None

    def __new__(cls, units: int | None, value: float | None = None) -> ExactTotal:
        if units is not None:
            try:
                value = units / (1 << _SHIFT)  # int / int: correctly rounded
            except OverflowError:
                value = float("inf") if units > 0 else float("-inf")
                units = None
        self = super().__new__(cls, value if value is not None else 0.0)
        self.units = units
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ExactTotal, (self.units, float(self)))

    def __add__(self, other: Any) -> Any:
        if isinstance(other, ExactTotal):
            if self.units is not None and other.units is not None:
                return ExactTotal(self.units + other.units)
            return ExactTotal(None, float(self) + float(other))
        return float(self) + other

    __radd__ = __add__

    def __repr__(self) -> str:
        return f"ExactTotal({float(self)!r})"


def _units(value: float) -> int | None:
    if value != value or value in (float("inf"), float("-inf")):
        return None
    numerator, denominator = value.as_integer_ratio()
    return numerator * ((1 << _SHIFT) // denominator)


def exact_total(values: Iterable[float]) -> ExactTotal:
    """The exact total of float ``values`` (pure Python)."""
    units: int | None = 0
    fallback = 0.0
    for value in values:
        value = float(value)
        fallback += value
        term = _units(value)
        units = None if term is None or units is None else units + term
    return ExactTotal(units, fallback)


def exact_total_array(np: Any, values: Any) -> ExactTotal:
    """``exact_total`` of a numpy float64 array, vectorized: the mantissas as integers are added
    per binary exponent, in pieces small enough for float64 sums to be exact."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return ExactTotal(0)
    if not bool(np.isfinite(values).all()):
        return ExactTotal(None, float(values.sum()))
    units = 0
    for start in range(0, len(values), _CHUNK):
        mantissas, exponents = np.frexp(values[start : start + _CHUNK])
        whole = np.ldexp(mantissas, 53).astype(np.int64)  # exact: 53 significant bits
        lowest = int(exponents.min())
        offsets = exponents - lowest  # at most 2098 exponents: counted by bincount
        low = (whole & ((1 << _PIECE_BITS) - 1)).astype(np.float64)
        high = (whole >> _PIECE_BITS).astype(np.float64)  # arithmetic shift: keeps the sign
        low_sums = np.bincount(offsets, weights=low).tolist()
        high_sums = np.bincount(offsets, weights=high).tolist()
        for offset, (lo, hi) in enumerate(zip(low_sums, high_sums, strict=True)):
            if lo or hi:
                mantissa_sum = (int(hi) << _PIECE_BITS) + int(lo)
                units += mantissa_sum << (lowest + offset - 53 + _SHIFT)
    return ExactTotal(units)
