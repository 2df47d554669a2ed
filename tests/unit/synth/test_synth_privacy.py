"""An empirical privacy check of one measured marginal on neighbouring datasets.

D is a table of (unit, cell) rows; D' is D plus one privacy unit with more than
`max_contributions` rows, all in one cell. The measurement is a synthesis's: contribution
bounding to k rows per unit, then the discrete Gaussian of `accounting.plan_budget`. Cells the
added unit does not touch have the same counts, hence the same noise distribution, in both
worlds, and every cell's noise is independent: an event's probability ratio is governed by the
touched cell, which is the one sampled here (N draws per world).

Claim checked, for threshold events S = {y >= t} and {y <= t} of the touched cell, both ways:
P[M(D') in S] <= e^epsilon P[M(D) in S] + delta, where epsilon is what the measurement's rho
converts to at that delta. Tolerance: each probability is taken at its estimate plus (minus) 4
binomial standard errors plus 3 / N, in the direction that favours the claim. A negative
control (noise calibrated for one row per unit, and no contribution bound) must fail the same
check, so the test can fail.
"""

from __future__ import annotations

import math

import numpy as np

from pldiffix.synth import accounting, noise

DRAWS = 12_000
K = 3  # max_contributions
EPSILON, DELTA = 4.0, 1e-6  # one measured column: sigma about 1.4 k


def _bounded_counts(units: np.ndarray, cells: np.ndarray, size: int, k: int | None) -> np.ndarray:
    """One-way counts after keeping at most k rows per unit (None: every row)."""
    keep = np.ones(units.size, dtype=bool)
    if k is not None:
        seen: dict[int, int] = {}
        for i, unit in enumerate(units.tolist()):
            seen[unit] = seen.get(unit, 0) + 1
            keep[i] = seen[unit] <= k
    return np.bincount(cells[keep], minlength=size)


def _neighbours(k: int | None) -> tuple[int, int, int]:
    """The touched cell's count in D and in D' (one unit with 2k + 1 rows added to cell 2)."""
    rng = np.random.default_rng(11)
    units = rng.integers(0, 40, 150)
    cells = rng.integers(0, 4, 150)
    added_units = np.concatenate([units, np.full(2 * K + 1, 999)])
    added_cells = np.concatenate([cells, np.full(2 * K + 1, 2)])
    before = _bounded_counts(units, cells, 4, k)
    after = _bounded_counts(added_units, added_cells, 4, k)
    assert np.array_equal(np.delete(before, 2), np.delete(after, 2))
    return 2, int(before[2]), int(after[2])


def _draws(count: int, variance) -> np.ndarray:
    return noise.noisy(np.full(DRAWS, count), variance)


def _violations(d: np.ndarray, d_prime: np.ndarray, epsilon: float, delta: float) -> list[str]:
    """Events whose probabilities break the (epsilon, delta) bound beyond the tolerance."""
    found = []
    bound = math.exp(epsilon)
    low_end, high_end = int(min(d.min(), d_prime.min())), int(max(d.max(), d_prime.max()))
    for t in range(low_end, high_end + 1):
        for name, a, b in (("y >= t", d >= t, d_prime >= t), ("y <= t", d <= t, d_prime <= t)):
            for first, second in ((a, b), (b, a)):
                p, q = first.mean(), second.mean()
                p_high = p + 4 * math.sqrt(p * (1 - p) / DRAWS) + 3 / DRAWS
                q_low = q - 4 * math.sqrt(q * (1 - q) / DRAWS) - 3 / DRAWS
                if q_low > bound * p_high + delta:
                    found.append(f"{name}, t = {t}: {q:.4f} vs e^eps * {p:.4f}")
    return found


def test_one_measured_marginal_is_within_e_to_the_epsilon_on_neighbours():
    plan = accounting.plan_budget(EPSILON, DELTA, 1, K)
    per_measurement = accounting.epsilon_for(accounting.rho_of(plan.measurement_variance, K), DELTA)
    assert per_measurement <= EPSILON
    _, before, after = _neighbours(K)
    assert after - before == K  # bounded: the added unit moves its cell by k rows, not 2k + 1
    d, d_prime = _draws(before, plan.measurement_variance), _draws(after, plan.measurement_variance)
    assert _violations(d, d_prime, per_measurement, DELTA) == []
    # the neighbours are told apart at all: the shift is visible in the means
    assert d_prime.mean() - d.mean() > K / 2


def test_the_check_catches_noise_without_the_contribution_bound():
    plan = accounting.plan_budget(EPSILON, DELTA, 1, 1)  # noise for 1 row per unit
    _, before, after = _neighbours(None)  # and no bounding: the unit adds 2k + 1 rows
    d, d_prime = _draws(before, plan.measurement_variance), _draws(after, plan.measurement_variance)
    per_measurement = accounting.epsilon_for(accounting.rho_of(plan.measurement_variance, 1), DELTA)
    assert _violations(d, d_prime, per_measurement, DELTA)
