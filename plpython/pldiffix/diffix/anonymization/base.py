"""Shared per-bucket input shapes and the interface every anonymizing aggregate implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from pldiffix.diffix.anonymization.hashing import AidKind, AidValue, hash_aid
from pldiffix.diffix.anonymization.params import AnonymizationParams

Number = int | float


@dataclass(frozen=True)
class AidContributions:
    """One AID instance of one aggregate in one bucket, grouped per AID value by SQL.

    ``aids[i]`` is a distinct non-NULL AID value and ``values[i]`` its total contribution (row
    count, non-NULL count, or summed magnitude), or ``None`` when the AID is present in the bucket
    but does not contribute to this aggregate. ``unaccounted_for`` is the contribution of rows
    whose AID of this instance is NULL while at least one other AID instance is not.
    ``total`` optionally gives the sum of ``values`` computed directly over the rows (for float
    sums: rows with this AID non-NULL, in scan order); by default the values are added up.
    """

    aids: Sequence[AidValue]
    values: Sequence[Number | None]
    unaccounted_for: Number = 0
    total: Number | None = None

    def hashed(self, kind: AidKind) -> list[int]:
        return [hash_aid(aid, kind) for aid in self.aids]


@dataclass(frozen=True)
class BucketContext:
    """What finalization needs besides the aggregate state."""

    params: AnonymizationParams
    bucket_seed: int
    is_global: bool = False  # the query has no grouping labels

    @property
    def min_count(self) -> int:
        """Lowest count reported for a bucket: 0 globally, else the minimum LCF threshold."""
        return 0 if self.is_global else self.params.low_count_min_threshold


class AnonymizingAggregate(Protocol):
    """State of one anonymizing aggregate in one bucket."""

    def merge(self, other: Self) -> None:
        """Adds the rows of ``other`` (same aggregate, another bucket) to this state."""

    def empty(self) -> Self:
        """A state of the same aggregate with no rows, used to build the suppress bin."""

    def finalize(self, ctx: BucketContext) -> Any:
        """The anonymized value of this aggregate for the bucket."""
