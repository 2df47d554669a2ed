"""Per-AID arrays in bulk: decoding the bucket query's binary arrays, hashing, summarizing.

The bucket query ships a bucket's integer AIDs and numeric per-AID contributions as binary
strings (an int4, int8 or float8 array's flat in-memory form, ``diffix._array_bytes``), which
reach Python as one ``bytes`` object instead of a list of a million Python objects. PL/Python runs
in the server's process, so the elements are already in this Python's byte order. Statements a
shard runs send them instead as the concatenated results of the send functions (``int4send``...:
network byte order, no header; ``sent``), which postgres_fdw ships to the shard and carries as
bytea (diffix/shards.py). Two kernels turn them into what flattening needs:

- ``NumpyKernel`` (numpy, e.g. Debian's python3-numpy, importable by the server's Python): FNV-1a
  over whole arrays with wrapping uint64 arithmetic, XOR seeds by reduction, top contributors by
  partitioning;
- ``PythonKernel``: the same results in pure Python (table-driven hashing, ``heapq``).

``KERNEL`` is the numpy one when numpy can be imported. Both give identical results
(tests/unit/diffix/test_anonymization_bulk.py runs every case through both).

A *summary* is all that ``aggregate_contributions`` reads from one AID instance: how many AIDs
contribute, the XOR of their hashes, the total, and the largest ``(contribution, hash)`` pairs.
Summarizing refuses (returns None) when two AIDs share a hash or a contribution is NaN, so that
the caller keeps the exact per-AID dictionary semantics in those cases (distinct int4 AIDs never
share one: ``aid_set(..., distinct=True)``).
"""

from __future__ import annotations

import array
import collections
import functools
import heapq
import operator
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pldiffix.diffix.anonymization.exact_sum import ExactTotal, exact_total, exact_total_array
from pldiffix.diffix.anonymization.hashing import FNV_OFFSET_BASIS, FNV_PRIME, AidKind, hash_aids

try:
    import numpy as _np
except ImportError:  # pragma: no cover - depends on the server's Python
    _np = None

Number = int | float
Counts = tuple[Any, Any]  # distinct AIDs and how many rows each has (kernel's array type)

# Binary formats of the bucket query's packed columns: element widths in bytes and type OIDs.
FORMATS = {"int4": 4, "int8": 8, "float8": 8}
_ELEMENT_OIDS = {"int4": 23, "int8": 20, "float8": 701}
_ARRAY_CODES = {"int4": "i", "int8": "q", "float8": "d"}
_NUMPY_TYPES = {"int4": "=i4", "int8": "=i8", "float8": "=f8"}
# A one-dimensional array without NULLs, after the 4-byte length word: ndim, dataoffset (0: no
# NULL bitmap), element type, length, lower bound; the elements follow, MAXALIGNed (24 bytes
# from the length word, 20 here, whether MAXALIGN is 4 or 8).
_ARRAY_HEADER = struct.Struct("=iiIii")
_ARRAY_DATA_OFFSET = 20
_SENT_NUMPY_TYPES = {"int4": ">i4", "int8": ">i8", "float8": ">f8"}  # send functions' order


def array_elements(data: bytes, fmt: str) -> tuple[int, int]:
    """Where the elements of a packed column start in ``data`` and how many there are; checks
    that it is what the bucket query packs, a one-dimensional ``fmt`` array without NULLs."""
    if len(data) >= _ARRAY_DATA_OFFSET:
        ndim, null_bitmap, element_oid, length, _ = _ARRAY_HEADER.unpack_from(data)
        if (
            ndim == 1
            and null_bitmap == 0
            and element_oid == _ELEMENT_OIDS[fmt]
            and len(data) == _ARRAY_DATA_OFFSET + length * FORMATS[fmt]
        ):
            return _ARRAY_DATA_OFFSET, length
    raise RuntimeError(f"a packed column is not a one-dimensional {fmt} array without NULLs")


def sent_elements(data: bytes, fmt: str) -> int:
    """How many ``fmt`` values a sent packed column (send functions' results, concatenated)
    holds; checks that it is whole values."""
    count, rest = divmod(len(data), FORMATS[fmt])
    if rest:
        raise RuntimeError(f"a sent packed column is not a sequence of {fmt} values")
    return count


@dataclass(frozen=True)
class ContributionSummary:
    """One AID instance reduced to what flattening and noise read (see the module docstring)."""

    contributors: int
    aid_seed: int
    total: Number
    top: list[tuple[Number, int]]  # largest first, by contribution then by hash


@dataclass
class PerAid:
    """Rows of one bucket grouped per AID (``group_rows``); arrays aligned with ``aids``."""

    aids: Any
    rows: Any  # rows per AID
    non_null: dict[int, Any]  # column -> non-NULL values per AID (rows minus NULL rows)
    positive: dict[int, Any]  # column -> sum of its values >= 0 per AID, -1 if it has none
    negative: dict[int, Any]  # column -> sum of -value over values <= 0 per AID, -1 if none


# What PostgreSQL's sum() does, for the legs of sum(col): add in row order, starting from 0 (so a
# float -0.0 alone sums to 0.0), NaN counting as >= 0 (it sorts above every number there). NULL
# rows arrive as 0: they fall in both legs, change no sum (one that starts from +0.0 stays put
# under +-0.0) and are taken off the leg's row count, so an AID with only NULLs contributes nothing.
# One test for a value (Python kernel) and for a numpy array: "not v < 0" is "v >= 0 or NaN".
def _in_leg(values: Any, negative: bool) -> Any:
    return (values <= 0) if negative else (values >= 0) | (values != values)


def _fold(values: Sequence[Number]) -> Number:
    return functools.reduce(operator.add, values, 0)


class PythonKernel:
    """The reference kernel: standard library only."""

    name = "python"

    def decode(self, data: bytes | None, fmt: str, sent: bool = False) -> list[Any]:
        if not data:
            return []
        if sent:
            sent_elements(data, fmt)
            start = 0
        else:
            start, _ = array_elements(data, fmt)
        values = array.array(_ARRAY_CODES[fmt])
        if values.itemsize != FORMATS[fmt]:  # pragma: no cover
            raise RuntimeError(f"no native {FORMATS[fmt]}-byte array type for {fmt}")
        values.frombytes(memoryview(data)[start:])
        if sent and sys.byteorder == "little":
            values.byteswap()
        return values.tolist()

    def group_rows(
        self, aids: Sequence[int], nulls: dict[int, Any], values: dict[int, Any]
    ) -> PerAid:
        """Per AID: its rows, and per column its non-NULL values and the sums of both signs.
        ``nulls``: per column, the AIDs of its NULL rows (any order); ``values`` (per row, 0
        where NULL) are given for summed columns only."""
        positions: dict[int, list[int]] = {}
        for position, aid in enumerate(aids):
            positions.setdefault(aid, []).append(position)
        groups = list(positions.values())
        out = PerAid(list(positions), [len(g) for g in groups], {}, {}, {})
        for column, null_aids in nulls.items():
            null_rows = collections.Counter(null_aids)
            absent = [null_rows[aid] for aid in positions]
            out.non_null[column] = [len(g) - a for g, a in zip(groups, absent, strict=True)]
            if column not in values:
                continue
            column_values = values[column]
            for target, negative in ((out.positive, False), (out.negative, True)):
                legs = []
                sign = -1 if negative else 1
                for g, a in zip(groups, absent, strict=True):
                    row_values = (column_values[p] for p in g)
                    kept = [sign * v for v in row_values if _in_leg(v, negative)]
                    legs.append(_fold(kept) if len(kept) > a else -1)
                target[column] = legs
        return out

    def count_rows(
        self, aids: Sequence[int], into: Counts | None = None, sort: bool = True
    ) -> Counts | None:
        """Distinct AIDs (in order of appearance) and their row counts, added to those of
        ``into`` (earlier rows, counted) if given. Always linear time (``sort`` is moot)."""
        counted = collections.Counter(dict(zip(*into, strict=True)) if into else {})
        counted.update(aids)
        return list(counted), list(counted.values())

    def group_counts(self, rows: Counts, nulls: dict[int, Counts]) -> PerAid:
        """``group_rows`` of a bucket with nothing summed, from its counted rows (``count_rows``)
        and, per column, its counted NULL rows."""
        aids, counts = rows
        out = PerAid(list(aids), list(counts), {}, {}, {})
        for column, (null_aids, null_counts) in nulls.items():
            absent = dict(zip(null_aids, null_counts, strict=True))
            out.non_null[column] = [n - absent.get(a, 0) for a, n in zip(aids, counts, strict=True)]
        return out

    def concat(self, chunks: Sequence[Sequence[Any]]) -> list[Any]:
        return [value for chunk in chunks for value in chunk]

    def non_negative(self, values: Sequence[Number]) -> list[bool] | None:
        """Which values are contributions: packed NULLs are -1 (NaN and -0.0 are values)."""
        if not any(v < 0 for v in values):
            return None
        return [not v < 0 for v in values]

    def exact_total(self, values: Sequence[Number], present: Sequence[bool] | None) -> ExactTotal:
        """The exact total (``exact_sum``) of the float contributions kept by ``present``."""
        if present is None:
            return exact_total(values)
        return exact_total(v for v, keep in zip(values, present, strict=True) if keep)

    def hash_ints(self, values: Sequence[int], kind: AidKind) -> list[int]:
        return hash_aids(values, kind)

    def from_hashes(self, hashes: list[int]) -> list[int]:
        return hashes

    def tolist(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def aid_set(self, hashes: Sequence[int], distinct: bool = False) -> tuple[int, int] | None:
        """``(count, XOR seed)`` of distinct hashes, None if two AIDs share a hash.
        ``distinct``: the caller knows they are (distinct int4 AIDs, on which FNV-1a is
        injective), so they are not checked."""
        if not distinct and len(set(hashes)) != len(hashes):
            return None
        return len(hashes), _xor(hashes)

    def summarize(
        self,
        hashes: Sequence[int],
        values: Sequence[Number] | None,
        present: Sequence[bool] | None,
        capacity: int,
        total: Number | None = None,
        distinct: bool = False,
    ) -> ContributionSummary | None:
        """``values=None`` means a contribution of 1 per AID; ``present`` (from ``non_negative``,
        or None) masks non-contributors.
        ``distinct``: the caller already checked that the hashes are distinct (``aid_set``)."""
        if present is not None:
            hashes = [h for h, keep in zip(hashes, present, strict=True) if keep]
            if values is not None:
                values = [v for v, keep in zip(values, present, strict=True) if keep]
        if values is None:
            values = [1] * len(hashes)
        if any(v != v for v in values):  # NaN
            return None
        counted = self.aid_set(hashes, distinct)
        if counted is None:
            return None
        contributors, seed = counted
        top = heapq.nlargest(capacity, zip(values, hashes, strict=True))
        return ContributionSummary(contributors, seed, sum(values) if total is None else total, top)


class NumpyKernel:
    """Vectorized kernel; same results as ``PythonKernel``."""

    name = "numpy"

    def __init__(self) -> None:
        if _np is None:
            raise RuntimeError("numpy is not importable")
        np = _np
        self._prime = np.uint64(FNV_PRIME)
        self._basis = np.uint64(FNV_OFFSET_BASIS)
        self._prime_4 = np.uint64(pow(FNV_PRIME, 4, 1 << 64))

    def decode(self, data: bytes | None, fmt: str, sent: bool = False) -> Any:
        np = _np
        if not data:
            return np.empty(0, dtype=_NUMPY_TYPES[fmt])
        if sent:  # into this machine's byte order, as the array form's elements are
            length = sent_elements(data, fmt)
            sent_values = np.frombuffer(data, dtype=_SENT_NUMPY_TYPES[fmt], count=length)
            return sent_values.astype(_NUMPY_TYPES[fmt])
        start, length = array_elements(data, fmt)
        # a read-only view of ``data``: nothing downstream writes into a decoded column
        return np.frombuffer(data, dtype=_NUMPY_TYPES[fmt], count=length, offset=start)

    def group_rows(self, aids: Any, nulls: dict[int, Any], values: dict[int, Any]) -> PerAid:
        np = _np
        n = len(aids)
        if not values or n == 0:  # nothing to add up in row order: counting is enough
            out = self.group_counts(
                _counted(self.count_rows(aids)),
                {j: _counted(self.count_rows(a)) for j, a in nulls.items()},
            )
            for column in values:  # no rows
                out.positive[column] = out.negative[column] = out.rows
            return out
        order = np.argsort(aids, kind="stable")
        ordered = aids[order]
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        unique, rows = ordered[starts], np.diff(np.append(starts, n))
        out = PerAid(unique, rows, {}, {}, {})
        for column, null_aids in nulls.items():
            # every NULL row's AID is among the bucket's AIDs (both columns share the filter)
            absent = np.bincount(np.searchsorted(unique, null_aids), minlength=len(unique))
            out.non_null[column] = rows - absent
            if column not in values:
                continue
            column_values = values[column]
            is_float = column_values.dtype.kind == "f"
            for target, negative in ((out.positive, False), (out.negative, True)):
                chosen = _in_leg(column_values, negative)
                leg = np.where(chosen, -column_values if negative else column_values, 0)
                if is_float:
                    sums = _sequential_sums(leg[order], starts, rows)
                else:
                    sums = np.add.reduceat(leg[order], starts)
                counted = np.add.reduceat(chosen[order].astype(np.int64), starts)
                target[column] = np.where(counted > absent, sums, -1)
        return out

    def non_negative(self, values: Any) -> Any:
        absent = values < 0
        return None if not bool(absent.any()) else ~absent

    def hash_ints(self, values: Any, kind: AidKind) -> Any:
        """FNV-1a of each value's 8 little-endian bytes; int4 values zero-extended first."""
        np = _np
        values = np.asarray(values)
        if kind is AidKind.INT4:
            words = values.astype(np.uint32).astype(np.uint64)
        else:
            words = values.astype(np.int64).view(np.uint64)
        state = np.full(words.shape, self._basis, dtype=np.uint64)
        # The four high bytes of an int4 are zero: XOR with them changes nothing, so their four
        # multiplications are one by P^4.
        data_bytes = 4 if kind is AidKind.INT4 else 8
        for shift in range(0, 8 * data_bytes, 8):
            state ^= (words >> np.uint64(shift)) & np.uint64(0xFF)
            state *= self._prime
        if data_bytes == 4:
            state *= self._prime_4
        return state

    def exact_total(self, values: Any, present: Any) -> ExactTotal:
        return exact_total_array(_np, values if present is None else values[present])

    def from_hashes(self, hashes: list[int]) -> Any:
        return _np.array(hashes, dtype=_np.uint64)

    def tolist(self, values: Any) -> list[Any]:
        return values.tolist()

    def aid_set(self, hashes: Any, distinct: bool = False) -> tuple[int, int] | None:
        np = _np
        if not distinct and len(hashes):
            ordered = np.sort(hashes)
            if bool((ordered[1:] == ordered[:-1]).any()):
                return None
        return len(hashes), self._xor(hashes)

    @staticmethod
    def _xor(hashes: Any) -> int:
        return int(_np.bitwise_xor.reduce(hashes)) if len(hashes) else 0

    def summarize(
        self,
        hashes: Any,
        values: Any,
        present: Any,
        capacity: int,
        total: Number | None = None,
        distinct: bool = False,
    ) -> ContributionSummary | None:
        np = _np
        if present is not None:
            hashes = hashes[present]
            if values is not None:
                values = values[present]
        if values is None:
            values = np.ones(len(hashes), dtype=np.int64)
        is_float = values.dtype.kind == "f"
        if is_float and bool(np.isnan(values).any()):
            return None
        counted = self.aid_set(hashes, distinct)
        if counted is None:
            return None
        contributors, seed = counted
        if total is None:
            total = self._total(values)
        top = self._top(hashes, values, min(capacity, len(hashes)))
        return ContributionSummary(contributors, seed, total, top)

    def count_rows(self, aids: Any, into: Counts | None = None, sort: bool = True) -> Counts | None:
        """Distinct AIDs (ascending, int64) and their row counts, added to those of ``into``.
        AIDs within a range a few times their number (e.g. serial ids) are counted with
        ``bincount`` in linear time, others sorted; None instead of sorting unless ``sort``."""
        np = _np
        n = len(aids)
        ends = [int(aids.min()), int(aids.max())] if n else []
        if into is not None and len(into[0]):
            ends += [int(into[0][0]), int(into[0][-1])]
            n += len(into[0])
        if ends and dense(min(ends), max(ends), n):
            found = [
                self._count_window(aids, into, low, min(low + _COUNT_WINDOW, max(ends) + 1))
                for low in range(min(ends), max(ends) + 1, _COUNT_WINDOW)
            ]
            return self.concat([f[0] for f in found]), self.concat([f[1] for f in found])
        if not sort:
            return None
        unique, counts = np.unique(aids, return_counts=True)
        unique, counts = unique.astype(np.int64), counts.astype(np.int64)
        if into is None or not len(into[0]):
            return unique, counts
        unique, inverse = np.unique(np.concatenate([into[0], unique]), return_inverse=True)
        # float64 weights add row counts exactly (far below 2**53)
        weights = np.concatenate([into[1], counts])
        return unique, np.bincount(inverse, weights=weights).astype(np.int64)

    @staticmethod
    def _count_window(aids: Any, into: Counts | None, low: int, end: int) -> Counts:
        """``count_rows`` by ``bincount`` for the AIDs in [low, end), so that the counts take
        8 bytes per value of a window, not of the whole AID range."""
        np = _np
        counts = np.zeros(end - low, dtype=np.int64)
        if into is not None and len(into[0]):
            inside = slice(*np.searchsorted(into[0], [low, end]))  # ascending AIDs
            counts[into[0][inside] - low] = into[1][inside]  # distinct AIDs: one count each
        # a slice at a time: bincount wants int64, a copy of all AIDs would be 8 bytes each
        for start in range(0, len(aids), _COUNT_SLICE):
            offsets = aids[start : start + _COUNT_SLICE].astype(np.int64)
            if low > int(offsets.min(initial=low)) or end <= int(offsets.max(initial=low)):
                offsets = offsets[(offsets >= low) & (offsets < end)]
            offsets -= low
            counts += np.bincount(offsets, minlength=len(counts))
        present = np.flatnonzero(counts)
        rows = counts[present]
        present += low
        return present, rows

    def group_counts(self, rows: Counts, nulls: dict[int, Counts]) -> PerAid:
        np = _np
        aids, counts = rows
        out = PerAid(aids, counts, {}, {}, {})
        for column, (null_aids, null_counts) in nulls.items():
            absent = np.zeros(len(aids), dtype=np.int64)
            # every NULL row's AID is among the bucket's AIDs (both columns share the filter)
            absent[np.searchsorted(aids, null_aids)] = null_counts
            out.non_null[column] = counts - absent
        return out

    def concat(self, chunks: Sequence[Any]) -> Any:
        return chunks[0] if len(chunks) == 1 else _np.concatenate(chunks)

    @staticmethod
    def _total(values: Any) -> Number:
        """What the per-AID path adds up: Python's left-to-right float addition, exact ints."""
        np = _np
        if values.dtype.kind == "f" or len(values) == 0:
            return sum(values.tolist())
        largest = max(abs(int(values.min())), abs(int(values.max())))
        if largest * len(values) < 1 << 63:
            return int(values.sum(dtype=np.int64))
        return sum(values.tolist())

    @staticmethod
    def _top(hashes: Any, values: Any, k: int) -> list[tuple[Number, int]]:
        """The ``k`` largest ``(value, hash)`` pairs, largest first."""
        np = _np
        n = len(values)
        if k <= 0:
            return []
        if k < n:
            kth = np.partition(values, n - k)[n - k]
            above = np.flatnonzero(values > kth)
            tied = np.flatnonzero(values == kth)
            wanted = k - len(above)
            if wanted < len(tied):
                tied_hashes = hashes[tied]
                keep = np.argpartition(tied_hashes, len(tied) - wanted)[len(tied) - wanted :]
                tied = tied[keep]
            chosen = np.concatenate([above, tied])
        else:
            chosen = np.arange(n)
        order = np.lexsort((hashes[chosen], values[chosen]))[::-1]
        picked = chosen[order]
        return list(zip(values[picked].tolist(), hashes[picked].tolist(), strict=True))


_COUNT_SLICE = 1 << 20  # AIDs counted at a time (`count_rows`)
# AID values one ``bincount`` spans at most (8 MiB of counts); wider ranges are counted a window at
# a time, each pass over the AIDs cheap next to counting them
_COUNT_WINDOW = 1 << 20


def _counted(counts: Counts | None) -> Counts:
    assert counts is not None  # sorting was allowed
    return counts


def dense(low: int, high: int, n: int) -> bool:
    """Whether n AIDs spread over [low, high] are counted in an array spanning the range."""
    return high - low <= 4 * n + 1024


_FOLD_STEPS = 64  # longer groups are added up one by one in Python


def _sequential_sums(ordered: Any, starts: Any, lengths: Any) -> Any:
    """Per group (``ordered[starts[g]:starts[g] + lengths[g]]``), the left-to-right float sum
    from +0.0, bit-identical to PostgreSQL's sum(float8). numpy's own reductions add pairwise,
    which rounds differently, so the groups advance together one element per step."""
    np = _np
    short = lengths <= _FOLD_STEPS
    sums = ordered[starts] + 0.0  # every group has a first value; +0.0 turns a -0.0 into 0.0
    live = np.flatnonzero(short & (lengths > 1))  # the groups with a value at `step`
    step = 1
    while len(live):
        sums[live] += ordered[starts[live] + step]
        step += 1
        live = live[lengths[live] > step]
    for group in np.flatnonzero(~short):
        start = int(starts[group])
        sums[group] = functools.reduce(
            operator.add, ordered[start : start + int(lengths[group])].tolist(), 0.0
        )
    return sums


def _xor(hashes: Sequence[int]) -> int:
    return functools.reduce(operator.xor, hashes, 0)


def default_kernel() -> PythonKernel | NumpyKernel:
    return NumpyKernel() if _np is not None else PythonKernel()


KERNEL = default_kernel()
