"""The tree model: choosing the edges, estimating consistent marginals, sampling cells.

Input is noisy counts only (post-processing: nothing here can cost privacy). The model is a
Chow-Liu tree: the joint distribution of the modeled columns is the root's one-way distribution
times, for every other column, its distribution given its parent's cell. Edges are the maximum
spanning tree over the mutual information of noisy two-way marginals (Chow and Liu 1968; MST,
McKenna, Miklau, Sheldon 2021, selects similarly with a share of the budget).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Pair = tuple[int, int]
_IPF_ROUNDS = 50


def mutual_information(table: np.ndarray) -> float:
    """The mutual information of a (noisy) two-way count table, negative cells taken as 0."""
    counts = np.clip(np.asarray(table, dtype=float), 0.0, None)
    total = counts.sum()
    if total <= 0:
        return 0.0
    joint = counts / total
    rows = joint.sum(axis=1, keepdims=True)
    cols = joint.sum(axis=0, keepdims=True)
    mask = joint > 0
    return float(np.sum(joint[mask] * np.log(joint[mask] / (rows @ cols)[mask])))


def spanning_tree(columns: int, weights: Mapping[Pair, float]) -> list[Pair]:
    """A maximum spanning tree over `columns` nodes (Prim); pairs without weight count as 0."""
    if columns <= 1:
        return []
    inside = {0}
    edges: list[Pair] = []
    while len(inside) < columns:
        best: tuple[float, Pair] | None = None
        for a in sorted(inside):
            for b in range(columns):
                if b in inside:
                    continue
                pair = (min(a, b), max(a, b))
                weight = weights.get(pair, 0.0)
                if best is None or weight > best[0]:
                    best = (weight, pair)
        assert best is not None
        edges.append(best[1])
        inside.update(best[1])
    return edges


@dataclass(frozen=True)
class TreeModel:
    """Probabilities of the tree: the root's cells, and for each other column its parent and
    the table P(child cell | parent cell) (rows: parent cells)."""

    sizes: tuple[int, ...]
    root: int
    root_probabilities: np.ndarray
    parents: dict[int, int]
    conditionals: dict[int, np.ndarray]
    total: float  # the estimated number of (bounded) rows

    def order(self) -> list[int]:
        """Columns with every parent before its children."""
        order = [self.root]
        for column in order:
            order += sorted(c for c, p in self.parents.items() if p == column)
        return order


def estimate(
    sizes: Sequence[int],
    one_way: Sequence[np.ndarray],
    edges: Mapping[Pair, np.ndarray],
    variance: float,
) -> TreeModel:
    """A consistent tree model from noisy one-way marginals and the tree's noisy two-way ones.

    Every measurement has the same noise variance per cell. The number of rows is the
    inverse-variance weighted mean of the sums of all measurements; a column's distribution is
    the inverse-variance weighted mean of its one-way marginal and the margins of its two-way
    marginals (a margin over s cells has s times the variance), negative cells set to 0. Each
    two-way table (negative cells 0, plus a tiny floor so that no row is empty) is then fitted
    to both its columns' distributions by iterative proportional fitting: every edge agrees with
    every node, so the tree is one consistent distribution.
    """
    columns = len(sizes)
    sums = [float(m.sum()) for m in one_way] + [float(t.sum()) for t in edges.values()]
    sum_variances = [sizes[j] * variance for j in range(columns)]
    sum_variances += [t.size * variance for t in edges.values()]
    weights = [1.0 / v for v in sum_variances]
    total = max(0.0, float(np.dot(sums, weights) / np.sum(weights))) if sums else 0.0

    distributions = []
    for j in range(columns):
        estimates = [np.asarray(one_way[j], dtype=float)]
        precisions = [1.0]
        for (a, b), table in edges.items():
            if j in (a, b):
                other = sizes[b] if j == a else sizes[a]
                estimates.append(np.asarray(table, float).sum(axis=1 if j == a else 0))
                precisions.append(1.0 / other)
        combined = sum(p * e for p, e in zip(precisions, estimates, strict=True)) / sum(precisions)
        distributions.append(_normalized(np.clip(combined, 0.0, None)))

    tree = list(edges)
    root = _root(columns, tree)
    parents = _parents(columns, tree, root)
    conditionals = {}
    for child, parent in parents.items():
        pair = (min(child, parent), max(child, parent))
        table = np.clip(np.asarray(edges[pair], dtype=float), 0.0, None)
        if pair[0] != parent:
            table = table.T  # rows: the parent's cells
        fitted = _fitted(table, distributions[parent], distributions[child])
        conditionals[child] = _conditional(fitted, distributions[child])
    return TreeModel(tuple(sizes), root, distributions[root], parents, conditionals, total)


def _normalized(weights: np.ndarray) -> np.ndarray:
    total = weights.sum()
    if total <= 0:
        return np.full(weights.shape, 1.0 / weights.size)
    return weights / total


def _fitted(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Iterative proportional fitting of a joint distribution to the given margins."""
    joint = _normalized(table) + 1e-9 / table.size
    for _ in range(_IPF_ROUNDS):
        joint *= (rows / np.maximum(joint.sum(axis=1), 1e-300))[:, None]
        joint *= (cols / np.maximum(joint.sum(axis=0), 1e-300))[None, :]
    return joint


def _conditional(joint: np.ndarray, child: np.ndarray) -> np.ndarray:
    """P(child | parent) from a joint table; a parent cell without mass takes the child's
    distribution (it is never drawn unless rows are asked of an empty model)."""
    sums = joint.sum(axis=1, keepdims=True)
    return np.where(sums > 0, joint / np.where(sums > 0, sums, 1.0), child[None, :])


def _root(columns: int, tree: Sequence[Pair]) -> int:
    degree = [0] * columns
    for a, b in tree:
        degree[a] += 1
        degree[b] += 1
    return max(range(columns), key=lambda j: (degree[j], -j)) if columns else 0


def _parents(columns: int, tree: Sequence[Pair], root: int) -> dict[int, int]:
    neighbours: dict[int, list[int]] = {j: [] for j in range(columns)}
    for a, b in tree:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parents: dict[int, int] = {}
    frontier = [root]
    seen = {root}
    while frontier:
        node = frontier.pop()
        for other in neighbours[node]:
            if other not in seen:
                seen.add(other)
                parents[other] = node
                frontier.append(other)
    if len(seen) != columns:
        raise ValueError("the edges do not form a spanning tree")
    return parents


def sample(model: TreeModel, rows: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` rows of cells (rows x columns, int32): the root's cells drawn from its
    distribution, then each child's given its parent's, one vectorized draw per parent cell."""
    columns = len(model.sizes)
    cells = np.zeros((rows, columns), dtype=np.int32)
    if columns == 0 or rows == 0:
        return cells
    cells[:, model.root] = draw(model.root_probabilities, rows, rng)
    for child in model.order()[1:]:
        parent = model.parents[child]
        parent_cells = cells[:, parent]
        table = model.conditionals[child]
        for value in np.unique(parent_cells):
            where = np.flatnonzero(parent_cells == value)
            cells[where, child] = draw(table[value], where.size, rng)
    return cells


def draw(probabilities: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` cells with the given probabilities, by randomized rounding: each cell gets the
    whole part of count * p and one more with probability its fractional part (systematic
    sampling over the fractional parts in random order), and the result is shuffled. Every
    cell's expected count is count * p, as for independent draws, but the counts deviate from it
    by less than one: a sample's marginals carry no sampling noise beyond the model's."""
    weights = np.clip(np.asarray(probabilities, dtype=float), 0.0, None)
    total = weights.sum()
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    weights = weights / total if total > 0 else np.full(weights.size, 1.0 / weights.size)
    expected = weights * count
    counts = np.floor(expected).astype(np.int64)
    missing = count - int(counts.sum())
    if missing > 0:
        fractions = expected - counts
        fractions *= missing / fractions.sum()
        order = rng.permutation(weights.size)
        ends = np.cumsum(fractions[order])
        points = rng.random() + np.arange(missing)
        chosen = np.searchsorted(ends, points, side="right").clip(0, weights.size - 1)
        np.add.at(counts, order[chosen], 1)
    cells = np.repeat(np.arange(weights.size), counts)
    rng.shuffle(cells)
    return cells
