"""Exact, integer-only sampling from a CSPRNG: the primitives of every DP mechanism.

Canonne, Kamath and Steinke 2020 ("The Discrete Gaussian for Differential Privacy", algorithms 1,
2 and 3): Bernoulli(e^-x) for rational x, discrete Laplace and discrete Gaussian. Every step is a
comparison of integers drawn by `secrets.randbelow`, so no floating-point rounding can reveal
the true value (Mironov 2012). Shared by dp/ (query answers) and synth/ (synthetic twins).
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction

# Epsilons are rounded down to a multiple of 1 / EPSILON_DENOMINATOR (so 0.1 is exactly 1/10).
EPSILON_DENOMINATOR = 10**6


def bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma >= 0, exactly (CKS 2020, algorithm 1)."""
    return bernoulli_exp_ratio(gamma.numerator, gamma.denominator)


def bernoulli_exp_ratio(numerator: int, denominator: int) -> bool:
    """True with probability exp(-numerator / denominator), both integers, numerator >= 0."""
    while numerator > denominator:
        if not bernoulli_exp_at_most_one(1, 1):
            return False
        numerator -= denominator
    return bernoulli_exp_at_most_one(numerator, denominator)


def bernoulli_exp_at_most_one(numerator: int, denominator: int) -> bool:
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
        if not bernoulli_exp_at_most_one(u, t):
            continue
        v = 0
        while bernoulli_exp_at_most_one(1, 1):
            v += 1
        magnitude = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        if negative and magnitude == 0:
            continue
        return -magnitude if negative else magnitude


def discrete_gaussian(sigma_squared: Fraction) -> int:
    """An integer Z with P(Z = z) proportional to exp(-z^2 / (2 sigma^2)) (CKS 2020, algorithm 3).

    Rejection from a discrete Laplace of scale t = floor(sigma) + 1: a draw Y is kept with
    probability exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2)), an exact Bernoulli on a rational.
    """
    if sigma_squared <= 0:
        raise ValueError("the variance of the discrete Gaussian must be positive")
    # floor(sqrt(x)) = isqrt(floor(x)) for x >= 0
    t = math.isqrt(sigma_squared.numerator // sigma_squared.denominator) + 1
    laplace_scale = Fraction(t)
    offset = sigma_squared / t
    while True:
        y = discrete_laplace(laplace_scale)
        if bernoulli_exp((abs(y) - offset) ** 2 / (2 * sigma_squared)):
            return y


def rational_sqrt_floor(value: Fraction) -> Fraction:
    """A rational not above sqrt(value), value >= 0: the largest multiple of
    1 / EPSILON_DENOMINATOR, or of a finer step when that one is 0."""
    denominator = EPSILON_DENOMINATOR
    while True:  # a finer grid for values below the first one's step (value > 0)
        root = math.isqrt(value.numerator * denominator**2 // value.denominator)
        if root > 0 or value == 0:
            return Fraction(root, denominator)
        denominator *= EPSILON_DENOMINATOR


def rational_epsilon(epsilon: float) -> Fraction:
    """The largest rational with a bounded denominator that does not exceed epsilon."""
    if not (epsilon > 0 and math.isfinite(epsilon)):
        raise ValueError("epsilon must be a positive finite number")
    exact = Fraction(epsilon)
    rounded = Fraction(math.floor(exact * EPSILON_DENOMINATOR), EPSILON_DENOMINATOR)
    return rounded if rounded > 0 else exact
