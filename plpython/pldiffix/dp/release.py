"""Noise per group: the released rows and, per noisy value, its noise scale and 95% interval.

Sequential composition: a query's epsilon is split evenly among its aggregates, plus one equal
share for partition selection when grouping keys are not all declared and the query has no count
(with a count, a key is released when its noisy count passes the threshold: the count pays for
both, Wilson et al. 2020); an aggregate made of
several statistics (avg: count and sum; variance and stddev: count, sum and sum of squares)
splits its share evenly among them. All of delta goes to partition selection. Counts are
noised integers; sums are integers on the aggregate's grid (planner.grid_step).

The noise is discrete Laplace (epsilon-DP per statistic) or, with the session setting dp_noise =
gaussian, discrete Gaussian: the query then spends rho = epsilon^2 / 2 (zCDP, the cost an
epsilon-DP query has under zCDP), split evenly among the same shares, and the pure-DP mechanisms
(partition selection, quantiles) get the epsilon whose epsilon^2 / 2 is their share of rho.
Intervals of derived values (avg, variance, stddev) combine their statistics' intervals, each
taken at confidence 1 - 0.05 / (number of statistics), so by the union bound they cover the
noise-free value with probability at least 95%. Intervals describe the noise only, not the
bias of clamping and contribution bounding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pldiffix.core.exact_sampling import rational_sqrt_floor
from pldiffix.dp.mechanisms import (
    DiscreteGaussian,
    DiscreteLaplace,
    PartitionSelection,
    exponential_quantile,
    quantile_rank_error,
)
from pldiffix.dp.planner import AggregatePlan, Plan, TableMetadata, quantile_grid

CONFIDENCE = 0.95
LAPLACE = "laplace"
GAUSSIAN = "gaussian"


@dataclass(frozen=True)
class Budget:
    """How one query's epsilon and delta are shared out."""

    epsilon: Fraction
    delta: float
    aggregates: int
    partition_selection: bool
    noise: str = LAPLACE
    selection_by_count: bool = False  # partition selection thresholds a released count

    @property
    def shares(self) -> int:
        separate = self.partition_selection and not self.selection_by_count
        return self.aggregates + (1 if separate else 0)

    @property
    def rho(self) -> Fraction:
        """The query's zCDP cost: epsilon-DP implies epsilon^2 / 2-zCDP (Bun and Steinke 2016),
        and under Gaussian noise the query spends exactly that."""
        return self.epsilon * self.epsilon / 2

    @property
    def rho_share(self) -> Fraction:
        return self.rho / self.shares

    @property
    def share(self) -> Fraction:
        """The epsilon of each pure-DP mechanism: every share under Laplace noise; under Gaussian
        noise partition selection and quantiles, whose share^2 / 2 is at most rho_share."""
        if self.noise == GAUSSIAN:
            return rational_sqrt_floor(2 * self.rho_share)
        return self.epsilon / self.shares

    def statistic_mechanism(
        self, sensitivity: int, statistics: int
    ) -> DiscreteLaplace | DiscreteGaussian:
        """The noise of one of an aggregate's `statistics` statistics. The Gaussian's L2
        sensitivity is taken as the L1 one: a unit's k rows may all fall in one group."""
        if self.noise == GAUSSIAN:
            return DiscreteGaussian(sensitivity, self.rho_share / statistics)
        return DiscreteLaplace(sensitivity, self.share / statistics)

    @property
    def delta_spent(self) -> float:
        return self.delta if self.partition_selection else 0.0


@dataclass(frozen=True)
class NoisyValue:
    value: float | int | None
    interval: tuple[float, float] | None

    def document(self) -> dict[str, Any]:
        interval = list(self.interval) if self.interval is not None else None
        return {"value": self.value, "interval_95": interval}


@dataclass(frozen=True)
class Released:
    keys: tuple[Any, ...]
    values: tuple[NoisyValue, ...]


SELECTION_COUNTS = ("count_units", "count_star", "count")  # in the order of preference


def selection_count(plan: Plan) -> int | None:
    """The aggregate whose noisy count selects the keys: a count of units if the query has one
    (a unit adds 1 to it, so the threshold is lowest), else a count of rows."""
    for kind in SELECTION_COUNTS:
        for index, aggregate in enumerate(plan.aggregates):
            if aggregate.aggregate.kind == kind:
                return index
    return None


def selection(plan: Plan, budget: Budget, metadata: TableMetadata) -> PartitionSelection | None:
    """The partition selection of the query, if it has one: over the released count
    (`selection_count`) when budget.selection_by_count, else over a separate noisy count of
    units taking its own share."""
    if not budget.partition_selection:
        return None
    index = selection_count(plan) if budget.selection_by_count else None
    if index is None:
        return PartitionSelection(metadata.max_partitions, budget.share, budget.delta)
    aggregate = plan.aggregates[index]
    (statistic,) = aggregate.statistics
    units = aggregate.aggregate.kind == "count_units"
    return PartitionSelection(
        metadata.max_partitions,
        budget.share,
        budget.delta,
        per_partition=1 if units else metadata.rows_per_partition,
        sensitivity=statistic.sensitivity,
    )


def release(
    plan: Plan,
    budget: Budget,
    groups: Sequence[Mapping[str, Any]],
    histograms: Mapping[int, Iterable[tuple[tuple[Any, ...], Mapping[int, int]]]],
    metadata: TableMetadata,
) -> list[Released]:
    """The released rows of `groups` (the rows of plan.sql). `histograms[i]` yields the keys of
    each group with its rows per grid point (`Plan.histogram_sql`) for quantile aggregate i; it
    is read after partition selection, and only released groups are kept from it."""
    selector = selection(plan, budget, metadata)
    by_count = selection_count(plan) if budget.selection_by_count else None
    # by key_order(keys): hashable whatever the keys hold (PL/Python gives arrays as lists)
    released: dict[tuple[Any, ...], tuple[tuple[Any, ...], dict[int, NoisyValue]]] = {}
    for row in groups:
        keys = tuple(row[f"g{i}"] for i in range(plan.group_count))
        if selector is not None and by_count is None and not selector.keeps(int(row["units"])):
            continue
        values: dict[int, NoisyValue] = {}
        if selector is not None and by_count is not None:
            values[by_count] = _noisy(plan.aggregates[by_count], budget, row)
            if not selector.kept(int(values[by_count].value or 0)):
                continue
        for index, aggregate in enumerate(plan.aggregates):
            if index not in values and aggregate.aggregate.kind != "quantile":
                values[index] = _noisy(aggregate, budget, row)
        released[key_order(keys)] = (keys, values)
    for index, aggregate in enumerate(plan.aggregates):
        if aggregate.aggregate.kind != "quantile":
            continue
        for keys, counts in histograms.get(index, ()):
            found = released.get(key_order(keys))
            if found is not None:
                found[1][index] = _quantile(aggregate, budget.share, counts)
        for _, values in released.values():  # groups without a value of the column
            if index not in values:
                values[index] = _quantile(aggregate, budget.share, {})
    return [
        Released(keys, tuple(values[i] for i in range(len(plan.aggregates))))
        for _, (keys, values) in sorted(released.items(), key=lambda item: item[0])
    ]


def key_order(keys: tuple[Any, ...]) -> tuple[Any, ...]:
    """A total order of grouping keys that depends on their values only.

    The executor's order of groups does not: the hash table of a HashAggregate also holds the
    keys that partition selection drops, and they change the order of the others. So a key
    that one unit alone adds, never released, could still show in the order of the rows that
    are. Sorted by value, the released rows reveal nothing but their values.

    Per column: numbers numerically (NaN after them), text and bytes by code point, values of
    other types (PL/Python passes them as text, lists or dicts) by their repr; NULLs last, as in
    PostgreSQL's ascending order. Every value is finally ordered by type name and repr, so that
    values which compare equal yet differ (0.0 and -0.0) still have one order.
    """
    return tuple(_value_order(value) for value in keys)


def _value_order(value: Any) -> tuple[Any, ...]:
    tie = (type(value).__name__, repr(value))
    if value is None:
        return (2, 0, 0, tie)
    if isinstance(value, bool):
        return (0, 0, int(value), tie)
    if isinstance(value, int | float | Decimal):
        if value != value:  # NaN
            return (1, 0, 0, tie)
        return (0, 1, value, tie)
    if isinstance(value, str):
        return (0, 2, value, tie)
    if isinstance(value, bytes):
        return (0, 3, value, tie)
    return (0, 4, repr(value), tie)


def noise_report(plan: Plan, budget: Budget) -> list[dict[str, Any]]:
    """Per aggregate: its mechanism, epsilon and the noise scale of each statistic (in the
    units of the answer)."""
    report = []
    for aggregate in plan.aggregates:
        kind = aggregate.aggregate.kind
        entry: dict[str, Any] = {"aggregate": kind, "epsilon": float(budget.share)}
        if kind == "quantile":
            assert aggregate.bounds is not None
            entry["mechanism"] = "exponential"
            candidates = 2 * quantile_grid(aggregate.bounds, aggregate.step) + 1
            entry["grid_points"] = candidates
            entry["rank_error_95"] = quantile_rank_error(
                candidates, budget.share, aggregate.contributions
            )
        else:
            count = len(aggregate.statistics)
            if budget.noise == GAUSSIAN:
                del entry["epsilon"]
                entry["mechanism"] = "discrete_gaussian"
                entry["rho"] = float(budget.rho_share)
            else:
                entry["mechanism"] = "discrete_laplace"
            entry["noise_scale"] = {
                s.name.split("_")[-1]: float(budget.statistic_mechanism(s.sensitivity, count).scale)
                * (1.0 if s.name.endswith("_n") else _unit(aggregate, s.name))
                for s in aggregate.statistics
            }
        if aggregate.bounds is not None:
            entry["bounds"] = [aggregate.bounds.lower, aggregate.bounds.upper]
            entry["grid_step"] = aggregate.step
        report.append(entry)
    return report


def _unit(aggregate: AggregatePlan, name: str) -> float:
    """What one grid unit of the statistic is worth in the answer's units."""
    return aggregate.step * aggregate.step if name.endswith("_q") else aggregate.step


@dataclass(frozen=True)
class _Component:
    value: int  # noisy, in grid units
    low: int
    high: int


def _component(
    mechanism: DiscreteLaplace | DiscreteGaussian, true_value: Any, confidence: float
) -> _Component:
    noisy = mechanism.release(int(true_value or 0))
    width = mechanism.half_width(confidence)
    return _Component(noisy, noisy - width, noisy + width)


def _noisy(aggregate: AggregatePlan, budget: Budget, row: Mapping[str, Any]) -> NoisyValue:
    kind = aggregate.aggregate.kind
    stats = aggregate.statistics
    confidence = 1.0 - (1.0 - CONFIDENCE) / len(stats)
    parts = [
        _component(budget.statistic_mechanism(s.sensitivity, len(stats)), row[s.name], confidence)
        for s in stats
    ]
    if kind in ("count_star", "count", "count_units"):
        (n,) = parts
        return NoisyValue(max(0, n.value), (max(0, n.low), max(0, n.high)))
    step = aggregate.step
    if kind == "sum":
        (s,) = parts
        return NoisyValue(_on_grid(s.value, step), (_on_grid(s.low, step), _on_grid(s.high, step)))
    assert aggregate.bounds is not None
    middle, lower, upper = aggregate.bounds.middle, aggregate.bounds.lower, aggregate.bounds.upper
    n, s = parts[0], parts[1]
    population = aggregate.aggregate.population
    if kind == "avg":
        value = _clamp(middle + step * s.value / max(1, n.value), lower, upper)
        low, high = _ratio_range(s.low, s.high, max(1, n.low), max(1, n.high))
        return NoisyValue(
            value,
            (_clamp(middle + step * low, lower, upper), _clamp(middle + step * high, lower, upper)),
        )
    q = parts[2]
    widest = (upper - lower) * (upper - lower) / 4.0  # finite: the planner checked
    variance = _variance(n.value, s.value, q.value, population) * step * step
    mean_low, mean_high = _ratio_range(s.low, s.high, max(1, n.low), max(1, n.high))
    square_low = 0.0 if mean_low <= 0 <= mean_high else min(mean_low**2, mean_high**2)
    square_high = max(mean_low**2, mean_high**2)
    q_low, q_high = _ratio_range(q.low, q.high, max(1, n.low), max(1, n.high))
    # the sample forms' factor n / (n - 1) is largest at the smallest count
    correction = 1.0 if population else max(2, n.low) / (max(2, n.low) - 1)
    low_var = _clamp((q_low - square_high) * step * step, 0.0, widest)
    high_var = _clamp((q_high - square_low) * step * step * correction, 0.0, widest)
    variance = _clamp(variance, 0.0, widest)
    if kind == "stddev":
        return NoisyValue(math.sqrt(variance), (math.sqrt(low_var), math.sqrt(high_var)))
    return NoisyValue(variance, (low_var, high_var))


def _variance(n: int, s: int, q: int, population: bool) -> float:
    count = max(1, n)
    mean = s / count
    value = q / count - mean * mean
    if not population:
        value *= count / max(1, count - 1)
    return value


def _ratio_range(low: int, high: int, n_low: int, n_high: int) -> tuple[float, float]:
    candidates = [low / n_low, low / n_high, high / n_low, high / n_high]
    return min(candidates), max(candidates)


def _on_grid(units: int, step: float) -> float:
    """units * step without binary rounding residue (step is a power of ten)."""
    return round(units * step, max(0, -math.floor(math.log10(step))))


def _clamp(value: float, lower: float, upper: float) -> float:
    return min(max(value, lower), upper)


def _quantile(aggregate: AggregatePlan, share: Fraction, counts: Mapping[int, int]) -> NoisyValue:
    """counts: rows per grid point j in [-half, half] (value middle + j * step)."""
    bounds = aggregate.bounds
    assert bounds is not None and aggregate.aggregate.quantile is not None
    half = quantile_grid(bounds, aggregate.step)
    grid = [0] * (2 * half + 1)
    for point, rows in counts.items():
        grid[min(max(point, -half), half) + half] += rows
    chosen = exponential_quantile(
        grid, aggregate.aggregate.quantile, share, aggregate.contributions
    )
    value = bounds.middle + (chosen - half) * aggregate.step
    return NoisyValue(_clamp(value, bounds.lower, bounds.upper), None)
