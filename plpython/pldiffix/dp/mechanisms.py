"""DP mechanisms with exact, integer-only sampling and a CSPRNG.

Noise on integers is sampled exactly (Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for
Differential Privacy", algorithms 1 and 2): every step is a comparison of integers drawn by
`secrets.randbelow`, so no floating-point rounding can reveal the true value (Mironov 2012).
Scales are rationals; an epsilon given as a float is converted to a rational no larger than it,
so the noise is never smaller than the scale the accounting assumes.

The quantile mechanism (exponential mechanism over candidates on a grid) samples with floating
point weights; docs/dp.md says what that means.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from fractions import Fraction

# Epsilons are rounded down to a multiple of 1 / EPSILON_DENOMINATOR (so 0.1 is exactly 1/10).
EPSILON_DENOMINATOR = 10**6


def bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma >= 0, exactly (CKS 2020, algorithm 1)."""
    numerator, denominator = gamma.numerator, gamma.denominator
    while numerator > denominator:
        if not _bernoulli_exp_at_most_one(1, 1):
            return False
        numerator -= denominator
    return _bernoulli_exp_at_most_one(numerator, denominator)


def _bernoulli_exp_at_most_one(numerator: int, denominator: int) -> bool:
    # The number of trials K until Bernoulli(gamma / K) fails is odd with probability exp(-gamma).
    trials = 1
    while secrets.randbelow(denominator * trials) < numerator:
        trials += 1
    return trials % 2 == 1


def discrete_laplace(scale: Fraction) -> int:
    """An integer Z with P(Z = z) proportional to exp(-|z| / scale) (CKS 2020, algorithm 2).

    With scale = t / s (integers): a geometric draw of X with parameter exp(-1/t) as U + t*V,
    divided by s, and a fair sign that rejects the negative zero.
    """
    if scale <= 0:
        raise ValueError("the scale of the discrete Laplace must be positive")
    t, s = scale.numerator, scale.denominator
    while True:
        u = secrets.randbelow(t)
        if not _bernoulli_exp_at_most_one(u, t):
            continue
        v = 0
        while _bernoulli_exp_at_most_one(1, 1):
            v += 1
        magnitude = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def rational_epsilon(epsilon: float) -> Fraction:
    """The largest rational with a bounded denominator that does not exceed epsilon."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError("epsilon must be a positive finite number")
    exact = Fraction(epsilon)
    rounded = Fraction(math.floor(exact * EPSILON_DENOMINATOR), EPSILON_DENOMINATOR)
    return rounded if rounded > 0 else exact


@dataclass(frozen=True)
class DiscreteLaplace:
    """The discrete Laplace mechanism for an integer query of L1 sensitivity `sensitivity`."""

    sensitivity: int
    epsilon: Fraction

    @property
    def scale(self) -> Fraction:
        return Fraction(self.sensitivity) / self.epsilon

    @property
    def ratio(self) -> float:
        """p = exp(-1/scale): P(Z = z) = (1 - p) / (1 + p) * p^|z|."""
        return math.exp(-1.0 / float(self.scale))

    @property
    def stddev(self) -> float:
        p = self.ratio
        return math.sqrt(2.0 * p) / (1.0 - p)

    def half_width(self, confidence: float = 0.95) -> int:
        """The smallest w with P(|Z| <= w) >= confidence.

        P(|Z| > w) = 2 p^(w+1) / (1 + p), so w = ceil(ln((1 - c)(1 + p) / 2) / ln p) - 1.
        """
        p = self.ratio
        if p == 0.0:
            return 0
        needed = math.log((1.0 - confidence) * (1.0 + p) / 2.0) / math.log(p)
        return max(0, math.ceil(needed - 1e-12) - 1)

    def release(self, value: int) -> int:
        return value + discrete_laplace(self.scale)


def tail_above(scale: Fraction, m: int) -> float:
    """P(Z >= m) for the discrete Laplace, m >= 1: p^m / (1 + p)."""
    p = math.exp(-1.0 / float(scale))
    return p**m / (1.0 + p)


@dataclass(frozen=True)
class PartitionSelection:
    """Releases a grouping key only when its noisy count of privacy units reaches a threshold.

    Each unit is in at most `max_partitions` keys (contribution bounding), so the unit counts have
    L1 sensitivity `max_partitions`; they get discrete Laplace noise of scale max_partitions /
    epsilon. The threshold is the smallest with max_partitions * P(1 + Z >= threshold) <= delta:
    the keys that a unit alone makes appear are all released with probability at most delta.
    """

    max_partitions: int
    epsilon: Fraction
    delta: float

    def __post_init__(self) -> None:
        if not 0 < self.delta < 1:
            raise ValueError("partition selection needs 0 < delta < 1")

    @property
    def noise(self) -> DiscreteLaplace:
        return DiscreteLaplace(self.max_partitions, self.epsilon)

    @property
    def threshold(self) -> int:
        scale = self.noise.scale
        p = math.exp(-1.0 / float(scale))
        per_key = self.delta / self.max_partitions
        # P(Z >= m) = p^m / (1 + p) <= per_key  <=>  m >= ln(per_key * (1 + p)) / ln p
        m = max(1, math.ceil(math.log(per_key * (1.0 + p)) / math.log(p)))
        while tail_above(scale, m) > per_key:  # guards the float rounding of the logarithms
            m += 1
        return 1 + m

    def keeps(self, units: int) -> bool:
        return self.noise.release(units) >= self.threshold


def exponential_quantile(
    counts: list[int],
    lower: float,
    upper: float,
    q: float,
    epsilon: Fraction,
    sensitivity: int,
) -> float:
    """The q-quantile by the exponential mechanism over the len(counts)+1 grid points of
    [lower, upper]: counts[i] is the number of (bounded) rows in the i-th of equal-width bins.

    Candidate j (value lower + j * width) has utility -|rows below it - q * n|; a unit changes
    any utility by at most `sensitivity`. It is chosen with probability proportional to
    exp(epsilon * utility / (2 * sensitivity)).
    """
    bins = len(counts)
    total = sum(counts)
    target = q * total
    below = 0
    utilities = []
    for j in range(bins + 1):
        utilities.append(-abs(below - target))
        if j < bins:
            below += counts[j]
    factor = float(epsilon) / (2.0 * sensitivity)
    best = max(utilities)
    weights = [math.exp(factor * (u - best)) for u in utilities]
    draw = _uniform() * sum(weights)
    chosen = bins
    for j, weight in enumerate(weights):
        draw -= weight
        if draw < 0:
            chosen = j
            break
    return lower + chosen * (upper - lower) / bins


def quantile_rank_error(bins: int, epsilon: Fraction, sensitivity: int) -> float:
    """With probability >= 95% the rank of `exponential_quantile`'s answer is within this of
    the best candidate's: the mechanism's utility bound (2 sensitivity / epsilon) ln(|R| / 0.05)
    over |R| = bins + 1 candidates."""
    return 2.0 * sensitivity / float(epsilon) * math.log((bins + 1) / 0.05)


def _uniform() -> float:
    """A uniform float in [0, 1) from 53 random bits of the CSPRNG."""
    return secrets.randbits(53) / (1 << 53)
