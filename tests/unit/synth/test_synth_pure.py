"""Synthetic twins, pure parts: accounting, discrete Gaussian noise, column plans, the tree
model and its sampler, the generated SQL."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from pldiffix.synth import accounting, model, noise, queries, report
from pldiffix.synth.columns import (
    Column,
    ColumnFacts,
    SynthesisError,
    plan_columns,
    values_in_cells,
)

# --- accounting -------------------------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3])
def test_rho_converts_back_to_epsilon(epsilon, delta):
    rho = accounting.rho_for(epsilon, delta)
    assert accounting.epsilon_for(rho, delta) == pytest.approx(epsilon, rel=1e-12)
    # the textbook form: epsilon = rho + 2 sqrt(rho ln(1/delta))
    assert rho + 2 * math.sqrt(rho * math.log(1 / delta)) == pytest.approx(epsilon, rel=1e-12)


@pytest.mark.parametrize("columns", [0, 1, 2, 3, 8])
@pytest.mark.parametrize("contributions", [1, 4])
def test_the_measurements_compose_to_the_asked_cost(columns, contributions):
    plan = accounting.plan_budget(1.0, 1e-6, columns, contributions)
    k2 = contributions**2
    measured = plan.measurement_count * k2 / (2 * float(plan.measurement_variance))
    selected = (
        plan.selection_count * k2 / (2 * float(plan.selection_variance))
        if plan.selection_variance
        else 0.0
    )
    assert plan.rho_spent == pytest.approx(measured + selected)
    assert plan.measurement_count == max(1, 2 * columns - 1)
    assert plan.selection_count == (columns * (columns - 1) // 2 if columns >= 3 else 0)
    # variances are rounded up: never more than asked, and barely less
    assert plan.epsilon_spent <= 1.0
    assert plan.epsilon_spent == pytest.approx(1.0, rel=1e-4)
    if columns >= 3:
        assert selected == pytest.approx(accounting.SELECTION_SHARE * plan.rho_spent, rel=1e-4)


def test_noise_scale_follows_the_contribution_bound():
    one = accounting.plan_budget(1.0, 1e-6, 4, 1)
    five = accounting.plan_budget(1.0, 1e-6, 4, 5)
    assert float(five.measurement_variance) == pytest.approx(
        25 * float(one.measurement_variance), rel=1e-5
    )
    # sigma^2 = k^2 / (2 rho_m), rho_m = 0.9 rho / 7 measurements
    rho = accounting.rho_for(1.0, 1e-6)
    assert float(one.measurement_variance) == pytest.approx(1 / (2 * 0.9 * rho / 7), rel=1e-5)


@pytest.mark.parametrize("epsilon, delta", [(0, 1e-6), (-1, 1e-6), (1, 0), (1, 1), (math.inf, 0.1)])
def test_invalid_costs_are_refused(epsilon, delta):
    with pytest.raises(ValueError):
        accounting.rho_for(epsilon, delta)


# --- discrete Gaussian --------------------------------------------------------------------------


def _discrete_gaussian_variance(variance: float) -> float:
    support = np.arange(-200, 201)
    weights = np.exp(-(support**2) / (2 * variance))
    return float(np.sum(weights * support**2) / np.sum(weights))


@pytest.mark.parametrize("variance", [Fraction(1, 2), Fraction(9), Fraction(400)])
def test_discrete_gaussian_has_its_theoretical_variance(variance):
    draws = np.array([noise.discrete_gaussian(variance) for _ in range(6000)])
    expected = _discrete_gaussian_variance(float(variance))
    # the sample variance of 6000 draws is within 5 standard errors (sd ~ var * sqrt(2/n))
    assert abs(draws.var() - expected) < 5 * expected * math.sqrt(2 / draws.size)
    assert abs(draws.mean()) < 5 * math.sqrt(expected / draws.size)


def test_noisy_keeps_the_shape_and_adds_integers():
    counts = np.arange(12).reshape(3, 4)
    noisy = noise.noisy(counts, Fraction(1))
    assert noisy.shape == (3, 4) and noisy.dtype == np.int64
    assert not np.array_equal(noise.noisy(np.zeros(500), Fraction(100)), np.zeros(500))


# --- column plans -------------------------------------------------------------------------------

FACTS = [
    ColumnFacts("id", "integer", "integer"),
    ColumnFacts("email", "text", "text"),
    ColumnFacts("city", "character varying(20)", "character varying"),
    ColumnFacts("age", "integer", "integer"),
    ColumnFacts("paid", "boolean", "boolean"),
    ColumnFacts("mood", "public.mood", "public.mood", ("calm", "busy")),
    ColumnFacts("born", "date", "date"),
    ColumnFacts("score", "numeric(6,2)", "numeric"),
]


def _plan(options=None, selected=None, domains=None, bounds=None):
    return {
        c.name: c
        for c in plan_columns(
            FACTS,
            "id",
            bounds if bounds is not None else {"age": (0.0, 100.0)},
            domains if domains is not None else {"city": ["Rome", "O'Hare\\"]},
            options or {},
            selected,
        )
    }


def test_only_declared_cells_are_modeled_and_unique_strings_become_placeholders():
    plan = _plan()
    assert plan["id"].kind == "identifier"
    assert plan["email"].kind == "placeholder" and not plan["email"].modeled
    assert plan["city"].categories == ("Rome", "O'Hare\\")
    assert plan["age"].edges == tuple(float(x) for x in range(0, 101, 10))
    assert plan["paid"].categories == ("false", "true")
    assert plan["mood"].categories == ("calm", "busy")
    assert plan["born"].kind == "null" and plan["score"].kind == "null"


def test_declared_bins_and_categories_in_the_options():
    plan = _plan(
        {
            "bins": {"born": ["1950-01-01", "2000-01-01"], "age": 4, "score": [0, 5.5, 10]},
            "categories": {"email": ["a@x", "b@x"]},
        }
    )
    assert plan["born"].edge_texts() == ["1950-01-01", "2000-01-01"]
    assert plan["age"].edges == (0.0, 25.0, 50.0, 75.0, 100.0)
    assert plan["score"].edges == (0.0, 5.5, 10.0)
    assert plan["email"].categories == ("a@x", "b@x")


def test_too_many_cells_are_refused_before_anything_is_measured():
    wide = {"bins": {"age": 1000, "score": [float(i) for i in range(300)]}}
    with pytest.raises(SynthesisError, match="more than 200000"):
        _plan(wide, bounds={"age": (0.0, 100.0)})
    assert _plan({"bins": {"age": 1000}})["age"].cells == 1001


def test_selected_columns_only_are_modeled():
    plan = _plan(selected=["age"])
    assert plan["age"].modeled and not plan["city"].modeled and not plan["paid"].modeled


@pytest.mark.parametrize(
    "options, selected, message",
    [
        ({"bins": {"email": [1, 2]}}, None, "cannot be binned"),
        ({"bins": {"age": [3, 1]}}, None, "increasing"),
        ({"bins": {"age": 0}}, None, "whole number"),
        ({"bins": {"score": 5}}, None, "DP bounds"),
        ({"bins": {"born": [1, 2]}}, None, "ISO dates"),
        ({"categories": {"email": ["a", "a"]}}, None, "distinct"),
        ({"bins": {"nope": 3}}, None, "no column named nope"),
        ({"bins": {"id": 3}}, None, "AID"),
        ({}, ["email"], "neither bins nor a domain"),
        ({"bins": []}, None, "object"),
    ],
)
def test_bad_declarations_are_refused(options, selected, message):
    with pytest.raises(SynthesisError, match=message):
        _plan(options, selected)


def test_cell_sql_quotes_values_and_never_fails():
    plan = _plan()
    city = plan["city"].cell_sql('t."city"')
    assert "'O''Hare\\\\'" in city and city.startswith("COALESCE(pg_catalog.array_position(")
    age = plan["age"].cell_sql('t."age"')
    assert "width_bucket" in age and "LEAST(GREATEST(" in age and age.endswith(", 0)")


def test_values_fall_inside_their_bins():
    rng = np.random.default_rng(7)
    ages = Column("age", "integer", "binned", "integer", (0.0, 2.5, 5.0, 10.0))
    cells = np.array([0, 1, 2, 3] * 500)
    values = values_in_cells(ages, cells, rng)
    for cell, value in zip(cells.tolist(), values, strict=True):
        if cell == 0:
            assert value == ""
            continue
        number = int(value)
        low, high = ages.edges[cell - 1], ages.edges[cell]
        assert low <= number < high or (cell == 3 and number == high)
    assert {int(v) for c, v in zip(cells, values, strict=True) if c == 3} == set(range(5, 11))
    days = Column("born", "date", "binned", "date", (0.0, 30.0))  # the last bin holds 30
    assert {v[:7] for v in values_in_cells(days, np.ones(200, dtype=int), rng)} == {"1970-01"}
    floats = Column("w", "double precision", "binned", "float", (1.0, 2.0))
    assert all(1.0 <= float(v) < 2.0 for v in values_in_cells(floats, np.ones(100, int), rng))


# --- the tree model -----------------------------------------------------------------------------


def test_spanning_tree_takes_the_strongest_edges():
    weights = {(0, 1): 0.9, (1, 2): 0.8, (0, 2): 0.85, (2, 3): 0.1, (0, 3): 0.05}
    assert sorted(model.spanning_tree(4, weights)) == [(0, 1), (0, 2), (2, 3)]
    assert model.spanning_tree(1, {}) == []


def test_mutual_information_of_independent_and_dependent_tables():
    assert model.mutual_information(np.outer([1, 3], [2, 2]) * 10) == pytest.approx(0.0)
    assert model.mutual_information(np.array([[50, 0], [0, 50]])) == pytest.approx(math.log(2))
    assert model.mutual_information(np.array([[-5, -1], [-2, -8]])) == 0.0


def test_sampling_reproduces_a_known_model():
    known = model.TreeModel(
        sizes=(3, 2, 4),
        root=0,
        root_probabilities=np.array([0.2, 0.5, 0.3]),
        parents={1: 0, 2: 1},
        conditionals={
            1: np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]]),
            2: np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]),
        },
        total=0.0,
    )
    cells = model.sample(known, 100_000, np.random.default_rng(3))
    root = np.bincount(cells[:, 0], minlength=3) / cells.shape[0]
    assert np.abs(root - known.root_probabilities).max() < 0.01
    for parent in range(3):
        rows = cells[cells[:, 0] == parent, 1]
        assert abs(rows.mean() - known.conditionals[1][parent, 1]) < 0.02
    joint = np.zeros((2, 4))
    np.add.at(joint, (cells[:, 1], cells[:, 2]), 1)
    expected = (known.root_probabilities @ known.conditionals[1])[:, None] * known.conditionals[2]
    assert np.abs(joint / cells.shape[0] - expected).max() < 0.01


def test_estimate_is_consistent_and_recovers_noiseless_marginals():
    truth = np.array([[30, 10, 0], [5, 5, 50]])
    one_way = [truth.sum(axis=1), truth.sum(axis=0)]
    fitted = model.estimate([2, 3], one_way, {(0, 1): truth}, 1.0)
    assert fitted.total == pytest.approx(100)
    assert fitted.root_probabilities == pytest.approx([0.4, 0.6])
    child = 1 - fitted.root
    conditional = fitted.conditionals[child]
    expected = truth / truth.sum(axis=1, keepdims=True)
    assert conditional == pytest.approx(expected if fitted.root == 0 else expected.T, abs=1e-6)


def test_estimate_makes_negative_noisy_counts_a_distribution():
    fitted = model.estimate(
        [2, 2], [np.array([-3, 10]), np.array([4, -1])], {(0, 1): np.array([[-2, 1], [7, -4]])}, 9.0
    )
    assert (fitted.root_probabilities >= 0).all() and fitted.root_probabilities.sum() == 1
    for table in fitted.conditionals.values():
        assert (table >= 0).all() and np.allclose(table.sum(axis=1), 1)


# --- SQL ----------------------------------------------------------------------------------------


def test_marginals_sql_bounds_contributions_unless_the_aid_is_unique():
    columns = [_plan()["age"], _plan()["city"]]
    bounded = queries.marginals_sql("s", "t", "pid", columns, 3, 42, pairs=True)
    assert 'row_number() OVER (PARTITION BY t."pid"' in bounded
    assert "hashtidextended(t.ctid, 42)" in bounded and "<=) 3" in bounded
    assert "GROUPING SETS ((c0), (c1), (c0, c1))" in bounded
    unique = queries.marginals_sql("s", "t", "pid", columns, None, 42, pairs=False)
    assert "row_number" not in unique and "GROUPING SETS ((c0), (c1))" in unique
    assert 't."pid" IS NOT NULL' in unique
    assert "count(*) AS n FROM bounded" in queries.marginals_sql("s", "t", "pid", [], 1, 1, False)


def test_insert_sql_reads_payloads_and_never_raw_values():
    plan = list(_plan().values())
    sql, types = queries.insert_sql("twin", plan)
    assert types == ["int8", "int8", "text", "text[]", "text", "text", "text[]", "text", "text[]"]
    assert 'INSERT INTO "diffix_synthetic"."twin"' in sql
    assert "CAST('synthetic_' OPERATOR(pg_catalog.||) CAST(u.n AS pg_catalog.text) AS text)" in sql
    assert "CAST(u.n AS integer)" in sql and "CAST(NULL AS date)" in sql


def test_sample_sql_returns_the_same_rows_as_jsonb():
    plan = list(_plan().values())
    select, types = queries.rows_sql(plan)
    sql, sample_types = queries.sample_sql(plan)
    assert sample_types == types
    assert sql == f"SELECT pg_catalog.to_jsonb(s) AS row FROM ({select}) AS s"
    # every column of the twin is named as in the table, whatever its name
    for column in plan:
        assert f' AS "{column.name}"' in select


# --- the report ---------------------------------------------------------------------------------


def test_total_variation_distance():
    assert report.total_variation(np.array([5, 5]), np.array([50, 50])) == 0.0
    assert report.total_variation(np.array([10, 0]), np.array([0, 3])) == 1.0
    assert report.total_variation(np.array([3, 1]), np.array([1, 1])) == pytest.approx(0.25)
    assert report.total_variation(np.array([0, 0]), np.array([1, 1])) == 0.0


def test_bin_correlation_ignores_nulls_and_detects_direction():
    rising = np.zeros((4, 4))
    rising[1, 1] = rising[2, 2] = rising[3, 3] = 10
    rising[0, :] = rising[:, 0] = 1000  # NULL on either side: left out
    assert report.bin_correlation(rising) == pytest.approx(1.0)
    falling = np.zeros((3, 3))
    falling[1, 2] = falling[2, 1] = 5
    assert report.bin_correlation(falling) == pytest.approx(-1.0)
    assert report.bin_correlation(np.ones((3, 1))) is None


def test_report_rows_cover_every_marginal_and_the_matches():
    binned = Column("a", "integer", "binned", "integer", (0.0, 1.0, 2.0))
    other = Column("b", "integer", "binned", "integer", (0.0, 1.0, 2.0))
    category = Column("c", "text", "categorical", categories=("x",))
    modeled = [binned, other, category]
    counts = {(0,): np.array([0, 5, 5]), (1,): np.array([0, 5, 5]), (2,): np.array([1, 9])}
    counts |= {(0, 1): np.diag([0, 5, 5]), (0, 2): np.ones((3, 2)), (1, 2): np.ones((3, 2))}
    rows = report.rows(modeled, counts, counts, 10, 20, 4)
    assert rows[0] == ("rows", None, None, 10.0, 20.0, 2.0)
    assert [(r[1], r[2]) for r in rows if r[0] == "tvd"] == [
        ("a", None),
        ("b", None),
        ("c", None),
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    assert all(r[5] == 0.0 for r in rows if r[0] == "tvd")
    marginals = [r for r in rows if r[0] == "marginal"]
    assert [r[1:3] for r in marginals if r[1] == "a"] == [
        ("a", "NULL"),
        ("a", "[0, 1)"),
        ("a", "[1, 2]"),
    ]
    assert [r[1:] for r in marginals if r[1] == "c"] == [
        ("c", "NULL or other", 1.0, 1.0, 0.0),
        ("c", "x", 9.0, 9.0, 1.0),
    ]
    assert [r[:3] for r in rows if r[0] == "correlation"] == [("correlation", "a", "b")]
    assert rows[-1] == ("exact_match_share", None, None, None, 4.0, 0.2)


# --- randomized rounding ------------------------------------------------------------------------


def test_draw_rounds_each_cell_to_within_one_of_its_share():
    probabilities = np.array([0.5, 0.0, 0.3333, 0.1667])
    rng = np.random.default_rng(5)
    totals = np.zeros(4)
    for _ in range(400):
        cells = model.draw(probabilities, 1001, rng)
        counts = np.bincount(cells, minlength=4)
        assert cells.size == 1001 and counts[1] == 0
        assert np.all(np.abs(counts - 1001 * probabilities) < 1)
        totals += counts
    # unbiased: the fractional remainders are spread by their weights
    assert np.abs(totals / 400 - 1001 * probabilities).max() < 0.1


def test_draw_shuffles_and_handles_degenerate_weights():
    cells = model.draw(np.array([0.5, 0.5]), 1000, np.random.default_rng(1))
    assert 0 < cells[:500].sum() < 500  # not sorted by cell
    assert model.draw(np.array([0.0, 0.0]), 10, np.random.default_rng(1)).size == 10
    assert model.draw(np.array([1.0]), 0, np.random.default_rng(1)).size == 0
