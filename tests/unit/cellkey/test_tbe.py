"""Cell-key (TBE) perturbation: hand-computed cells, scope keys, ranges, configuration errors."""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
import tbe_helpers

from pldiffix.cellkey import tbe, tbe_config
from pldiffix.cellkey.tbe import CellInput, SumInput
from pldiffix.cellkey.tbe_config import (
    ScopeKeyDeclarations,
    TbeConfig,
    TbeConfigError,
    TbeInputError,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tbe"
SEED_N = 1766976779

# A toy configuration small enough to compute by hand.
# row(key) = key * 4 // 100: keys 0-24 -> 0, 25-49 -> 1, 50-74 -> 2, 75-99 -> 3.
# col(n) = min(n, 3) - 1.
P = [
    [0, 1, -1],
    [1, -1, 2],
    [-1, 0, 1],
    [-2, 2, -2],
]
S = [
    [0.5, -0.5, 1],
    [1, 0.25, -1],
    [-1, 0.5, 0],
    [0.25, -0.25, 0.5],
]
SCOPE_P = [
    [1, 1, 1],
    [2, 2, 2],
    [-1, -1, -1],
    [0, 0, 0],
]
# Keys per field sum to 1 mod 100.
TOY_DECLARATIONS = "A,x,30\nA,y,71\nB,u,5\nB,v,40\nB,,56\n"

TOY_PARAMS = {
    "record_key_name": "rk",
    "value_tiebreaker_name": "uid",
    "bigN": 100,
    "smallN": 4,
    "smallC": 3,
    "m": [0.5, 0.3],
    "p_matrix": P,
    "s_matrix": S,
}

SEED_DECLARATIONS = """\
BEDROOMS,<0,465455415
BEDROOMS,0,195061038
BEDROOMS,1,851514097
BEDROOMS,2,1272994473
BEDROOMS,3,862498105
BEDROOMS,4,458228099
BEDROOMS,5,1554797114
BEDROOMS,6,513897192
BEDROOMS,7,1111749691
BEDROOMS,8,1091567262
BEDROOMS,,457121410
DWELLING,001,183810198
DWELLING,002,1197121074
DWELLING,003,488711548
DWELLING,999,1664310739
PET,dog,782519905
PET,cat,1609262920
PET,fish,1336253152
PET,,1572894361
AMOUNT,<0,992579458
AMOUNT,0-19.99,1170927592
AMOUNT,20-39.99,561902045
AMOUNT,40-59.99,1280419541
AMOUNT,60-79.99,118733751
AMOUNT,80-100.00,507714107
AMOUNT,>=100.01,668653844
"""


def toy(**overrides: object) -> TbeConfig:
    return tbe_config.parse_config({**TOY_PARAMS, **overrides})


def scoped_toy(**overrides: object) -> TbeConfig:
    return toy(primitive_scope_key_declarations=TOY_DECLARATIONS, **overrides)


@pytest.fixture(scope="module")
def sample() -> TbeConfig:
    return tbe_helpers.load_config_from_directory(EXAMPLES / "dataset.json")


# The hand-computed cell: keys 10 + 20 + 30 = 60 -> ck 60, row 2; n = 3 -> col 2.
# y by |y| desc, tiebreaker asc: -8 (b), 5 (a), 5 (c); top 2 = -8, 5; sum(y) = 2.
RECORDS = [
    {"rk": 10, "uid": "a", "y": 5},
    {"rk": 20, "uid": "b", "y": -8},
    {"rk": 30, "uid": "c", "y": 5},
    {"rk": 0, "uid": "d", "y": None},
]
# With the NULL-y record the key sum is still 60 but n = 4 -> col 2 as well.
CELL = CellInput(n=3, key_sum=60, sums={"y": SumInput(2, (-8, 5))})


# --------------------------------------------------------------------------------------------
# Index functions and keys
# --------------------------------------------------------------------------------------------


def test_row_index():
    assert [tbe_config.row_index(k, 100, 4) for k in (0, 24, 25, 49, 50, 74, 75, 99)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    # Seed-sized: the last key maps to the last row, never past it.
    assert tbe_config.row_index(SEED_N - 1, SEED_N, 8) == 7
    assert tbe_config.row_index(SEED_N // 8 + 1, SEED_N, 8) == 1
    with pytest.raises(TbeInputError):
        tbe_config.row_index(100, 100, 4)
    with pytest.raises(TbeInputError):
        tbe_config.row_index(-1, 100, 4)


def test_col_index():
    assert [tbe_config.col_index(n, 5) for n in (1, 2, 4, 5, 6, 1000)] == [0, 1, 3, 4, 4, 4]
    with pytest.raises(TbeInputError):
        tbe_config.col_index(0, 5)


def test_cell_and_total_keys():
    assert tbe.cell_key(185, 100) == 85
    assert tbe.cell_key(Decimal(0), 100) == 0
    assert tbe.total_key(60, 50, 100) == 9
    assert tbe.total_key(0, 0, 100) == 99  # the modulus is taken after the addition
    assert tbe.total_key(37, 1, 100) == 37  # scope key 1 leaves the cell key unchanged


def test_validate_record_key():
    assert tbe_config.validate_record_key(Decimal(5), 100) == 5
    for bad in (-1, 100, 1.5, "x", True, None):
        with pytest.raises(TbeInputError):
            tbe_config.validate_record_key(bad, 100)


def test_round_half_away_from_zero():
    assert [tbe.round_half_away_from_zero(v) for v in (2.5, -2.5, 2.4999, Decimal("0.5"), 3)] == [
        3,
        -3,
        2,
        1,
        3,
    ]


# --------------------------------------------------------------------------------------------
# Count, sum and mean
# --------------------------------------------------------------------------------------------


def test_count_perturbation_plain():
    cfg = toy()
    assert tbe.count_perturbation(cfg, 60, 3) == P[2][2] == 1
    assert tbe.count_perturbation(cfg, 85, 2) == P[3][1] == 2
    assert tbe.count_perturbation(cfg, 85, 50) == P[3][2]  # counts >= smallC share a column


def test_hand_computed_cell():
    out = tbe.perturb_cell(toy(), CELL)
    assert out is not None
    assert out.count == 4  # 3 + P[2][2]
    # S row 2 = [-1, 0.5, 0]: 0.5 * -8 * -1 + 0.3 * 5 * 0.5 = 4.75
    assert out.sums["y"] == Decimal("6.75")
    assert out.means["y"] == Decimal("1.6875")


def test_floats_stay_floats_and_decimals_stay_decimals():
    cfg = toy()
    as_float = tbe.perturb_cell(cfg, CellInput(3, 60, {"y": SumInput(2.0, (-8.0, 5.0))}))
    as_dec = tbe.perturb_cell(
        cfg, CellInput(3, Decimal(60), {"y": SumInput(Decimal("2.00"), (Decimal(-8), Decimal(5)))})
    )
    assert as_float is not None and as_dec is not None
    assert isinstance(as_float.sums["y"], float) and as_float.sums["y"] == pytest.approx(6.75)
    assert isinstance(as_dec.sums["y"], Decimal) and as_dec.sums["y"] == Decimal("6.75")


def test_cell_key_wraps_mod_big_n():
    out = tbe.perturb_cell(toy(), CellInput(n=2, key_sum=185))  # ck 85: row 3, col 1
    assert out is not None and out.count == 4


def test_count_is_floored_at_zero():
    # key 80: row 3; n = 1: col 0; p = -2 -> max(0, -1)
    out = tbe.perturb_cell(toy(), CellInput(1, 80, {"y": SumInput(7, (7,))}))
    assert out is not None
    assert out.count == 0
    assert out.sums == {"y": None} and out.means == {"y": None}


def test_zero_perturbed_count_suppresses_sum_and_mean():
    # key 60: row 2; n = 1: col 0; p = -1 -> count 0
    out = tbe.perturb_cell(toy(), CellInput(1, 60, {"y": SumInput(42, (42,))}))
    assert out is not None
    assert out.count == 0
    assert out.sums["y"] is None and out.means["y"] is None


def test_empty_cell_is_not_output():
    assert tbe.perturb_cell(toy(), CellInput(0, 0)) is None


def test_all_null_sum_is_null():
    out = tbe.perturb_cell(toy(), CellInput(3, 60, {"y": SumInput(None, ())}))
    assert out is not None and out.count == 4 and out.sums["y"] is None and out.means["y"] is None


def test_top_is_limited_to_len_m_and_shorter_tops_use_fewer_weights():
    cfg = toy()
    row = S[cfg.row(60)]
    assert tbe.sum_perturbation(cfg, 60, [-8, 5, 5]) == tbe.sum_perturbation(cfg, 60, [-8, 5])
    assert tbe.sum_perturbation(cfg, 60, [10]) == Decimal("0.5") * 10 * Decimal(repr(row[0]))


def test_tiebreaker_decides_the_order_of_equal_abs_values():
    cfg = toy(m=[1, 0])
    # |y| tie between 5 (uid b) and -5 (uid a): a comes first, so y_1 = -5.
    cell = tbe_helpers.summarize_records(
        [{"rk": 60, "uid": "b", "y": 5}, {"rk": 0, "uid": "a", "y": -5}], cfg, ["y"]
    )
    assert cell.sums["y"].top == (-5, 5)
    assert tbe.sum_perturbation(cfg, 60, cell.sums["y"].top) == Decimal(5)  # 1 * -5 * S[2][0]


def test_summarize_records_matches_the_hand_computed_cell_and_ignores_null_y():
    cell = tbe_helpers.summarize_records(RECORDS, toy(), ["y"])
    assert cell.n == 4 and cell.key_sum == 60 and cell.key_min == 0 and cell.key_max == 30
    assert cell.sums["y"] == SumInput(2, (-8, 5))


def test_same_records_in_any_order_give_the_same_result():
    cfg = toy()
    expected = tbe.perturb_cell(cfg, tbe_helpers.summarize_records(RECORDS, cfg, ["y"]))
    rng = random.Random(1)
    for _ in range(20):
        shuffled = RECORDS[:]
        rng.shuffle(shuffled)
        assert (
            tbe.perturb_cell(cfg, tbe_helpers.summarize_records(shuffled, cfg, ["y"])) == expected
        )


def test_weighted_count_is_scaled_and_rounded():
    assert tbe_helpers.perturb_weighted_count(Decimal("25.5"), 3, 1) == 34  # 25.5 * 4 / 3
    assert tbe_helpers.perturb_weighted_count(7.5, 3, -1) == 5
    assert tbe_helpers.perturb_weighted_count(2.5, 1, 0) == 3  # halves away from zero
    assert tbe_helpers.perturb_weighted_count(2.5, 1, -2) == 0
    with pytest.raises(TbeInputError):
        tbe_helpers.perturb_weighted_count(1, 0, 0)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        (CellInput(-1, 0), "negative"),
        (CellInput(2, 199), "impossible"),  # more than 2 * 99
        (CellInput(2, -1), "impossible"),
        (CellInput(2, Decimal("1.5")), "not an integer"),
        (CellInput(2, 10, key_max=100), "maximum record key"),
        (CellInput(2, 10, key_min=-3), "minimum record key"),
        (CellInput(2, 10, {"y": SumInput(None, (1,))}), "no total"),
        (CellInput(2, 10, {"y": SumInput(3, ())}), "no top values"),
        (CellInput(2, 10, {"y": SumInput(3, (1, 5))}), "not ordered"),
        (CellInput(1, 10, {"y": SumInput(3, (2, 1))}), "top values for a cell of 1"),
        (CellInput(2, 10, {"y": SumInput(3, (None,))}), "not a number"),
    ],
)
def test_bad_cell_input(cell: CellInput, message: str):
    with pytest.raises(TbeInputError, match=message):
        tbe.perturb_cell(toy(), cell)


# --------------------------------------------------------------------------------------------
# Scope keys
# --------------------------------------------------------------------------------------------


def test_seed_worked_example_scope_keys():
    decl = tbe_config.parse_declarations(SEED_DECLARATIONS, SEED_N)
    where = {"PET": ["cat", "dog"], "DWELLING": ["001", "999"]}
    base = (1609262920 + 782519905) * (183810198 + 1664310739)
    for bedrooms, key in (("<0", 465455415), ("0", 195061038), ("1", 851514097)):
        scope = tbe_config.row_scope(where, {"BEDROOMS": bedrooms})
        assert decl.scope_key(scope) == base * key % SEED_N


def test_sample_declarations_keep_the_seed_example_keys(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    where = {"pet": ["dog", "cat"], "dwelling": ["999", "001"]}  # case and order do not matter
    base = (1609262920 + 782519905) * (183810198 + 1664310739)
    for bedrooms, key in (("<0", 465455415), ("0", 195061038), ("1", 851514097)):
        assert (
            decl.scope_key(tbe_config.row_scope(where, {"BEDROOMS": bedrooms}))
            == base * key % SEED_N
        )


def test_sample_declarations_match_their_generator():
    # examples/tbe/psk_declarations.csv is the output of make_psk_declarations.py.
    import importlib.util
    import io
    from contextlib import redirect_stdout

    spec = importlib.util.spec_from_file_location("mkdecl", EXAMPLES / "make_psk_declarations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        module.main()
    assert buffer.getvalue() == (EXAMPLES / "psk_declarations.csv").read_text()


def test_every_sample_field_sums_to_one(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    for name, values in decl.fields.items():
        assert sum(values.values()) % SEED_N == 1, name
        assert decl.field_scope_key(name, values) == 1


def test_scoped_count_uses_the_total_key():
    cfg = scoped_toy()
    assert cfg.scope_keys is not None
    sk = cfg.scope_keys.scope_key({"A": ["x"], "B": ["u", "v"]})
    assert sk == 30 * 45 % 100 == 50
    out = tbe.perturb_cell(cfg, CELL, scope_key=sk)
    # tk = (60 + 50 - 1) mod 100 = 9: row 0; count 3 + P[0][2] = 2
    # S row 0 = [0.5, -0.5, 1]: 0.5 * -8 * 0.5 + 0.3 * 5 * -0.5 = -2.75
    assert out is not None
    assert out.count == 2
    assert out.sums["y"] == Decimal("-0.75")
    assert out.means["y"] == Decimal("-0.375")


def test_additive_scope_perturbation():
    cfg = scoped_toy(use_additive_scope_perturbation=True)
    # p0 = P[row(60)=2][col(3)=2] = 1; tk = 9: row 0; p = 1 + P[0][col(4)=2] = 1 - 1 = 0
    assert tbe.count_perturbation(cfg, 60, 3, 50) == 0
    out = tbe.perturb_cell(cfg, CELL, scope_key=50)
    assert out is not None and out.count == 3
    # The s-matrix row still comes from the total key (row 0): sum 2 - 2.75.
    assert out.sums["y"] == Decimal("-0.75")
    # p0 = 0 (row 0, col 0) -> no perturbation at all, whatever the scope.
    assert all(tbe.count_perturbation(cfg, 10, 1, sk) == 0 for sk in range(100))
    # n + p0 = 0 (key 60: row 2, n = 1: p0 = -1): no column for the second draw, p = p0.
    assert tbe.count_perturbation(cfg, 60, 1, 50) == -1


def test_additive_with_a_separate_scope_matrix():
    cfg = scoped_toy(use_additive_scope_perturbation=True, scope_p_matrix=SCOPE_P)
    assert tbe.count_perturbation(cfg, 60, 3, 50) == 1 + SCOPE_P[0][2] == 2
    # With the default (the p-matrix) the same cell gets 1 + P[0][2] = 0.
    assert tbe.count_perturbation(scoped_toy(use_additive_scope_perturbation=True), 60, 3, 50) == 0


def test_scope_key_is_required_exactly_when_declarations_are_configured():
    with pytest.raises(TbeInputError, match="scope key is required"):
        tbe.perturb_cell(scoped_toy(), CELL)
    with pytest.raises(TbeInputError, match="no scope key declarations"):
        tbe.perturb_cell(toy(), CELL, scope_key=1)


def random_cells(big_n: int, count: int, seed: int) -> list[CellInput]:
    rng = random.Random(seed)
    cells = []
    for _ in range(count):
        n = rng.randint(1, 12)
        keys = [rng.randrange(big_n) for _ in range(n)]
        ys = sorted((Decimal(rng.randint(-500, 500)) / 4 for _ in range(n)), key=lambda v: -abs(v))
        cells.append(CellInput(n, sum(keys), {"y": SumInput(sum(ys), tuple(ys[:4]))}))
    return cells


def test_grand_total_is_unchanged_by_scope_keys(sample: TbeConfig):
    """The adjustment is 1, so a scope key of 1 leaves the total key equal to the cell key.

    The grand total has an empty scope (empty product: 1); a scope listing every declared value of
    some fields (NULL sentinel included) is the same set of records and also has scope key 1,
    because each field's keys sum to 1.
    """
    decl = sample.scope_keys
    assert decl is not None
    plain = dataclasses.replace(sample, scope_keys=None)
    everything = {name: list(values) for name, values in decl.fields.items()}
    assert decl.scope_key({}) == 1
    assert decl.scope_key(everything) == 1
    assert decl.scope_key({"PET": everything["PET"], "DWELLING": everything["DWELLING"]}) == 1
    for cell in random_cells(SEED_N, 300, seed=7):
        expected = tbe.perturb_cell(plain, cell)
        assert tbe.perturb_cell(sample, cell, scope_key=decl.scope_key({})) == expected
        assert tbe.perturb_cell(sample, cell, scope_key=decl.scope_key(everything)) == expected


def test_additive_grand_total_gets_a_second_draw(sample: TbeConfig):
    """In the additive variant sk = 1 does not make the extra draw vanish: p0 + P[row(ck)][...]."""
    plain = dataclasses.replace(sample, scope_keys=None)
    additive = dataclasses.replace(sample, use_additive_scope_perturbation=True)
    differs = 0
    for cell in random_cells(SEED_N, 300, seed=8):
        ck = int(cell.key_sum) % SEED_N
        p0 = tbe.count_perturbation(plain, ck, cell.n)
        p = tbe.count_perturbation(additive, ck, cell.n, 1)
        if p0 == 0 or cell.n + p0 < 1:
            assert p == p0
        else:
            assert p == p0 + sample.p_matrix[sample.row(ck)][sample.col(cell.n + p0)]
        differs += p != p0
    assert differs > 30


def test_group_by_scope_keys_add_up_to_the_ungrouped_scope_key(sample: TbeConfig):
    """Scope keys are linear in each field: summing the rows of a GROUP BY over every value of a
    field gives the scope key of the query without that GROUP BY (not the rows' counts, which
    are perturbed independently)."""
    decl = sample.scope_keys
    assert decl is not None
    where = {"PET": ["cat", "dog"], "DWELLING": ["001", "999"]}
    rows = [
        decl.scope_key(tbe_config.row_scope(where, {"BEDROOMS": value}))
        for value in decl.fields["BEDROOMS"]
    ]
    assert sum(rows) % SEED_N == decl.scope_key(where)


def test_same_cell_same_perturbation_whichever_query(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    cell = random_cells(SEED_N, 1, seed=9)[0]
    # WHERE PET = 'cat'  vs  WHERE PET IN ('cat', 'dog') GROUP BY PET, row 'cat'
    # vs  GROUP BY PET, row 'cat'  vs  WHERE pet IN ('cat', 'cat')
    scopes = [
        tbe_config.row_scope({"PET": ["cat"]}, {}),
        tbe_config.row_scope({"PET": ["cat", "dog"]}, {"PET": "cat"}),
        tbe_config.row_scope({}, {"pet": "cat"}),
        tbe_config.row_scope({"pet": ["cat", "cat"]}, {}),
    ]
    keys = [decl.scope_key(s) for s in scopes]
    assert keys == [1609262920] * 4
    results = [tbe.perturb_cell(sample, cell, scope_key=k) for k in keys]
    assert all(r == results[0] for r in results)


def test_different_scopes_usually_perturb_differently(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    plain = dataclasses.replace(sample, scope_keys=None)
    sk = decl.scope_key({"PET": ["cat"]})
    differ = sum(
        tbe.perturb_cell(sample, c, scope_key=sk) != tbe.perturb_cell(plain, c)
        for c in random_cells(SEED_N, 200, seed=10)
    )
    assert differ > 50


def test_null_scope_values_use_the_sentinel():
    decl = tbe_config.parse_declarations(TOY_DECLARATIONS, 100)
    assert decl.scope_key({"B": [None]}) == 56
    assert decl.scope_key({"B": [""]}) == 56
    assert decl.scope_key({"B": ["u", None, ""]}) == 61  # duplicates count once


def test_canonical_conditions():
    """One value set, one canonical condition, whatever the spelling; every declared value is
    no condition (the same records as none)."""
    decl = tbe_config.parse_declarations(TOY_DECLARATIONS, 100)
    assert decl.canonical_condition("A", ["y", "x", "y"]) is None  # A declares x, y
    assert decl.canonical_condition("b", ["v", "u"]) == ("u", "v")
    assert decl.canonical_condition("B", ["u", "v", "u"]) == ("u", "v")
    assert decl.canonical_condition("B", ["u", None]) == ("", "u")
    assert decl.canonical_condition("B", ["u", ""]) == ("", "u")
    assert decl.canonical_condition("B", ["u", "v", None]) is None
    # undeclared names match no record and are dropped; nothing left is an empty set
    assert decl.canonical_condition("B", ["u", "iguana"]) == ("u",)
    assert decl.canonical_condition("B", ["iguana"]) == ()
    assert decl.canonical_condition("B", []) == ()
    with pytest.raises(TbeInputError, match="no primitive scope key declarations"):
        decl.canonical_condition("C", ["x"])


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({"C": ["x"]}, "no primitive scope key declarations"),
        ({"A": ["z"]}, "value 'z' has no primitive scope key"),
        ({"A": [None]}, "value NULL has no primitive scope key"),
        ({"A": []}, "empty scope"),
        ({"A": [3]}, "not a value name"),
        ({"A@2000": ["x"]}, "longitudinal"),
        ({"A": ["x"], "a": ["y"]}, "twice"),
    ],
)
def test_bad_scopes(scope: dict, message: str):
    decl = tbe_config.parse_declarations(TOY_DECLARATIONS, 100)
    with pytest.raises(TbeInputError, match=message):
        decl.scope_key(scope)


def test_row_scope():
    assert tbe_config.row_scope({"PET": ["cat", "dog", "cat"]}, {"BEDROOMS": "1"}) == {
        "PET": ["cat", "dog"],
        "BEDROOMS": ["1"],
    }
    assert tbe_config.row_scope({"PET": ["cat", "dog"]}, {"pet": "dog"}) == {"PET": ["dog"]}
    with pytest.raises(TbeInputError, match="outside the WHERE scope"):
        tbe_config.row_scope({"PET": ["cat"]}, {"PET": "dog"})
    with pytest.raises(TbeInputError, match="twice"):
        tbe_config.row_scope({"PET": ["cat"], "pet": ["dog"]}, {})


def test_check_complete():
    decl = tbe_config.parse_declarations(TOY_DECLARATIONS, 100)
    decl.check_complete({"A": ["x", "y"], "b": ["u", None]})
    with pytest.raises(TbeConfigError) as excinfo:
        decl.check_complete({"A": ["x", "w", None], "B": ["u"], "C": ["q"]})
    message = str(excinfo.value)
    assert "field 'A': no primitive scope key for NULL, 'w'" in message
    assert "'C' has no primitive scope key declarations" in message
    assert "'B'" not in message


# --------------------------------------------------------------------------------------------
# Numeric ranges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (-0.01, "<0"),
        (Decimal("-1000"), "<0"),
        (0, "0-19.99"),
        (Decimal("19.99"), "0-19.99"),
        (19.99, "0-19.99"),
        (20, "20-39.99"),
        (39.99, "20-39.99"),  # the float 39.99 is slightly above the decimal 39.99
        (Decimal("100.00"), "80-100.00"),
        (100.01, ">=100.01"),
        (10**12, ">=100.01"),
        (float("inf"), ">=100.01"),
    ],
)
def test_range_label_amount(sample: TbeConfig, value, label: str):
    assert sample.scope_keys is not None
    assert sample.scope_keys.range_label("AMOUNT", value) == label
    assert sample.scope_keys.range_label("amount", value) == label


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("AMOUNT", Decimal("19.995"), "in no declared range"),
        ("AMOUNT", 100.005, "in no declared range"),
        ("AMOUNT", None, "NULL has no declared key"),
        ("AMOUNT", float("nan"), "NaN"),
        ("AMOUNT", "12", "not a number"),
        ("AMOUNT", True, "not a number"),
        ("BEDROOMS", 2.5, "in no declared range"),
        ("BEDROOMS", 9, "in no declared range"),
        ("SIZE", 1, "no primitive scope key declarations"),
    ],
)
def test_range_label_errors(sample: TbeConfig, field: str, value, message: str):
    assert sample.scope_keys is not None
    with pytest.raises(TbeInputError, match=message):
        sample.scope_keys.range_label(field, value)


def test_range_label_bedrooms(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    assert [decl.range_label("BEDROOMS", v) for v in (-1, 0, 3, Decimal("8.0"), None)] == [
        "<0",
        "0",
        "3",
        "8",
        "",
    ]


def test_a_non_numeric_field_has_no_ranges(sample: TbeConfig):
    assert sample.scope_keys is not None
    with pytest.raises(TbeConfigError, match=r"'PET': 'dog' is not a range name"):
        sample.scope_keys.range_label("PET", 1)


@pytest.mark.parametrize(
    ("label", "low", "low_inc", "high", "high_inc"),
    [
        ("<0", None, False, "0", False),
        ("<=5", None, False, "5", True),
        (">3", "3", False, None, False),
        (">=100.01", "100.01", True, None, False),
        ("0-19.99", "0", True, "19.99", True),
        ("-10--5", "-10", True, "-5", True),
        ("-1.5-2", "-1.5", True, "2", True),
        ("7", "7", True, "7", True),
        ("001", "1", True, "1", True),
    ],
)
def test_parse_range_label(label, low, low_inc, high, high_inc):
    r = tbe_config.parse_range_label(label)
    assert r.label == label
    assert r.low == (None if low is None else Decimal(low)) and r.low_inclusive == low_inc
    assert r.high == (None if high is None else Decimal(high)) and r.high_inclusive == high_inc


@pytest.mark.parametrize("label", ["dog", "5-1", "1e3", "<", "1-2-3", "--1"])
def test_parse_range_label_rejects(label):
    with pytest.raises(ValueError):
        tbe_config.parse_range_label(label)


@pytest.mark.parametrize(
    "labels",
    [
        ["0-10", "10-20"],
        ["<=10", "10"],
        [">=5", "100"],
        ["0-100", "20-30", "200"],
        ["<0", "<5"],
        [">0", ">5"],
        ["3", "3.0"],
    ],
)
def test_overlapping_ranges_are_rejected(labels):
    keys = [1] + [0] * (len(labels) - 1)
    decl = ScopeKeyDeclarations(100, {"F": dict(zip(labels, keys, strict=True))})
    with pytest.raises(TbeConfigError, match="overlap"):
        decl.ranges("F")


def test_touching_but_disjoint_ranges_are_accepted():
    labels = ["<10", "10-20", ">20", ""]
    decl = ScopeKeyDeclarations(100, {"F": dict(zip(labels, [1, 0, 0, 0], strict=True))})
    assert [decl.range_label("F", v) for v in (9.99, 10, 20, 20.5, None)] == [
        "<10",
        "10-20",
        "10-20",
        ">20",
        "",
    ]


def test_range_case_sql_agrees_with_range_label(sample: TbeConfig):
    decl = sample.scope_keys
    assert decl is not None
    connection = sqlite3.connect(":memory:")
    for field in ("AMOUNT", "BEDROOMS"):
        sql = decl.range_case_sql(field, "v")
        for value in (-5, -0.01, 0, 3, 8, 9, 19.99, 19.995, 39.99, 100, 100.005, 100.01, 1e6, None):
            (got,) = connection.execute(f"SELECT {sql} FROM (SELECT ? AS v)", (value,)).fetchone()
            try:
                expected = decl.range_label(field, value)
            except TbeInputError:
                expected = None
            assert got == expected, (field, value)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_sample_configuration(sample: TbeConfig):
    assert sample.record_key_name == "record_key"
    assert sample.value_tiebreaker_name == "unit_id"
    assert (sample.big_n, sample.small_n, sample.small_c) == (SEED_N, 8, 5)
    assert sample.m == (0.5, 0.3, 0.15, 0.05)
    assert sample.scoped and not sample.use_additive_scope_perturbation
    assert sample.effective_scope_p_matrix is sample.p_matrix


def test_sample_p_matrix_design(sample: TbeConfig):
    columns = list(zip(*sample.p_matrix, strict=True))
    nonzero = [sum(v != 0 for v in c) for c in columns]
    assert nonzero == [2, 4, 4, 6, 8]  # more perturbation for larger counts
    assert all(sum(c) == 0 for c in columns)  # unbiased over rows
    assert all(set(c) <= {-1, 0, 1} for c in columns)
    assert all(1 + p >= 0 for p in columns[0])  # a count of 1 never goes below 0
    s_columns = list(zip(*sample.s_matrix, strict=True))
    assert all(-1 <= v <= 1 for c in s_columns for v in c)
    assert all(sum(c) == 0 for c in s_columns)


def test_parse_accepts_every_wrapping_and_json_text():
    dataset = {"transform_definitions": {"tbe_perturb": {"parameters": TOY_PARAMS}}}
    forms = [
        dataset,
        dataset["transform_definitions"],
        dataset["transform_definitions"]["tbe_perturb"],
        TOY_PARAMS,
        json.dumps(dataset),
    ]
    configs = [tbe_config.parse_config(f) for f in forms]
    assert all(c == configs[0] for c in configs)


def test_parse_from_files_and_inline_agree():
    params = {k: v for k, v in TOY_PARAMS.items() if k not in ("p_matrix", "s_matrix")}
    files = {
        "pm.csv": "\n".join(",".join(str(v) for v in row) for row in P) + "\n\n",
        "sm": "\n".join(",".join(str(v) for v in row) for row in S),
        "decl.csv": TOY_DECLARATIONS,
    }
    from_files = tbe_config.parse_config(
        {
            **params,
            "p_filename": "pm",
            "s_filename": "sm",
            "primitive_scope_key_declarations_filename": "decl",
            "path": "/ignored",
        },
        files,
    )
    assert from_files == scoped_toy()


def test_to_parameters_round_trips(sample: TbeConfig):
    text = json.dumps(sample.to_parameters())
    assert tbe_config.parse_config(text) == sample
    additive = scoped_toy(use_additive_scope_perturbation=True, scope_p_matrix=SCOPE_P)
    assert tbe_config.parse_config(additive.to_parameters()) == additive


def test_integral_p_values_in_other_spellings_are_accepted():
    cfg = toy(p_matrix="0,1.0,-1\n1,-1,2\n-1, 0 ,1\n-2,2,-2.00\n")
    assert cfg.p_matrix == tuple(tuple(r) for r in P)


def params_without(*names: str) -> dict:
    return {k: v for k, v in TOY_PARAMS.items() if k not in names}


@pytest.mark.parametrize(
    ("params", "files", "message"),
    [
        ({**TOY_PARAMS, "smalln": 4}, {}, "unknown parameter.*smalln"),
        (params_without("bigN"), {}, "missing parameter 'bigN'"),
        (params_without("m"), {}, "missing parameter 'm'"),
        (params_without("record_key_name"), {}, "missing parameter 'record_key_name'"),
        (params_without("p_matrix"), {}, "p_filename"),
        (params_without("s_matrix"), {}, "s_filename"),
        ({**TOY_PARAMS, "bigN": 0}, {}, "bigN must be a positive integer"),
        ({**TOY_PARAMS, "bigN": "100"}, {}, "bigN must be a positive integer"),
        ({**TOY_PARAMS, "bigN": True}, {}, "bigN must be a positive integer"),
        ({**TOY_PARAMS, "bigN": 100.0}, {}, "bigN must be a positive integer"),
        ({**TOY_PARAMS, "smallN": -4}, {}, "smallN must be a positive integer"),
        ({**TOY_PARAMS, "smallC": 0}, {}, "smallC must be a positive integer"),
        ({**TOY_PARAMS, "record_key_name": ""}, {}, "record_key_name must be a non-empty"),
        ({**TOY_PARAMS, "value_tiebreaker_name": None}, {}, "value_tiebreaker_name"),
        ({**TOY_PARAMS, "m": "0.5"}, {}, "m must be a list"),
        ({**TOY_PARAMS, "m": []}, {}, "at least one weight"),
        ({**TOY_PARAMS, "m": [0.4, 0.3, 0.2, 0.1]}, {}, "4 weights, more than smallC=3"),
        ({**TOY_PARAMS, "m": [0.5, "x"]}, {}, r"m\[1\] must be a finite number"),
        ({**TOY_PARAMS, "m": [0.5, float("inf")]}, {}, r"m\[1\] must be a finite number"),
        ({**TOY_PARAMS, "m": [True]}, {}, r"m\[0\] must be a finite number"),
        ({**TOY_PARAMS, "p_matrix": P[:3]}, {}, "p_matrix: 3 rows, expected smallN=4"),
        (
            {**TOY_PARAMS, "p_matrix": [*P[:3], [1, 2]]},
            {},
            "p_matrix: row 4 has 2 columns, expected smallC=3",
        ),
        (
            {**TOY_PARAMS, "p_matrix": [*P[:3], [1, 0.5, 2]]},
            {},
            "p_matrix row 4, column 2: 0.5 is not an integer",
        ),
        (
            {**TOY_PARAMS, "p_matrix": "0,1,-1\n1,-1,2\n-1,0,x\n-2,2,-2"},
            {},
            "p_matrix row 3, column 3: 'x' is not an integer",
        ),
        ({**TOY_PARAMS, "p_matrix": [*P[:3], [1, True, 2]]}, {}, "not an integer"),
        ({**TOY_PARAMS, "p_matrix": 5}, {}, "p_matrix: expected CSV text or a list of rows"),
        ({**TOY_PARAMS, "s_matrix": S[:2]}, {}, "s_matrix: 2 rows, expected smallN=4"),
        (
            {**TOY_PARAMS, "s_matrix": [*S[:3], [1, "nan", 1]]},
            {},
            "s_matrix row 4, column 2: 'nan' is not a finite number",
        ),
        (
            {**TOY_PARAMS, "s_matrix": [*S[:3], [1, "abc", 1]]},
            {},
            "s_matrix row 4, column 2: 'abc' is not a number",
        ),
        ({**TOY_PARAMS, "p_filename": "pm"}, {"pm": "1"}, "either p_filename or p_matrix"),
        (
            {**params_without("p_matrix"), "p_filename": "pmatrix9"},
            {},
            "p_filename 'pmatrix9': no file pmatrix9.csv was supplied",
        ),
        (
            {**params_without("p_matrix"), "p_filename": "pm"},
            {"pm.csv": "0,0,0\n"},
            "p_filename 'pm': 1 rows, expected smallN=4",
        ),
        ({**TOY_PARAMS, "p_filename": ""}, {}, "either"),
        ({**params_without("p_matrix"), "p_filename": ""}, {}, "non-empty file name"),
        ({**TOY_PARAMS, "use_additive_scope_perturbation": "yes"}, {}, "true or false"),
        ({**TOY_PARAMS, "use_additive_scope_perturbation": True}, {}, "needs primitive scope"),
        (
            {
                **TOY_PARAMS,
                "primitive_scope_key_declarations": TOY_DECLARATIONS,
                "scope_p_matrix": SCOPE_P,
            },
            {},
            "only used with use_additive_scope_perturbation",
        ),
        (
            {
                **TOY_PARAMS,
                "primitive_scope_key_declarations": TOY_DECLARATIONS,
                "use_additive_scope_perturbation": True,
                "scope_p_matrix": SCOPE_P[:1],
            },
            {},
            "scope_p_matrix: 1 rows",
        ),
        ({**TOY_PARAMS, "path": 3}, {}, "path must be a string"),
    ],
)
def test_configuration_errors(params: dict, files: dict, message: str):
    with pytest.raises(TbeConfigError, match=message):
        tbe_config.parse_config(params, files)


def test_configuration_document_errors():
    with pytest.raises(TbeConfigError, match="not valid JSON"):
        tbe_config.parse_config("{")
    with pytest.raises(TbeConfigError, match="must be a JSON object"):
        tbe_config.parse_config("[]")
    with pytest.raises(TbeConfigError, match="no 'tbe_perturb' entry"):
        tbe_config.parse_config({"transform_definitions": {"laplace_perturb": {}}})
    with pytest.raises(TbeConfigError, match="no 'tbe_perturb' entry"):
        tbe_config.parse_config({"laplace_perturb": {"parameters": {}}})


@pytest.mark.parametrize(
    ("declarations", "message"),
    [
        ("A,x,30\nA,y,70\n", "field 'A': primitive scope keys sum to 0 mod bigN=100, expected 1"),
        ("A,x,30\nA,y,71\nB,u,5\n", "field 'B': primitive scope keys sum to 5"),
        ("A,x,130\nA,y,71\n", "key 130 is outside"),
        ("A,x,-29\nA,y,30\n", "key -29 is outside"),
        ("A,x,abc\nA,y,71\n", "line 1: key 'abc' for A,x is not an integer"),
        ("A,x,30\nA,x,71\n", "line 2: A,x is declared twice"),
        ("A,x\n", "line 1: expected 3 columns"),
        ("A,x,30,1\n", "line 1: expected 3 columns"),
        (",x,1\n", "line 1: empty field name"),
        ("A@2000,x,1\n", "longitudinal"),
        ("A,x,30\nA,y,71\na,z,1\n", "differ only in case"),
        ("\n\n", "no declarations"),
    ],
)
def test_declaration_errors(declarations: str, message: str):
    with pytest.raises(TbeConfigError, match=message):
        tbe_config.parse_config({**TOY_PARAMS, "primitive_scope_key_declarations": declarations})


def test_declarations_as_rows_and_quoted_values():
    decl = tbe_config.parse_declarations([["A", "x,y", 30], ["A", "", "71"]], 100)
    assert decl.fields == {"A": {"x,y": 30, "": 71}}
    decl2 = tbe_config.parse_declarations('A,"x,y",30\nA,,71\n', 100)
    assert decl2 == decl
    with pytest.raises(TbeConfigError, match="expected a row"):
        tbe_config.parse_declarations(["A,x,1"], 100)


def test_declarations_must_use_the_config_big_n():
    decl = tbe_config.parse_declarations("A,x,1\n", 7)
    with pytest.raises(TbeConfigError, match="bigN=7"):
        dataclasses.replace(toy(), scope_keys=decl)


def test_load_config_from_directory_errors(tmp_path: Path):
    params = {k: v for k, v in TOY_PARAMS.items() if k != "p_matrix"}
    (tmp_path / "cfg.json").write_text(json.dumps({**params, "p_filename": "missing"}))
    with pytest.raises(TbeConfigError, match=r"missing\.csv does not exist"):
        tbe_helpers.load_config_from_directory(tmp_path / "cfg.json")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "missing.csv").write_text(
        "\n".join(",".join(map(str, r)) for r in P), encoding="utf-8"
    )
    (tmp_path / "cfg.json").write_text(
        json.dumps({**params, "p_filename": "missing", "path": "sub"})
    )
    assert tbe_helpers.load_config_from_directory(tmp_path / "cfg.json") == toy()


def test_generate_field_keys():
    rng = random.Random(3)
    keys = tbe_config.generate_field_keys(SEED_N, ["a", "b", "c", ""], {"b": 12345}, rng.randrange)
    assert list(keys) == ["a", "b", "c", ""]
    assert keys["b"] == 12345
    assert sum(keys.values()) % SEED_N == 1
    assert all(0 <= k < SEED_N for k in keys.values())
    real = tbe_config.generate_field_keys(SEED_N, ["x", "y"])  # secrets
    assert sum(real.values()) % SEED_N == 1
    assert tbe_config.generate_field_keys(100, ["x", "y"], {"x": 30, "y": 71}) == {"x": 30, "y": 71}
    with pytest.raises(ValueError, match="do not sum to 1"):
        tbe_config.generate_field_keys(100, ["x"], {"x": 3})
    with pytest.raises(ValueError, match="undeclared"):
        tbe_config.generate_field_keys(100, ["x"], {"z": 3})
    with pytest.raises(ValueError, match="duplicate"):
        tbe_config.generate_field_keys(100, ["x", "x"])
