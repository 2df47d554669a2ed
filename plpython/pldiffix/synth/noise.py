"""Exact discrete Gaussian noise (Canonne, Kamath, Steinke 2020, algorithm 3).

Built on the exact discrete Laplace and Bernoulli(exp(-x)) samplers of dp/mechanisms.py (integer
arithmetic and a CSPRNG only): a discrete Laplace draw Y of scale t = floor(sigma) + 1 is kept
with probability exp(-(|Y| - sigma^2 / t)^2 / (2 sigma^2)); the kept draws have exactly the law
P(Y = y) proportional to exp(-y^2 / (2 sigma^2)).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from pldiffix.core.exact_sampling import bernoulli_exp, discrete_laplace


def discrete_gaussian(variance: Fraction) -> int:
    """One integer with P(Y = y) proportional to exp(-y^2 / (2 variance))."""
    if variance <= 0:
        raise ValueError("the variance of the discrete Gaussian must be positive")
    scale = math.isqrt(math.floor(variance)) + 1  # floor(sigma) + 1
    shift = variance / scale
    while True:
        draw = discrete_laplace(Fraction(scale))
        if bernoulli_exp((abs(draw) - shift) ** 2 / (2 * variance)):
            return draw


def noisy(counts: np.ndarray, variance: Fraction) -> np.ndarray:
    """The counts (any shape) with independent discrete Gaussian noise on every cell."""
    flat = np.asarray(counts, dtype=np.int64).ravel()
    noise = np.fromiter(
        (discrete_gaussian(variance) for _ in range(flat.size)), np.int64, flat.size
    )
    return (flat + noise).reshape(np.shape(counts))
