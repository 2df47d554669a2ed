"""Rows of a query read in row ranges, spilled to temporary files by AID partition
(docs/engine.md, "Spilling").

A query read in row ranges (``bucket_rows``) would keep every row of every bucket until the last
range: memory that grows with the table. ``RowSpill`` keeps them while they fit its budget, as
``BucketRows`` would. Beyond it, it splits each bucket's rows by a partition of their AIDs and
appends them to one temporary file per partition, and after the last range hands them back a
partition at a time. An AID's rows all fall into one partition, in scan order, so each partition
groups per AID exactly as a single read would; the engine then combines a bucket's parts as it
does the parts of passes (``partitions.combine``), without scanning the table again.

Two partitionings, chosen when the spill starts from the rows kept so far:

- ``AidBlocks``, when those AIDs fill their range (serial ids) and blocks spread them about as
  evenly as hashing does: blocks of consecutive AIDs dealt to the partitions in turn. A
  partition's AIDs then map to a range a partition-count times narrower (``AidBlocks.key``), so
  counting its rows needs a small ``bincount`` instead of one that spans every AID of the table
  (numpy counts dense AIDs in windows of a million values, one pass over the rows per window).
- Fibonacci hashing of the AID (``partition_of``) otherwise.

Only for the numpy kernel (the rows form, and so row ranges, need it) and for queries the engine
may split into passes: one int4 AID, whose FNV-1a hashes no two AIDs of different partitions
share.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

import numpy as np

from pldiffix.diffix.anonymization.bucket_rows import BucketRows
from pldiffix.diffix.anonymization.bulk import dense

MAX_PARTITIONS = 256  # partition numbers stay uint8, which numpy sorts stably by radix
SLICE_ROWS = 1 << 20  # rows split at a time: the split's working arrays stay a few MiB
# Fibonacci hashing (2^32 / golden ratio): serial AIDs, or AIDs that share a stride, spread
# evenly over a power-of-two number of partitions, which their low bits would not.
_SPREAD = np.uint32(0x9E3779B1)

Rows = tuple[Any, dict[int, Any], dict[int, Any]]  # AIDs, NULL rows' AIDs, values (by column)


def partition_of(aids: Any, bits: int) -> Any:
    """Each AID's partition among ``2**bits`` (uint8), a function of the AID alone."""
    if bits == 0:
        return np.zeros(len(aids), dtype=np.uint8)
    mixed = aids.astype(np.uint32)
    mixed *= _SPREAD  # wraps modulo 2^32
    mixed >>= np.uint32(32 - bits)
    return mixed.astype(np.uint8)


# Blocks per partition among the AIDs kept when the spill starts, at least: enough for the blocks to
# spread evenly, small enough for a partition's AIDs to stay in a narrow range.
BLOCKS_PER_PARTITION = 64
# How much larger than hashing's largest partition block partitioning's may be, among the rows
# kept when the spill starts; beyond it, hashing is used. Comparing with hashing on the same rows
# discounts the spread that chance alone gives a small sample.
MAX_IMBALANCE = 1.5


@dataclass(frozen=True)
class HashedAids:
    """AIDs partitioned by their Fibonacci hash (``partition_of``) into ``2**bits`` partitions."""

    bits: int

    def partition(self, aids: Any) -> Any:
        return partition_of(aids, self.bits)

    @property
    def description(self) -> str:
        return "hashed AIDs"


@dataclass(frozen=True)
class AidBlocks:
    """AIDs partitioned by blocks of ``2**shift`` consecutive values, dealt in turn to ``2**bits``
    partitions: bits ``shift`` to ``shift + bits`` of an AID name its partition. Within one
    partition, dropping those bits (``key``) maps AIDs to a range ``2**bits`` times narrower,
    keeping their order; ``aid`` maps back."""

    bits: int
    shift: int

    def partition(self, aids: Any) -> Any:
        return ((aids >> self.shift) & ((1 << self.bits) - 1)).astype(np.uint8)

    @property
    def description(self) -> str:
        return f"blocks of {1 << self.shift} AIDs"

    def key(self, aids: Any) -> Any:
        """The partition's AIDs, narrowed (no larger in magnitude: the AIDs' dtype holds them)."""
        keys = aids >> (self.shift + self.bits)
        keys <<= self.shift
        keys |= aids & ((1 << self.shift) - 1)
        return keys

    def aid(self, keys: Any, partition: int) -> Any:
        low = keys & ((1 << self.shift) - 1)
        high = (keys >> self.shift) << (self.shift + self.bits)
        return high | (partition << self.shift) | low


def aid_blocks(kept_aids: list[Any], bits: int) -> AidBlocks | None:
    """Block partitioning for ``2**bits`` partitions if the AIDs kept when the spill starts fill
    their range (``bulk.dense``) and their blocks spread them about as evenly as hashing does;
    None: hash them instead. Blocks are as wide as leaves ``BLOCKS_PER_PARTITION`` of them per
    partition in that range (a power of two). Rows read later may lie elsewhere; their blocks are
    dealt in turn all the same."""
    rows = sum(len(a) for a in kept_aids)
    if bits == 0 or rows == 0:
        return None
    low = min(int(a.min()) for a in kept_aids if len(a))
    high = max(int(a.max()) for a in kept_aids if len(a))
    if not dense(low, high, rows):
        return None
    blocks_wide = (high - low + 1) // (BLOCKS_PER_PARTITION << bits)
    blocks = AidBlocks(bits, max(0, blocks_wide.bit_length() - 1))
    by_blocks = sum(np.bincount(blocks.partition(a), minlength=1 << bits) for a in kept_aids)
    hashed = sum(np.bincount(partition_of(a, bits), minlength=1 << bits) for a in kept_aids)
    return blocks if by_blocks.max() <= MAX_IMBALANCE * hashed.max() else None


def partition_bits(expected_bytes: float, budget: int) -> int:
    """Bits of the power-of-two number of partitions that keeps each one's share of
    ``expected_bytes`` within ``budget`` (at least two partitions, at most ``MAX_PARTITIONS``)."""
    wanted = max(2, math.ceil(expected_bytes / max(budget, 1)))
    return min((wanted - 1).bit_length(), MAX_PARTITIONS.bit_length() - 1)


@dataclass(frozen=True, slots=True)
class _Record:
    """One flush's rows of every bucket in one partition's file: AIDs and their values
    (``null_column`` None), or the AIDs of one column's NULL rows. On disk: each bucket's slot
    (uint32) and row count (int64), one segment per bucket, then the columns."""

    null_column: int | None
    segments: int
    rows: int


# Per partition and record kind (``_Record.null_column``): slots, row counts, column pieces.
_Pending = list[dict[int | None, tuple[list[int], list[int], list[list[Any]]]]]


@dataclass
class RowSpill:
    """Rows of many buckets (``slot``: the caller's bucket number), kept in memory up to
    ``budget`` bytes and spilled by AID partition beyond it (see the module docstring).
    ``kernel`` (numpy) and ``summed`` are ``BucketRows``'; ``expected_bytes`` is the caller's
    estimate of all rows, which sets the number of partitions unless the rows read so far
    project more. What it keeps besides the rows grows with flushes times partitions (one small
    record each), not with buckets."""

    kernel: Any
    summed: bool
    budget: int
    expected_bytes: float
    kept_bytes: int = 0
    _kept: dict[int, list[Rows]] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)  # slots added
    _spilled: set[int] = field(default_factory=set)  # slots with rows in some partition
    _partitioning: AidBlocks | HashedAids | None = None  # chosen by the first flush
    _open: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _files: list[IO[bytes]] = field(default_factory=list)
    _records: list[list[_Record]] = field(default_factory=list)
    _types: tuple[Any, dict[int, Any], dict[int, Any]] | None = None

    @property
    def spilled_partitions(self) -> int:
        """How many partitions the rows were spilled into (0: none yet)."""
        return 0 if self._partitioning is None else 1 << self._partitioning.bits

    @property
    def partitioning(self) -> str:
        """How AIDs were partitioned, for the engine's debug log."""
        return "none" if self._partitioning is None else self._partitioning.description

    def add(self, slot: int, aids: Any, nulls: dict[int, Any], values: dict[int, Any]) -> None:
        """One range's rows of a bucket, decoded; every call of a query gives the same columns."""
        if self._types is None:
            self._types = (
                aids.dtype,
                {j: a.dtype for j, a in nulls.items()},
                {j: v.dtype for j, v in values.items()},
            )
        self._seen.add(slot)
        self._kept.setdefault(slot, []).append((aids, nulls, values))
        self.kept_bytes += aids.nbytes
        self.kept_bytes += sum(a.nbytes for a in nulls.values())
        self.kept_bytes += sum(v.nbytes for v in values.values())

    def range_read(self, fraction: float) -> None:
        """Called after each range with the share of the relation read so far; spills what is
        kept once it exceeds the budget."""
        if self.kept_bytes <= self.budget:
            return
        if self._partitioning is None:
            projected = self.kept_bytes / fraction if fraction > 0 else self.expected_bytes
            bits = partition_bits(max(self.expected_bytes, projected), self.budget)
            kept_aids = [aids for pieces in self._kept.values() for aids, _, _ in pieces]
            self._partitioning = aid_blocks(kept_aids, bits) or HashedAids(bits)
            self._files = [
                self._open.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
                for _ in range(1 << bits)
            ]
            self._records = [[] for _ in range(1 << bits)]
        self._flush()

    def _flush(self) -> None:
        pending: _Pending = [{} for _ in self._files]
        for slot in list(self._kept):  # each bucket's rows freed once split
            pieces = self._kept.pop(slot)
            if len(pieces) > 1 and sum(len(p[0]) for p in pieces) <= SLICE_ROWS:
                pieces = [_joined(self.kernel, pieces)]  # one split instead of one per range
            for aids, nulls, values in pieces:
                for start in range(0, len(aids), SLICE_ROWS):
                    end = start + SLICE_ROWS
                    columns = [aids[start:end], *(values[j][start:end] for j in sorted(values))]
                    self._split(pending, slot, None, columns)
                for j in sorted(nulls):
                    for start in range(0, len(nulls[j]), SLICE_ROWS):
                        self._split(pending, slot, j, [nulls[j][start : start + SLICE_ROWS]])
        for file, records, kinds in zip(self._files, self._records, pending, strict=True):
            for kind, (slots, counts, columns) in kinds.items():
                _write(file, np.array(slots, dtype=np.uint32))
                _write(file, np.array(counts, dtype=np.int64))
                for column in columns:
                    for piece in column:
                        _write(file, piece)
                records.append(_Record(kind, len(slots), sum(counts)))
        self.kept_bytes = 0

    def _split(self, pending: _Pending, slot: int, kind: int | None, columns: list[Any]) -> None:
        """Adds a bucket's columns, aligned with its AIDs (the first), to `pending` by the AIDs'
        partitions, each partition's rows in their order."""
        assert self._partitioning is not None  # set before the first flush
        parts = self._partitioning.partition(columns[0])
        order = np.argsort(parts, kind="stable")
        bounds = np.zeros(len(self._files) + 1, dtype=np.int64)
        np.cumsum(np.bincount(parts, minlength=len(self._files)), out=bounds[1:])
        ordered = [column[order] for column in columns]
        for part in np.flatnonzero(np.diff(bounds)).tolist():
            first, end = int(bounds[part]), int(bounds[part + 1])
            slots, counts, stored = pending[part].setdefault(kind, ([], [], [[] for _ in columns]))
            slots.append(slot)
            counts.append(end - first)
            for kept, column in zip(stored, ordered, strict=True):
                kept.append(column[first:end])
        self._spilled.add(slot)

    def parts(self) -> Iterator[dict[int, BucketRows]]:
        """The rows per bucket (by slot): everything at once if nothing was spilled, else one
        partition at a time. Every slot added appears in at least one part, with no rows if it
        never had any."""
        if self._partitioning is None:
            yield {slot: self._gathered(pieces) for slot, pieces in self._kept.items()}
            self._kept.clear()
            return
        self._flush()
        assert self._types is not None
        aid_type, null_types, value_types = self._types
        no_aids = np.empty(0, dtype=aid_type)
        no_nulls = {j: np.empty(0, dtype=t) for j, t in null_types.items()}
        no_values = {j: np.empty(0, dtype=t) for j, t in value_types.items()}
        for part, (file, records) in enumerate(zip(self._files, self._records, strict=True)):
            file.seek(0)
            pieces: dict[int, list[Rows]] = {}
            for record in records:
                slots = _read(file, np.dtype(np.uint32), record.segments).tolist()
                ends = np.cumsum(_read(file, np.dtype(np.int64), record.segments)).tolist()
                column = record.null_column
                if column is None:
                    aids = _read(file, aid_type, record.rows)
                    values = {
                        j: _read(file, t, record.rows) for j, t in sorted(value_types.items())
                    }
                else:
                    null_aids = _read(file, null_types[column], record.rows)
                for slot, first, end in zip(slots, [0, *ends], ends, strict=False):
                    if column is None:
                        piece = (
                            aids[first:end],
                            no_nulls,
                            {j: v[first:end] for j, v in values.items()},
                        )
                    else:
                        piece = (no_aids, {**no_nulls, column: null_aids[first:end]}, no_values)
                    pieces.setdefault(slot, []).append(piece)
            file.close()  # frees its disk space
            if part == 0:  # buckets whose rows have no AID in any partition
                for slot in self._seen - self._spilled:
                    pieces[slot] = [(no_aids, no_nulls, no_values)]
            yield {slot: self._gathered(p, part) for slot, p in pieces.items()}
        self.close()

    def _gathered(self, pieces: list[Rows], part: int | None = None) -> BucketRows:
        """A bucket's rows from its pieces, joined: grouping them joins them anyway. Rows of a
        partition of AID blocks are grouped by their narrowed AIDs (``AidBlocks.key``)."""
        aids, nulls, values = _joined(self.kernel, pieces)
        blocks = self._partitioning
        if not isinstance(blocks, AidBlocks) or part is None:
            rows = BucketRows(self.kernel, self.summed)
            rows.add(aids, nulls, values)
            return rows
        rows = BucketRows(self.kernel, self.summed, aids_of=partial(blocks.aid, partition=part))
        rows.add(blocks.key(aids), {j: blocks.key(a) for j, a in nulls.items()}, values)
        return rows

    def close(self) -> None:
        """Closes the temporary files, which frees their space (they have no name)."""
        self._open.close()
        self._files = []
        self._kept.clear()


def _joined(kernel: Any, pieces: list[Rows]) -> Rows:
    """Pieces of a bucket's rows as one, in order."""
    return (
        kernel.concat([p[0] for p in pieces]),
        {j: kernel.concat([p[1][j] for p in pieces]) for j in pieces[0][1]},
        {j: kernel.concat([p[2][j] for p in pieces]) for j in pieces[0][2]},
    )


def _write(file: IO[bytes], array: Any) -> None:
    file.write(memoryview(array).cast("B"))


def _read(file: IO[bytes], dtype: Any, count: int) -> Any:
    array = np.empty(count, dtype=dtype)
    if count and file.readinto(memoryview(array).cast("B")) != array.nbytes:  # type: ignore[attr-defined]
        raise OSError("a spill file ended early")
    return array
