"""Low effect detection (LED).

A low-count bucket that differs from exactly one other bucket in some column (an "isolating"
column, the other bucket being high-count) and that has a column in which it differs from no
bucket at all (an "unknown" column) could reveal an attribute of a few users through the
difference it makes. Such a bucket is merged into each of its isolating siblings and hidden.
Only queries with more than two grouping labels are affected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.diffix.anonymization.buckets import Bucket
from pldiffix.diffix.anonymization.params import AnonymizationParams

MAX_LABELS_WITHOUT_LED = 2  # LED needs more grouping labels than this
_SIBLING_CAP = 3  # only "alone", "one sibling" and "several" matter


def _key_without(labels: tuple[Any, ...], column: int) -> tuple[Any, ...]:
    return labels[:column] + labels[column + 1 :]


def apply_led(buckets: Sequence[Bucket], num_labels: int, params: AnonymizationParams) -> int:
    """Merges LED-eligible low-count buckets into their siblings; returns how many were merged.

    ``low_count`` must already be evaluated for every bucket.
    """
    if num_labels <= MAX_LABELS_WITHOUT_LED:
        return 0
    groups: list[dict[tuple[Any, ...], list[Bucket]]] = [{} for _ in range(num_labels)]
    for bucket in buckets:
        for column in range(num_labels):
            members = groups[column].setdefault(_key_without(bucket.labels, column), [])
            if len(members) < _SIBLING_CAP:
                members.append(bucket)

    targets: list[Bucket] = []
    merged = 0
    for bucket in buckets:
        if not bucket.low_count:
            continue
        has_unknown_column = False
        isolating: list[Bucket] = []
        for column in range(num_labels):
            members = groups[column][_key_without(bucket.labels, column)]
            if len(members) == 1:
                has_unknown_column = True
            elif len(members) == 2:
                other = members[1] if members[0] is bucket else members[0]
                if not other.low_count:
                    isolating.append(other)
        if not has_unknown_column or not isolating:
            continue
        for target in isolating:
            target.merge(bucket)
            if not any(t is target for t in targets):
                targets.append(target)
        bucket.merged = True
        merged += 1

    for target in targets:
        target.low_count = target.evaluate_low_count(params)
    return merged
