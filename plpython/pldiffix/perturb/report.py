"""Risk figures of a perturbed table that need the rows in hand. Pure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LINKAGE_SAMPLE = 10_000  # records linked against each other; O(n^2) distances, in blocks
_BLOCK = 500


def linkage_share(
    originals: Sequence[Sequence[float]], perturbed: Sequence[Sequence[float]]
) -> float | None:
    """The share of perturbed records whose nearest original record (Euclidean distance, each
    column scaled by its original standard deviation) is their own. A tie with another record
    counts as linked: the attacker picks among the nearest and may pick right.

    Row i of `perturbed` is the perturbed version of row i of `originals`. None when there are
    fewer than two records.
    """
    original = np.asarray(originals, dtype=float)
    noisy = np.asarray(perturbed, dtype=float)
    count = len(original)
    if count < 2:
        return None
    scale = original.std(axis=0)
    scale[scale == 0] = 1.0
    original = original / scale
    noisy = noisy / scale
    original_norms = (original**2).sum(axis=1)
    linked = 0
    for start in range(0, count, _BLOCK):
        block = noisy[start : start + _BLOCK]
        # |b - o|^2 - |b|^2: the same order as the distance, one matrix product per block
        distances = original_norms[None, :] - 2.0 * block @ original.T
        own = distances[np.arange(len(block)), np.arange(start, start + len(block))]
        linked += int((own <= distances.min(axis=1)).sum())
    return linked / count
