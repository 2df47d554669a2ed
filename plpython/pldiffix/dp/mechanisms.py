"""DP mechanisms with exact, integer-only sampling and a CSPRNG.

Noise on integers is sampled exactly (Canonne, Kamath, Steinke 2020, "The Discrete Gaussian for
Differential Privacy", algorithms 1, 2 and 3: discrete Laplace and discrete Gaussian): every
step is a comparison of integers drawn by `secrets.randbelow`, so no floating-point rounding can
reveal the true value (Mironov 2012).
Scales are rationals; an epsilon given as a float is converted to a rational no larger than it,
so the noise is never smaller than the scale the accounting assumes.

The exponential mechanism (quantiles) is sampled exactly too: by rejection, with Bernoulli(e^-x)
draws for rational x, so every candidate has exactly its probability, however small.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from pldiffix.core.exact_sampling import (
    bernoulli_exp_at_most_one,
    bernoulli_exp_ratio,
    discrete_gaussian,
    discrete_laplace,
)


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


@dataclass(frozen=True)
class DiscreteGaussian:
    """The discrete Gaussian mechanism for an integer query of L2 sensitivity `sensitivity`,
    rho-zCDP with sigma^2 = sensitivity^2 / (2 rho) (CKS 2020)."""

    sensitivity: int
    rho: Fraction

    @property
    def variance_parameter(self) -> Fraction:
        return Fraction(self.sensitivity**2) / (2 * self.rho)

    @property
    def scale(self) -> float:
        """sigma; the variance of the discrete Gaussian is at most sigma^2."""
        return math.sqrt(float(self.variance_parameter))

    def half_width(self, confidence: float = 0.95) -> int:
        """A w with P(|Z| <= w) >= confidence: the discrete Gaussian is sigma^2-subgaussian
        (CKS 2020), so P(|Z| >= w) <= 2 exp(-w^2 / (2 sigma^2))."""
        return math.ceil(self.scale * math.sqrt(2.0 * math.log(2.0 / (1.0 - confidence))))

    def release(self, value: int) -> int:
        return value + discrete_gaussian(self.variance_parameter)


def tail_above(scale: Fraction, m: int) -> float:
    """P(Z >= m) for the discrete Laplace, m >= 1: p^m / (1 + p)."""
    p = math.exp(-1.0 / float(scale))
    return p**m / (1.0 + p)


@dataclass(frozen=True)
class PartitionSelection:
    """Releases a grouping key only when a noisy count of it reaches a threshold.

    Each unit is in at most `max_partitions` keys (L0) and adds at most `per_partition` to one
    key's count (Linf: 1 for a count of units); the counts have L1 sensitivity `sensitivity`
    (max_partitions * per_partition when None) and get discrete Laplace noise of scale
    sensitivity / epsilon. The threshold is the smallest with max_partitions * P(per_partition
    + Z >= threshold) <= delta: the keys that a unit alone makes appear are all released with
    probability at most delta. The noisy count that passed is a release of the count itself
    (Wilson et al. 2020, "Differentially private SQL with bounded user contribution").
    """

    max_partitions: int
    epsilon: Fraction
    delta: float
    per_partition: int = 1
    sensitivity: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.delta < 1:
            raise ValueError("partition selection needs 0 < delta < 1")

    @property
    def noise(self) -> DiscreteLaplace:
        sensitivity = self.sensitivity or self.max_partitions * self.per_partition
        return DiscreteLaplace(sensitivity, self.epsilon)

    @property
    def threshold(self) -> int:
        scale = self.noise.scale
        p = math.exp(-1.0 / float(scale))
        per_key = self.delta / self.max_partitions
        # P(Z >= m) = p^m / (1 + p) <= per_key  <=>  m >= ln(per_key * (1 + p)) / ln p
        m = max(1, math.ceil(math.log(per_key * (1.0 + p)) / math.log(p)))
        while tail_above(scale, m) > per_key:  # guards the float rounding of the logarithms
            m += 1
        return self.per_partition + m

    def keeps(self, units: int) -> bool:
        return self.noise.release(units) >= self.threshold

    def kept(self, noisy_count: int) -> bool:
        """Whether a count already released with this mechanism's noise passes."""
        return noisy_count >= self.threshold


def exponential_mechanism(losses: Sequence[int], rate: Fraction) -> int:
    """An index j drawn with probability exactly proportional to exp(-rate * losses[j]).

    The exponential mechanism with utility u = -loss and rate = epsilon / (2 * sensitivity of
    u) is epsilon-DP (McSherry and Talwar 2007): a neighbour changes each exponent by at most
    epsilon / 2 and so the normalizing sum by a factor of at most e^(epsilon / 2). Subtracting
    the smallest loss first changes no probability (it cancels in the normalization).

    Sampled exactly by rejection, from integers drawn by the CSPRNG. Let gamma_p = rate * (loss
    - smallest loss) of the candidate at position p in the order of increasing loss, and C the
    smallest integer with p // C <= gamma_p for every p: position p sits at level p // C, and a
    level holds C positions. One round:
      1. draws a level G with P(G = l) = (1 - 1/e) e^-l (the successes of Bernoulli(e^-1)
         before its first failure, each exact);
      2. draws r uniform in [0, C) and proposes the candidate at position G * C + r, if any;
      3. accepts it with probability e^-(gamma_p - G) (exact Bernoulli(e^-x), x >= 0 rational).
    The candidate at p is returned by a round with probability (1 - 1/e) e^-(p // C) (1/C)
    e^-(gamma_p - p // C) = (1 - 1/e) / C * e^-gamma_p: proportional to e^-gamma_p, and positive
    for every candidate however far (floating-point weights round such probabilities to 0, and
    others to multiples of 2^-53). Rounds are independent and the best candidate is accepted
    with probability (1 - 1/e) / C > 0, so the first accepted round has this distribution.

    A round accepts with probability (1 - 1/e) Z / C, Z = sum_p e^-gamma_p >= 1; C is small when
    the losses spread the candidates over levels and Z is large when they do not, so a draw takes
    a few rounds; the slowest case found over 1001 candidates (one best, the others all about 10
    above it) takes about 140.
    """
    if not losses:
        raise ValueError("the exponential mechanism needs a candidate")
    if rate <= 0:
        raise ValueError("the rate of the exponential mechanism must be positive")
    best = min(losses)
    numerator, denominator = rate.numerator, rate.denominator
    # gamma_p = exponents[p] / denominator, in increasing order
    ordered = sorted(range(len(losses)), key=losses.__getitem__)
    exponents = [numerator * (losses[index] - best) for index in ordered]
    per_level = 1 + max(p // (exponent // denominator + 1) for p, exponent in enumerate(exponents))
    while True:
        level = 0
        while bernoulli_exp_at_most_one(1, 1):
            level += 1
        position = level * per_level + secrets.randbelow(per_level)
        if position >= len(ordered):
            continue
        if bernoulli_exp_ratio(exponents[position] - level * denominator, denominator):
            return ordered[position]


def exponential_quantile(
    counts: Sequence[int], q: float, epsilon: Fraction, sensitivity: int
) -> int:
    """The index of a grid point drawn as the q-quantile of the values on the grid: counts[j]
    is the number of (bounded) values at grid point j, the grid fine (planner.grid_step) and
    the values rounded to it.

    The exponential mechanism over the intervals of the sorted data (Smith 2011), on the grid:
    point j covers the ranks [lo_j, hi_j] (lo_j values below it, hi_j = lo_j + counts[j]) and
    has utility -dist(q * n, [lo_j, hi_j]), 0 when q * n falls among its ranks. The points
    between two consecutive values share their utility, so an interval of the data is drawn
    with probability proportional to its width (in grid steps) times exp(epsilon * utility /
    (2 * sensitivity)), then a point uniformly inside it: Smith's mechanism with the uniform
    base measure on the grid. A unit adds or removes at most `sensitivity` values, which moves
    lo_j and hi_j by some a in [0, sensitivity] and q * n by q * sensitivity: the utility moves
    by at most max(q, 1 - q) * sensitivity. Exact (`exponential_mechanism`): q = a / b as the
    exact rational of the float, the losses are the integers max(0, b * lo_j - a * n, a * n -
    b * hi_j) and the rate epsilon / (2 * sensitivity * b).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError("a quantile is in [0, 1]")
    fraction = Fraction(q)
    a, b = fraction.numerator, fraction.denominator
    target = a * sum(counts)
    losses = []
    below = 0
    for count in counts:
        above = below + count
        losses.append(max(0, b * below - target, target - b * above))
        below = above
    return exponential_mechanism(losses, epsilon / (2 * sensitivity * b))


def quantile_rank_error(candidates: int, epsilon: Fraction, sensitivity: int) -> float:
    """With probability >= 95% the rank of `exponential_quantile`'s answer is within this of
    the target rank q * n: the mechanism's utility bound (2 sensitivity / epsilon) ln(|R| /
    0.05) over |R| = `candidates` grid points."""
    return 2.0 * sensitivity / float(epsilon) * math.log(candidates / 0.05)
