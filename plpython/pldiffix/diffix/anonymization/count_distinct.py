"""``count(DISTINCT col)`` and ``count_noise(DISTINCT col)``.

Values backed by enough distinct AIDs in every instance (judged by the noisy low-count threshold
seeded by that value's AID set) are counted exactly. The remaining low-count values are counted
with noise: they are dealt to AIDs one at a time — AIDs with the fewest such values go first, each
taking its largest not yet taken value — so that every value is attributed to exactly one AID.
The resulting per-AID counts are then flattened and noised like ``count``.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pldiffix.core.sqltext import identifier
from pldiffix.diffix.anonymization._cnum import c_round_to_int
from pldiffix.diffix.anonymization.agg_funcs import (
    AggFuncs,
    AggregateInput,
    BucketPlan,
    BucketRow,
    BucketSql,
    json_array,
)
from pldiffix.diffix.anonymization.base import BucketContext
from pldiffix.diffix.anonymization.bucket_columns import numbered, per_instance
from pldiffix.diffix.anonymization.bulk import ContributionSummary
from pldiffix.diffix.anonymization.contributions import (
    ResultAccumulator,
    aggregate_contributions,
    top_contributors,
)
from pldiffix.diffix.anonymization.hashing import AidKind, AidValue, hash_aids
from pldiffix.diffix.anonymization.noise import is_low_count
from pldiffix.diffix.anonymization.params import AnonymizationParams

# An AID set per instance, or None when SQL only reported that the value has at least
# ``params.certainly_high_count()`` distinct AIDs in that instance.
AidSets = list[frozenset[int] | None]


@dataclass(frozen=True)
class DistinctValueInput:
    """One distinct non-NULL value of the counted column in one bucket.

    ``key`` identifies the value across buckets and orders values as the column's ``ORDER BY``
    does (a global ``dense_rank()`` is ideal). ``aids[k]`` lists the distinct non-NULL AID values
    of instance ``k`` on rows with this value (possibly empty), or is ``None`` if that set has at
    least ``params.certainly_high_count()`` members and was not shipped.
    """

    key: Hashable
    aids: Sequence[Sequence[AidValue] | None]


@dataclass
class CountDistinctResult:
    high_count_values: int
    low_count_values: int
    noisy_count: int
    noise_sd: float
    not_enough_aid_values: bool


def _set_is_high_count(params: AnonymizationParams, aid_set: frozenset[int] | None) -> bool:
    if aid_set is None:
        return True
    if len(aid_set) < params.low_count_min_threshold:
        return False
    seed = 0
    for aid in aid_set:
        seed ^= aid
    return not is_low_count(params, len(aid_set), seed)


def _deal_values(per_aid: list[tuple[int, list[int]]], value_count: int) -> dict[int, int]:
    """Attributes each low-count value to one AID; returns the number of values per AID.

    ``per_aid`` holds ``(aid, value indices in ascending value order)`` sorted by (number of
    values, aid). Each round, every AID in turn takes its largest value not taken yet.
    """
    taken: set[int] = set()
    counts: dict[int, int] = {}
    remaining = value_count
    stacks = [(aid, list(values)) for aid, values in per_aid]
    while remaining > 0:
        for aid, stack in stacks:
            if not stack:
                continue
            value = stack.pop()
            while stack and value in taken:
                value = stack.pop()
            if value not in taken:
                taken.add(value)
                remaining -= 1
                counts[aid] = counts.get(aid, 0) + 1
    return counts


class _DistinctFinalization:
    """Turns a state's ``calculate`` result into count(DISTINCT ...) or its noise."""

    noise: bool

    def calculate(self, ctx: BucketContext) -> CountDistinctResult:
        raise NotImplementedError

    def count(self, ctx: BucketContext) -> int:
        return max(self.calculate(ctx).noisy_count, ctx.min_count)

    def noise_sd(self, ctx: BucketContext) -> float | None:
        result = self.calculate(ctx)
        return None if result.not_enough_aid_values else result.noise_sd

    def finalize(self, ctx: BucketContext) -> int | float | None:
        return self.noise_sd(ctx) if self.noise else self.count(ctx)


@dataclass
class CountDistinctState(_DistinctFinalization):
    """Per distinct value (by key): one AID-hash set per AID instance."""

    instances: int
    values: dict[Hashable, AidSets] = field(default_factory=dict)
    noise: bool = False

    @classmethod
    def from_inputs(
        cls,
        kinds: Sequence[AidKind],
        inputs: Sequence[DistinctValueInput],
        *,
        noise: bool = False,
    ) -> CountDistinctState:
        state = cls(len(kinds), {}, noise)
        for item in inputs:
            if len(item.aids) != len(kinds):
                raise ValueError("one AID list per AID instance is required")
            sets: AidSets = [
                None if aids is None else frozenset(hash_aids(aids, kind))
                for kind, aids in zip(kinds, item.aids, strict=True)
            ]
            state._add(item.key, sets)
        return state

    def _add(self, key: Hashable, sets: AidSets) -> None:
        current = self.values.get(key)
        if current is None:
            self.values[key] = list(sets)
            return
        for k, theirs in enumerate(sets):
            mine = current[k]
            current[k] = None if mine is None or theirs is None else mine | theirs

    def merge(self, other: CountDistinctState) -> None:
        for key, sets in other.values.items():
            self._add(key, sets)

    def empty(self) -> CountDistinctState:
        return CountDistinctState(self.instances, {}, self.noise)

    def calculate(self, ctx: BucketContext) -> CountDistinctResult:
        params = ctx.params
        low_count = sorted(
            (
                key
                for key, sets in self.values.items()
                if not all(_set_is_high_count(params, s) for s in sets)
            ),
            key=_sort_key,
        )
        high_count_values = len(self.values) - len(low_count)
        accumulator = ResultAccumulator()
        for instance in range(self.instances):
            per_aid: dict[int, list[int]] = {}
            true_count = 0
            for index, key in enumerate(low_count):
                aid_set = self.values[key][instance]
                assert aid_set is not None  # None only for high-count sets
                if aid_set:
                    true_count += 1
                for aid in aid_set:
                    per_aid.setdefault(aid, []).append(index)
            ordered = sorted(per_aid.items(), key=lambda item: (len(item[1]), item[0]))
            counts = _deal_values(ordered, true_count)
            contributors = {aid: n for aid, n in counts.items() if n > 0}
            aid_seed = 0
            for aid in contributors:
                aid_seed ^= aid
            result = aggregate_contributions(
                params,
                bucket_seed=ctx.bucket_seed,
                aid_seed=aid_seed,
                true_total=true_count,
                distinct_contributors=len(contributors),
                unaccounted_for=0,
                top=top_contributors(contributors.items(), params.top_capacity),
            )
            accumulator.add(result)
            if accumulator.not_enough_aid_values:
                break
        noisy_count = high_count_values
        noise_sd = 0.0
        if not accumulator.not_enough_aid_values:
            noisy_count += c_round_to_int(accumulator.noisy_value)
            noise_sd = accumulator.reported_noise
        return CountDistinctResult(
            high_count_values=high_count_values,
            low_count_values=len(low_count),
            noisy_count=noisy_count,
            noise_sd=noise_sd,
            not_enough_aid_values=accumulator.not_enough_aid_values and high_count_values == 0,
        )


@dataclass
class DistinctAidsState(_DistinctFinalization):
    """``count(DISTINCT aid)`` over the only AID instance, when a single AID is always low-count.

    Each distinct value is then an AID whose AID set is just itself: every value is low-count
    (one member is below ``low_count_min_threshold`` >= 2) and the dealing gives each AID its
    own value. The result is therefore ``CountDistinctState``'s with no high-count values and a
    contribution of 1 per AID; this state keeps only the AID hashes (merges are set unions, as
    the values of ``CountDistinctState`` are).
    """

    hashes: set[int] = field(default_factory=set)
    noise: bool = False
    # Instead of the hashes: their summary (``bulk``), for a bucket that is never merged.
    summary: ContributionSummary | None = None

    def merge(self, other: DistinctAidsState) -> None:
        if self.summary is not None or other.summary is not None:
            raise ValueError("a summarized count(DISTINCT) state cannot be merged")
        self.hashes |= other.hashes

    def empty(self) -> DistinctAidsState:
        return DistinctAidsState(set(), self.noise)

    def calculate(self, ctx: BucketContext) -> CountDistinctResult:
        params = ctx.params
        if params.low_count_min_threshold < 2:
            raise ValueError("DistinctAidsState needs low_count_min_threshold >= 2")
        if self.summary is not None:
            count, aid_seed = self.summary.contributors, self.summary.aid_seed
            top = self.summary.top[: params.top_capacity]
        else:
            count = len(self.hashes)
            aid_seed = 0
            for aid in self.hashes:
                aid_seed ^= aid
            top = [(1, aid) for aid in heapq.nlargest(params.top_capacity, self.hashes)]
        result = aggregate_contributions(
            params,
            bucket_seed=ctx.bucket_seed,
            aid_seed=aid_seed,
            true_total=count,
            distinct_contributors=count,
            unaccounted_for=0,
            top=top,
        )
        accumulator = ResultAccumulator()
        accumulator.add(result)
        noisy_count = 0
        noise_sd = 0.0
        if not accumulator.not_enough_aid_values:
            noisy_count = c_round_to_int(accumulator.noisy_value)
            noise_sd = accumulator.reported_noise
        return CountDistinctResult(
            high_count_values=0,
            low_count_values=count,
            noisy_count=noisy_count,
            noise_sd=noise_sd,
            not_enough_aid_values=accumulator.not_enough_aid_values,
        )


def _sort_key(key: Hashable) -> tuple[int, object]:
    # Keys of one column share a type; the tuple only guards against NULL-like sentinels.
    return (0, key) if key is not None else (1, 0)


# Per bucket, a jsonb array of [rank, AIDs of instance 0, AIDs of instance 1, ...] per distinct
# value of the counted column (ranked by `dense_rank`, `RANK` r<d> per input row), its AIDs
# gathered per instance in `AIDS` (da<d>_<k>): dv<d> (`VALUES`). d is the input's slot.
RANK = "r"
AIDS = "da"
VALUES = "dv"


def _ranked(items: Sequence[AggregateInput]) -> list[AggregateInput]:
    """The inputs with columns of their own (not the shortcut over the bucket's AIDs)."""
    return [item for item in items if item.slot is not None]


class _CountDistinct(AggFuncs):
    kinds = ("count_distinct", "count_distinct_noise")

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        column, aids = call.column, plan.aids
        if (
            plan.distinct_aid_shortcut
            and len(aids) == 1
            and column is not None
            and (column.alias, column.name) == (aids[0].alias, aids[0].name)
            and not isinstance(plan.argument(call), exp.Cast)
        ):
            item.distinct_aids = True
            return
        item.value = plan.value(call)
        item.slot = plan.slot(self)

    def combines(self, item: AggregateInput) -> bool:
        return item.distinct_aids

    def base_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        out = []
        for item in _ranked(items):
            assert item.value is not None and item.slot is not None
            value = sql.value_sql(item.value)
            out.append(
                f"CASE WHEN {value} IS NOT NULL THEN pg_catalog.dense_rank() OVER "
                f"(ORDER BY {value}) END AS {identifier(numbered(RANK, item.slot))}"
            )
        return out

    def grouping_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        return [identifier(numbered(RANK, i.slot)) for i in _ranked(items) if i.slot is not None]

    def grouping_sets(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[list[str]]:
        return [[*sql.labels_cols, column] for column in self.grouping_columns(items, sql)]

    def per_aid_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        return [
            sql.distinct_aids(k, per_instance(AIDS, item.slot, k))
            for item in _ranked(items)
            if item.slot is not None
            for k in range(sql.n_aids)
        ]

    def bucket_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        out = []
        for item in _ranked(items):
            assert item.slot is not None
            r = identifier(numbered(RANK, item.slot))
            aids = [identifier(per_instance(AIDS, item.slot, k)) for k in range(sql.n_aids)]
            out.append(sql.entries([r, *aids], r, numbered(VALUES, item.slot)))
        return out

    def state(self, item: AggregateInput, row: BucketRow) -> _DistinctFinalization:
        noise = "_noise" in item.kind
        if item.distinct_aids:
            summary = row.aid_summary()
            if summary is not None:
                return DistinctAidsState(noise=noise, summary=summary)
            return DistinctAidsState(set(row.aid_hashes(0)), noise=noise)
        assert item.slot is not None
        entries = json_array(row.column(numbered(VALUES, item.slot)))
        inputs = [DistinctValueInput(e[0], [list(a or []) for a in e[1:]]) for e in entries]
        return CountDistinctState.from_inputs(row.kinds, inputs, noise=noise)

    def result_type(self, item: AggregateInput) -> str:
        return "double precision" if "_noise" in item.kind else "bigint"


COUNT_DISTINCT = _CountDistinct()
