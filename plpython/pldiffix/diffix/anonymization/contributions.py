"""Per-AID contributions and the flattening of outliers (the "summable" core).

A ``ContributionTracker`` holds, for one AID instance of one aggregate in one bucket, the total
contribution of every AID value (keyed by AID hash) plus the part of the aggregate that came from
rows whose AID of this instance was NULL ("unaccounted for"). Contributions are non-negative.

Flattening looks at the largest contributors, ordered by contribution and then by AID hash, both
descending. A noisy number of outliers (drawn between ``outlier_count_min`` and
``outlier_count_max``) is replaced by the average of the next noisy number of top contributors;
both ranges shrink when there are few contributors. The noise standard deviation scales with the
larger of the flattened per-AID average and half the top average, and uses two layers: the bucket
seed and the XOR of all contributing AID hashes.
"""

from __future__ import annotations

import functools
import heapq
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pldiffix.diffix.anonymization._cnum import c_max
from pldiffix.diffix.anonymization.bulk import ContributionSummary
from pldiffix.diffix.anonymization.noise import layered_noise, round_reported_noise_sd, uniform_int
from pldiffix.diffix.anonymization.params import AnonymizationParams

Number = int | float


@dataclass
class ContributionTracker:
    """Contributions of one AID instance: ``{aid_hash: total}`` and the NULL-AID remainder.

    ``total`` is the sum of all contributions. pg_diffix accumulates it row by row, so for float
    summands it can differ in the last bits from the sum of the per-AID totals; callers that can
    compute it over the rows (see ``AidContributions.total``) should pass it in, because exact
    ties between AID instances decide which instance's noise is reported. The engine passes a
    single instance's float total as an ``exact_sum.ExactTotal`` of its contributions, which
    ``merge`` keeps exact.
    """

    contributions: dict[int, Number] = field(default_factory=dict)
    unaccounted_for: Number = 0
    total: Number = 0

    @classmethod
    def from_hashes(
        cls,
        aid_hashes: Sequence[int],
        values: Sequence[Number | None],
        unaccounted_for: Number = 0,
        total: Number | None = None,
    ) -> ContributionTracker:
        """Builds a tracker from aligned arrays; ``None`` values mean "not a contributor"."""
        if len(aid_hashes) != len(values):
            raise ValueError("AID and contribution arrays differ in length")
        tracker = cls(unaccounted_for=unaccounted_for)
        for aid, value in zip(aid_hashes, values, strict=True):
            if value is not None:
                tracker.add(aid, value)
        if total is not None:
            tracker.total = total
        return tracker

    def add(self, aid: int, contribution: Number) -> None:
        current = self.contributions.get(aid)
        self.contributions[aid] = contribution if current is None else current + contribution
        self.total += contribution

    def merge(self, other: ContributionTracker) -> None:
        for aid, contribution in other.contributions.items():
            current = self.contributions.get(aid)
            self.contributions[aid] = contribution if current is None else current + contribution
        self.total += other.total
        self.unaccounted_for += other.unaccounted_for

    def copy(self) -> ContributionTracker:
        return ContributionTracker(dict(self.contributions), self.unaccounted_for, self.total)

    @property
    def aid_seed(self) -> int:
        return functools.reduce(operator.xor, self.contributions, 0)

    def top_contributors(self, capacity: int) -> list[tuple[Number, int]]:
        contributions = self.contributions
        return heapq.nlargest(capacity, zip(contributions.values(), contributions, strict=True))

    def result(self, params: AnonymizationParams, bucket_seed: int) -> SummableResult:
        return aggregate_contributions(
            params,
            bucket_seed=bucket_seed,
            aid_seed=self.aid_seed,
            true_total=self.total,
            distinct_contributors=len(self.contributions),
            unaccounted_for=self.unaccounted_for,
            top=self.top_contributors(params.top_capacity),
        )


@dataclass
class SummarizedTracker:
    """A tracker reduced to its summary (``bulk.summarize``), for a bucket that is never merged.

    The engine summarizes only buckets that are certainly high-count in a query without LED, so
    nothing is ever added to them; merging raises rather than giving a wrong answer.
    """

    summary: ContributionSummary
    unaccounted_for: Number = 0

    @property
    def total(self) -> Number:
        return self.summary.total

    @property
    def aid_seed(self) -> int:
        return self.summary.aid_seed

    def merge(self, other: object) -> None:
        raise ValueError("summarized contributions cannot be merged")

    def result(self, params: AnonymizationParams, bucket_seed: int) -> SummableResult:
        summary = self.summary
        return aggregate_contributions(
            params,
            bucket_seed=bucket_seed,
            aid_seed=summary.aid_seed,
            true_total=summary.total,
            distinct_contributors=summary.contributors,
            unaccounted_for=self.unaccounted_for,
            top=summary.top[: params.top_capacity],
        )


def top_contributors(
    items: Iterable[tuple[int, Number]], capacity: int
) -> list[tuple[Number, int]]:
    """The ``capacity`` largest ``(contribution, aid_hash)`` pairs, largest first."""
    return heapq.nlargest(capacity, ((value, aid) for aid, value in items))


@dataclass(frozen=True)
class SummableResult:
    """Outcome of flattening and noising one AID instance."""

    aid_seed: int = 0
    flattening: float = 0.0
    flattened_sum: float = 0.0
    noisy_outlier_count: int = 0
    noisy_top_count: int = 0
    noise_sd: float = 0.0
    noise: float = 0.0
    not_enough_aid_values: bool = False


def _compact_ranges(params: AnonymizationParams, contributors: int) -> tuple[int, int]:
    """Upper bounds of the outlier and top ranges, shrunk when contributors are scarce."""
    outlier_max, top_max = params.outlier_count_max, params.top_count_max
    excess = outlier_max + top_max - contributors
    if excess <= 0:
        return outlier_max, top_max
    outlier_room = params.outlier_count_max - params.outlier_count_min
    top_room = params.top_count_max - params.top_count_min
    outlier_cut = excess // 2
    top_cut = excess - outlier_cut  # the top range gives up the odd unit
    if outlier_room >= outlier_cut and top_room >= top_cut:
        return outlier_max - outlier_cut, top_max - top_cut
    if outlier_room < outlier_cut and top_room >= top_cut:
        return params.outlier_count_min, top_max - (excess - outlier_room)
    if outlier_room >= outlier_cut and top_room < top_cut:
        return outlier_max - (excess - top_room), params.top_count_min
    raise AssertionError("impossible interval compacting")


def aggregate_contributions(
    params: AnonymizationParams,
    *,
    bucket_seed: int,
    aid_seed: int,
    true_total: Number,
    distinct_contributors: int,
    unaccounted_for: Number,
    top: Sequence[tuple[Number, int]],
) -> SummableResult:
    """Flattens and noises one AID instance; ``top`` is sorted largest first."""
    if distinct_contributors < params.outlier_count_min + params.top_count_min:
        return SummableResult(aid_seed=aid_seed, not_enough_aid_values=True)

    outlier_max, top_max = _compact_ranges(params, distinct_contributors)
    flattening_seed = 0
    for _, aid in top[: outlier_max + top_max]:
        flattening_seed ^= aid
    outliers = uniform_int(
        params.salt, flattening_seed, "outlier", params.outlier_count_min, outlier_max
    )
    tops = uniform_int(params.salt, flattening_seed, "top", params.top_count_min, top_max)

    outlier_sum = 0.0
    for value, _ in top[:outliers]:
        outlier_sum += float(value)
    top_sum = 0.0
    for value, _ in top[outliers : outliers + tops]:
        top_sum += float(value)
    top_average = top_sum / tops

    flattening = c_max(outlier_sum - top_average * outliers, 0.0)
    flattened_unaccounted = c_max(float(unaccounted_for) - flattening, 0.0)
    flattened_sum = float(true_total) - flattening
    average = flattened_sum / float(distinct_contributors)
    noise_sd = params.noise_layer_sd * c_max(average, 0.5 * top_average)
    noise = layered_noise(params.salt, [bucket_seed, aid_seed], "noise", noise_sd)
    return SummableResult(
        aid_seed=aid_seed,
        flattening=flattening,
        flattened_sum=flattened_sum + flattened_unaccounted,
        noisy_outlier_count=outliers,
        noisy_top_count=tops,
        noise_sd=noise_sd,
        noise=noise,
    )


@dataclass
class ResultAccumulator:
    """Combines the per-instance results: the most flattened instance and the noisiest one win."""

    max_flattening: float = 0.0
    sum_for_flattening: float = 0.0
    max_noise_sd: float = 0.0
    noise_with_max_sd: float = 0.0
    not_enough_aid_values: bool = False

    def add(self, result: SummableResult) -> None:
        if result.not_enough_aid_values:
            self.not_enough_aid_values = True
            return
        if result.flattening > self.max_flattening:
            self.max_flattening = result.flattening
            self.sum_for_flattening = result.flattened_sum
        elif result.flattening == self.max_flattening:
            self.sum_for_flattening = c_max(self.sum_for_flattening, result.flattened_sum)
        if result.noise_sd > self.max_noise_sd:
            self.max_noise_sd = result.noise_sd
            self.noise_with_max_sd = result.noise
        elif result.noise_sd == self.max_noise_sd and math.fabs(result.noise) > math.fabs(
            self.noise_with_max_sd
        ):
            self.noise_with_max_sd = result.noise

    @property
    def noisy_value(self) -> float:
        return self.sum_for_flattening + self.noise_with_max_sd

    @property
    def reported_noise(self) -> float:
        return round_reported_noise_sd(self.max_noise_sd)
