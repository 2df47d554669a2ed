"""Rows of a query read in row ranges, spilled to temporary files by AID partition
(docs/engine.md, "Spilling").

A query read in row ranges (``bucket_rows``) would keep every row of every bucket until the last
range: memory that grows with the table. ``RowSpill`` keeps them while they fit its budget, as
``BucketRows`` would. Beyond it, it splits each bucket's rows by a partition of their AIDs and
appends them to one temporary file per partition, and after the last range hands them back a
partition at a time. An AID's rows all fall into one partition, in scan order, so each partition
groups per AID exactly as a single read would; the engine then combines a bucket's parts as it
does the parts of passes (``partitions.combine``), without scanning the table again.

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
from typing import IO, Any

import numpy as np

from pldiffix.anonymization.bucket_rows import BucketRows

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


def partition_bits(expected_bytes: float, budget: int) -> int:
    """Bits of the power-of-two number of partitions that keeps each one's share of
    ``expected_bytes`` within ``budget`` (at least two partitions, at most ``MAX_PARTITIONS``)."""
    wanted = max(2, math.ceil(expected_bytes / max(budget, 1)))
    return min((wanted - 1).bit_length(), MAX_PARTITIONS.bit_length() - 1)


@dataclass(frozen=True, slots=True)  # one per bucket, flush and partition: keep it small
class _Chunk:
    """Rows of one bucket in one partition's file: AIDs and their values (``null_column`` None),
    or the AIDs of one column's NULL rows."""

    slot: int
    null_column: int | None
    rows: int


@dataclass
class RowSpill:
    """Rows of many buckets (``slot``: the caller's bucket number), kept in memory up to
    ``budget`` bytes and spilled by AID partition beyond it (see the module docstring).
    ``kernel`` (numpy) and ``summed`` are ``BucketRows``'; ``expected_bytes`` is the caller's
    estimate of all rows, which sets the number of partitions unless the rows read so far
    project more."""

    kernel: Any
    summed: bool
    budget: int
    expected_bytes: float
    kept_bytes: int = 0
    _kept: dict[int, list[Rows]] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)
    _bits: int | None = None  # set by the first flush
    _open: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _files: list[IO[bytes]] = field(default_factory=list)
    _chunks: list[list[_Chunk]] = field(default_factory=list)
    _types: tuple[Any, dict[int, Any], dict[int, Any]] | None = None

    @property
    def spilled_partitions(self) -> int:
        """How many partitions the rows were spilled into (0: none yet)."""
        return 0 if self._bits is None else 1 << self._bits

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
        if self._bits is None:
            projected = self.kept_bytes / fraction if fraction > 0 else self.expected_bytes
            self._bits = partition_bits(max(self.expected_bytes, projected), self.budget)
            self._files = [
                self._open.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
                for _ in range(1 << self._bits)
            ]
            self._chunks = [[] for _ in range(1 << self._bits)]
        self._flush()

    def _flush(self) -> None:
        for slot in list(self._kept):  # each bucket's rows freed once written
            pieces = self._kept.pop(slot)
            if len(pieces) > 1 and sum(len(p[0]) for p in pieces) <= SLICE_ROWS:
                pieces = [_joined(pieces)]  # one write instead of one per range
            for aids, nulls, values in pieces:
                for start in range(0, len(aids), SLICE_ROWS):
                    end = start + SLICE_ROWS
                    aligned = [values[j][start:end] for j in sorted(values)]
                    self._write(slot, None, aids[start:end], aligned)
                for j in sorted(nulls):
                    for start in range(0, len(nulls[j]), SLICE_ROWS):
                        self._write(slot, j, nulls[j][start : start + SLICE_ROWS], [])
        self.kept_bytes = 0

    def _write(self, slot: int, null_column: int | None, aids: Any, aligned: list[Any]) -> None:
        """Appends AIDs (and values aligned with them) to the files of their partitions."""
        parts = partition_of(aids, self._bits or 0)
        order = np.argsort(parts, kind="stable")
        bounds = np.zeros(len(self._files) + 1, dtype=np.int64)
        np.cumsum(np.bincount(parts, minlength=len(self._files)), out=bounds[1:])
        aids = aids[order]
        aligned = [column[order] for column in aligned]
        for part, file in enumerate(self._files):
            first, end = int(bounds[part]), int(bounds[part + 1])
            if first < end:
                for column in (aids, *aligned):
                    file.write(memoryview(column[first:end]).cast("B"))
                self._chunks[part].append(_Chunk(slot, null_column, end - first))

    def parts(self) -> Iterator[dict[int, BucketRows]]:
        """The rows per bucket (by slot): everything at once if nothing was spilled, else one
        partition at a time. Every slot added appears in at least one part, with no rows if it
        never had any."""
        if self._bits is None:
            yield {slot: self._gathered(pieces) for slot, pieces in self._kept.items()}
            self._kept.clear()
            return
        self._flush()
        assert self._types is not None
        aid_type, null_types, value_types = self._types
        spilled = {chunk.slot for chunks in self._chunks for chunk in chunks}
        for part, (file, chunks) in enumerate(zip(self._files, self._chunks, strict=True)):
            file.seek(0)
            pieces: dict[int, list[Rows]] = {}
            for chunk in chunks:
                aids = _read(file, aid_type, chunk.rows)
                nulls = {j: np.empty(0, dtype=t) for j, t in null_types.items()}
                if chunk.null_column is None:
                    values = {j: _read(file, t, chunk.rows) for j, t in sorted(value_types.items())}
                else:
                    nulls[chunk.null_column], aids = aids, np.empty(0, dtype=aid_type)
                    values = {j: np.empty(0, dtype=t) for j, t in value_types.items()}
                pieces.setdefault(chunk.slot, []).append((aids, nulls, values))
            file.close()  # frees its disk space
            if part == 0:  # buckets whose rows have no AID in any partition
                for slot in self._seen - spilled:
                    pieces[slot] = [
                        (
                            np.empty(0, dtype=aid_type),
                            {j: np.empty(0, dtype=t) for j, t in null_types.items()},
                            {j: np.empty(0, dtype=t) for j, t in value_types.items()},
                        )
                    ]
            yield {slot: self._gathered(p) for slot, p in pieces.items()}
        self.close()

    def _gathered(self, pieces: list[Rows]) -> BucketRows:
        """A bucket's rows from its pieces, joined: grouping them joins them anyway."""
        rows = BucketRows(self.kernel, self.summed)
        rows.add(*_joined(pieces))
        return rows

    def close(self) -> None:
        """Closes the temporary files, which frees their space (they have no name)."""
        self._open.close()
        self._files = []
        self._kept.clear()


def _joined(pieces: list[Rows]) -> Rows:
    """Pieces of a bucket's rows as one, in order."""
    return (
        _concat([p[0] for p in pieces]),
        {j: _concat([p[1][j] for p in pieces]) for j in pieces[0][1]},
        {j: _concat([p[2][j] for p in pieces]) for j in pieces[0][2]},
    )


def _concat(arrays: list[Any]) -> Any:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _read(file: IO[bytes], dtype: Any, count: int) -> Any:
    array = np.empty(count, dtype=dtype)
    if count and file.readinto(memoryview(array).cast("B")) != array.nbytes:  # type: ignore[attr-defined]
        raise OSError("a spill file ended early")
    return array
