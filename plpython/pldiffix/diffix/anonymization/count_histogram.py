"""``count_histogram(aid [, bin_size])``: how many users contribute how many rows.

Each value of the counted AID is binned by its row count (rounded down to a multiple of the bin
size). A bin's reported size is the noisy number of distinct counted AIDs in it; bins failing the
low-count filter (in any AID instance) are pooled into a suppress bin, which is reported first
with a NULL label if at least two bins were pooled and the pool itself passes the filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pldiffix.core.sqltext import identifier
from pldiffix.diffix.anonymization._cnum import c_div, c_max, c_round_to_int, to_int32
from pldiffix.diffix.anonymization.agg_funcs import (
    AggFuncs,
    AggregateInput,
    BucketPlan,
    BucketRow,
    BucketSql,
    json_array,
)
from pldiffix.diffix.anonymization.base import BucketContext
from pldiffix.diffix.anonymization.bucket_columns import AID, ROWS, numbered, per_instance
from pldiffix.diffix.anonymization.hashing import AidKind, AidValue, hash_aid
from pldiffix.diffix.anonymization.noise import is_low_count, layered_noise
from pldiffix.diffix.anonymization.params import AnonymizationParams


@dataclass(frozen=True)
class HistogramEntryInput:
    """One value of the counted AID in one bucket.

    ``row_count`` is the number of rows with that AID value; ``aids[k]`` lists the distinct non-NULL
    values of AID instance ``k`` on those rows (for the counted instance, just ``[aid]``).
    """

    aid: AidValue
    row_count: int
    aids: Sequence[Sequence[AidValue]]


@dataclass
class _Entry:
    row_count: int
    aid_sets: list[set[int]]


def _bin_label(row_count: int, bin_size: int) -> int:
    size = to_int32(bin_size)
    return c_div(to_int32(row_count), size) * size


def _pool_is_low_count(params: AnonymizationParams, aid_sets: Sequence[set[int]]) -> bool:
    low = False
    for aid_set in aid_sets:
        seed = 0
        for aid in aid_set:
            seed ^= aid
        low = low or is_low_count(params, len(aid_set), seed)
    return low


@dataclass
class CountHistogramState:
    kinds: tuple[AidKind, ...]
    counted_index: int
    bin_size: int = 1
    entries: dict[int, _Entry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.counted_index < len(self.kinds):
            raise ValueError("counted AID index out of range")
        if self.bin_size < 1:
            raise ValueError("Invalid bin_size for count_histogram.")

    @classmethod
    def from_inputs(
        cls,
        kinds: Sequence[AidKind],
        counted_index: int,
        bin_size: int,
        inputs: Sequence[HistogramEntryInput],
    ) -> CountHistogramState:
        state = cls(tuple(kinds), counted_index, bin_size)
        counted_kind = state.kinds[counted_index]
        for item in inputs:
            if len(item.aids) != len(kinds):
                raise ValueError("one AID list per AID instance is required")
            sets = [
                {hash_aid(a, k) for a in values} for k, values in zip(kinds, item.aids, strict=True)
            ]
            state._add(hash_aid(item.aid, counted_kind), _Entry(item.row_count, sets))
        return state

    def _add(self, key: int, entry: _Entry) -> None:
        mine = self.entries.get(key)
        if mine is None:
            self.entries[key] = _Entry(entry.row_count, [set(s) for s in entry.aid_sets])
            return
        mine.row_count += entry.row_count
        for own, theirs in zip(mine.aid_sets, entry.aid_sets, strict=True):
            own |= theirs

    def merge(self, other: CountHistogramState) -> None:
        for key, entry in other.entries.items():
            self._add(key, entry)

    def empty(self) -> CountHistogramState:
        return CountHistogramState(self.kinds, self.counted_index, self.bin_size)

    def _noisy_size(self, ctx: BucketContext, aid_sets: Sequence[set[int]]) -> int:
        counted = aid_sets[self.counted_index]
        seed = 0
        for aid in counted:
            seed ^= aid
        noise = layered_noise(
            ctx.params.salt, [ctx.bucket_seed, seed], "count_histogram", ctx.params.noise_layer_sd
        )
        noisy = c_round_to_int(len(counted) + noise)
        return int(c_max(noisy, ctx.params.low_count_min_threshold))

    def finalize(self, ctx: BucketContext) -> list[list[int | None]]:
        """Rows ``[bin label, noisy AID count]``; a suppress bin comes first, labelled NULL."""
        bins: dict[int, list[set[int]]] = {}
        for entry in self.entries.values():
            label = _bin_label(entry.row_count, self.bin_size)
            pooled = bins.setdefault(label, [set() for _ in self.kinds])
            for own, theirs in zip(pooled, entry.aid_sets, strict=True):
                own |= theirs
        suppressed: list[set[int]] = [set() for _ in self.kinds]
        low_bins = 0
        rows: list[list[int | None]] = []
        for label in sorted(bins):
            aid_sets = bins[label]
            if _pool_is_low_count(ctx.params, aid_sets):
                low_bins += 1
                for own, theirs in zip(suppressed, aid_sets, strict=True):
                    own |= theirs
            else:
                rows.append([label, self._noisy_size(ctx, aid_sets)])
        if low_bins >= 2 and not _pool_is_low_count(ctx.params, suppressed):
            rows.insert(0, [None, self._noisy_size(ctx, suppressed)])
        return rows


# Per bucket, a jsonb array of [AID, rows, [AID], AIDs of instance 1, ...] per value of the
# counted AID instance (here instance 0), the AIDs of the other instances gathered in `AIDS`
# (ha<h>_<k>): hv<h> (`ENTRIES`). h is the input's slot.
AIDS = "ha"
ENTRIES = "hv"


@dataclass(frozen=True)
class Counted:
    """The counted AID instance and the bin size of one call (`AggregateInput.detail`)."""

    instance: int
    bin_size: int


class _CountHistogram(AggFuncs):
    kinds = ("count_histogram",)

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        column = call.column
        instance = next(
            k
            for k, aid in enumerate(plan.aids)
            if (aid.alias, aid.name) == (column.alias, column.name)
        )
        item.slot = plan.slot(self)
        item.detail = Counted(instance, int(call.bin_size or 1))

    def combines(self, item: AggregateInput) -> bool:
        return False

    def per_aid_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        return [
            sql.distinct_aids(k, per_instance(AIDS, item.slot, k))
            for item in items
            if item.slot is not None
            for k in range(sql.n_aids)
            if k != item.detail.instance
        ]

    def bucket_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        out = []
        for item in items:
            assert item.slot is not None
            counted = item.detail.instance
            i = identifier(numbered(AID, counted))
            parts = [i, ROWS] + [
                f"pg_catalog.to_jsonb(ARRAY[{i}])"
                if k == counted
                else identifier(per_instance(AIDS, item.slot, k))
                for k in range(sql.n_aids)
            ]
            out.append(sql.entries(parts, i, numbered(ENTRIES, item.slot)))
        return out

    def state(self, item: AggregateInput, row: BucketRow) -> CountHistogramState:
        assert item.slot is not None
        entries = [
            HistogramEntryInput(e[0], int(e[1]), [list(a or []) for a in e[2:]])
            for e in json_array(row.column(numbered(ENTRIES, item.slot)))
        ]
        counted: Counted = item.detail
        return CountHistogramState.from_inputs(
            row.kinds, counted.instance, counted.bin_size, entries
        )

    def result_type(self, item: AggregateInput) -> str:
        return "bigint[]"


COUNT_HISTOGRAM = _CountHistogram()
