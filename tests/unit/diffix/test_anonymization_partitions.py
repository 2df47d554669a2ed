"""A bucket read in passes over disjoint AID partitions, combined, must finalize exactly like the
bucket read in one piece, whichever parts were summarized."""

from __future__ import annotations

import functools
import math
import operator
import random

import numpy as np
import pytest

from pldiffix.diffix.anonymization import (
    AidKind,
    AnonymizationParams,
    Bucket,
    BucketContext,
    CountState,
)
from pldiffix.diffix.anonymization.bulk import PythonKernel
from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
from pldiffix.diffix.anonymization.count_distinct import DistinctAidsState
from pldiffix.diffix.anonymization.hashing import FNV_OFFSET_BASIS, FNV_PRIME, fnv1a_64, hash_aid
from pldiffix.diffix.anonymization.low_count import LowCountState, LowCountSummary
from pldiffix.diffix.anonymization.partitions import (
    PartsDisagree,
    combine,
    combine_trackers,
    merge_summaries,
    summary_of,
)
from pldiffix.diffix.anonymization.sum import AvgState, SummandType, SumState

PARAMS = AnonymizationParams(salt="passes")
CAPACITY = PARAMS.top_capacity
KERNEL = PythonKernel()


def test_fnv1a_never_gives_two_int4_aids_one_hash() -> None:
    """Passes split int4 AIDs only, because on them FNV-1a is injective: an AID is hashed as its
    four bytes and four zero bytes, each step (state ^ byte) * P with P odd (a bijection), so two
    inputs first differing at byte i collide only if, at some later step, their states differ in
    the low eight bits alone (then XOR with different bytes can make them equal). That cannot
    happen if, after each of the first three bytes, no two states share their high 56 bits."""
    prime = np.uint64(FNV_PRIME)
    states = np.array([FNV_OFFSET_BASIS], dtype=np.uint64)
    for _ in range(3):
        states = ((states[:, None] ^ np.arange(256, dtype=np.uint64)[None, :]) * prime).ravel()
        high = states >> np.uint64(8)
        assert len(np.unique(high)) == len(states)
    # ... and it is about the hash the engine computes: four little-endian bytes, four zeros
    for value in (0, 1, 0x01020304, 2**31 - 1, -1, -(2**31)):
        data = (value & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4)
        assert hash_aid(value, AidKind.INT4) == fnv1a_64(data)


def _contributions(rng: random.Random, count: int, floats: bool) -> dict[int, float | int]:
    aids = rng.sample(range(1, 10**6), count)
    if floats:
        values = {hash_aid(a, AidKind.INT4): round(rng.uniform(0, 50), 2) for a in aids}
    else:
        values = {hash_aid(a, AidKind.INT4): rng.randint(1, 9) for a in aids}
    values[hash_aid(aids[0], AidKind.INT4)] = 500 if not floats else 500.25  # an outlier
    return values


def _split(items: dict[int, float | int], parts: int, rng: random.Random) -> list[dict]:
    out: list[dict] = [{} for _ in range(parts)]
    for aid, value in items.items():
        out[rng.randrange(parts)][aid] = value
    return out


def _part_tracker(part: dict, summarize: bool) -> ContributionTracker | SummarizedTracker:
    tracker = ContributionTracker(dict(part), 0, sum(part.values()))
    if summarize and part:
        return SummarizedTracker(summary_of(tracker, CAPACITY))
    return tracker


@pytest.mark.parametrize("floats", [False, True])
@pytest.mark.parametrize("pattern", ["all full", "all summarized", "mixed"])
def test_combined_trackers_give_the_whole_trackers_result(floats, pattern) -> None:
    rng = random.Random(f"{floats}{pattern}")
    whole = _contributions(rng, 120, floats)
    parts = _split(whole, 4, rng)
    combined = None
    for index, part in enumerate(parts):
        summarize = pattern == "all summarized" or (pattern == "mixed" and index % 2 == 1)
        piece = _part_tracker(part, summarize)
        combined = piece if combined is None else combine_trackers(combined, piece, CAPACITY)
    assert combined is not None
    assert isinstance(combined, ContributionTracker) == (pattern == "all full")
    # a float total is added part by part (documented): the reference adds it the same way
    total = functools.reduce(operator.add, (sum(part.values()) for part in parts), 0)
    tracker = ContributionTracker(dict(whole), 0, total)
    assert total == pytest.approx(sum(whole.values()), rel=1e-12)
    for seed in (1, 2**63 + 5):
        assert combined.result(PARAMS, seed) == tracker.result(PARAMS, seed)


def test_merged_summary_keeps_the_largest_of_the_union_in_order() -> None:
    first = summary_of(ContributionTracker({1: 5, 2: 9, 3: 1}, 0, 15), 2)
    second = summary_of(ContributionTracker({4: 9, 5: 7}, 0, 16), 2)
    merged = merge_summaries(first, second, 3)
    assert merged.contributors == 5
    assert merged.aid_seed == 1 ^ 2 ^ 3 ^ 4 ^ 5
    assert merged.total == 31
    assert merged.top == [(9, 4), (9, 2), (7, 5)]  # ties broken by the larger hash


def test_a_nan_contribution_cannot_join_a_summary() -> None:
    summarized = SummarizedTracker(summary_of(ContributionTracker({1: 2.0}, 0, 2.0), CAPACITY))
    with pytest.raises(PartsDisagree, match="NaN"):
        combine_trackers(summarized, ContributionTracker({2: math.nan}, 0, math.nan), CAPACITY)


def _bucket(contributions: dict, summarize: bool) -> Bucket:
    """A bucket of count(*), sum(float), avg(int), count(DISTINCT aid) over one instance."""
    hashes = list(contributions)

    def tracker(values: dict) -> ContributionTracker | SummarizedTracker:
        return _part_tracker(values, summarize)

    floats = {h: v * 1.5 for h, v in contributions.items()}
    if summarize:
        distinct = DistinctAidsState(summary=KERNEL.summarize(hashes, None, None, CAPACITY))
        low_count: LowCountState | LowCountSummary = LowCountSummary([KERNEL.aid_set(hashes)])
    else:
        distinct = DistinctAidsState(set(hashes))
        low_count = LowCountState([set(hashes)])
    return Bucket(
        labels=("x",),
        aggregates=[
            CountState([tracker(contributions)]),
            SumState(SummandType.FLOAT8, [tracker(floats)], [tracker({})]),
            AvgState(
                SumState(SummandType.INT4, [tracker(contributions)], [tracker({})]),
                CountState([tracker(contributions)]),
            ),
            distinct,
        ],
        low_count_state=low_count,
    )


@pytest.mark.parametrize("parts", [2, 5])
@pytest.mark.parametrize("size", [4, 40, 400])  # low-count, around the threshold, high-count
def test_combined_bucket_finalizes_like_the_whole_bucket(parts, size) -> None:
    rng = random.Random(size * parts)
    whole = _contributions(rng, size, floats=False)
    reference = _bucket(whole, summarize=False)
    combined = None
    for part in _split(whole, parts, rng):
        # the engine summarizes a part only when it certainly passes the low-count filter
        piece = _bucket(part, summarize=len(part) >= PARAMS.certainly_high_count())
        if combined is None:
            combined = piece
        else:
            combine(combined, piece, CAPACITY)
    assert combined is not None
    # float totals are added part by part (see the module): give the reference the same total
    reference.aggregates[1].positive[0].total = combined.aggregates[1].positive[0].total
    context = BucketContext(PARAMS, bucket_seed=12345)
    values = [state.finalize(context) for state in combined.aggregates]
    assert values == [state.finalize(context) for state in reference.aggregates]
    assert combined.evaluate_low_count(PARAMS) == reference.evaluate_low_count(PARAMS)
    state = combined.low_count_state
    if isinstance(state, LowCountSummary):
        assert state.counts == [KERNEL.aid_set(list(whole))]
    else:
        assert state == LowCountState([set(whole)])


def test_parts_showing_the_labels_differently_are_not_combined() -> None:
    first = _bucket({1: 1, 2: 1}, summarize=False)
    second = _bucket({3: 1}, summarize=False)
    second.labels = ("-0",)
    with pytest.raises(PartsDisagree, match="labels"):
        combine(first, second, CAPACITY)
