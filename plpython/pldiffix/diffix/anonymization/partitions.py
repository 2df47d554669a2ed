"""A bucket read in several passes over disjoint AID partitions, combined into one bucket.

When the engine splits a query into passes (docs/engine.md, "Passes"), each pass reads only the
rows whose AID falls into one partition, so a bucket arrives once per pass with a disjoint part of
its AIDs. Combining the parts needs no per-AID lookups: contributor counts add, AID seeds XOR,
totals add, and the largest contributors of the union are the largest of the parts' largest.
States that kept every AID merge as they do for LED and the suppress bin (their ``merge`` adds
per-AID contributions, here of AIDs the other part never has); a summarized part makes the
combined state a summary.

This is exact only if two different AIDs never share a hash, since pg_diffix would count them as
one contributor even when they sit in different passes: the engine splits only int4 AIDs, on which
FNV-1a is injective (tests/unit/diffix/test_anonymization_partitions.py proves it).

The float total of a single AID instance is an ``ExactTotal`` (``exact_sum``): parts add exactly,
so the combined bucket totals exactly as a single pass does. Each AID's own contribution is in one
part alone, added in that part's row order.
"""

from __future__ import annotations

import functools
import heapq
import operator
from typing import Any

from pldiffix.diffix.anonymization.buckets import Bucket
from pldiffix.diffix.anonymization.bulk import ContributionSummary
from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
from pldiffix.diffix.anonymization.count import CountState
from pldiffix.diffix.anonymization.count_distinct import DistinctAidsState
from pldiffix.diffix.anonymization.low_count import LowCountState, LowCountSummary
from pldiffix.diffix.anonymization.sum import AvgState, SumState

Number = int | float
Tracker = ContributionTracker | SummarizedTracker


class PartsDisagree(ValueError):
    """The parts cannot be combined: they show a bucket's labels differently (values that group
    together but print differently, such as 0 and -0), or one holds every AID but cannot be
    summarized (a NaN contribution) while another is a summary. The caller reads the query
    again in one pass."""


def _xor(hashes: Any) -> int:
    return functools.reduce(operator.xor, hashes, 0)


def summary_of(tracker: ContributionTracker, capacity: int) -> ContributionSummary:
    """The summary (``bulk``) of a tracker that kept every AID."""
    values = tracker.contributions.values()
    if any(v != v for v in values):  # NaN: the heap order of a summary would not be pg_diffix's
        raise PartsDisagree("a NaN contribution cannot be summarized")
    return ContributionSummary(
        len(tracker.contributions),
        tracker.aid_seed,
        tracker.total,
        tracker.top_contributors(capacity),
    )


def merge_summaries(
    first: ContributionSummary, second: ContributionSummary, capacity: int
) -> ContributionSummary:
    """The summary of the union of two disjoint sets of AIDs."""
    return ContributionSummary(
        first.contributors + second.contributors,
        first.aid_seed ^ second.aid_seed,
        first.total + second.total,
        heapq.nlargest(capacity, [*first.top, *second.top]),
    )


def combine_trackers(first: Tracker, second: Tracker, capacity: int) -> Tracker:
    if isinstance(first, ContributionTracker) and isinstance(second, ContributionTracker):
        first.merge(second)
        return first

    def summary(tracker: Tracker) -> ContributionSummary:
        if isinstance(tracker, SummarizedTracker):
            return tracker.summary
        return summary_of(tracker, capacity)

    return SummarizedTracker(
        merge_summaries(summary(first), summary(second), capacity),
        first.unaccounted_for + second.unaccounted_for,
    )


def _distinct_summary(state: DistinctAidsState, capacity: int) -> ContributionSummary:
    if state.summary is not None:
        return state.summary
    top = [(1, aid) for aid in heapq.nlargest(capacity, state.hashes)]
    return ContributionSummary(len(state.hashes), _xor(state.hashes), len(state.hashes), top)


def _combine_distinct(
    first: DistinctAidsState, second: DistinctAidsState, capacity: int
) -> DistinctAidsState:
    if first.summary is None and second.summary is None:
        first.merge(second)
        return first
    merged = merge_summaries(
        _distinct_summary(first, capacity), _distinct_summary(second, capacity), capacity
    )
    return DistinctAidsState(noise=first.noise, summary=merged)


def _combine_state(first: Any, second: Any, capacity: int) -> Any:
    def trackers(mine: list[Tracker], theirs: list[Tracker]) -> list[Tracker]:
        return [combine_trackers(a, b, capacity) for a, b in zip(mine, theirs, strict=True)]

    if isinstance(first, CountState):
        first.trackers = trackers(first.trackers, second.trackers)
    elif isinstance(first, SumState):
        first.positive = trackers(first.positive, second.positive)
        first.negative = trackers(first.negative, second.negative)
    elif isinstance(first, AvgState):
        first.sum_state = _combine_state(first.sum_state, second.sum_state, capacity)
        first.count = _combine_state(first.count, second.count, capacity)
    elif isinstance(first, DistinctAidsState):
        return _combine_distinct(first, second, capacity)
    else:  # states without per-AID summaries: their merge adds the other part's AIDs
        first.merge(second)
    return first


def _low_count_counts(state: LowCountState | LowCountSummary) -> list[tuple[int, int]]:
    if isinstance(state, LowCountSummary):
        return state.counts
    return [(len(aids), _xor(aids)) for aids in state.aid_sets]


def _combine_low_count(
    first: LowCountState | LowCountSummary | None, second: LowCountState | LowCountSummary | None
) -> LowCountState | LowCountSummary | None:
    if first is None or second is None:
        return first if second is None else second
    if isinstance(first, LowCountState) and isinstance(second, LowCountState):
        first.merge(second)
        return first
    return LowCountSummary(
        [
            (count_a + count_b, seed_a ^ seed_b)
            for (count_a, seed_a), (count_b, seed_b) in zip(
                _low_count_counts(first), _low_count_counts(second), strict=True
            )
        ]
    )


def combine(target: Bucket, part: Bucket, capacity: int) -> None:
    """Adds ``part`` (the same bucket over other AIDs) to ``target``; ``capacity`` is the number
    of top contributors a summary keeps (``AnonymizationParams.top_capacity``)."""
    if target.labels != part.labels or target.label_hashes != part.label_hashes:
        raise PartsDisagree("the parts show the bucket's labels differently")
    target.aggregates = [
        _combine_state(mine, theirs, capacity)
        for mine, theirs in zip(target.aggregates, part.aggregates, strict=True)
    ]
    target.low_count_state = _combine_low_count(target.low_count_state, part.low_count_state)
