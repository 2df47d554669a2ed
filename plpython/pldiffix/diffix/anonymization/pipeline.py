"""Cross-bucket processing: low-count filter, LED, suppress bin, finalization."""

from __future__ import annotations

from collections.abc import Sequence

from pldiffix.diffix.anonymization.buckets import Bucket, OutputRow, QueryContext
from pldiffix.diffix.anonymization.led import apply_led
from pldiffix.diffix.anonymization.params import AnonymizationParams
from pldiffix.diffix.anonymization.suppress_bin import build_suppress_bin


def anonymize_buckets(
    buckets: Sequence[Bucket], query: QueryContext, params: AnonymizationParams
) -> list[OutputRow]:
    """Anonymizes all buckets of one query level and returns the rows to emit, in input order.

    The suppress bin, when present, comes first. HAVING filters and the expansion of implicitly
    grouped rows (repeat each row by its anonymized ``count(*)``) are left to the caller.
    Bucket states are mutated by LED merges.
    """
    star: Bucket | None = None
    if query.low_count_filter:
        for bucket in buckets:
            bucket.low_count = bucket.evaluate_low_count(params)
        apply_led(buckets, query.num_labels, params)
        if params.compute_suppress_bin:
            star = build_suppress_bin(buckets, query, params)

    rows: list[OutputRow] = []
    if star is not None:
        rows.append(OutputRow(star.labels, star.finalize(query, params), is_suppress_bin=True))
    for bucket in buckets:
        if bucket.low_count or bucket.merged:
            continue
        rows.append(OutputRow(bucket.labels, bucket.finalize(query, params)))
    return rows
