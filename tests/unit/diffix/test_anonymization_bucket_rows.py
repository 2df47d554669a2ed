"""A bucket's rows gathered over row ranges group per AID exactly as when they arrive at once."""

from __future__ import annotations

import itertools
import random

import pytest
from packed_arrays import packed

from pldiffix.diffix.anonymization import bucket_rows
from pldiffix.diffix.anonymization.bucket_rows import BucketRows
from pldiffix.diffix.anonymization.bulk import NumpyKernel, PerAid, PythonKernel


@pytest.fixture(params=[PythonKernel(), NumpyKernel()], ids=lambda k: k.name)
def kernel(request):
    return request.param


def _decode(kernel, values: list, fmt: str):
    return kernel.decode(packed(values, fmt), fmt)


def _per_aid(kernel, grouped: PerAid) -> dict:
    """AID -> its rows, and per column its non-NULL rows and sums (compared exactly)."""
    aids = kernel.tolist(grouped.aids)
    columns = {
        name: {j: kernel.tolist(a) for j, a in getattr(grouped, name).items()}
        for name in ("non_null", "positive", "negative")
    }
    return {
        aid: (
            kernel.tolist(grouped.rows)[i],
            {name: {j: a[i] for j, a in arrays.items()} for name, arrays in columns.items()},
        )
        for i, aid in enumerate(aids)
    }


def _ranges(rng: random.Random, rows: list) -> list[list]:
    cuts = sorted(rng.sample(range(len(rows) + 1), rng.randrange(0, min(len(rows) + 1, 6))))
    bounds = [0, *cuts, len(rows)]
    return [rows[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("summed", [False, True])
@pytest.mark.parametrize(
    "compact_rows", [1 << 20, 1, 7]
)  # count never, at every range, now and then
def test_rows_gathered_over_ranges_group_as_rows_read_at_once(
    kernel, summed, compact_rows, monkeypatch
) -> None:
    monkeypatch.setattr(bucket_rows, "COMPACT_ROWS", compact_rows)
    rng = random.Random(hash((summed, compact_rows)) & 0xFFFF)
    for _ in range(60):
        repeat = rng.choice([3, 40, 10**6])  # AIDs that repeat often, sometimes, hardly
        rows = [
            (rng.randrange(0, repeat), rng.choice([0.1, 0.7, -0.3, 1e16, -0.0, 3.0]),
             rng.random() < 0.2)
            for _ in range(rng.randrange(1, 300))
        ]  # fmt: skip
        gathered = BucketRows(kernel, summed)
        for part in _ranges(rng, rows):
            aids = _decode(kernel, [aid for aid, _, _ in part], "int4")
            nulls = {1: _decode(kernel, [aid for aid, _, null in part if null], "int4")}
            values = {1: _decode(kernel, [0 if n else v for _, v, n in part], "float8")}
            gathered.add(aids, nulls, values if summed else {})
        at_once = kernel.group_rows(
            _decode(kernel, [aid for aid, _, _ in rows], "int4"),
            {1: _decode(kernel, [aid for aid, _, null in rows if null], "int4")},
            {1: _decode(kernel, [0 if n else v for _, v, n in rows], "float8")} if summed else {},
        )
        grouped = gathered.per_aid()
        assert gathered.rows == len(rows)
        assert _per_aid(kernel, grouped) == _per_aid(kernel, at_once)


def test_counting_stops_when_aids_do_not_repeat(kernel, monkeypatch) -> None:
    monkeypatch.setattr(bucket_rows, "COMPACT_ROWS", 10)
    repeating, distinct = BucketRows(kernel, summed=False), BucketRows(kernel, summed=False)
    for start in range(0, 100, 10):
        repeating.add(_decode(kernel, [1, 2] * 5, "int4"), {}, {})
        distinct.add(_decode(kernel, list(range(start, start + 10)), "int4"), {}, {})
    assert repeating._counting and not repeating._aids  # counted as the rows came
    assert not distinct._counting and len(distinct._aids) == 10  # the one count was dropped
    assert distinct._counted is None
    for gathered, expected in (
        (repeating, {1: 50, 2: 50}),
        (distinct, dict.fromkeys(range(100), 1)),
    ):
        grouped = gathered.per_aid()
        rows = zip(kernel.tolist(grouped.aids), kernel.tolist(grouped.rows), strict=True)
        assert dict(rows) == expected


def test_aids_counted_only_by_sorting_are_counted_once_at_the_end(kernel, monkeypatch) -> None:
    monkeypatch.setattr(bucket_rows, "COMPACT_ROWS", 10)
    gathered = BucketRows(kernel, summed=False)
    for _ in range(5):
        gathered.add(_decode(kernel, [0, 10**9] * 5, "int4"), {}, {})
    # numpy would sort AIDs this far apart, Python's Counter does not
    assert gathered._counting is (kernel.name == "python")
    grouped = gathered.per_aid()
    rows = zip(kernel.tolist(grouped.aids), kernel.tolist(grouped.rows), strict=True)
    assert dict(rows) == {0: 25, 10**9: 25}
