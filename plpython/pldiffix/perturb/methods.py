"""What each numeric method's noise is, and the resolution its outputs are rounded to. Pure.

Every perturbed number is rounded before it is shown. Without it, the low-order bits of
`v + noise` in float8 tell which originals are consistent with an output: with uniform a = 10
over integers, 4 of the 21 candidates remain. Rounded to a resolution well above float8's
precision, an output is consistent with every original the noise could have moved there.

The resolution is 10^-digits. The administrator may declare `digits` (decimal digits after the
point, negative for tens, hundreds, ...); otherwise:

- integer columns: whole numbers (digits 0);
- numeric(p, s): the declared scale s;
- float columns: the largest power of ten not above a tenth of the noise's standard deviation
  (uniform: a/sqrt(3), gaussian: sd). Rounding to r adds variance r^2/12, at most 1/1200 of the
  noise's, and keeps one or two digits below the noise's scale (a = 10: one decimal);
- unscaled numeric: that power of ten, but no finer than the scale the data had when the rule
  was configured;
- multiplicative on float columns: the same rule per row, with the noise's standard deviation
  estimated from the perturbed value itself (|v| * fraction / sqrt(3)), so the resolution is a
  function of the output only and tells nothing the output does not;
- multiplicative on unscaled numeric: the data's scale (the noise is added in exact decimals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from pldiffix.perturb.config import Category, Column, Rule

NOISY = frozenset({"uniform", "gaussian", "multiplicative"})
# |N(0, 1)| from Box-Muller on 48-bit draws (u >= 2^-49) never exceeds sqrt(2 * 49 ln 2) = 8.24
GAUSSIAN_MAX = 8.25
SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True)
class Rounding:
    """`digits` decimals after the point; `relative` instead: per row, to the largest power of
    ten not above |value| * relative; neither: not rounded (no noise to round to)."""

    digits: int | None = None
    relative: float | None = None


def noise_sd(rule: Rule) -> float | None:
    """The absolute noise's standard deviation; None for multiplicative (relative noise)."""
    if rule.method == "uniform":
        return rule.params["a"] / SQRT3
    if rule.method == "gaussian":
        return rule.params["sd"]
    return None


def noise_bound(rule: Rule) -> float | None:
    """The most the absolute noise can add or subtract; None for multiplicative."""
    if rule.method == "uniform":
        return rule.params["a"]
    if rule.method == "gaussian":
        return rule.params["sd"] * GAUSSIAN_MAX
    return None


def digits_for_sd(sd: float) -> int:
    """Decimal digits of the largest power of ten not above sd / 10."""
    return -math.floor(math.log10(sd / 10))


def rounding(column: Column, rule: Rule) -> Rounding:
    """The resolution `rule`'s outputs on `column` are rounded to (see the module's doc)."""
    declared = rule.params.get("digits")
    if declared is not None:
        return Rounding(digits=declared)
    category = column.category
    if category is Category.INTEGER:
        return Rounding(digits=0)
    if rule.method == "round":
        # a function of the step's multiple only: floats drop float8's artifacts (0.1 * 3)
        if category is Category.FLOAT:
            return Rounding(digits=_decimals(rule.params["step"]))
        return Rounding()
    if category is Category.NUMERIC and column.scale is not None:
        return Rounding(digits=column.scale)
    data_scale = rule.params.get("scale")
    sd = noise_sd(rule)
    if rule.method == "multiplicative":
        if category is Category.FLOAT:
            return Rounding(relative=rule.params["fraction"] / SQRT3 / 10)
        return Rounding(digits=data_scale)
    if not sd:
        return Rounding(digits=data_scale)
    from_noise = digits_for_sd(sd)
    if data_scale is not None:
        return Rounding(digits=min(data_scale, from_noise))
    return Rounding(digits=from_noise)


def _decimals(step: float) -> int:
    """The decimals of `step` as written (0.25: 2, 1e-20: 20, 1000: 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)
