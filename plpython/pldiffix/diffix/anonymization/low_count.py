"""The low-count filter: a bucket is suppressed if any AID instance has too few distinct AIDs.

The threshold is noisy but seeded only by the bucket's AID set, so the same set of users always
meets the same threshold regardless of how the bucket is labelled.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

from pldiffix.diffix.anonymization.hashing import AidKind, AidValue, hash_aids
from pldiffix.diffix.anonymization.noise import is_low_count
from pldiffix.diffix.anonymization.params import AnonymizationParams


@dataclass
class LowCountState:
    """Distinct AID hashes per AID instance for one bucket."""

    aid_sets: list[set[int]] = field(default_factory=list)

    @classmethod
    def from_inputs(
        cls, kinds: Sequence[AidKind], aids: Sequence[Sequence[AidValue]]
    ) -> LowCountState:
        """``aids[k]``: the distinct non-NULL AID values of instance ``k`` in the bucket."""
        if len(kinds) != len(aids):
            raise ValueError("one AID list per AID instance is required")
        return cls([set(hash_aids(values, kind)) for kind, values in zip(kinds, aids, strict=True)])

    def merge(self, other: LowCountState) -> None:
        for mine, theirs in zip(self.aid_sets, other.aid_sets, strict=True):
            mine |= theirs

    def empty(self) -> LowCountState:
        return LowCountState([set() for _ in self.aid_sets])

    def is_low_count(self, params: AnonymizationParams) -> bool:
        low = False
        for aid_set in self.aid_sets:
            seed = functools.reduce(operator.xor, aid_set, 0)
            low = low or is_low_count(params, len(aid_set), seed)
        return low


@dataclass
class LowCountSummary:
    """``LowCountState`` reduced to ``(distinct AIDs, XOR seed)`` per instance; never merged."""

    counts: list[tuple[int, int]] = field(default_factory=list)

    def merge(self, other: object) -> None:
        raise ValueError("a summarized low-count state cannot be merged")

    def empty(self) -> LowCountState:
        raise ValueError("a summarized bucket is high-count and never seeds the suppress bin")

    def is_low_count(self, params: AnonymizationParams) -> bool:
        low = False
        for count, seed in self.counts:
            low = low or is_low_count(params, count, seed)
        return low
