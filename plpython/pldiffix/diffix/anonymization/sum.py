"""``sum``, ``avg`` and their noise variants.

Positive and negative summands are anonymized separately (as magnitudes) and the results are
subtracted. Zero-valued rows make their AID a zero contributor of both legs; NULL summands are
ignored entirely. ``avg`` is ``sum / count(col)`` with PostgreSQL's result typing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pldiffix.diffix.anonymization import count
from pldiffix.diffix.anonymization._cnum import c_round_to_int
from pldiffix.diffix.anonymization.agg_funcs import AggFuncs, AggregateInput, BucketPlan, BucketRow
from pldiffix.diffix.anonymization.base import AidContributions, BucketContext
from pldiffix.diffix.anonymization.contributions import ContributionTracker, ResultAccumulator
from pldiffix.diffix.anonymization.count import CountState
from pldiffix.diffix.anonymization.hashing import AidKind
from pldiffix.diffix.anonymization.numeric import float4, float8_to_numeric, numeric_div

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


class SummandType(enum.Enum):
    INT2 = "int2"
    INT4 = "int4"
    INT8 = "int8"
    NUMERIC = "numeric"
    FLOAT4 = "float4"
    FLOAT8 = "float8"

    @property
    def is_integer(self) -> bool:
        return self in (SummandType.INT2, SummandType.INT4, SummandType.INT8)

    @property
    def result_type(self) -> str:
        """SQL type of ``sum`` over this type."""
        return {
            SummandType.INT2: "int8",
            SummandType.INT4: "int8",
            SummandType.INT8: "numeric",
            SummandType.NUMERIC: "numeric",
            SummandType.FLOAT4: "float4",
            SummandType.FLOAT8: "float8",
        }[self]


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
        plan.sum(item.value)

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
        plan.count(item.value)

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
