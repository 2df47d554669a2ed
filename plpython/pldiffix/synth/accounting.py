"""The privacy accounting of a synthesis: zCDP measurements converted to (epsilon, delta).

A synthesis measures integer count vectors with discrete Gaussian noise. A privacy unit
contributes at most `k` rows (contribution bounding), so one marginal's counts change by an
integer vector v with ||v||_2 <= ||v||_1 <= k. Adding independent discrete Gaussians N_Z(0, s2)
to each cell is then rho = k^2 / (2 s2) zCDP: for an integer shift mu, the Renyi divergence of
order a between N_Z(mu, s2) and N_Z(0, s2) is at most a mu^2 / (2 s2) (Canonne, Kamath, Steinke
2020), and divergences of independent coordinates add. Measurements compose by adding their rho,
and rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun and Steinke 2016, prop. 1.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

# Variances are rounded up to a multiple of 1 / VARIANCE_DENOMINATOR: never less noise than planned.
VARIANCE_DENOMINATOR = 10**6
SELECTION_SHARE = 0.1  # of rho, spent on choosing the tree's edges when there is a choice


def rho_for(epsilon: float, delta: float) -> float:
    """The largest rho whose (epsilon, delta) conversion does not exceed epsilon.

    epsilon = rho + 2 sqrt(rho L), L = ln(1/delta), is solved by sqrt(rho) = sqrt(L + epsilon) -
    sqrt(L); written as epsilon / (sqrt(L + epsilon) + sqrt(L)) to avoid cancellation.
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError("epsilon must be a positive finite number")
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    log_term = math.log(1.0 / delta)
    root = epsilon / (math.sqrt(log_term + epsilon) + math.sqrt(log_term))
    return root * root


def epsilon_for(rho: float, delta: float) -> float:
    """(epsilon, delta)-DP implied by rho-zCDP."""
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def variance_for(rho: float, contributions: int) -> Fraction:
    """The smallest variance on the rational grid that makes one measurement rho-zCDP."""
    needed = Fraction(contributions * contributions) / (2 * Fraction(rho))
    return Fraction(math.ceil(needed * VARIANCE_DENOMINATOR), VARIANCE_DENOMINATOR)


def rho_of(variance: Fraction, contributions: int) -> float:
    """What one measurement with this variance costs."""
    return contributions * contributions / (2.0 * float(variance))


@dataclass(frozen=True)
class BudgetPlan:
    """How a synthesis spends its budget.

    Selection: every pair of the `columns` modeled columns is measured once with
    `selection_variance` (only when there are three or more: with two the tree has its only
    edge). Measurement: every one-way marginal and the `columns - 1` two-way marginals of the
    tree, each with `measurement_variance` (with no modeled column: the row count alone).
    """

    epsilon: float
    delta: float
    contributions: int
    columns: int
    selection_variance: Fraction | None
    measurement_variance: Fraction

    @property
    def selection_count(self) -> int:
        return self.columns * (self.columns - 1) // 2 if self.selection_variance else 0

    @property
    def measurement_count(self) -> int:
        return max(1, 2 * self.columns - 1)

    @property
    def rho_spent(self) -> float:
        spent = self.measurement_count * rho_of(self.measurement_variance, self.contributions)
        if self.selection_variance is not None:
            spent += self.selection_count * rho_of(self.selection_variance, self.contributions)
        return spent

    @property
    def epsilon_spent(self) -> float:
        """The epsilon the measurements actually cost (at most `epsilon`)."""
        return epsilon_for(self.rho_spent, self.delta)

    def document(self) -> dict[str, object]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "rho": self.rho_spent,
            "max_contributions": self.contributions,
            "selection": {
                "marginals": self.selection_count,
                "sigma": None
                if self.selection_variance is None
                else math.sqrt(self.selection_variance),
            },
            "measurement": {
                "marginals": self.measurement_count,
                "sigma": math.sqrt(self.measurement_variance),
            },
        }


def plan_budget(epsilon: float, delta: float, columns: int, contributions: int) -> BudgetPlan:
    """Splits rho_for(epsilon, delta): SELECTION_SHARE to selection when there is a choice of
    edges, the rest equally over the measurements."""
    if contributions < 1:
        raise ValueError("contributions must be at least 1")
    rho = rho_for(epsilon, delta)
    selecting = columns >= 3
    selection_rho = SELECTION_SHARE * rho if selecting else 0.0
    measurements = max(1, 2 * columns - 1)
    pairs = columns * (columns - 1) // 2
    return BudgetPlan(
        epsilon=epsilon,
        delta=delta,
        contributions=contributions,
        columns=columns,
        selection_variance=variance_for(selection_rho / pairs, contributions)
        if selecting
        else None,
        measurement_variance=variance_for((rho - selection_rho) / measurements, contributions),
    )
