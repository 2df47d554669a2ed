"""A bucket's rows gathered over several row ranges (docs/engine.md, "Row ranges").

When the engine reads a relation in ranges of blocks, each range's bucket query ships the rows of
that range only, so a bucket arrives once per range with some of its rows. ``BucketRows`` keeps
them until the last range, then groups them per AID as if they had arrived at once: every range
is read in block order, one after the other, so the concatenated rows are in scan order and float
sums add up exactly as in a single read.

A bucket with nothing summed needs only rows per AID, so its rows are counted as they come
(``COMPACT_ROWS`` at a time): a million rows of AIDs that repeat shrink to one entry per AID.
When a count would not shrink what is kept by a tenth (AIDs that rarely repeat, e.g. one row per
customer), it is dropped and the bucket keeps its rows from then on, because an entry per AID
(16 bytes) is larger than a row (4 or 8 bytes). The first million of 30M rows over 2M AIDs
already shrink by a fifth, and the counts stop growing once every AID has been seen; AIDs with
only two to four rows each, when their rows lie close together, can be counted at a loss (16
bytes per AID against 4 per row of an int4 AID). So is a count that would need a sort (numpy
counts AIDs spread over more than a few times their number by sorting them): the bucket is then
counted once, at the end, as a single read would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pldiffix.diffix.anonymization.bulk import Counts, PerAid

COMPACT_ROWS = 1 << 20  # rows held uncounted before a count-only bucket counts them


@dataclass
class BucketRows:
    """The rows of one bucket so far (see the module docstring). ``summed``: whether the bucket
    query ships values (``rv`` columns); ``nulls`` and ``values`` of ``add`` are keyed by column as
    in ``bulk.group_rows``."""

    kernel: Any
    summed: bool
    # maps the AIDs as added back to the AIDs (a spill's narrowed AIDs, ``spill.AidBlocks``)
    aids_of: Callable[[Any], Any] | None = None
    rows: int = 0
    _aids: list[Any] = field(default_factory=list)
    _nulls: dict[int, list[Any]] = field(default_factory=dict)
    _values: dict[int, list[Any]] = field(default_factory=dict)
    _counted: Counts | None = None
    _counted_nulls: dict[int, Counts] = field(default_factory=dict)
    _uncounted: int = 0
    _counting: bool = True

    def add(self, aids: Any, nulls: dict[int, Any], values: dict[int, Any]) -> None:
        """One range's rows of the bucket, decoded (``bulk`` kernels' ``decode``)."""
        self.rows += len(aids)
        self._uncounted += len(aids)
        self._aids.append(aids)
        for column, null_aids in nulls.items():
            self._nulls.setdefault(column, []).append(null_aids)
        for column, column_values in values.items():
            self._values.setdefault(column, []).append(column_values)
        if not self.summed and self._counting and self._uncounted >= COMPACT_ROWS:
            self._counting = self._count(unless_larger_than=self._uncounted * 9 // 10)

    def _count(self, unless_larger_than: int | None = None) -> bool:
        """Counts the rows kept so far; given a bound (on the AIDs the new rows may add), only in
        linear time (the kernel's ``count_rows`` without sorting) and unless the AIDs counted
        would exceed it. Returns whether it counted (if not, nothing changed)."""
        kernel = self.kernel
        aids = kernel.concat(self._aids)
        counted = kernel.count_rows(aids, self._counted, sort=unless_larger_than is None)
        if counted is None:
            return False
        if unless_larger_than is not None:
            unless_larger_than += len(self._counted[0]) if self._counted else 0
            if len(counted[0]) > unless_larger_than:
                return False
        self._counted = counted
        for column, chunks in self._nulls.items():
            null_aids = kernel.concat(chunks)
            counted_nulls = kernel.count_rows(null_aids, self._counted_nulls.get(column))
            assert counted_nulls is not None  # sorting was allowed
            self._counted_nulls[column] = counted_nulls
            chunks.clear()
        self._aids.clear()
        self._uncounted = 0
        return True

    def per_aid(self) -> PerAid:
        """All rows so far grouped per AID (``bulk`` kernels' ``group_rows``)."""
        kernel = self.kernel
        if self.summed:
            grouped = kernel.group_rows(
                kernel.concat(self._aids),
                {j: kernel.concat(chunks) for j, chunks in self._nulls.items()},
                {j: kernel.concat(chunks) for j, chunks in self._values.items()},
            )
        else:
            if self._aids:  # rows arrived since the last count (every bucket has one range)
                self._count()
            assert self._counted is not None
            grouped = kernel.group_counts(self._counted, self._counted_nulls)
        if self.aids_of is not None:
            grouped.aids = self.aids_of(grouped.aids)
        return grouped


class RowGatherer(Protocol):
    """What keeps every bucket's rows over a query's row ranges (``slot``: the caller's bucket
    number): ``KeptRows`` or ``spill.RowSpill``."""

    @property
    def spilled_partitions(self) -> int:
        """AID partitions the rows were spilled into (0: kept in memory)."""
        ...

    @property
    def partitioning(self) -> str:
        """How the AIDs were partitioned, for the engine's debug log."""
        ...

    def add(self, slot: int, aids: Any, nulls: dict[int, Any], values: dict[int, Any]) -> None:
        """One range's rows of a bucket, decoded (``bulk`` kernels' ``decode``)."""
        ...

    def range_read(self, fraction: float) -> None:
        """Called after each range with the share of the relation read so far."""
        ...

    def parts(self) -> Iterator[dict[int, BucketRows]]:
        """The rows per bucket, in one part or several over disjoint AIDs."""
        ...

    def close(self) -> None:
        """Frees what is kept."""
        ...


@dataclass
class KeptRows:
    """Every bucket's rows of a query read in row ranges, kept in memory (``slot``: the caller's
    bucket number). ``spill.RowSpill`` has the same interface and spills beyond a budget."""

    kernel: Any
    summed: bool
    _rows: dict[int, BucketRows] = field(default_factory=dict)

    def add(self, slot: int, aids: Any, nulls: dict[int, Any], values: dict[int, Any]) -> None:
        rows = self._rows.get(slot)
        if rows is None:
            rows = self._rows[slot] = BucketRows(self.kernel, self.summed)
        rows.add(aids, nulls, values)

    @property
    def spilled_partitions(self) -> int:
        return 0  # never spilled

    @property
    def partitioning(self) -> str:
        return "none"

    def range_read(self, fraction: float) -> None:
        """Nothing to do between ranges: the rows stay in memory."""

    def parts(self) -> Iterator[dict[int, BucketRows]]:
        """All buckets' rows, in one part."""
        yield self._rows

    def close(self) -> None:
        self._rows.clear()
