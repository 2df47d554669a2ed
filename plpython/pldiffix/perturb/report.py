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


# Rules of thumb the explanations judge by (docs/perturbation.md, "Reading the report").
LINKAGE_LOW = 0.05  # at most one record in twenty links back to its original
LINKAGE_HIGH = 0.25
MIN_GROUP_GOOD = 5  # k-anonymity's usual floor; sensitive data wants more
UTILITY_SHIFT_SMALL = 0.05  # a mean, sd, min or max moved by at most 5% of its original value
CORRELATION_SHIFT_SMALL = 0.1


def explanation(
    metric: str,
    column: str | None,
    other: str | None,
    original: float | None,
    perturbed: float | None,
) -> str:
    """What one report row measures, whether its figures are good or bad, and what to change."""
    if metric == "rows":
        return "rows of the table; the view shows every one (perturbation changes values only)"
    if metric in ("mean", "sd", "min", "max"):
        return _utility(metric, column, original, perturbed)
    if metric == "correlation":
        return _correlation(column, other, original, perturbed)
    if metric == "linkage_share":
        return _linkage_text(column, perturbed)
    if metric == "min_group_size":
        return _group_text(column, original, perturbed)
    return metric


def _utility(metric: str, column: str | None, original: float | None, after: float | None) -> str:
    what = {"mean": "mean", "sd": "standard deviation", "min": "minimum", "max": "maximum"}[metric]
    text = f"utility: the {what} of {column} before and after perturbation; the closer the better"
    if original is None or after is None:
        return f"{text} (no values)"
    shift = abs(after - original) / abs(original) if original else abs(after - original)
    verdict = (
        "small"
        if shift <= UTILITY_SHIFT_SMALL
        else "large: lower the noise of this column, or accept the loss"
    )
    return f"{text}. Moved by {shift:.1%} of the original: {verdict}"


def _correlation(
    column: str | None, other: str | None, original: float | None, after: float | None
) -> str:
    text = (
        f"utility: Pearson correlation of {column} and {other} before and after; noise pulls it "
        "toward 0"
    )
    if original is None or after is None:
        return f"{text} (undefined: a column is constant or empty)"
    shift = abs(after - original)
    verdict = (
        "kept"
        if shift <= CORRELATION_SHIFT_SMALL
        else "weakened: analyses relating these columns will be misled; lower their noise"
    )
    return f"{text}. Changed by {shift:.2f}: {verdict}"


def _linkage_text(column: str | None, share: float | None) -> str:
    text = (
        f"risk: the share of perturbed records whose nearest original record, over the noisy "
        f"numeric columns ({column or 'none'}), is their own: what an attacker holding the "
        f"original rows re-identifies by nearest-neighbour matching. 0 is best, 1.0 means every "
        f"record links back"
    )
    if share is None:
        return f"{text}. Not computed: no column has uniform, gaussian or multiplicative noise"
    if share <= LINKAGE_LOW:
        verdict = "low"
    elif share <= LINKAGE_HIGH:
        verdict = "moderate: consider more noise on these columns"
    else:
        verdict = (
            "high: the noise is small next to the gaps between records; raise its scale "
            "(a, sd, fraction) or round/generalize these columns"
        )
    return f"{text}. {share:.2f} is {verdict}"


def _group_text(column: str | None, original: float | None, after: float | None) -> str:
    text = (
        f"risk: the smallest number of rows sharing one combination of the quasi-identifiers "
        f"({column}), before and after (k of k-anonymity). 1 means some row is unique on them: "
        f"whoever knows a person's values finds that person's row. At least {MIN_GROUP_GOOD} is "
        f"the usual floor"
    )
    if after is None:
        return f"{text}. Not computed: the view shows none of the quasi-identifiers"
    if after >= MIN_GROUP_GOOD:
        return f"{text}. {after:.0f} is good"
    return (
        f"{text}. {after:.0f} is too small: coarsen the quasi-identifiers (round, generalize, "
        "mask) or drop some from the view; noise alone leaves continuous values unique"
    )
