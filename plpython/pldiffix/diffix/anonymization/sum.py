"""``sum``, ``avg`` and their noise variants.

Positive and negative summands are anonymized separately (as magnitudes) and the results are
subtracted. Zero-valued rows make their AID a zero contributor of both legs; NULL summands are
ignored entirely. ``avg`` is ``sum / count(col)`` with PostgreSQL's result typing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pldiffix.core.sqltext import identifier
from pldiffix.diffix.anonymization import bucket_columns as cols
from pldiffix.diffix.anonymization import count
from pldiffix.diffix.anonymization._cnum import c_round_to_int
from pldiffix.diffix.anonymization.agg_funcs import (
    AggFuncs,
    AggregateInput,
    BucketPlan,
    BucketRow,
    BucketSql,
    PerAidArray,
    ValueTracker,
)
from pldiffix.diffix.anonymization.base import AidContributions, BucketContext
from pldiffix.diffix.anonymization.bucket_columns import VALUE, numbered
from pldiffix.diffix.anonymization.contributions import ContributionTracker, ResultAccumulator
from pldiffix.diffix.anonymization.count import CountState
from pldiffix.diffix.anonymization.hashing import AidKind
from pldiffix.diffix.anonymization.numeric import float4, float8_to_numeric, numeric_div
from pldiffix.diffix.anonymization.summands import SummandType, summand_type

if TYPE_CHECKING:
    from pldiffix.diffix.anonymization.bulk import PerAid

# Per AID, the sums of the non-negative (`POSITIVE`) and the magnitudes of the non-positive
# (`NEGATIVE`) values of value column j: sp<j>, asp<j>_<k>, usp<j>_<k> (likewise sn). Float sums
# over several AID instances also get per-instance totals added in row order: tp<j>_<k>, tn<j>_<k>
# (one instance totals its contributions exactly, `exact_sum`). A bucket row that ships rows
# carries each row's value instead: rv<j>.
POSITIVE = "sp"
NEGATIVE = "sn"
TOTAL_POSITIVE = "tp"
TOTAL_NEGATIVE = "tn"
ROW_VALUES = "rv"


@dataclass(frozen=True)
class SumInput:
    """One AID instance of a sum in one bucket.

    ``positive.values[i]``: sum of the summands ``>= 0`` of AID ``positive.aids[i]`` (``None`` if it
    has none); ``negative.values[i]``: sum of ``|v|`` over its summands ``<= 0``. The legs'
    ``unaccounted_for`` hold the sums of ``v > 0`` and of ``|v|`` for ``v < 0`` over rows whose AID
    of this instance is NULL (and some other AID is not). ``numeric`` summands must be summed as
    ``float8``; integer summands exactly.
    """

    positive: AidContributions
    negative: AidContributions


@dataclass
class SumResult:
    not_enough_aid_values: bool
    positive: ResultAccumulator
    negative: ResultAccumulator


@dataclass
class SumState:
    """Anonymizing sum; ``noise=True`` reports the combined noise SD of both legs instead."""

    summand: SummandType
    positive: list[ContributionTracker] = field(default_factory=list)
    negative: list[ContributionTracker] = field(default_factory=list)
    noise: bool = False

    @classmethod
    def from_inputs(
        cls,
        summand: SummandType,
        kinds: Sequence[AidKind],
        inputs: Sequence[SumInput],
        *,
        noise: bool = False,
    ) -> SumState:
        if len(kinds) != len(inputs):
            raise ValueError("one SumInput per AID instance is required")
        convert = int if summand.is_integer else float

        def tracker(kind: AidKind, leg: AidContributions) -> ContributionTracker:
            values = [None if v is None else convert(v) for v in leg.values]
            total = None if leg.total is None else convert(leg.total)
            return ContributionTracker.from_hashes(
                leg.hashed(kind), values, convert(leg.unaccounted_for), total
            )

        return cls(
            summand,
            [tracker(k, i.positive) for k, i in zip(kinds, inputs, strict=True)],
            [tracker(k, i.negative) for k, i in zip(kinds, inputs, strict=True)],
            noise,
        )

    def merge(self, other: SumState) -> None:
        for mine, theirs in zip(self.positive, other.positive, strict=True):
            mine.merge(theirs)
        for mine, theirs in zip(self.negative, other.negative, strict=True):
            mine.merge(theirs)

    def empty(self) -> SumState:
        return SumState(
            self.summand,
            [ContributionTracker() for _ in self.positive],
            [ContributionTracker() for _ in self.negative],
            self.noise,
        )

    def calculate(self, ctx: BucketContext) -> SumResult:
        positive, negative = ResultAccumulator(), ResultAccumulator()
        for pos_tracker, neg_tracker in zip(self.positive, self.negative, strict=True):
            pos = pos_tracker.result(ctx.params, ctx.bucket_seed)
            neg = neg_tracker.result(ctx.params, ctx.bucket_seed)
            if pos.not_enough_aid_values and neg.not_enough_aid_values:
                return SumResult(True, ResultAccumulator(), ResultAccumulator())
            positive.add(pos)
            negative.add(neg)
        return SumResult(False, positive, negative)

    def raw_sum(self, ctx: BucketContext) -> float | None:
        """The anonymized sum as a double, before conversion to the result type."""
        result = self.calculate(ctx)
        if result.not_enough_aid_values:
            return None
        return result.positive.noisy_value - result.negative.noisy_value

    def sum(self, ctx: BucketContext) -> int | float | Decimal | None:
        value = self.raw_sum(ctx)
        if value is None:
            return None
        if self.summand in (SummandType.INT2, SummandType.INT4):
            return c_round_to_int(value)
        if self.summand in (SummandType.INT8, SummandType.NUMERIC):
            return float8_to_numeric(value)
        if self.summand is SummandType.FLOAT4:
            return float4(value)
        return value

    def noise_sd(self, ctx: BucketContext) -> float | None:
        result = self.calculate(ctx)
        if result.not_enough_aid_values:
            return None
        pos, neg = result.positive.reported_noise, result.negative.reported_noise
        return math.sqrt(math.pow(pos, 2) + math.pow(neg, 2))

    def finalize(self, ctx: BucketContext) -> int | float | Decimal | None:
        return self.noise_sd(ctx) if self.noise else self.sum(ctx)


@dataclass
class AvgState:
    """``avg(col)`` = anonymized ``sum(col)`` / anonymized ``count(col)`` (NULL if the count is 0).

    ``count`` must be built from the same column with ``count(col)`` semantics. ``noise=True``
    gives ``avg_noise``: the sum's noise SD divided by the count.
    """

    sum_state: SumState
    count: CountState
    noise: bool = False

    def __post_init__(self) -> None:
        if self.summand is SummandType.NUMERIC and not self.noise:
            raise ValueError("avg over numeric is not supported by pg_diffix")

    @property
    def summand(self) -> SummandType:
        return self.sum_state.summand

    def merge(self, other: AvgState) -> None:
        self.sum_state.merge(other.sum_state)
        self.count.merge(other.count)

    def empty(self) -> AvgState:
        return AvgState(self.sum_state.empty(), self.count.empty(), self.noise)

    def finalize(self, ctx: BucketContext) -> float | Decimal | None:
        count = self.count.count(ctx)
        if count == 0:
            return None
        if self.noise:
            noise = self.sum_state.noise_sd(ctx)
            return None if noise is None else noise / float(count)
        total = self.sum_state.sum(ctx)
        if total is None:
            return None
        if self.summand in (SummandType.INT2, SummandType.INT4):
            return numeric_div(Decimal(int(total)), Decimal(count))
        if self.summand is SummandType.INT8:
            assert isinstance(total, Decimal)
            return numeric_div(total, Decimal(count))
        return float(total) / float(count)


# --- the bucket query's SQL of sums ---------------------------------------------------------------

# |summand| beyond which (infinities included) a float summand counts as this much: no sum of
# fewer than 1e18 (float8) or 3e10 (float4) rows can then overflow, which PostgreSQL reports as
# an error, and the anonymizer's arithmetic (squares of per-AID sums, conversions to integers)
# stays finite.
_SUMMAND_LIMITS = {"float8": "1e100", "float4": "1e28", "numeric": "1e100"}

# Packed format of a per-AID sum, by summand type: sum(int2/int4) is int8, float4 and numeric
# summands are summed as float8 (numeric is cast before summing); sum(int8) is numeric: an array.
_SUM_FORMATS = {"int2": "int8", "int4": "int8", "float4": "float8", "float8": "float8",
                "numeric": "float8"}  # fmt: skip

# Summand types whose rows a bucket row can ship, and how: per-AID sums of int2/int4 are exact in
# int8; float8 (and numeric, summed as float8 as always) is added in row order (`bulk`). Not
# float4: PostgreSQL sums it in float4 arithmetic. Not int8: its sums are numeric.
_ROW_SUMMANDS = {"int2": "int8", "int4": "int8", "float8": "float8", "numeric": "float8"}


def summand_sql(expression: str, type_name: str) -> str:
    """A value to sum, as the engine sums it: integers as they are (their sums are wider); floats
    and numerics (as float8) clamped to ±`_SUMMAND_LIMITS`, infinities included, NaN ignored
    like NULL, numerics below 1e-300 as 0: nothing that can fail or overflow."""
    if type_name not in _SUMMAND_LIMITS:
        return expression
    limit = _SUMMAND_LIMITS[type_name]
    typ = "pg_catalog.float8" if type_name == "numeric" else f"pg_catalog.{type_name}"
    x = f"(({expression})::pg_catalog.{type_name})"
    tiny = (
        f"WHEN pg_catalog.abs({x}) OPERATOR(pg_catalog.<) 1e-300 THEN 0::{typ} "
        if type_name == "numeric"
        else ""
    )
    return (
        f"CASE WHEN {x} OPERATOR(pg_catalog.=) 'NaN' THEN NULL::{typ} "
        f"WHEN {x} OPERATOR(pg_catalog.>) {limit} THEN {limit}::{typ} "
        f"WHEN {x} OPERATOR(pg_catalog.<) -{limit} THEN (-{limit})::{typ} "
        f"{tiny}ELSE {x}::{typ} END"
    )


def _row_order_sum(value: str, condition: str) -> str:
    """A float sum over the rows meeting `condition`, added in scan order from +0.0 as pg_diffix
    adds it (PostgreSQL's sum() starts from the first value: a lone -0.0 would stay -0.0)."""
    return f"(pg_catalog.sum({value}) FILTER (WHERE {condition}) + 0::pg_catalog.float8)"


class _SummedValues(ValueTracker):
    """Per AID, the sums of a value column's non-negative values and the magnitudes of its
    non-positive ones (`POSITIVE`, `NEGATIVE`); float sums also get exact per-instance totals
    (`TOTAL_POSITIVE`, `TOTAL_NEGATIVE`). sum(col) and avg(col)."""

    references_often = True
    row_bytes = 8
    entry_bytes = 16

    def row_value(self, expression: str, value_type: str) -> str:
        return summand_sql(expression, value_type)

    def totals(self, value_type: str) -> bool:
        return summand_type(value_type) in (
            SummandType.FLOAT4,
            SummandType.FLOAT8,
            SummandType.NUMERIC,
        )

    def ships_rows(self, value_type: str) -> bool:
        return value_type in _ROW_SUMMANDS

    def row_columns(self, j: int, value: str, value_type: str) -> list[PerAidArray]:
        # CASE, not COALESCE: postgres_fdw 15 ships CASE to a shard (diffix/shards.py)
        zeroed = f"CASE WHEN {value} IS NULL THEN 0 ELSE {value} END"
        return [PerAidArray(numbered(ROW_VALUES, j), zeroed, _ROW_SUMMANDS[value_type])]

    def per_aid_columns(self, js: Sequence[int], types: Sequence[str], sql: BucketSql) -> list[str]:
        out = []
        for j in js:
            v = identifier(numbered(VALUE, j))
            out.append(
                f"pg_catalog.sum({v}) FILTER (WHERE live AND {v} >= 0) "
                f"AS {identifier(numbered(POSITIVE, j))}"
            )
            # -v overflows for an integer's minimum: negate the (wider) sum instead
            negative = (
                f"-pg_catalog.sum({v})"
                if types[j] in ("int2", "int4", "int8")
                else f"pg_catalog.sum(-{v})"
            )
            out.append(
                f"{negative} FILTER (WHERE live AND {v} <= 0) "
                f"AS {identifier(numbered(NEGATIVE, j))}"
            )
        for j in (j for j in js if self.totals(types[j])):
            v = identifier(numbered(VALUE, j))
            for k in range(sql.n_aids):
                i = identifier(numbered(cols.AID, k))
                positive = _row_order_sum(v, f"{v} >= 0 AND {i} IS NOT NULL")
                negative = _row_order_sum(f"-{v}", f"{v} <= 0 AND {i} IS NOT NULL")
                out.append(f"{positive} AS {identifier(cols.per_instance(TOTAL_POSITIVE, j, k))}")
                out.append(f"{negative} AS {identifier(cols.per_instance(TOTAL_NEGATIVE, j, k))}")
        return out

    def instance_columns(
        self, js: Sequence[int], k: int, absent: str, types: Sequence[str], sql: BucketSql
    ) -> list[str | PerAidArray]:
        out: list[str | PerAidArray] = []
        for j in js:
            leg_format = _SUM_FORMATS.get(types[j])
            for leg in (POSITIVE, NEGATIVE):
                c = identifier(numbered(leg, j))
                out.append(PerAidArray(cols.per_aid(leg, k, j), c, leg_format, nullable=True))
                unaccounted = cols.unaccounted(leg, k, j)
                out.append(f"pg_catalog.sum({c}) FILTER (WHERE {absent}) AS {unaccounted}")
        for j in (j for j in js if self.totals(types[j])):
            for leg in (TOTAL_POSITIVE, TOTAL_NEGATIVE):
                total = cols.per_instance(leg, j, k)
                out.append(
                    f"pg_catalog.max({identifier(total)}) "
                    f"FILTER (WHERE gs = {sql.labels_mask()}) AS {total}"
                )
        return out

    def grouped_columns(self, j: int, per_aid: PerAid) -> dict[str, Any]:
        if j not in per_aid.positive:
            return {}
        out: dict[str, Any] = {}
        for leg, sums in ((POSITIVE, per_aid.positive), (NEGATIVE, per_aid.negative)):
            out[cols.per_aid(leg, 0, j)], out[cols.unaccounted(leg, 0, j)] = sums[j], 0
        return out


SUMMED_VALUES = _SummedValues()


# --- the aggregates -------------------------------------------------------------------------------


def _sum_state(item: AggregateInput, row: BucketRow, summand: SummandType) -> SumState:
    j, integer = item.value, summand.is_integer
    exact = j is not None and row.sum_totals(j)
    return SumState(
        summand,
        row.trackers(POSITIVE, j, integer, TOTAL_POSITIVE if exact else None),
        row.trackers(NEGATIVE, j, integer, TOTAL_NEGATIVE if exact else None),
        "_noise" in item.kind,
    )


class _Sum(AggFuncs):
    kinds = ("sum", "sum_noise")

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        item.value = plan.value(call)
        item.summand = plan.summand(item.value)
        plan.track(SUMMED_VALUES, item.value)

    def state(self, item: AggregateInput, row: BucketRow) -> SumState:
        assert item.summand is not None
        return _sum_state(item, row, item.summand)

    def result_type(self, item: AggregateInput) -> str:
        if "_noise" in item.kind:
            return "double precision"
        assert item.summand is not None
        return {
            "int8": "bigint",
            "numeric": "numeric",
            "float4": "real",
            "float8": "double precision",
        }[item.summand.result_type]


class _Avg(AggFuncs):
    """avg(col): its sum and its count (`count.COUNTED`) of the same value column."""

    kinds = ("avg", "avg_noise")

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        SUM.plan(item, call, plan)
        assert item.value is not None
        plan.track(count.COUNTED_VALUES, item.value)

    def state(self, item: AggregateInput, row: BucketRow) -> AvgState:
        summand = item.summand
        if summand is SummandType.NUMERIC:
            summand = SummandType.FLOAT8  # summed as float8 anyway; pg_diffix refuses it
        assert summand is not None
        counted = CountState(row.trackers(count.COUNTED, item.value))
        noise = "_noise" in item.kind
        return AvgState(_sum_state(item, row, summand), counted, noise=noise)

    def result_type(self, item: AggregateInput) -> str:
        if "_noise" in item.kind or item.summand in (SummandType.FLOAT4, SummandType.FLOAT8):
            return "double precision"
        return "numeric"


SUM = _Sum()
AVG = _Avg()
