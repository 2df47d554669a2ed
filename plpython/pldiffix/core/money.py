"""Money-style numbers: 1, 2 or 5 times a power of ten (... 0.1, 0.2, 0.5, 1, 2, 5, 10, ...).

Noise is reported at such a resolution, and untrusted users may only generalize by such widths.
"""

from __future__ import annotations

import math

_SMALLEST = 1e-10
_TOLERANCE = _SMALLEST / 100


def money_round(x: float) -> float:
    """Rounds a positive number to the nearest money-style number; tiny values become 0."""
    if x < _SMALLEST:
        return 0.0
    tens = math.pow(10.0, math.floor(math.log10(x)))
    scaled = x / tens
    if scaled < 1.5:
        step = 1.0
    elif scaled < 3.5:
        step = 2.0
    elif scaled < 7.5:
        step = 5.0
    else:
        step = 10.0
    return tens * step


def is_money_rounded(x: float) -> bool:
    return abs(x - money_round(x)) < _TOLERANCE
