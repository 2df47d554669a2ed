"""Bulk per-AID arrays: both kernels decode, hash and summarize exactly like the per-AID code."""

from __future__ import annotations

import functools
import math
import operator
import random
import struct

import pytest
from packed_arrays import packed

from pldiffix.diffix.anonymization import (
    AidKind,
    AnonymizationParams,
    BucketContext,
    CountState,
    bulk,
)
from pldiffix.diffix.anonymization.bulk import NumpyKernel, PythonKernel
from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
from pldiffix.diffix.anonymization.count_distinct import DistinctAidsState
from pldiffix.diffix.anonymization.hashing import hash_aid
from pldiffix.diffix.anonymization.low_count import LowCountState, LowCountSummary

KERNELS = [PythonKernel(), NumpyKernel()]
PARAMS = AnonymizationParams(salt="bulk")
STRUCT_CODES = {"int4": "i", "int8": "q", "float8": "d"}


@pytest.fixture(params=KERNELS, ids=lambda k: k.name)
def kernel(request):
    return request.param


@pytest.mark.parametrize(
    ("fmt", "values"),
    [
        ("int4", [0, 1, -1, 2**31 - 1, -(2**31), 65536, 12345678]),
        ("int8", [0, -1, 2**63 - 1, -(2**63), 2**32, 5]),
        ("float8", [0.0, -0.0, 1.5, -2.25, 1e300, float("inf")]),
    ],
)
def test_decode_reads_the_arrays_the_server_packs(kernel, fmt, values) -> None:
    assert kernel.tolist(kernel.decode(packed(values, fmt), fmt)) == values
    assert kernel.tolist(kernel.decode(None, fmt)) == []
    # what a shard sends: the send functions' results, network byte order, no header
    sent = struct.pack(f">{len(values)}{STRUCT_CODES[fmt]}", *values)
    decoded = kernel.decode(sent, fmt, sent=True)
    assert kernel.tolist(decoded) == values
    assert [math.copysign(1, v) for v in kernel.tolist(decoded)] == [
        math.copysign(1, v) for v in values
    ]
    assert kernel.tolist(kernel.decode(None, fmt, sent=True)) == []
    with pytest.raises(RuntimeError, match="not a sequence of"):
        kernel.decode(sent[:-1], fmt, sent=True)


def _header(ndim: int = 1, dataoffset: int = 0, oid: int = 23, length: int = 2) -> bytes:
    return struct.pack("=iiIii", ndim, dataoffset, oid, length, 1)


@pytest.mark.parametrize(
    "data",
    [
        _header(dataoffset=28) + b"\x03\x00\x00\x00" + struct.pack("=2i", 1, 2),  # NULL bitmap
        _header(oid=20) + struct.pack("=2i", 1, 2),  # int8 elements read as int4
        _header(ndim=2) + struct.pack("=2i", 1, 2),  # more dimensions
        _header() + struct.pack("=i", 1),  # fewer elements than the header says
        _header() + struct.pack("=3i", 1, 2, 3),  # more
        struct.pack("=2i", 1, 2),  # no header: the send format of old versions
    ],
    ids=["nulls", "element-type", "two-dimensions", "short", "long", "headerless"],
)
def test_decode_refuses_what_the_bucket_query_never_packs(kernel, data) -> None:
    with pytest.raises(RuntimeError, match="not a one-dimensional int4 array without NULLs"):
        kernel.decode(data, "int4")


@pytest.mark.parametrize("kind", [AidKind.INT4, AidKind.INT8])
def test_hashes_equal_the_per_value_hash(kernel, kind) -> None:
    rng = random.Random(7)
    bits = 32 if kind is AidKind.INT4 else 64
    values = [0, 1, -1, 255, 256, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1]
    values += [rng.randrange(-(2 ** (bits - 1)), 2 ** (bits - 1)) for _ in range(2000)]
    fmt = kind.value
    hashes = kernel.hash_ints(kernel.decode(packed(values, fmt), fmt), kind)
    assert kernel.tolist(hashes) == [hash_aid(v, kind) for v in values]


def with_absent(values: list, present: list[bool] | None) -> list:
    """Values as the bucket query packs a nullable column: -1 for "not a contributor"."""
    if present is None:
        return values
    return [v if keep else type(v)(-1) for v, keep in zip(values, present, strict=True)]


def test_negative_packed_values_mark_non_contributors(kernel) -> None:
    decoded = kernel.decode(packed([-1.0, -0.0, float("nan"), 2.5], "float8"), "float8")
    assert kernel.tolist(kernel.non_negative(decoded)) == [False, True, True, True]
    assert kernel.non_negative(kernel.decode(packed([0, 3], "int8"), "int8")) is None


def _random_case(rng: random.Random, floats: bool):
    n = rng.randrange(0, 60)
    hashes = list(dict.fromkeys(hash_aid(rng.randrange(10**6), AidKind.INT4) for _ in range(n)))
    choices = [0.0, -0.0, 0.5, 1.5, 2.25, 7.0] if floats else [0, 1, 2, 3, 5, 40]
    values = [rng.choice(choices) for _ in hashes]
    present = [rng.random() < 0.8 for _ in hashes] if rng.random() < 0.5 else None
    return hashes, values, present


@pytest.mark.parametrize("floats", [False, True])
def test_summaries_flatten_and_noise_like_the_per_aid_tracker(kernel, floats) -> None:
    rng = random.Random(11 if floats else 12)
    fmt = "float8" if floats else "int8"
    for _ in range(400):
        hashes, values, present = _random_case(rng, floats)
        unaccounted = rng.choice([0, 3])
        decoded = kernel.decode(packed(with_absent(values, present), fmt), fmt)
        summary = kernel.summarize(
            kernel.from_hashes(hashes), decoded, kernel.non_negative(decoded), PARAMS.top_capacity
        )
        kept = [
            (h, v) for i, (h, v) in enumerate(zip(hashes, values, strict=True))
            if present is None or present[i]
        ]  # fmt: skip
        full = ContributionTracker(dict(kept), unaccounted, sum(v for _, v in kept))
        compact = SummarizedTracker(summary, unaccounted)
        assert summary.contributors == len(kept)
        assert compact.aid_seed == full.aid_seed
        for seed in (0, 99):
            assert compact.result(PARAMS, seed) == full.result(PARAMS, seed)


def test_both_kernels_give_the_same_summary() -> None:
    rng = random.Random(5)
    python, vector = KERNELS
    for _ in range(300):
        floats = rng.random() < 0.5
        fmt = "float8" if floats else "int8"
        hashes, values, present = _random_case(rng, floats)
        data = packed(with_absent(values, present), fmt)
        capacity = rng.randrange(1, 9)
        results = []
        for kernel in (python, vector):
            decoded = kernel.decode(data, fmt)
            results.append(
                kernel.summarize(
                    kernel.from_hashes(hashes), decoded, kernel.non_negative(decoded), capacity
                )
            )
        assert results[0] == results[1]


def test_an_exact_total_replaces_the_sum_of_contributions(kernel) -> None:
    summary = kernel.summarize(
        kernel.from_hashes([3, 5]), kernel.decode(packed([0.1, 0.2], "float8"), "float8"), None, 6,
        total=0.30000000000000004,
    )  # fmt: skip
    assert summary.total == 0.30000000000000004


def test_colliding_hashes_and_nan_are_left_to_the_per_aid_path(kernel) -> None:
    ints = kernel.decode(packed([1, 2], "int8"), "int8")
    assert kernel.summarize(kernel.from_hashes([9, 9]), ints, None, 6) is None
    assert kernel.aid_set(kernel.from_hashes([9, 9])) is None
    nan = kernel.decode(packed([1.0, float("nan")], "float8"), "float8")
    assert kernel.summarize(kernel.from_hashes([1, 2]), nan, None, 6) is None


def test_distinct_hashes_are_counted_with_or_without_the_check(kernel) -> None:
    rng = random.Random(3)
    for size in (0, 1, 5000):
        aids = rng.sample(range(-(2**31), 2**31), size)
        hashes = kernel.hash_ints(kernel.decode(packed(aids, "int4"), "int4"), AidKind.INT4)
        checked = kernel.aid_set(hashes)
        assert checked == kernel.aid_set(hashes, distinct=True)
        assert checked == (size, functools.reduce(operator.xor, kernel.tolist(hashes), 0))


def test_unit_contributions_when_no_values(kernel) -> None:
    hashes = [hash_aid(v, AidKind.INT4) for v in range(30)]
    summary = kernel.summarize(kernel.from_hashes(hashes), None, None, 6)
    assert summary.contributors == 30 and summary.total == 30
    assert summary.top == [(1, h) for h in sorted(hashes, reverse=True)[:6]]
    ctx = BucketContext(PARAMS, 17)
    assert DistinctAidsState(summary=summary).finalize(ctx) == DistinctAidsState(
        set(hashes)
    ).finalize(ctx)


def test_summarized_states_refuse_merges_and_agree_on_low_count(kernel) -> None:
    hashes = [hash_aid(v, AidKind.INT4) for v in range(1, 8)]
    counted = kernel.aid_set(kernel.from_hashes(hashes))
    assert LowCountSummary([counted]).is_low_count(PARAMS) == LowCountState(
        [set(hashes)]
    ).is_low_count(PARAMS)
    summary = kernel.summarize(kernel.from_hashes(hashes), None, None, 6)
    state = CountState([SummarizedTracker(summary)])
    with pytest.raises(ValueError, match="cannot be merged"):
        state.merge(CountState([ContributionTracker()]))
    with pytest.raises(ValueError, match="cannot be merged"):
        LowCountSummary([counted]).merge(LowCountState([set()]))
    with pytest.raises(ValueError, match="never seeds the suppress bin"):
        LowCountSummary([counted]).empty()
    with pytest.raises(ValueError, match="cannot be merged"):
        DistinctAidsState(summary=summary).merge(DistinctAidsState())


def test_certainly_high_count_buckets_are_never_low_count() -> None:
    rng = random.Random(3)
    for params in (PARAMS, AnonymizationParams(salt="x", low_count_layer_sd=3.0)):
        bound = params.certainly_high_count()
        for _ in range(2000):
            assert not LowCountSummary([(bound, rng.getrandbits(64))]).is_low_count(params)


def _rows_reference(aids, not_null, values):
    """Per AID, as PostgreSQL's GROUP BY bucket, aid would compute it (row order kept)."""
    per: dict[int, list[int]] = {}
    for position, aid in enumerate(aids):
        per.setdefault(aid, []).append(position)
    out = {}
    for aid, rows in per.items():
        legs = {}
        for column, mask in not_null.items():
            kept = [p for p in rows if mask[p]]
            entry = [len(kept)]
            if column in values:
                v = values[column]
                positive = [v[p] for p in kept if not v[p] < 0]
                negative = [-v[p] for p in kept if v[p] <= 0]
                for leg in (positive, negative):
                    total = 0
                    for x in leg:
                        total = total + x
                    entry.append(total if leg else -1)
            legs[column] = entry
        out[aid] = (len(rows), legs)
    return out


@pytest.mark.parametrize("floats", [False, True])
def test_grouping_rows_per_aid_gives_what_sql_grouping_gives(kernel, floats) -> None:
    rng = random.Random(21 if floats else 22)
    fmt = "float8" if floats else "int8"
    for _ in range(150):
        n = rng.randrange(0, 300)
        aids = [rng.randrange(-5, 40) for _ in range(n)]
        if rng.random() < 0.2:
            aids += [7] * rng.randrange(60, 200)  # a group longer than the stepwise fold
            n = len(aids)
        choices = [0.1, 0.2, 0.7, -0.3, 1e16, -0.0, 0.0, 3.0] if floats else [0, 5, -3, 12]
        raw = [rng.choice(choices) for _ in range(n)]
        nulls = [rng.random() < 0.2 for _ in range(n)]
        decoded_aids = kernel.decode(packed(aids, "int4"), "int4")
        null_aids = [aid for aid, z in zip(aids, nulls, strict=True) if z]
        rng.shuffle(null_aids)  # their order carries nothing
        null_aids = kernel.decode(packed(null_aids, "int4"), "int4")
        zeroed = [0 if z else v for v, z in zip(raw, nulls, strict=True)]
        vals = kernel.decode(packed(zeroed, fmt), fmt)
        grouped = kernel.group_rows(decoded_aids, {3: null_aids, 4: null_aids}, {3: vals})
        got = {}
        aid_list = kernel.tolist(grouped.aids)
        for i, aid in enumerate(aid_list):
            legs = {
                3: [kernel.tolist(grouped.non_null[3])[i], kernel.tolist(grouped.positive[3])[i],
                    kernel.tolist(grouped.negative[3])[i]],
                4: [kernel.tolist(grouped.non_null[4])[i]],
            }  # fmt: skip
            got[aid] = (kernel.tolist(grouped.rows)[i], legs)
        reference = _rows_reference(
            aids, {3: [not z for z in nulls], 4: [not z for z in nulls]},
            {3: zeroed},
        )  # fmt: skip
        assert got == reference  # floats compared exactly: same additions in the same order
        counted = kernel.group_rows(decoded_aids, {4: null_aids}, {})  # nothing summed
        non_null = zip(kernel.tolist(counted.aids), kernel.tolist(counted.non_null[4]), strict=True)
        assert dict(non_null) == {aid: legs[4][0] for aid, (_, legs) in reference.items()}


@pytest.mark.parametrize(
    "values",
    [[5, 3, 5, 5, 9], [10**9, -(10**9), 10**9, 7], [-(2**31), 2**31 - 1, -(2**31)]],
    ids=["dense", "sparse", "extremes"],
)
@pytest.mark.parametrize("count_slice", [1 << 20, 2])  # how many AIDs numpy counts at a time
def test_grouping_without_value_columns_counts_rows(
    kernel, values, count_slice, monkeypatch
) -> None:
    monkeypatch.setattr(bulk, "_COUNT_SLICE", count_slice)
    aids = kernel.decode(packed(values, "int4"), "int4")
    grouped = kernel.group_rows(aids, {}, {})
    rows = zip(kernel.tolist(grouped.aids), kernel.tolist(grouped.rows), strict=True)
    assert dict(rows) == {v: values.count(v) for v in values}
    hashes = kernel.tolist(kernel.hash_ints(grouped.aids, AidKind.INT4))
    assert sorted(hashes) == sorted(hash_aid(v, AidKind.INT4) for v in set(values))


def test_grouping_empty_buckets(kernel) -> None:
    nothing = kernel.decode(None, "int4")
    empty = kernel.group_rows(nothing, {0: nothing, 1: nothing}, {1: kernel.decode(None, "int8")})
    assert kernel.tolist(empty.aids) == [] and kernel.tolist(empty.non_null[0]) == []
    assert kernel.tolist(empty.positive[1]) == kernel.tolist(empty.negative[1]) == []


def _counts(kernel, counted) -> dict[int, int]:
    return dict(zip(kernel.tolist(counted[0]), kernel.tolist(counted[1]), strict=True))


@pytest.mark.parametrize("window", [1 << 20, 7], ids=["one-window", "windows"])
@pytest.mark.parametrize("spread", [50, 10**9], ids=["dense", "sparse"])
def test_rows_counted_into_earlier_counts_give_the_counts_of_all_rows(
    kernel, spread, window, monkeypatch
) -> None:
    monkeypatch.setattr(bulk, "_COUNT_WINDOW", window)  # dense AIDs: bincount a window at a time
    rng = random.Random(spread)
    for _ in range(40):
        parts = [
            [rng.randrange(-spread, spread) for _ in range(rng.randrange(0, 200))]
            for _ in range(rng.randrange(1, 5))
        ]
        if spread > 50 and rng.random() < 0.5:
            parts.append(list(parts[0]))  # the same AIDs again
        merged = kernel.count_rows(kernel.decode(packed(parts[0], "int4"), "int4"))
        for part in parts[1:]:
            merged = kernel.count_rows(kernel.decode(packed(part, "int4"), "int4"), into=merged)
        every = [aid for part in parts for aid in part]
        assert _counts(kernel, merged) == {aid: every.count(aid) for aid in set(every)}
        if kernel.name == "numpy":  # ascending: group_counts looks AIDs up by bisection
            assert kernel.tolist(merged[0]) == sorted(set(every))


def test_grouping_counted_rows_gives_what_grouping_the_rows_gives(kernel) -> None:
    rng = random.Random(5)
    for _ in range(60):
        aids = [rng.randrange(0, 30) for _ in range(rng.randrange(0, 150))]
        null_aids = [aid for aid in aids if rng.random() < 0.3]
        decoded = kernel.decode(packed(aids, "int4"), "int4")
        decoded_nulls = kernel.decode(packed(null_aids, "int4"), "int4")
        rows = kernel.group_rows(decoded, {2: decoded_nulls}, {})
        counted = kernel.group_counts(
            kernel.count_rows(decoded), {2: kernel.count_rows(decoded_nulls)}
        )
        for grouped in (rows, counted):
            non_null = dict(
                zip(kernel.tolist(grouped.aids), kernel.tolist(grouped.non_null[2]), strict=True)
            )
            assert non_null == {a: aids.count(a) - null_aids.count(a) for a in set(aids)}
            assert sorted(kernel.tolist(grouped.rows)) == sorted(aids.count(a) for a in set(aids))
