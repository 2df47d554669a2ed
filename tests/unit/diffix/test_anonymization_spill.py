"""Rows spilled by AID partition (`RowSpill`) group per AID exactly as rows kept in memory."""

from __future__ import annotations

import errno
import random

import numpy as np
import pytest

from pldiffix.diffix import reading
from pldiffix.diffix.anonymization.bucket_rows import KeptRows
from pldiffix.diffix.anonymization.bulk import NumpyKernel
from pldiffix.diffix.anonymization.spill import (
    MAX_PARTITIONS,
    AidBlocks,
    RowSpill,
    aid_blocks,
    partition_bits,
    partition_of,
)

KERNEL = NumpyKernel()


def _ranges(rng: random.Random, slots: int, summed: bool) -> list[list[tuple]]:
    """Ranges of (slot, AIDs, NULL rows' AIDs, values) as `add` takes them."""
    out = []
    for _ in range(rng.randrange(1, 6)):
        adds = []
        for slot in rng.sample(range(slots), rng.randrange(1, slots + 1)):
            n = rng.choice([0, 1, 5, 300])
            aids = np.array([rng.randrange(0, rng.choice([4, 50, 10**9])) for _ in range(n)], "i4")
            nulls = {2: aids[[i for i in range(n) if rng.random() < 0.2]]}
            values = {2: np.array([rng.choice([0.1, -0.3, 1e16, 7.0]) for _ in range(n)])}
            adds.append((slot, aids, nulls, values if summed else {}))
        out.append(adds)
    return out


def _read(gatherer, ranges: list[list[tuple]]) -> list[dict[int, dict]]:
    """Per part, each slot's rows per AID: (rows, non-NULL rows, positive and negative sums)."""
    for index, adds in enumerate(ranges):
        for slot, aids, nulls, values in adds:
            gatherer.add(slot, aids, nulls, values)
        gatherer.range_read((index + 1) / len(ranges))
    parts = []
    for part in gatherer.parts():
        grouped = {}
        for slot, rows in part.items():
            per_aid = rows.per_aid()
            columns = [per_aid.rows, per_aid.non_null[2]]
            columns += [per_aid.positive[2], per_aid.negative[2]] if per_aid.positive else []
            grouped[slot] = {
                int(aid): tuple(c[i].item() for c in columns) for i, aid in enumerate(per_aid.aids)
            }
        parts.append(grouped)
    return parts


@pytest.mark.parametrize("summed", [False, True])
def test_spilled_rows_group_per_aid_as_rows_kept_in_memory(summed) -> None:
    rng = random.Random(7 + summed)
    for _ in range(40):
        ranges = _ranges(rng, rng.randrange(1, 6), summed)
        (kept,) = _read(KeptRows(KERNEL, summed), ranges)
        spill = RowSpill(KERNEL, summed, budget=rng.choice([0, 100, 2000]), expected_bytes=0)
        parts = _read(spill, ranges)
        if spill.spilled_partitions == 0:  # the budget held: one part, in memory
            assert parts == [kept]
            continue
        assert len(parts) == spill.spilled_partitions >= 2
        assert set().union(*parts) == set(kept)  # every bucket, at least once
        for slot, expected in kept.items():
            pieces = [part[slot] for part in parts if slot in part]
            merged = {aid: row for piece in pieces for aid, row in piece.items()}
            assert sum(len(piece) for piece in pieces) == len(merged)  # an AID in one part
            assert merged == expected  # floats too: an AID's rows keep their order


def test_a_bucket_without_rows_comes_once_and_empty() -> None:
    spill = RowSpill(KERNEL, True, budget=1000, expected_bytes=0)  # 1200 bytes come
    empty = np.empty(0, "i4")
    spill.add(0, np.arange(100, dtype="i4"), {1: empty}, {1: np.ones(100)})
    spill.add(1, empty, {1: empty}, {1: np.empty(0)})
    spill.range_read(1.0)
    parts = list(spill.parts())
    assert spill.spilled_partitions == 2
    assert [len(part[1].per_aid().aids) for part in parts if 1 in part] == [0]
    assert sum(len(part[0].per_aid().aids) for part in parts if 0 in part) == 100


def test_the_partitions_follow_the_rows_expected_or_projected() -> None:
    aids = np.arange(1000, dtype="i4")  # 4000 bytes
    spill = RowSpill(KERNEL, False, budget=1000, expected_bytes=0)
    spill.add(0, aids, {}, {})
    spill.range_read(0.5)  # 8000 bytes projected
    assert spill.spilled_partitions == 8
    spill = RowSpill(KERNEL, False, budget=1000, expected_bytes=30_000)
    spill.add(0, aids, {}, {})
    spill.range_read(0.5)
    assert spill.spilled_partitions == 32
    assert sum(len(part[0].per_aid().aids) for part in spill.parts()) == 1000


def test_partition_bits_round_up_to_a_power_of_two_within_bounds() -> None:
    assert [partition_bits(size, 100) for size in (0, 100, 201, 400, 401)] == [1, 1, 2, 2, 3]
    assert 1 << partition_bits(1e12, 1) == MAX_PARTITIONS


@pytest.mark.parametrize("stride", [1, 256, 4096])
def test_partitions_spread_aids_with_a_common_stride_evenly(stride) -> None:
    aids = np.arange(0, 1 << 16, dtype=np.int64) * stride
    aids = aids[aids < 1 << 31].astype("i4")
    counts = np.bincount(partition_of(aids, 4), minlength=16)
    assert counts.min() >= 0.9 * len(aids) / 16
    again = partition_of(aids[::-1], 4)[::-1]  # a function of the AID alone
    assert (again == partition_of(aids, 4)).all()


@pytest.mark.parametrize("blocks", [AidBlocks(4, 0), AidBlocks(3, 10), AidBlocks(1, 30)])
def test_aid_blocks_narrow_a_partitions_aids_in_order_and_back(blocks) -> None:
    rng = np.random.default_rng(3)
    aids = np.concatenate(
        [rng.integers(-(2**31), 2**31, 5000), np.arange(-3000, 3000), [-(2**31), 2**31 - 1]]
    ).astype("i4")
    aids = np.unique(aids)  # ascending
    parts = blocks.partition(aids)
    for part in range(1 << blocks.bits):
        mine = aids[parts == part]
        keys = blocks.key(mine)
        assert keys.dtype == mine.dtype and (np.diff(keys) > 0).all()  # distinct, in order
        assert (blocks.aid(keys.astype(np.int64), part) == mine).all()
    consecutive = blocks.key(aids[(aids >= 0) & (aids < 1 << 16)])
    assert np.ptp(consecutive) < 2 * (1 << 16) >> blocks.bits  # a partition's AIDs, narrowed


def test_blocks_are_chosen_for_aids_that_fill_their_range_and_spread() -> None:
    serial = [np.arange(1, 100_001, dtype="i4"), np.arange(500, 900, dtype="i4")]
    blocks = aid_blocks(serial, 3)
    assert blocks == AidBlocks(3, 7)  # 100,000 AIDs / (64 blocks * 8 partitions): 128 wide
    repeated = [np.repeat(np.arange(1000, 1100, dtype="i4"), 50)]  # few AIDs, many rows each
    assert aid_blocks(repeated, 2) == AidBlocks(2, 0)
    assert aid_blocks([np.arange(0, 10**6, 97, dtype="i4")], 3) is None  # sparse: hashed
    assert aid_blocks([np.arange(0, 100_000, 2, dtype="i4")], 3) is not None  # half: dense
    assert aid_blocks([np.arange(0, 10_000, 2, dtype="i4")], 3) == AidBlocks(3, 4)
    # multiples of 8 over a range that makes blocks of 2: all in 2 partitions of 8, so hashed
    assert aid_blocks([np.arange(0, 1600, 8, dtype="i4")], 3) is None
    assert aid_blocks([np.empty(0, "i4")], 3) is None and aid_blocks(serial, 0) is None


def test_a_spill_of_serial_aids_uses_blocks_and_groups_as_kept_rows() -> None:
    rng = np.random.default_rng(5)
    ranges = [rng.integers(1, 20_001, 30_000).astype("i4") for _ in range(4)]
    spill = RowSpill(KERNEL, False, budget=100_000, expected_bytes=0)
    kept = KeptRows(KERNEL, False)
    for index, aids in enumerate(ranges):
        for gatherer in (spill, kept):
            gatherer.add(0, aids, {1: aids[aids % 7 == 0]}, {})
            gatherer.range_read((index + 1) / len(ranges))
    assert spill.spilled_partitions == 8 and spill.partitioning == "blocks of 32 AIDs"
    (whole,) = [part[0].per_aid() for part in kept.parts()]
    pieces = [part[0].per_aid() for part in spill.parts()]
    aids = np.concatenate([p.aids for p in pieces])
    order = np.argsort(aids)
    assert (aids[order] == whole.aids).all()
    assert (np.concatenate([p.rows for p in pieces])[order] == whole.rows).all()
    non_null = np.concatenate([p.non_null[1] for p in pieces])[order]
    assert (non_null == whole.non_null[1]).all()


@pytest.mark.parametrize(
    ("code", "sqlstate"), [(errno.ENOSPC, "53100"), (errno.EDQUOT, "53100"), (errno.EIO, "58030")]
)
def test_a_failed_spill_is_reported_with_its_cause_and_a_way_out(code, sqlstate) -> None:
    failure = reading.spill_failure(OSError(code, "the disk says no"))
    assert failure.sqlstate == sqlstate
    assert failure.message == "the query's rows could not be spilled to disk: the disk says no"
    assert failure.hint is not None and "max_pass_mb" in failure.hint and "TMPDIR" in failure.hint
