"""Reading a bucket query's rows: at once, in passes over disjoint AID partitions, or in row
ranges whose rows are gathered (in memory or spilled to disk) before they are grouped per AID
(docs/engine.md, "Passes" and "Row ranges"). Each bucket row becomes a Bucket in
`bucket_reader`; the engine decides how a query is read."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pldiffix.core.errors import UserError
from pldiffix.diffix.anonymization import Bucket, partitions
from pldiffix.diffix.anonymization.bucket_columns import KEY, LABEL_HASH, numbered
from pldiffix.diffix.anonymization.bucket_rows import KeptRows, RowGatherer
from pldiffix.diffix.anonymization.sum import ROW_VALUES
from pldiffix.diffix.bucket_query import Partition, RowRange
from pldiffix.diffix.bucket_reader import LABEL_COLUMNS, BucketReader

FETCH_SIZE = 500  # bucket rows per fetch, at most
MAX_AIDS_PER_FETCH = 1 << 18  # per-AID values held at once, unless a single row has more


class _Fetcher:
    """A cursor over `sql` fetching about `MAX_AIDS_PER_FETCH` AIDs (or packed rows) at a time:
    the caller reports what each batch carried (`carried`)."""

    def __init__(self, plpy: Any, sql: str) -> None:
        self._cursor = plpy.cursor(sql)
        self._batch_size = 1

    def batches(self) -> Iterator[list[Any]]:
        while batch := self._cursor.fetch(self._batch_size):
            yield batch
        self._cursor.close()  # frees the executor's memory (the aggregate's states) at once

    def carried(self, rows: int, values: int) -> None:
        per_row = max(values // max(rows, 1), 1)
        self._batch_size = max(1, min(FETCH_SIZE, MAX_AIDS_PER_FETCH // per_row))


def read(plpy: Any, reader: BucketReader, sql: str) -> Iterator[tuple[Bucket, int]]:
    """The buckets of one bucket query with their keys (`k`, 0 without one)."""
    fetcher = _Fetcher(plpy, sql)
    for batch in fetcher.batches():
        carried = 0
        for row in batch:
            bucket, values = reader.bucket(row)
            carried += values
            yield bucket, row.get(KEY, 0)
        fetcher.carried(len(batch), carried)


@dataclass(frozen=True)
class Spill:
    """How a query read in row ranges spills its rows (`anonymization.spill`): the bytes it
    keeps in memory, and its estimate of all rows' bytes."""

    budget: int
    expected_bytes: float


def _gatherer(kernel: Any, summed: bool, spill: Spill | None) -> RowGatherer:
    """What keeps a query's rows over its row ranges: memory, or `RowSpill` given `spill`."""
    if spill is None:
        return KeptRows(kernel, summed)
    from pldiffix.diffix.anonymization.spill import RowSpill  # numpy only, as are row ranges

    return RowSpill(kernel, summed, spill.budget, spill.expected_bytes)


def _read_ranges(
    plpy: Any,
    reader: BucketReader,
    make_query: Any,
    ranges: list[RowRange],
    spill: Spill | None,
) -> list[Bucket]:
    """The buckets of a query read range by range: each bucket's rows are gathered over the
    ranges (in memory, or spilled by AID partition given `spill`) and grouped per AID once the
    last range is read; the parts of a spilled bucket are combined (`partitions.combine`).
    Buckets come in the order they were first seen. Raises `PartsDisagree` if two ranges show
    one bucket key with different labels (a key collision), or parts cannot be combined."""
    summed = any(name.startswith(ROW_VALUES) for name in reader.query.packed)
    try:
        return _gather_ranges(
            plpy, reader, make_query, ranges, _gatherer(reader.kernel, summed, spill)
        )
    except OSError as error:  # only the spill's files do I/O here
        raise spill_failure(error) from error


def spill_failure(error: OSError) -> UserError:
    """What an analyst is told when a query's rows could not be spilled to disk."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return UserError(
        f"the query's rows could not be spilled to disk: {error.strerror or error}",
        sqlstate="53100" if full else "58030",  # disk_full, io_error
        hint="free space in the server's temporary directory (TMPDIR, else /tmp), or ask an "
        "admin to raise max_pass_mb so that more rows stay in memory",
    )


def _gather_ranges(
    plpy: Any,
    reader: BucketReader,
    make_query: Any,
    ranges: list[RowRange],
    gathered: RowGatherer,
) -> list[Bucket]:
    """`_read_ranges`, the rows kept by `gathered`."""
    with contextlib.closing(gathered):  # a spill's files, even if reading fails
        slots: dict[int, int] = {}  # bucket key -> slot, in first-seen order
        shown: list[dict[str, Any]] = []  # per slot, the labels as the first range shows them
        hashes = [numbered(LABEL_HASH, k) for k in range(len(reader.labels))]
        for index, row_range in enumerate(ranges):
            reader.query = make_query(row_range=row_range)
            fetcher = _Fetcher(plpy, reader.query.sql)
            for batch in fetcher.batches():
                carried = 0
                for row in batch:
                    key = row[KEY]
                    slot = slots.get(key)
                    if slot is None:
                        slot = slots[key] = len(shown)
                        shown.append(
                            {name: row[name] for name in row if name.startswith(LABEL_COLUMNS)}
                        )
                    elif any(row[h] != shown[slot][h] for h in hashes):
                        raise partitions.PartsDisagree("two buckets share a key")
                    aids, nulls, values = reader.decoded_rows(row)
                    gathered.add(slot, aids, nulls, values)
                    carried += len(aids)
                fetcher.carried(len(batch), carried)
            gathered.range_read((index + 1) / len(ranges))
        buckets: dict[int, Bucket] = {}
        capacity = reader.params.top_capacity
        for part in gathered.parts():
            for slot in list(part):
                bucket = reader.bucket(shown[slot], part.pop(slot).per_aid())[0]
                if slot in buckets:
                    partitions.combine(buckets[slot], bucket, capacity)
                else:
                    buckets[slot] = bucket
        if spilled := gathered.spilled_partitions:
            plpy.debug(
                f"pldiffix: spilled the rows to disk in {spilled} AID partitions "
                f"({gathered.partitioning})"
            )
    return [buckets[slot] for slot in sorted(buckets)]


def read_in_parts(
    plpy: Any,
    reader: BucketReader,
    make_query: Any,
    passes: int,
    ranges: list[RowRange],
    spill: Spill | None,
) -> list[Bucket]:
    """The buckets of a query read in `ranges` (spilling given `spill`), or else in `passes`
    passes over disjoint AID partitions, each bucket's parts from different passes combined
    (`anonymization.partitions`). Raises `PartsDisagree` when they cannot be.

    The engine's function is STABLE, so every pass and range reads the calling statement's
    snapshot: the parts are those of one state of the data even while other sessions write."""
    if ranges:
        return _read_ranges(plpy, reader, make_query, ranges, spill)
    buckets: dict[int, Bucket] = {}
    capacity = reader.params.top_capacity
    for index in range(passes):
        reader.query = make_query(partition=Partition(index, passes))
        for bucket, key in read(plpy, reader, reader.query.sql):
            if key in buckets:
                partitions.combine(buckets[key], bucket, capacity)
            else:
                buckets[key] = bucket
    return list(buckets.values())
