"""The DP side by side's pure helpers: answers, errors, the report and the targets."""

from __future__ import annotations

import argparse
import math

import pytest

from pldiffix_tools import bench_dp_peers as peers
from pldiffix_tools.bench_dp_peers import CASES, Figures

GROUPED = next(c for c in CASES if c.name == "tx count, sum by kind")
GLOBAL = next(c for c in CASES if c.name == "avg")


def test_answers_take_the_last_columns_per_group_or_the_one_row():
    answer = peers._answer(GROUPED, [("k1", 10, 2.5), ("k2", 3, None)])
    assert answer["k1"] == (10.0, 2.5)
    assert answer["k2"][0] == 3.0 and math.isnan(answer["k2"][1])
    assert peers._answer(GLOBAL, [(12.5,)]) == (12.5,)


def test_errors_average_over_true_groups_and_count_missing_groups_fully():
    truth = {"a": (100.0, 1000.0), "b": (10.0, 50.0)}
    answer = {"a": (98.0, 1010.0)}  # b not released
    assert peers.absolute_errors(GROUPED, answer, truth) == pytest.approx((6.0, 30.0))
    assert peers.absolute_errors(GLOBAL, (3.0,), (5.5,)) == (2.5,)


def test_every_case_names_one_output_per_aggregate_it_selects():
    for case in CASES:
        selected = case.sql.split("FROM")[0].count("(")
        assert len(case.outputs) == selected - (1 if "percentile_cont" in case.sql else 0)
        assert (case.group is None) == ("GROUP BY" not in case.sql)


def _args() -> argparse.Namespace:
    return peers.parse_args(["--error-rows", "100k", "--runs", "7", "--time-runs", "2"])


def test_the_report_shows_each_output_and_case_with_notes():
    figures = {
        ("count by group, undeclared keys", "pldiffix"): Figures(errors=[0.8, 1.0]),
        ("count by group, undeclared keys", "OpenDP"): Figures(errors=[0.9, 0.9]),
        ("median", "SmartNoise SQL"): Figures(note="no median in SmartNoise SQL"),
        ("median", "pldiffix"): Figures(errors=[3.0]),
        ("avg", "pldiffix"): Figures(times_ms=[10.0, 30.0, 20.0]),
    }
    text = peers.report(figures, _args())
    assert "over 7 runs at 100k people" in text
    assert "| count by group, undeclared keys: error | 0.90 | — | 0.90 |" in text
    assert "| avg: time | 20 ms | — | — |" in text
    assert "SmartNoise SQL: no median in SmartNoise SQL" in text
    for output in (o for case in CASES for o in case.outputs):
        assert f"| {output}: error |" in text
    assert "target undeclared keys <= 1.1x OpenDP: 0.90 ± 0.10 vs 0.90 ± 0.00 (1.00x): met" in text
    assert "target median <= 2x Tumult's 0.98: 3.00: MISSED" in text


def test_targets_need_their_figures():
    assert peers.targets({}) == []
    missed = {
        ("count by group, undeclared keys", "pldiffix"): Figures(errors=[1.0]),
        ("count by group, undeclared keys", "OpenDP"): Figures(errors=[0.5]),
    }
    assert peers.targets(missed) == [
        "   target undeclared keys <= 1.1x OpenDP: 1.00 vs 0.50 (2.00x): MISSED"
    ]
