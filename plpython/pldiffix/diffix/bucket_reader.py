"""Bucket rows into Buckets: the per-AID columns of a bucket query decoded, hashed and, for
buckets never merged, summarized; each aggregate's state built by its module
(`anonymization.registry`) from the row (`_Row`, an `agg_funcs.BucketRow`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pldiffix.core.statements import QueryError
from pldiffix.diffix import rewrite
from pldiffix.diffix.anonymization import (
    AidKind,
    AnonymizationParams,
    Bucket,
    LowCountState,
    bulk,
    label_material,
)
from pldiffix.diffix.anonymization import bucket_columns as cols
from pldiffix.diffix.anonymization.bucket_columns import (
    LABEL_HASH,
    LABEL_TEXT,
    NULL_ROWS,
    PER_AID,
    ROWS,
    numbered,
)
from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
from pldiffix.diffix.anonymization.exact_sum import exact_total
from pldiffix.diffix.anonymization.hashing import hash_aids, hash_string
from pldiffix.diffix.anonymization.low_count import LowCountSummary
from pldiffix.diffix.anonymization.registry import TRACKERS, find_agg_funcs
from pldiffix.diffix.anonymization.sum import (
    ROW_VALUES,
)
from pldiffix.diffix.bucket_query import BucketQuery
from pldiffix.diffix.rewrite import SqlType

GROUPED = "grouped"  # a per-AID column the reader derived from rows
LABEL_COLUMNS = (LABEL_TEXT, LABEL_HASH)
Tracker = ContributionTracker | SummarizedTracker


def _numbers(values: list[Any], integer: bool) -> list[Any]:
    """Per-AID contributions as Python numbers (only numeric arrays arrive as Decimal)."""
    first = next((v for v in values if v is not None), None)
    if not isinstance(first, Decimal):
        return values
    return [_number(v, integer) for v in values]


def _tracker(
    hashes: list[int], values: list[Any], unaccounted: Any, total: Any
) -> ContributionTracker:
    """A contribution tracker from aligned arrays of distinct AIDs (None: not a contributor)."""
    if len(hashes) != len(values):
        raise QueryError("internal error: AID and contribution arrays differ in length")
    if None in values:
        contributions = {h: v for h, v in zip(hashes, values, strict=True) if v is not None}
    else:
        contributions = dict(zip(hashes, values, strict=True))
    tracker = ContributionTracker(contributions, unaccounted)
    tracker.total = sum(contributions.values()) if total is None else total
    return tracker


def _number(value: Any, integer: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if integer else float(value)
    return value


@dataclass
class BucketReader:
    """Turns rows of `query.sql` into Buckets.

    With `summarize` (the query has no LED), a bucket in which every AID instance has at least
    `certainly_high_count` AIDs can never be merged into another one; its per-AID columns are
    reduced to summaries (`bulk.ContributionSummary`) as the row arrives, so Python keeps a few
    numbers per bucket instead of every AID. Other buckets keep per-AID dictionaries.
    """

    query: BucketQuery
    kinds: list[AidKind]
    labels: list[SqlType]
    params: AnonymizationParams
    summarize: bool
    kernel: Any = bulk.KERNEL

    def per_aid(self, row: Any, name: str, packed: dict[str, str]) -> Any:
        """A per-AID column: decoded if packed, as grouped if derived from rows (`grouped`),
        else the array as PL/Python gives it."""
        fmt = packed.get(name)
        if fmt is None:
            return list(row[name] or [])
        if fmt == GROUPED:
            return row[name]
        return self.kernel.decode(row[name], fmt, self.query.sent)

    def decoded_rows(self, row: Any) -> tuple[Any, dict[int, Any], dict[int, Any]]:
        """A row of `bucket_query._row_query` (the bucket's rows) decoded: the AIDs of its rows,
        and per aggregated column the AIDs of its NULL rows and, if summed, its values."""
        kernel, packed, sent = self.kernel, self.query.packed, self.query.sent
        aids = kernel.decode(row[cols.aids(0)], packed[cols.aids(0)], sent)
        columns = sorted(
            int(name[len(NULL_ROWS) :]) for name in packed if name.startswith(NULL_ROWS)
        )
        nulls = {
            j: kernel.decode(row[numbered(NULL_ROWS, j)], packed[numbered(NULL_ROWS, j)], sent)
            for j in columns
        }
        values = {
            j: kernel.decode(row[numbered(ROW_VALUES, j)], packed[numbered(ROW_VALUES, j)], sent)
            for j in columns
            if numbered(ROW_VALUES, j) in packed
        }
        return aids, nulls, values

    @staticmethod
    def grouped(row: Any, per_aid: bulk.PerAid) -> dict[str, Any]:
        """A bucket's rows grouped per AID as the per-AID columns of the per-AID form."""
        out = {name: row[name] for name in row if name.startswith(LABEL_COLUMNS)}
        out.update({cols.aids(0): per_aid.aids, cols.per_aid(ROWS, 0): per_aid.rows})
        out[cols.unaccounted(ROWS, 0)] = 0
        for j in per_aid.non_null:
            for tracker in TRACKERS:
                out.update(tracker.grouped_columns(j, per_aid))
        return out

    def bucket(self, row: Any, per_aid: bulk.PerAid | None = None) -> tuple[Bucket, int]:
        """The bucket of one row, and how many AID values (or rows) the row carried. A query
        that ships rows has them grouped per AID here, unless `per_aid` gives them grouped
        (gathered over row ranges; then `row` only gives the labels)."""
        kernel, params = self.kernel, self.params
        carried = None
        packed = self.query.packed
        if self.query.rows:
            if per_aid is None:
                aids, nulls, values = self.decoded_rows(row)
                per_aid, carried = kernel.group_rows(aids, nulls, values), len(aids)
            row = self.grouped(row, per_aid)
            packed = {name: GROUPED for name in row if name.startswith(PER_AID)}
        n = len(self.kinds)
        label_hashes = []
        for k, typ in enumerate(self.labels):
            how = rewrite.canonical_sql("", typ)[1]
            value = rewrite.canonical_value(row[numbered(LABEL_HASH, k)], how)
            label_hashes.append(hash_string(label_material(value)))
        hashes: list[Any] = []
        for k, kind in enumerate(self.kinds):
            aids = self.per_aid(row, cols.aids(k), packed)
            if cols.aids(k) in packed:
                hashes.append(kernel.hash_ints(aids, kind))
            else:
                hashes.append(kernel.from_hashes(hash_aids(aids, kind)))
        sizes = [len(h) for h in hashes]
        compact = self.summarize and all(size >= params.certainly_high_count() for size in sizes)
        # (distinct AIDs, XOR seed) per instance; None if two AIDs share a hash (then the
        # per-AID dictionaries merge them, as pg_diffix's hash tables do). Packed int4 AIDs are
        # distinct values, and FNV-1a is injective on int4, so their hashes are not checked.
        counted = [
            kernel.aid_set(h, distinct=kind is AidKind.INT4 and cols.aids(k) in packed)
            for k, (h, kind) in enumerate(zip(hashes, self.kinds, strict=True))
        ] if compact else []  # fmt: skip
        compact = compact and all(c is not None for c in counted)
        bucket_row = _Row(self, row, packed, hashes, compact)
        aggregates = [
            find_agg_funcs(item.kind).state(item, bucket_row) for item in self.query.inputs
        ]

        low_count: LowCountState | LowCountSummary
        if compact:
            low_count = LowCountSummary([c for c in counted if c is not None])
        else:
            low_count = LowCountState([set(bucket_row.aid_hashes(k)) for k in range(n)])
        bucket = Bucket(
            labels=tuple(row[numbered(LABEL_TEXT, k)] for k in range(len(self.labels))),
            aggregates=aggregates,
            low_count_state=low_count,
            label_hashes=tuple(label_hashes),
        )
        return bucket, sum(sizes) if carried is None else carried


class _Row:
    """One bucket row as its aggregates read it (`agg_funcs.BucketRow`)."""

    def __init__(
        self,
        reader: BucketReader,
        row: Any,
        packed: dict[str, str],
        hashes: list[Any],
        compact: bool,
    ) -> None:
        self.kinds, self.params, self.compact = reader.kinds, reader.params, compact
        self._reader, self._row, self._packed, self._hashes = reader, row, packed, hashes
        self._hash_lists: dict[int, list[int]] = {}

    def column(self, name: str) -> Any:
        return self._row[name]

    def aid_hashes(self, k: int) -> list[int]:
        if k not in self._hash_lists:
            self._hash_lists[k] = self._reader.kernel.tolist(self._hashes[k])
        return self._hash_lists[k]

    def aid_summary(self) -> Any:
        if not self.compact:
            return None
        top = self.params.top_capacity
        return self._reader.kernel.summarize(self._hashes[0], None, None, top, distinct=True)

    def sum_totals(self, j: int) -> bool:
        return j in self._reader.query.float_sums

    def _tracker(self, k: int, name: str, unaccounted: Any, total: Any, integer: bool) -> Tracker:
        kernel, packed = self._reader.kernel, self._packed
        values = self._reader.per_aid(self._row, name, packed)
        present = kernel.non_negative(values) if name in packed else None
        if total is None and not integer:  # one AID instance: its contributions, added exactly
            total = (
                kernel.exact_total(values, present)
                if name in packed
                else exact_total(v for v in _numbers(values, False) if v is not None)
            )
        if self.compact and name in packed:
            summary = kernel.summarize(
                self._hashes[k], values, present, self.params.top_capacity, total, distinct=True
            )
            if summary is not None:
                return SummarizedTracker(summary, unaccounted)
        listed = kernel.tolist(values) if name in packed else values
        if present is not None:
            listed = [v if keep else None for v, keep in zip(listed, present, strict=True)]
        return _tracker(self.aid_hashes(k), _numbers(listed, integer), unaccounted, total)

    def trackers(
        self, family: str, j: int | None, integer: bool = True, total: str | None = None
    ) -> list[Tracker]:
        out = []
        for k in range(len(self.kinds)):
            name = cols.per_aid(family, k, j)
            unaccounted = _number(self._row[cols.unaccounted(family, k, j)], integer) or 0
            exact_total = None
            if total is not None:
                assert j is not None
                exact_total = _number(self._row[cols.per_instance(total, j, k)], False) or 0.0
            out.append(self._tracker(k, name, unaccounted, exact_total, integer))
        return out
