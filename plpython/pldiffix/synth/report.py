"""Utility and risk figures of a twin against its source (pure): total variation distances of
every one-way and two-way marginal over the synthesis's own cells, the one-way marginals
themselves (for plots), and correlations of the ordered (binned) columns' bin numbers. For
administrators: the figures are exact."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from pldiffix.synth.columns import Column

Counts = Mapping[tuple[int, ...], np.ndarray]
Row = tuple[str, str | None, str | None, float | None, float | None, float | None]


def total_variation(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Half the L1 distance of the two normalized tables (0 when either is empty)."""
    a, b = np.asarray(real, float), np.asarray(synthetic, float)
    if a.sum() <= 0 or b.sum() <= 0:
        return 0.0
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def bin_correlation(table: np.ndarray) -> float | None:
    """Pearson correlation of the bin numbers in a two-way table of two binned columns, rows
    with NULL (cell 0) on either side left out; None when undefined."""
    counts = np.asarray(table, float)[1:, 1:]
    total = counts.sum()
    if total <= 0:
        return None
    x = np.arange(counts.shape[0])[:, None]
    y = np.arange(counts.shape[1])[None, :]
    mean_x, mean_y = (counts * x).sum() / total, (counts * y).sum() / total
    cov = (counts * (x - mean_x) * (y - mean_y)).sum() / total
    var_x = (counts * (x - mean_x) ** 2).sum() / total
    var_y = (counts * (y - mean_y) ** 2).sum() / total
    if var_x <= 0 or var_y <= 0:
        return None
    return float(cov / np.sqrt(var_x * var_y))


def rows(
    modeled: Sequence[Column],
    real: Counts,
    synthetic: Counts,
    real_rows: int,
    synthetic_rows: int,
    matches: int,
) -> list[Row]:
    """(metric, column, other column, real, synthetic, value) rows of the report."""
    out: list[Row] = [
        (
            "rows",
            None,
            None,
            float(real_rows),
            float(synthetic_rows),
            synthetic_rows / real_rows if real_rows else None,
        )
    ]
    for j, column in enumerate(modeled):
        out.append(
            ("tvd", column.name, None, None, None, total_variation(real[(j,)], synthetic[(j,)]))
        )
    for j, column in enumerate(modeled):
        for cell, label in enumerate(column.cell_labels()):
            out.append(
                (
                    "marginal",
                    column.name,
                    label,
                    float(real[(j,)][cell]),
                    float(synthetic[(j,)][cell]),
                    float(cell),
                )
            )
    for a, b in itertools.combinations(range(len(modeled)), 2):
        names = (modeled[a].name, modeled[b].name)
        out.append(("tvd", *names, None, None, total_variation(real[(a, b)], synthetic[(a, b)])))
    for a, b in itertools.combinations(range(len(modeled)), 2):
        if modeled[a].kind == modeled[b].kind == "binned":
            before, after = bin_correlation(real[(a, b)]), bin_correlation(synthetic[(a, b)])
            difference = None if before is None or after is None else after - before
            out.append(("correlation", modeled[a].name, modeled[b].name, before, after, difference))
    share = matches / synthetic_rows if synthetic_rows else None
    out.append(("exact_match_share", None, None, None, float(matches), share))
    return out
