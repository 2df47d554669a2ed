"""``count(*)``, ``count(col)`` and their ``count_noise`` variants.

Each AID instance gets a contribution tracker: for ``count(*)`` the rows per AID value, for
``count(col)`` the non-NULL values per AID value (an AID whose rows are all NULL still counts as a
contributor with zero). The flattened, noised result of the instance with the largest flattening
is reported, rounded, and never below ``low_count_min_threshold`` (0 for global aggregates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pldiffix.core.sqltext import identifier
from pldiffix.diffix.anonymization import bucket_columns
from pldiffix.diffix.anonymization._cnum import c_round_to_int
from pldiffix.diffix.anonymization.agg_funcs import (
    AggFuncs,
    AggregateInput,
    BucketPlan,
    BucketRow,
    BucketSql,
    PerAidArray,
    ValueTracker,
)
from pldiffix.diffix.anonymization.base import AidContributions, BucketContext
from pldiffix.diffix.anonymization.bucket_columns import VALUE, numbered
from pldiffix.diffix.anonymization.contributions import ContributionTracker, ResultAccumulator
from pldiffix.diffix.anonymization.hashing import AidKind

if TYPE_CHECKING:
    from pldiffix.diffix.anonymization.bulk import PerAid

COUNTED = "c"  # c<j>, ac<j>_<k>, uc<j>_<k>: per AID, the non-NULL values of value column j


def accumulate(trackers: Sequence[ContributionTracker], ctx: BucketContext) -> ResultAccumulator:
    """Combines the instances in order, stopping at the first one without enough AIDs."""
    accumulator = ResultAccumulator()
    for tracker in trackers:
        accumulator.add(tracker.result(ctx.params, ctx.bucket_seed))
        if accumulator.not_enough_aid_values:
            break
    return accumulator


@dataclass
class CountState:
    """Anonymizing count; ``noise=True`` reports the rounded noise SD instead (float or None)."""

    trackers: list[ContributionTracker] = field(default_factory=list)
    noise: bool = False

    @classmethod
    def from_inputs(
        cls,
        kinds: Sequence[AidKind],
        inputs: Sequence[AidContributions],
        *,
        noise: bool = False,
    ) -> CountState:
        if len(kinds) != len(inputs):
            raise ValueError("one AidContributions per AID instance is required")
        trackers = [
            ContributionTracker.from_hashes(
                item.hashed(kind), item.values, item.unaccounted_for, item.total
            )
            for kind, item in zip(kinds, inputs, strict=True)
        ]
        return cls(trackers, noise)

    def merge(self, other: CountState) -> None:
        for mine, theirs in zip(self.trackers, other.trackers, strict=True):
            mine.merge(theirs)

    def empty(self) -> CountState:
        return CountState([ContributionTracker() for _ in self.trackers], self.noise)

    def finalize(self, ctx: BucketContext) -> int | float | None:
        return self.noise_sd(ctx) if self.noise else self.count(ctx)

    def count(self, ctx: BucketContext) -> int:
        accumulator = accumulate(self.trackers, ctx)
        if accumulator.not_enough_aid_values:
            return ctx.min_count
        return max(c_round_to_int(accumulator.noisy_value), ctx.min_count)

    def noise_sd(self, ctx: BucketContext) -> float | None:
        accumulator = accumulate(self.trackers, ctx)
        if accumulator.not_enough_aid_values:
            return None
        return accumulator.reported_noise


class _CountedValues(ValueTracker):
    """Per AID, the non-NULL values of a value column (`COUNTED`); count(col) and avg(col)."""

    def per_aid_columns(self, js: Sequence[int], types: Sequence[str], sql: BucketSql) -> list[str]:
        return [
            f"pg_catalog.count({identifier(numbered(VALUE, j))}) FILTER (WHERE live) "
            f"AS {identifier(numbered(COUNTED, j))}"
            for j in js
        ]

    def instance_columns(
        self, js: Sequence[int], k: int, absent: str, types: Sequence[str], sql: BucketSql
    ) -> list[str | PerAidArray]:
        out: list[str | PerAidArray] = []
        for j in js:
            c = identifier(numbered(COUNTED, j))
            out.append(PerAidArray(bucket_columns.per_aid(COUNTED, k, j), c, "int8"))
            unaccounted = bucket_columns.unaccounted(COUNTED, k, j)
            out.append(f"pg_catalog.sum({c}) FILTER (WHERE {absent}) AS {unaccounted}")
        return out

    def grouped_columns(self, j: int, per_aid: PerAid) -> dict[str, Any]:
        return {
            bucket_columns.per_aid(COUNTED, 0, j): per_aid.non_null[j],
            bucket_columns.unaccounted(COUNTED, 0, j): 0,
        }


COUNTED_VALUES = _CountedValues()


class _CountStar(AggFuncs):
    """count(*): the rows per AID (`bucket_columns.ROWS`), which every bucket row has."""

    kinds = ("count_star", "count_noise_star")

    def state(self, item: AggregateInput, row: BucketRow) -> CountState:
        return CountState(row.trackers(bucket_columns.ROWS, None), "_noise" in item.kind)

    def result_type(self, item: AggregateInput) -> str:
        return "double precision" if "_noise" in item.kind else "bigint"


class _Count(AggFuncs):
    """count(col): the non-NULL values per AID (`COUNTED`)."""

    kinds = ("count", "count_noise")

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        item.value = plan.value(call)
        plan.track(COUNTED_VALUES, item.value)

    def state(self, item: AggregateInput, row: BucketRow) -> CountState:
        return CountState(row.trackers(COUNTED, item.value), "_noise" in item.kind)

    def result_type(self, item: AggregateInput) -> str:
        return "double precision" if "_noise" in item.kind else "bigint"


COUNT_STAR = _CountStar()
COUNT = _Count()
