"""Anonymization parameters, as a plain immutable value.

The names match the pg_diffix settings without the ``pg_diffix.`` prefix. Validation of bounds and
of the ``strict`` rules belongs to ``pldiffix.core.settings``; this module only carries values and
derives a few quantities the algorithms need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

_TRUE_WORDS = {"true", "on", "yes", "1", "t", "y"}


@dataclass(frozen=True)
class AnonymizationParams:
    salt: str = ""
    noise_layer_sd: float = 1.0
    low_count_min_threshold: int = 3
    low_count_mean_gap: float = 2.0
    low_count_layer_sd: float = 1.0
    outlier_count_min: int = 1
    outlier_count_max: int = 2
    top_count_min: int = 3
    top_count_max: int = 4
    compute_suppress_bin: bool = True
    text_label_for_suppress_bin: str = "*"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AnonymizationParams:
        """Builds parameters from a mapping; unknown keys are ignored, strings are converted."""
        kwargs: dict[str, Any] = {}
        for field in fields(cls):
            if field.name not in values or values[field.name] is None:
                continue
            raw = values[field.name]
            default = getattr(cls, field.name)
            if isinstance(default, bool):
                kwargs[field.name] = (
                    raw if isinstance(raw, bool) else str(raw).strip().lower() in _TRUE_WORDS
                )
            elif isinstance(default, int):
                kwargs[field.name] = int(raw)
            elif isinstance(default, float):
                kwargs[field.name] = float(raw)
            else:
                kwargs[field.name] = str(raw)
        return cls(**kwargs)

    @property
    def top_capacity(self) -> int:
        """How many of the largest contributors flattening may look at."""
        return self.outlier_count_max + self.top_count_max

    @property
    def low_count_threshold_mean(self) -> float:
        return float(
            self.low_count_min_threshold
        ) + self.low_count_mean_gap * self.low_count_layer_sd * math.sqrt(2.0)

    def certainly_high_count(self) -> int:
        """Smallest count of distinct AIDs that passes the low-count filter for every seed.

        The Box-Muller noise is bounded because the uniform input is at least 1/(2^32-1), so a
        value backed by this many AIDs is high-count whatever its AID set. The SQL side may use it
        to avoid shipping large AID sets (see docs/engine.md).
        """
        max_normal = math.sqrt(-2.0 * math.log(1.0 / 4294967295.0))
        bound = self.low_count_threshold_mean + max_normal * self.low_count_layer_sd
        return max(math.floor(bound) + 1, self.low_count_min_threshold)
