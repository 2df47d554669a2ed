"""Conversions to PostgreSQL ``numeric`` that reproduce the server's scale choices."""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from fractions import Fraction

_MIN_SIG_DIGITS = 16
_DEC_DIGITS = 4
_MAX_DISPLAY_SCALE = 1000


def float8_to_numeric(value: float) -> Decimal:
    """``value::numeric``: the double printed with 15 significant digits, then parsed."""
    if math.isnan(value):
        return Decimal("NaN")
    if math.isinf(value):
        return Decimal("Infinity") if value > 0 else Decimal("-Infinity")
    parsed = Decimal(f"{value:.15g}")
    exponent = parsed.as_tuple().exponent
    if isinstance(exponent, int) and exponent > 0:
        return Decimal(int(parsed))  # numeric keeps integral values at scale 0
    return parsed


def float4(value: float) -> float:
    """Rounds a double to single precision (what a ``real`` result holds)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _scale(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _weight_and_first_group(value: Decimal) -> tuple[int, int]:
    """Weight and leading digit group of ``value`` in numeric's base-10000 representation."""
    if value == 0:
        return 0, 0
    weight = value.adjusted() // _DEC_DIGITS
    first = int(abs(value).scaleb(-_DEC_DIGITS * weight))
    return weight, first


def numeric_div(dividend: Decimal, divisor: Decimal) -> Decimal:
    """``dividend / divisor`` on numerics, with the result scale PostgreSQL selects.

    The quotient keeps at least 16 significant digits and at least the scale of either input,
    and is rounded half away from zero.
    """
    if divisor == 0:
        raise ZeroDivisionError("division by zero")
    weight1, first1 = _weight_and_first_group(dividend)
    weight2, first2 = _weight_and_first_group(divisor)
    quotient_weight = weight1 - weight2 - (1 if first1 <= first2 else 0)
    scale = _MIN_SIG_DIGITS - quotient_weight * _DEC_DIGITS
    scale = max(scale, _scale(dividend), _scale(divisor), 0)
    scale = min(scale, _MAX_DISPLAY_SCALE)
    exact = Fraction(dividend) / Fraction(divisor) * (10**scale)
    magnitude = abs(exact)
    whole = magnitude.numerator // magnitude.denominator
    if magnitude - whole >= Fraction(1, 2):
        whole += 1
    signed = -whole if exact < 0 else whole
    return Decimal(signed).scaleb(-scale)
