"""Pure parts of row-level perturbation: rule validation, the views' SQL, linkage."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from pldiffix.perturb import expressions, methods, report
from pldiffix.perturb.config import Column, PerturbationError, Rule, validate
from pldiffix.perturb.methods import Rounding

EXPENSE = Column("medical_expense", "numeric", "numeric(10,2)", 2, 10)
VISITS = Column("visits", "int4", "integer")
WEIGHT = Column("weight", "float8", "double precision")
BIRTH = Column("birth_date", "date", "date")
SEEN = Column("seen_at", "timestamptz", "timestamp with time zone")
NAME = Column("full_name", "varchar", "character varying(100)")
BLOB = Column("photo", "bytea", "bytea")


@pytest.mark.parametrize(
    ("column", "method", "params", "expected"),
    [
        (EXPENSE, "uniform", {"a": 100, "min": 0}, {"a": 100.0, "min": 0}),
        (WEIGHT, "gaussian", {"sd": 2}, {"sd": 2.0}),
        (VISITS, "multiplicative", {"fraction": 0.2}, {"fraction": 0.2}),
        (EXPENSE, "round", {"step": 50}, {"step": 50.0}),
        (BIRTH, "date_shift", {"days": 30, "max": "2024-12-31"}, {"days": 30, "max": "2024-12-31"}),
        (SEEN, "generalize", {"to": "month"}, {"to": "month"}),
        (NAME, "mask", {}, {"keep_first": 1, "keep_last": 0, "char": "*"}),
        (BLOB, "pseudonym", {}, {"length": 16, "domain": "photo"}),
        (BLOB, "drop", {}, {}),
        (NAME, "keep", None, {}),
    ],
)
def test_valid_rules_are_normalized(column, method, params, expected) -> None:
    assert validate(column, method, params) == Rule(method, expected)


def test_sd_fraction_is_resolved_against_the_column_sd() -> None:
    rule = validate(EXPENSE, "Gaussian", {"sd_fraction": 0.1}, column_sd=250.0)
    assert rule == Rule("gaussian", {"sd": 25.0, "sd_fraction": 0.1})
    with pytest.raises(PerturbationError, match="no standard deviation"):
        validate(EXPENSE, "gaussian", {"sd_fraction": 0.1}, column_sd=None)


@pytest.mark.parametrize(
    ("column", "method", "params", "message"),
    [
        (EXPENSE, "laplace", {}, "unknown perturbation method 'laplace'"),
        (NAME, "uniform", {"a": 1}, "method uniform does not apply to column 'full_name'"),
        (EXPENSE, "mask", {}, "method mask does not apply"),
        (EXPENSE, "date_shift", {"days": 3}, "method date_shift does not apply"),
        (BIRTH, "gaussian", {"sd": 1}, "method gaussian does not apply"),
        (EXPENSE, "uniform", {}, "method uniform needs parameter 'a'"),
        (EXPENSE, "uniform", {"a": 0}, "parameter 'a' must be positive"),
        (EXPENSE, "uniform", {"a": "5"}, "parameter 'a' must be a finite number"),
        (EXPENSE, "uniform", {"a": True}, "parameter 'a' must be a finite number"),
        (EXPENSE, "uniform", {"a": 1, "spread": 2}, "does not take parameter(s) spread"),
        (EXPENSE, "gaussian", {"sd": -1}, "parameter 'sd' must not be negative"),
        (EXPENSE, "gaussian", {"sd": 1, "sd_fraction": 0.1}, "exactly one of 'sd'"),
        (EXPENSE, "gaussian", {}, "exactly one of 'sd'"),
        (EXPENSE, "multiplicative", {"fraction": 1.5}, "'fraction' in [0.000001, 1)"),
        (EXPENSE, "round", {"step": -5}, "parameter 'step' must be positive"),
        (BIRTH, "date_shift", {"days": 0}, "parameter 'days' must be an integer from 1"),
        (BIRTH, "date_shift", {"days": 2.5}, "parameter 'days' must be an integer"),
        (BIRTH, "date_shift", {"days": 2, "min": "yesterday"}, "must be an ISO date"),
        (BIRTH, "generalize", {"to": "day"}, "parameter 'to' must be one of"),
        (EXPENSE, "uniform", {"a": 1, "min": 5, "max": 1}, "min 5 is greater than max 1"),
        (NAME, "mask", {"char": "**"}, "parameter 'char' must be a single character"),
        (NAME, "pseudonym", {"length": 4}, "parameter 'length' must be an integer from 8"),
        (NAME, "pseudonym", {"domain": ""}, "parameter 'domain' must be a non-empty string"),
        (EXPENSE, "uniform", [1, 2], "params must be a JSON object"),
    ],
)
def test_bad_rules_say_what_is_wrong(column, method, params, message) -> None:
    with pytest.raises(PerturbationError) as raised:
        validate(column, method, params)
    assert message in raised.value.message


def test_the_row_key_can_only_be_dropped_or_pseudonymized() -> None:
    assert validate(VISITS, "pseudonym", {}, is_row_key=True).method == "pseudonym"
    assert validate(VISITS, "drop", {}, is_row_key=True).method == "drop"
    with pytest.raises(PerturbationError, match="is the row key"):
        validate(VISITS, "round", {"step": 10}, is_row_key=True)


def test_type_errors_carry_datatype_mismatch() -> None:
    with pytest.raises(PerturbationError) as raised:
        validate(NAME, "gaussian", {"sd": 1})
    assert raised.value.sqlstate == "42804"
    assert "numeric" in (raised.value.hint or "")


# --- the views' SQL ------------------------------------------------------------------------


def _select(rules: dict[str, Rule], columns=(VISITS, EXPENSE, NAME), row_key="visits") -> str:
    return expressions.select_sql('"public"."t"', "public.t", columns, rules, row_key)


def test_the_row_key_is_dropped_unless_pseudonymized() -> None:
    plain = _select({})
    assert plain == (
        'SELECT t."medical_expense" AS "medical_expense", t."full_name" AS "full_name"'
        ' FROM "public"."t" t'
    )
    pseudonymized = _select({"visits": Rule("pseudonym", {"length": 10, "domain": "v"})})
    assert '"visits"' in pseudonymized.split(" FROM ")[0]
    assert "pg_catalog.left(pg_catalog.encode(" in pseudonymized


def test_noisy_columns_share_one_hash_per_five_draws() -> None:
    rules = {
        "medical_expense": Rule("gaussian", {"sd": 3.0, "slots": [0, 1]}),
        "full_name": Rule("mask", {"keep_first": 1, "keep_last": 0, "char": "*"}),
    }
    single = _select(rules)
    assert single.count("pg_catalog.sha256(") == 2  # the table key and one per-row hash
    assert "AS h0" in single and "AS h1" not in single
    rules["medical_expense"] = Rule("gaussian", {"sd": 3.0, "slots": [4, 5]})
    spanning = _select(rules)
    assert "AS h0" in spanning and "AS h1" in spanning and "'/1'" in spanning
    assert "pg_catalog.get_byte(n.h0, 24)" in spanning  # slot 4: bytes 24-29 of hash 0
    assert "pg_catalog.get_byte(n.h1, 0)" in spanning  # slot 5: bytes 0-5 of hash 1


def test_identifiers_and_literals_are_quoted() -> None:
    odd = Column('we"ird; DROP TABLE x', "float8", "double precision")
    sql = expressions.select_sql(
        '"s"."t"',
        "s.t'; --",
        [odd, VISITS],
        {odd.name: Rule("uniform", {"a": 1.0, "slots": [0]})},
        "visits",
    )
    assert '"we""ird; DROP TABLE x"' in sql
    assert "'/s.t''; --'" in sql
    masked = expressions.select_sql(
        '"s"."t"',
        "s.t",
        [NAME, VISITS],
        {"full_name": Rule("mask", {"keep_first": 1, "keep_last": 2, "char": "'"})},
        "visits",
    )
    assert "pg_catalog.repeat('''', " in masked


def test_no_secret_and_no_key_material_in_the_view_text() -> None:
    sql = _select({"medical_expense": Rule("uniform", {"a": 5.0, "slots": [0]})})
    assert "FROM diffix.microdata_key k" in sql
    assert "secret ||" in sql  # read from the table at query time, never a literal


def test_numeric_noise_is_added_in_units_of_the_last_decimal() -> None:
    parts = expressions.cell(EXPENSE, Rule("uniform", {"a": 100.0, "min": 0, "slots": [0]}))
    assert parts is not None and parts[1] is None
    cell = parts[0]
    assert "::pg_catalog.int8 * 0.01::pg_catalog.numeric" in cell
    assert cell.endswith("::numeric(10,2)")
    assert "GREATEST(" in cell and "0.0::pg_catalog.numeric" in cell


# --- linkage -------------------------------------------------------------------------------


def _brute_force(originals: np.ndarray, perturbed: np.ndarray) -> float:
    scale = originals.std(axis=0)
    linked = 0
    for i, record in enumerate(perturbed / scale):
        distances = np.sqrt((((originals / scale) - record) ** 2).sum(axis=1))
        linked += distances[i] <= distances.min()
    return linked / len(perturbed)


def test_linkage_share_equals_brute_force() -> None:
    rng = np.random.default_rng(7)
    originals = rng.normal(size=(1200, 3)) * [1000, 10, 1]
    for noise in (0.01, 0.3, 3.0):
        perturbed = originals + rng.normal(size=originals.shape) * [1000, 10, 1] * noise
        share = report.linkage_share(originals.tolist(), perturbed.tolist())
        assert share == pytest.approx(_brute_force(originals, perturbed), abs=1 / 1200)
    assert report.linkage_share(originals.tolist(), originals.tolist()) == 1.0
    assert report.linkage_share([[1.0]], [[2.0]]) is None


def test_linkage_counts_ties_as_linked() -> None:
    assert report.linkage_share([[0.0], [0.0], [5.0]], [[0.0], [0.0], [5.0]]) == 1.0


# --- rounding (methods.py) -------------------------------------------------------------------

FREE = Column("amount", "numeric", "numeric")


@pytest.mark.parametrize(
    ("column", "rule", "expected"),
    [
        (WEIGHT, Rule("uniform", {"a": 10.0}), Rounding(digits=1)),  # sd 5.77 -> 0.1
        (WEIGHT, Rule("uniform", {"a": 12.5}), Rounding(digits=1)),
        (WEIGHT, Rule("uniform", {"a": 100.0}), Rounding(digits=0)),
        (WEIGHT, Rule("gaussian", {"sd": 0.01}), Rounding(digits=3)),
        (WEIGHT, Rule("gaussian", {"sd": 2000.0}), Rounding(digits=-2)),
        (WEIGHT, Rule("gaussian", {"sd": 0.0}), Rounding()),
        (WEIGHT, Rule("uniform", {"a": 10.0, "digits": -1}), Rounding(digits=-1)),
        (WEIGHT, Rule("round", {"step": 0.25}), Rounding(digits=2)),
        (VISITS, Rule("uniform", {"a": 0.3}), Rounding(digits=0)),
        (EXPENSE, Rule("gaussian", {"sd": 0.001}), Rounding(digits=2)),
        (FREE, Rule("uniform", {"a": 100.0, "scale": 6}), Rounding(digits=0)),
        (FREE, Rule("gaussian", {"sd": 0.01, "scale": 2}), Rounding(digits=2)),
        (FREE, Rule("multiplicative", {"fraction": 0.1, "scale": 3}), Rounding(digits=3)),
    ],
)
def test_outputs_are_rounded_to_the_declared_or_derived_resolution(column, rule, expected):
    assert methods.rounding(column, rule) == expected


def test_multiplicative_floats_round_relative_to_their_own_value():
    found = methods.rounding(WEIGHT, Rule("multiplicative", {"fraction": 0.3}))
    assert found.digits is None and found.relative == pytest.approx(0.3 / math.sqrt(3) / 10)


@pytest.mark.parametrize(
    ("column", "params", "message"),
    [
        (VISITS, {"a": 5, "digits": 1}, "holds whole numbers: digits must be 0 or negative"),
        (EXPENSE, {"a": 5, "digits": 3}, "numeric(10,2): digits must be at most 2"),
        (WEIGHT, {"a": 5, "digits": 21}, "'digits' must be an integer from -20 to 20"),
        (WEIGHT, {"a": 5, "digits": 1.5}, "'digits' must be an integer"),
        (WEIGHT, {"a": 1e300}, "'a' must be between 1e-250 and 1e+290"),
        (WEIGHT, {"a": 1e-300}, "'a' must be between"),
    ],
)
def test_bad_digits_and_scales_say_what_is_wrong(column, params, message):
    with pytest.raises(PerturbationError, match=re.escape(message)):
        validate(column, "uniform", params)


def test_digits_are_kept_with_the_rule():
    assert validate(WEIGHT, "gaussian", {"sd": 1, "digits": -2}).params == {"sd": 1.0, "digits": -2}
    assert validate(FREE, "uniform", {"a": 1, "digits": 7}).params == {"a": 1.0, "digits": 7}


def test_float_cells_round_a_raw_value_computed_once_per_row():
    sql = _select({"weight": Rule("uniform", {"a": 10.0, "slots": [0]})}, (VISITS, EXPENSE, WEIGHT))
    assert 'CROSS JOIN LATERAL (SELECT (t."weight"::pg_catalog.float8 + ' in sql
    assert ") AS v2 OFFSET 0) r" in sql
    assert "pg_catalog.round(r.v2 * 10.0) / 10.0" in sql


@pytest.mark.parametrize(
    ("metric", "column", "other", "original", "perturbed", "says"),
    [
        ("rows", None, None, 10.0, 10.0, ["every one"]),
        ("mean", "expense", None, 100.0, 101.0, ["mean of expense", "1.0%", "small"]),
        ("sd", "expense", None, 10.0, 14.0, ["standard deviation", "40.0%", "lower the noise"]),
        ("max", "expense", None, None, None, ["no values"]),
        ("correlation", "a", "b", 0.8, 0.75, ["Pearson", "0.05", "kept"]),
        ("correlation", "a", "b", 0.8, 0.2, ["0.60", "weakened"]),
        ("correlation", "a", "b", None, None, ["undefined"]),
        ("linkage_share", "weight", None, None, 1.0, ["nearest-neighbour", "1.00 is high"]),
        ("linkage_share", "weight", None, None, 0.15, ["0.15 is moderate"]),
        ("linkage_share", "weight", None, None, 0.01, ["0.01 is low"]),
        ("linkage_share", None, None, None, None, ["Not computed"]),
        ("min_group_size", "city, age", None, 1.0, 1.0, ["(city, age)", "1 is too small"]),
        ("min_group_size", "city", None, 40.0, 38.0, ["38 is good"]),
        ("min_group_size", "city", None, None, None, ["shows none"]),
    ],
)
def test_each_report_figure_is_explained_and_judged(
    metric, column, other, original, perturbed, says
) -> None:
    text = report.explanation(metric, column, other, original, perturbed)
    for part in says:
        assert part in text, (part, text)


def test_the_views_a_refused_statement_names() -> None:
    from pldiffix.perturb.readers import views_named

    rows = [
        ("public", "flc", "diffix_perturbed.flc"),
        ("other", "flc", "diffix_perturbed.other_flc"),
        ("public", "patients", "diffix_perturbed.patients"),
    ]
    assert views_named(rows, [(None, "flc")], ["public"]) == ["diffix_perturbed.flc"]
    assert views_named(rows, [("other", "flc")], ["public"]) == ["diffix_perturbed.other_flc"]
    assert views_named(rows, [(None, "flc"), (None, "flc")], ["public", "other"]) == [
        "diffix_perturbed.flc",
        "diffix_perturbed.other_flc",
    ]
    assert views_named(rows, [(None, "cities")], ["public"]) == []
