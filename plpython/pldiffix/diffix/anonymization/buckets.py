"""A bucket: its labels, its anonymizing aggregate states and its low-count state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pldiffix.diffix.anonymization.base import AnonymizingAggregate, BucketContext
from pldiffix.diffix.anonymization.low_count import LowCountState, LowCountSummary
from pldiffix.diffix.anonymization.params import AnonymizationParams
from pldiffix.diffix.anonymization.seeds import bucket_seed, label_hash


@dataclass(frozen=True)
class QueryContext:
    """Per-query inputs shared by all buckets.

    ``text_labels[i]`` tells whether grouping label ``i`` is of a text type (text, varchar,
    bpchar, cstring); only those show ``text_label_for_suppress_bin`` in the suppress bin, the
    others are NULL there. ``low_count_filter`` is true for grouped queries (explicit GROUP BY or
    implicit grouping of a non-aggregating SELECT with non-constant targets), which are the only
    ones subject to the low-count filter, LED and the suppress bin.
    """

    sql_seed: int
    text_labels: tuple[bool, ...] = ()
    base_label_hashes: frozenset[int] = frozenset()
    low_count_filter: bool = True

    @property
    def num_labels(self) -> int:
        return len(self.text_labels)


@dataclass(eq=False)
class Bucket:
    """One output row before anonymization.

    ``labels`` are compared for LED; ``label_hashes`` seed the bucket's noise and default to the
    hashes of ``label_material(label)`` — pass them explicitly when a label's Python value is not
    what pg_diffix would hash (e.g. a date delivered as text in the session's DateStyle).
    """

    labels: tuple[Any, ...]
    aggregates: list[AnonymizingAggregate]
    low_count_state: LowCountState | LowCountSummary | None = None
    label_hashes: tuple[int, ...] | None = None
    low_count: bool = False
    merged: bool = False
    is_suppress_bin: bool = False

    def __post_init__(self) -> None:
        if self.label_hashes is None:
            self.label_hashes = tuple(label_hash(label) for label in self.labels)
        if len(self.label_hashes) != len(self.labels):
            raise ValueError("one label hash per label is required")

    def seed(self, query: QueryContext) -> int:
        assert self.label_hashes is not None
        return bucket_seed(query.sql_seed, self.label_hashes, query.base_label_hashes)

    def context(self, query: QueryContext, params: AnonymizationParams) -> BucketContext:
        return BucketContext(params, self.seed(query), is_global=query.num_labels == 0)

    def evaluate_low_count(self, params: AnonymizationParams) -> bool:
        if self.low_count_state is None:
            raise ValueError("a grouped bucket needs a low-count state")
        return self.low_count_state.is_low_count(params)

    def merge(self, other: Bucket) -> None:
        """Adds the rows of ``other`` to every aggregate state of this bucket."""
        for mine, theirs in zip(self.aggregates, other.aggregates, strict=True):
            mine.merge(theirs)
        if self.low_count_state is not None and other.low_count_state is not None:
            self.low_count_state.merge(other.low_count_state)

    def finalize(self, query: QueryContext, params: AnonymizationParams) -> list[Any]:
        ctx = self.context(query, params)
        return [aggregate.finalize(ctx) for aggregate in self.aggregates]


@dataclass(frozen=True)
class OutputRow:
    labels: tuple[Any, ...]
    values: list[Any]
    is_suppress_bin: bool = False


def evaluate_low_count(buckets: Iterable[Bucket], params: AnonymizationParams) -> None:
    for bucket in buckets:
        bucket.low_count = bucket.evaluate_low_count(params)
