"""The MST comparison's pure parts: marginal errors and the forward sampler it uses on MST's
fitted model (tools/pldiffix_tools/bench_synth.py)."""

from __future__ import annotations

import numpy as np
import pytest

from pldiffix_tools import bench_synth


def test_marginal_errors_are_zero_for_the_same_rows_and_positive_for_shuffled_columns():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, 5000)
    cells = np.stack([a, (a + rng.integers(0, 2, 5000)) % 4, rng.integers(0, 3, 5000)], 1)
    same = bench_synth.marginal_errors(cells, cells[::-1].copy(), [4, 4, 3])
    assert (same.one_way_max, same.two_way_max) == (0.0, 0.0)
    broken = cells.copy()
    broken[:, 1] = rng.permutation(broken[:, 1])  # same one-way marginals, no correlation
    errors = bench_synth.marginal_errors(cells, broken, [4, 4, 3])
    assert errors.one_way_max == 0.0 and errors.two_way_max > 0.3


def test_junction_tree_order_puts_parents_first():
    order = bench_synth.junction_tree_order([("b", "c"), ("a", "b"), ("d",), ("c", "e")])
    placed: set[int] = set()
    for clique, parent in order:
        assert parent is None or parent in placed
        placed.add(clique)
    assert sorted(placed) == [0, 1, 2, 3]
    assert [parent is None for _, parent in order].count(True) == 2  # {a,b,c,e} and {d}


def test_forward_sample_reproduces_a_tree_distribution():
    rng = np.random.default_rng(2)
    ab = np.array([[0.3, 0.1], [0.05, 0.55]])
    b_given = np.array([[0.8, 0.2, 0.0], [0.1, 0.1, 0.8]])  # P(c | b)
    bc = ab.sum(axis=0)[:, None] * b_given
    drawn = bench_synth.forward_sample(
        [(("b", "c"), bc), (("a", "b"), ab)], {"a": 2, "b": 2, "c": 3}, 200_000, rng
    )
    joint = np.zeros((2, 2, 3))
    np.add.at(joint, (drawn["a"], drawn["b"], drawn["c"]), 1)
    expected = ab[:, :, None] * b_given[None, :, :]
    assert joint / 200_000 == pytest.approx(expected, abs=0.005)


def test_without_mst_the_bench_says_so_and_goes_on(tmp_path, monkeypatch, capsys):
    class Failed:
        returncode = 1
        stdout = ""
        stderr = "ERROR: No matching distribution found for smartnoise-synth==1.0.8"

    monkeypatch.setattr(bench_synth.subprocess, "run", lambda *a, **k: Failed())
    assert bench_synth.ensure_mst_venv(tmp_path / "venv") is None
    printed = capsys.readouterr().out
    assert "MST cannot be installed" in printed and "No matching distribution" in printed
    result = bench_synth.Comparison(10, 1.0, 1e-6, [2], [bench_synth.Run("MST", note="absent")])
    assert "absent" in bench_synth.format_comparison(result)
