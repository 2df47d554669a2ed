"""The interface every anonymizing aggregate implements, after pg_diffix's `AnonAggFuncs`: one
module per aggregate (count.py, sum.py, count_distinct.py, count_histogram.py, suppress_bin.py)
provides an `AggFuncs`, and `registry.find_agg_funcs(kind)` finds it.

An aggregate says, for one call in an anonymizing query:
- what its bucket row needs (`plan`): value columns, per-AID statistics of them (a
  `ValueTracker`: count.py's non-NULL counts, sum.py's sums), slots of its own;
- the SQL of its own columns, at fixed places of the bucket query (the `*_columns` hooks;
  none by default), named by constants of its module;
- how its state is built from a bucket row (`state`; the state merges as `AnonymizingAggregate`);
- its result type and reported value (`result_type`, `reported`).

docs/architecture.md, "Adding a Diffix aggregate", walks through one.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the aggregates' modules import this one
    from sqlglot import exp

    from pldiffix.diffix.anonymization.base import AnonymizingAggregate
    from pldiffix.diffix.anonymization.buckets import OutputRow
    from pldiffix.diffix.anonymization.bulk import PerAid
    from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
    from pldiffix.diffix.anonymization.hashing import AidKind
    from pldiffix.diffix.anonymization.params import AnonymizationParams
    from pldiffix.diffix.anonymization.summands import SummandType


@dataclass
class AggregateInput:
    """Where the inputs of one anonymizing aggregate are in a bucket row."""

    kind: str
    value: int | None = None  # index of the aggregated column among the value columns
    summand: SummandType | None = None
    slot: int | None = None  # index among the inputs of its aggregate that have columns of its own
    detail: Any = None  # what else its module records about the call (count_histogram: `Counted`)
    # count(DISTINCT aid) over the only AID instance: the bucket's AIDs are the distinct values
    distinct_aids: bool = False


class BucketPlan(Protocol):
    """What the bucket query offers an aggregate planning its inputs (`AggFuncs.plan`)."""

    aids: Sequence[Any]  # the model's AID columns (`query_model.ColumnRef`)
    value_types: list[str]  # normalized type of each value column
    distinct_aid_shortcut: bool

    def argument(self, call: Any) -> exp.Expression | None:
        """The argument of the aggregate call, as the analyst wrote it."""

    def value(self, call: Any) -> int:
        """The value column of the call's argument (shared by calls over the same expression)."""

    def summand(self, j: int) -> SummandType:
        """How value column j is summed."""

    def track(self, tracker: ValueTracker, j: int) -> None:
        """Requests the per-AID statistics `tracker` keeps of column j."""

    def slot(self, funcs: AggFuncs) -> int:
        """The next index among `funcs`' inputs with columns of their own."""


class BucketSql(Protocol):
    """What the bucket query offers an aggregate writing its own columns."""

    n_aids: int
    labels_cols: list[str]  # the label columns (quoted)

    def value_sql(self, j: int) -> str:
        """SQL of value column j over an input row."""

    def labels_mask(self) -> int:
        """`gs` of the grouping set of the labels alone."""

    def mask(self, column: str) -> int:
        """`gs` (GROUPING(...)) of the grouping set of the labels and `column` (quoted)."""

    def distinct_aids(self, k: int, name: str) -> str:
        """Per grouping set, the distinct AIDs of instance k, as column `name`."""

    def entries(self, parts: Sequence[str], column: str, name: str) -> str:
        """Per bucket, a jsonb array of the arrays `parts` over the rows of the grouping set of
        `column` (quoted) where it is not NULL, as column `name`."""


class BucketRow(Protocol):
    """What the bucket reader offers an aggregate building its state from a bucket row."""

    kinds: Sequence[AidKind]
    params: AnonymizationParams
    compact: bool  # per-AID columns are reduced to summaries (`bulk.ContributionSummary`)

    def column(self, name: str) -> Any:
        """The raw value of one column of the bucket row."""

    def trackers(
        self, family: str, j: int | None, integer: bool = True, total: str | None = None
    ) -> list[ContributionTracker | SummarizedTracker]:
        """One contribution tracker per AID instance from the per-AID columns of `family`
        (`bucket_columns.per_aid`), with exact totals from the `total` family if given."""

    def aid_hashes(self, k: int) -> list[int]:
        """The hashes of the distinct AIDs of instance k."""

    def aid_summary(self) -> Any:
        """The distinct AIDs of the only instance summarized (`bulk.ContributionSummary`), or
        None if they cannot be (or the row is not compact)."""

    def sum_totals(self, j: int) -> bool:
        """Whether value column j has exact per-instance totals (float sums)."""


@dataclass(frozen=True)
class PerAidArray:
    """A column of the bucket row holding one value per AID of an instance (or per shipped row):
    `column` of the rows of that AID instance, packed in format `fmt` when given; a `nullable`
    column packs NULL as -1 (`bucket_query._per_aid_array`)."""

    name: str
    column: str
    fmt: str | None
    nullable: bool = False


class ValueTracker(abc.ABC):
    """Per-AID statistics of value columns that aggregates request (`BucketPlan.track`). Its
    columns stand at fixed places of the bucket query, trackers in the order of
    `registry.TRACKERS`; `js` are the value columns tracked (ascending) and `types` the
    normalized types of all value columns."""

    references_often: bool = False  # refers to a value several times per row
    row_bytes: int = 0  # bytes a shipped row carries per tracked value (beyond NULL rows' AIDs)
    entry_bytes: int = 8  # bytes of one per-AID entry per tracked value

    def row_value(self, expression: str, value_type: str) -> str:
        """The value column's SQL per input row, given its expression."""
        return expression

    def totals(self, value_type: str) -> bool:
        """Whether value columns of this type get exact per-instance totals (the grouping set of
        the labels alone)."""
        return False

    def ships_rows(self, value_type: str) -> bool:
        """Whether Python can compute the statistics of such a column from shipped rows."""
        return True

    def row_columns(self, j: int, value: str, value_type: str) -> list[PerAidArray]:
        """Columns of a bucket row that ships rows for value column j (`value`, quoted)."""
        return []

    def grouped_columns(self, j: int, per_aid: PerAid) -> dict[str, Any]:
        """The per-AID columns of value column j (instance 0) from shipped rows grouped per AID
        (`bucket_reader`), as `instance_columns` would have given them."""
        return {}

    @abc.abstractmethod
    def per_aid_columns(self, js: Sequence[int], types: Sequence[str], sql: BucketSql) -> list[str]:
        """Columns per grouping set (after the rows per AID)."""

    @abc.abstractmethod
    def instance_columns(
        self, js: Sequence[int], k: int, absent: str, types: Sequence[str], sql: BucketSql
    ) -> list[str | PerAidArray]:
        """Columns of AID instance k in the bucket row (after its AIDs and rows); `absent` is the
        condition of its rows without an AID."""


class AggFuncs(abc.ABC):
    """One anonymizing aggregate (see the module docstring). Subclasses set `kinds` and
    implement `state` and `result_type`; the rest has defaults for an aggregate that needs
    nothing from the bucket row but its AIDs."""

    kinds: tuple[str, ...] = ()  # query_model.AggregateKind values it implements

    def plan(self, item: AggregateInput, call: Any, plan: BucketPlan) -> None:
        """Records in `item` (and requests from `plan`) what `call` (`query_model.Aggregate`,
        None for the hidden count(*) of implicit grouping) needs in the bucket row."""
        return None  # by default: nothing beyond the bucket's AIDs

    def combines(self, item: AggregateInput) -> bool:
        """Whether parts of its state from disjoint AID partitions combine
        (`anonymization.partitions`), so that the query may be read in passes or ship rows."""
        return True

    def base_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        """Columns it adds per input row (after the value columns)."""
        return []

    def grouping_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        """Columns it adds to the per-AID grouping (after the AID instances)."""
        return []

    def grouping_sets(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[list[str]]:
        """Grouping sets it adds (after the per-instance ones)."""
        return []

    def per_aid_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        """Columns it adds per grouping set (after counts and sums)."""
        return []

    def bucket_columns(self, items: Sequence[AggregateInput], sql: BucketSql) -> list[str]:
        """Columns it adds to the bucket row (after the per-instance ones)."""
        return []

    @abc.abstractmethod
    def state(self, item: AggregateInput, row: BucketRow) -> AnonymizingAggregate:
        """Its state in the bucket of `row`."""

    @abc.abstractmethod
    def result_type(self, item: AggregateInput) -> str:
        """The SQL type of its anonymized value."""

    def reported(self, value: Any, output: OutputRow) -> Any:
        """The value reported in `output`'s row."""
        return value


def json_array(value: Any) -> list[Any]:
    """A jsonb array of a bucket row (PL/Python passes jsonb as text)."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)
