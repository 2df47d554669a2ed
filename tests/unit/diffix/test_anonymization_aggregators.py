"""Aggregators on hand-built per-bucket inputs, with noise switched off so results are exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from pldiffix.diffix.anonymization import (
    AidContributions,
    AidKind,
    AnonymizationParams,
    AvgState,
    BucketContext,
    CountDistinctState,
    CountHistogramState,
    CountState,
    DistinctValueInput,
    HistogramEntryInput,
    LowCountState,
    SumInput,
    SummandType,
    SumState,
)
from pldiffix.diffix.anonymization.contributions import ContributionTracker
from pldiffix.diffix.anonymization.numeric import float8_to_numeric, numeric_div

INT4 = [AidKind.INT4]
# One outlier, three top contributors, no noise: flattening is fully determined.
EXACT = AnonymizationParams(
    salt="t",
    noise_layer_sd=0.0,
    low_count_layer_sd=0.0,
    outlier_count_min=1,
    outlier_count_max=1,
    top_count_min=3,
    top_count_max=3,
)
GLOBAL = BucketContext(EXACT, bucket_seed=0, is_global=True)
GROUPED = BucketContext(EXACT, bucket_seed=0, is_global=False)


def counts(values: list[int], unaccounted: int = 0) -> CountState:
    aids = list(range(1, len(values) + 1))
    return CountState.from_inputs(INT4, [AidContributions(aids, values, unaccounted)])


def test_count_flattens_the_outlier_to_the_top_average() -> None:
    # 10 is replaced by the average of the next three (2): 18 - (10 - 2) = 10.
    assert counts([10, 2, 2, 2, 1, 1]).count(GLOBAL) == 10


def test_unaccounted_rows_are_added_after_flattening() -> None:
    # Flattening (8) is first taken out of the NULL-AID rows: 10 + max(3 - 8, 0), 10 + (11 - 8).
    assert counts([10, 2, 2, 2, 1, 1], unaccounted=3).count(GLOBAL) == 10
    assert counts([10, 2, 2, 2, 1, 1], unaccounted=11).count(GLOBAL) == 13


def test_too_few_aids_report_the_minimum() -> None:
    few = counts([5, 5, 5])  # fewer than outlier_count_min + top_count_min = 4 AIDs
    assert few.count(GLOBAL) == 0
    assert few.count(GROUPED) == EXACT.low_count_min_threshold
    noise = CountState(few.trackers, noise=True)
    assert noise.finalize(GLOBAL) is None


def test_ranges_are_compacted_when_aids_are_scarce() -> None:
    params = AnonymizationParams(
        noise_layer_sd=0.0, outlier_count_min=1, outlier_count_max=2, top_count_min=3
    )
    # 4 AIDs: outlier range [1, 1] and top range [3, 3] after compaction: 12 - (9 - 1) = 4.
    assert counts([9, 1, 1, 1]).count(BucketContext(params, 0, True)) == 4


def test_zero_contributors_count_as_aids() -> None:
    # count(col) where four AIDs only have NULLs: they still are contributors, so the outlier 7
    # is flattened to the top average (1 + 0 + 0) / 3 and 8 - (7 - 1/3) rounds to 1.
    assert counts([7, 1, 0, 0, 0, 0]).count(GLOBAL) == 1
    # Without them there are too few AIDs.
    assert counts([7, 1]).count(GLOBAL) == 0


def test_count_noise_reports_rounded_sd() -> None:
    params = AnonymizationParams(
        noise_layer_sd=1.0, outlier_count_min=1, outlier_count_max=1, top_count_min=3
    )
    state = CountState.from_inputs(INT4, [AidContributions(list(range(10)), [1] * 10)], noise=True)
    # Average contribution 1 and top average 1 give a noise SD of 1.0.
    assert state.finalize(BucketContext(params, 0, True)) == 1.0


def test_contribution_tracker_merge_keeps_per_aid_totals() -> None:
    left = ContributionTracker.from_hashes([1, 2], [3, 4], unaccounted_for=1)
    right = ContributionTracker.from_hashes([2, 3], [5, None], unaccounted_for=2)
    left.merge(right)
    assert left.contributions == {1: 3, 2: 9}
    assert left.total == 12
    assert left.unaccounted_for == 3
    assert left.aid_seed == 1 ^ 2
    assert left.top_contributors(5) == [(9, 2), (3, 1)]


def sum_state(summand: SummandType, pos: list, neg: list, noise: bool = False) -> SumState:
    aids = list(range(1, len(pos) + 1))
    leg_pos, leg_neg = AidContributions(aids, pos), AidContributions(aids, neg)
    return SumState.from_inputs(summand, INT4, [SumInput(leg_pos, leg_neg)], noise=noise)


def test_sum_subtracts_the_flattened_negative_leg() -> None:
    # Positive: 18 flattened by 8 -> 10. Negative: 8 flattened by 4 - 1 -> 5.
    state = sum_state(SummandType.INT4, [10, 2, 2, 2, 1, 1], [4, 1, 1, 1, 1, None])
    assert state.sum(GLOBAL) == 5
    assert sum_state(SummandType.FLOAT8, [10.0, 2, 2, 2, 1, 1], [4.0, 1, 1, 1, 1, None]).sum(
        GLOBAL
    ) == pytest.approx(5.0)
    assert sum_state(SummandType.INT8, [10, 2, 2, 2, 1, 1], [None] * 6).sum(GLOBAL) == Decimal(10)


def test_sum_is_null_only_when_both_legs_lack_aids() -> None:
    assert sum_state(SummandType.INT4, [1, 1], [1, 1]).sum(GLOBAL) is None
    assert sum_state(SummandType.INT4, [1, 1], [1, 1], noise=True).finalize(GLOBAL) is None
    # Only the negative leg lacks AIDs: the positive one is reported alone.
    assert sum_state(SummandType.INT4, [5, 1, 1, 1], [1, None, None, None]).sum(GLOBAL) == 4


def test_float4_sums_are_rounded_to_single_precision() -> None:
    state = sum_state(SummandType.FLOAT4, [0.1, 0.1, 0.1, 0.1, 0.1], [None] * 5)
    assert state.sum(GLOBAL) == 0.5
    total = sum_state(SummandType.FLOAT4, [1.1, 1.0, 1.0, 1.0], [None] * 4).sum(GLOBAL)
    assert total == 4.0


def test_avg_divides_with_numeric_scale() -> None:
    kinds, aids = INT4, list(range(1, 7))
    avg = AvgState(
        SumState.from_inputs(
            SummandType.INT4,
            kinds,
            [
                SumInput(
                    AidContributions(aids, [3, 2, 2, 2, 2, 2]), AidContributions(aids, [None] * 6)
                )
            ],
        ),
        CountState.from_inputs(kinds, [AidContributions(aids, [1, 1, 1, 1, 1, 1])]),
    )
    # sum = 13 - (3 - 2) = 12 and count = 6.
    assert avg.finalize(GLOBAL) == Decimal("2.0000000000000000")
    assert str(avg.finalize(GLOBAL)) == "2.0000000000000000"


def test_numeric_division_scale_matches_postgresql() -> None:
    assert str(numeric_div(Decimal(1), Decimal(3))) == "0.33333333333333333333"
    assert str(numeric_div(Decimal(10000), Decimal(3))) == "3333.3333333333333333"
    assert str(numeric_div(Decimal(107), Decimal(17))) == "6.2941176470588235"
    assert str(numeric_div(Decimal(2381), Decimal(64))) == "37.2031250000000000"
    assert str(numeric_div(Decimal(-2), Decimal(3))) == "-0.66666666666666666667"


def test_float8_to_numeric_keeps_15_digits() -> None:
    assert float8_to_numeric(7.885409355163574) == Decimal("7.88540935516357")
    assert str(float8_to_numeric(1e20)) == "100000000000000000000"
    assert float8_to_numeric(4.833333333333333) == Decimal("4.83333333333333")
    assert float8_to_numeric(9.0) == Decimal(9)


def distinct(values: dict[str, list[int]], params: AnonymizationParams) -> int:
    state = CountDistinctState.from_inputs(
        INT4, [DistinctValueInput(key, [aids]) for key, aids in values.items()]
    )
    return state.count(BucketContext(params, 0, True))


def test_count_distinct_counts_high_count_values_exactly_and_deals_the_rest() -> None:
    params = AnonymizationParams(
        noise_layer_sd=0.0,
        low_count_min_threshold=2,
        low_count_mean_gap=0.0,
        low_count_layer_sd=0.0,
        outlier_count_min=1,
        outlier_count_max=1,
        top_count_min=1,
        top_count_max=1,
    )
    values = {"v1": [1, 2, 3], "v5": [3, 4], "v2": [1], "v3": [1], "v4": [2]}
    # v1 and v5 have >= 2 AIDs. v2, v3, v4 are dealt: AID 2 takes v4, AID 1 takes v3 then v2.
    # Contributions {1: 2, 2: 1}: the outlier (2) is flattened to 1, so 2 + (3 - 1) = 4.
    assert distinct(values, params) == 4
    # With a larger top range there are not enough AIDs for the low-count part.
    strict = AnonymizationParams(
        noise_layer_sd=0.0, low_count_min_threshold=2, low_count_layer_sd=0.0,
        low_count_mean_gap=0.0,
    )  # fmt: skip
    assert distinct(values, strict) == 2


def test_count_distinct_accepts_unshipped_high_count_sets() -> None:
    params = AnonymizationParams(low_count_layer_sd=0.0, low_count_mean_gap=0.0)
    state = CountDistinctState.from_inputs(
        INT4, [DistinctValueInput(1, [None]), DistinctValueInput(2, [None])]
    )
    other = CountDistinctState.from_inputs(INT4, [DistinctValueInput(1, [[7]])])
    state.merge(other)
    assert state.calculate(BucketContext(params, 0, True)).high_count_values == 2


def test_low_count_state() -> None:
    params = AnonymizationParams(low_count_min_threshold=3, low_count_layer_sd=0.0)
    two = LowCountState.from_inputs([AidKind.INT4, AidKind.TEXT], [[1, 2, 3], ["a", "b"]])
    assert two.is_low_count(params)  # the text instance has only two AIDs
    two.merge(LowCountState.from_inputs([AidKind.INT4, AidKind.TEXT], [[3], ["c"]]))
    assert not two.is_low_count(params)


def test_count_histogram_bins_and_suppress_bin() -> None:
    params = AnonymizationParams(
        noise_layer_sd=0.0, low_count_min_threshold=2, low_count_layer_sd=0.0
    )
    rows = {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 6, 9: 7, 10: 13}
    entries = [HistogramEntryInput(aid, n, [[aid]]) for aid, n in rows.items()]
    state = CountHistogramState.from_inputs(INT4, 0, 1, entries)
    # Bins 6, 7 and 13 hold one AID each and are pooled into the suppress bin (3 AIDs).
    assert state.finalize(BucketContext(params, 0, True)) == [[None, 3], [1, 4], [2, 3]]
    by_five = CountHistogramState.from_inputs(INT4, 0, 5, entries)
    assert by_five.finalize(BucketContext(params, 0, True)) == [[0, 7], [5, 2]]
    with pytest.raises(ValueError):
        CountHistogramState.from_inputs(INT4, 0, 0, entries)
