"""The suppress bin (star bucket): all suppressed buckets pooled into one extra row.

Buckets that failed the low-count filter and were not absorbed by LED are merged. The pool is
reported — text labels replaced by ``text_label_for_suppress_bin``, other labels NULL — when at
least two buckets went into it and it passes the low-count filter itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pldiffix.diffix.anonymization.agg_funcs import AggFuncs, AggregateInput, BucketRow
from pldiffix.diffix.anonymization.base import BucketContext
from pldiffix.diffix.anonymization.buckets import Bucket, OutputRow, QueryContext
from pldiffix.diffix.anonymization.params import AnonymizationParams


def build_suppress_bin(
    buckets: Sequence[Bucket], query: QueryContext, params: AnonymizationParams
) -> Bucket | None:
    """The suppress bin, or None. ``low_count`` and ``merged`` must be final."""
    suppressed = [b for b in buckets if b.low_count and not b.merged]
    if len(suppressed) < 2:
        return None
    first = suppressed[0]
    if first.low_count_state is None:
        raise ValueError("a grouped bucket needs a low-count state")
    labels = tuple(
        params.text_label_for_suppress_bin if is_text else None for is_text in query.text_labels
    )
    star = Bucket(
        labels=labels,
        aggregates=[aggregate.empty() for aggregate in first.aggregates],
        low_count_state=first.low_count_state.empty(),
        is_suppress_bin=True,
    )
    for bucket in suppressed:
        star.merge(bucket)
    star.low_count = star.evaluate_low_count(params)
    return None if star.low_count else star


@dataclass
class SuppressBinFlag:
    """is_suppress_bin(*): false in every bucket; the suppress bin's row reports true."""

    def merge(self, other: SuppressBinFlag) -> None:
        return None

    def empty(self) -> SuppressBinFlag:
        return SuppressBinFlag()

    def finalize(self, ctx: BucketContext) -> bool:
        return False


class _IsSuppressBin(AggFuncs):
    kinds = ("is_suppress_bin",)

    def state(self, item: AggregateInput, row: BucketRow) -> SuppressBinFlag:
        return SuppressBinFlag()

    def result_type(self, item: AggregateInput) -> str:
        return "boolean"

    def reported(self, value: Any, output: OutputRow) -> Any:
        return output.is_suppress_bin


IS_SUPPRESS_BIN = _IsSuppressBin()
