"""Keyed Laplace noise: configuration, cell keys, canonical description, determinism,
distribution."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import statistics
from decimal import Decimal
from pathlib import Path

import pytest

from pldiffix.cellkey import laplace
from pldiffix.cellkey.laplace import LaplaceConfig, LaplaceConfigError, LaplaceInputError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "tbe"
CONFIG = LaplaceConfig(scale=1, key="secret100")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_sample_configuration():
    config = laplace.parse_config((EXAMPLES / "laplace.json").read_text())
    assert config.scale == 1.0 and isinstance(config.scale, float)
    assert config.key


def test_parse_accepts_every_wrapping():
    params = {"scale": 2, "key": "k"}
    dataset = {"transform_definitions": {"laplace_perturb": {"parameters": params}}}
    forms = [
        dataset,
        dataset["transform_definitions"],
        dataset["transform_definitions"]["laplace_perturb"],
        params,
        json.dumps(dataset),
    ]
    assert {laplace.parse_config(f) for f in forms} == {LaplaceConfig(2.0, "k")}


def test_a_dataset_with_both_transforms():
    dataset = {
        "transform_definitions": {
            "tbe_perturb": {"parameters": {}},
            "laplace_perturb": {"parameters": {"scale": 0.5, "key": "k"}},
        }
    }
    assert laplace.parse_config(dataset) == LaplaceConfig(0.5, "k")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"scale": 0, "key": "k"}, "scale must be a finite number > 0"),
        ({"scale": -1, "key": "k"}, "scale must be"),
        ({"scale": "1", "key": "k"}, "scale must be"),
        ({"scale": True, "key": "k"}, "scale must be"),
        ({"scale": float("inf"), "key": "k"}, "scale must be"),
        ({"scale": float("nan"), "key": "k"}, "scale must be"),
        ({"scale": 1, "key": ""}, "key must be a non-empty string"),
        ({"scale": 1, "key": 100}, "key must be a non-empty string"),
        ({"scale": 1}, "missing parameter 'key'"),
        ({"key": "k"}, "missing parameter 'scale'"),
        ({"scale": 1, "key": "k", "seed": 3}, "unknown parameter.*seed"),
        ({"transform_definitions": {"tbe_perturb": {}}}, "no 'laplace_perturb' entry"),
        ({"tbe_perturb": {}}, "no 'laplace_perturb' entry"),
        ({"laplace_perturb": {"parameters": 5}}, "must be a JSON object"),
        ("{", "not valid JSON"),
        ("[1]", "must be a JSON object"),
    ],
)
def test_configuration_errors(obj, message):
    with pytest.raises(LaplaceConfigError, match=message):
        laplace.parse_config(obj)


def test_the_key_is_never_shown():
    config = LaplaceConfig(1, "very-secret-key")
    assert "very-secret-key" not in repr(config)
    assert "very-secret-key" not in str(config)


# --------------------------------------------------------------------------------------------
# Canonical description
# --------------------------------------------------------------------------------------------


EXAMPLE_CELL_KEY = 12345678901234567890


def test_canonical_description_bytes():
    assert laplace.canonical_description("public.dwellings", EXAMPLE_CELL_KEY) == (
        b'["pldiffix-laplace-v2","public.dwellings","count","12345678901234567890"]'
    )
    assert laplace.canonical_description("t", 0, laplace.sum_measure("amount")) == (
        b'["pldiffix-laplace-v2","t","sum:amount","0"]'
    )
    assert (
        laplace.canonical_description("Zoë", 1)
        == b'["pldiffix-laplace-v2","Zo\\u00eb","count","1"]'
    )


def test_cell_key_is_the_record_key_sum_mod_2_64():
    assert laplace.cell_key_from_sum(5) == 5
    assert laplace.cell_key_from_sum(-1) == 2**64 - 1
    assert laplace.cell_key_from_sum(Decimal(2**64 + 7)) == 7
    # SQL sums signed 64-bit hashes as numeric: any order, any grouping gives one key
    hashes = [-(2**63), 2**63 - 1, -5, 17, 2**62]
    assert laplace.cell_key_from_sum(sum(hashes)) == sum(h % 2**64 for h in hashes) % 2**64


def test_record_seed_is_a_keyed_signed_64_bit_integer():
    seed = laplace.record_seed(CONFIG)
    assert -(2**63) <= seed < 2**63
    assert seed == laplace.record_seed(LaplaceConfig(5, "secret100"))  # the key, not the scale
    assert seed != laplace.record_seed(LaplaceConfig(1, "secret101"))
    digest = hmac.new(b"secret100", b"pldiffix-laplace-record-seed-v2", hashlib.sha256).digest()
    assert seed == int.from_bytes(digest[:8], "big", signed=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: laplace.canonical_description("", 1), "table"),
        (lambda: laplace.canonical_description("t", 1, ""), "measure"),
        (lambda: laplace.canonical_description("t", -1), "cell key"),
        (lambda: laplace.canonical_description("t", 2**64), "cell key"),
        (lambda: laplace.canonical_description("t", True), "cell key"),
        (lambda: laplace.canonical_description("t", "1"), "cell key"),
        (lambda: laplace.cell_key_from_sum(Decimal("1.5")), "integer"),
        (lambda: laplace.cell_key_from_sum(Decimal("NaN")), "integer"),
        (lambda: laplace.cell_key_from_sum(1.0), "integer"),
        (lambda: laplace.cell_key_from_sum(None), "integer"),
    ],
)
def test_description_errors(call, message):
    with pytest.raises(LaplaceInputError, match=message):
        call()


# --------------------------------------------------------------------------------------------
# Uniform and Laplace
# --------------------------------------------------------------------------------------------


def test_keyed_uniform_test_vector():
    description = b'["pldiffix-laplace-v2","public.dwellings","count","12345678901234567890"]'
    digest = hmac.new(b"secret100", description, hashlib.sha256).digest()
    k = int.from_bytes(digest[:8], "big") >> 12
    u = laplace.keyed_uniform("secret100", description)
    assert u == (2 * k + 1) / 2**53
    assert u == 0.7920242829517691  # pinned: a change here changes every published value
    assert laplace.cell_noise(CONFIG, description) == pytest.approx(-math.log(2 * (1 - u)))


def test_uniform_from_digest_extremes():
    low = laplace.uniform_from_digest(b"\x00" * 32)
    high = laplace.uniform_from_digest(b"\xff" * 32)
    assert low == 2.0**-53 and high == 1 - 2.0**-53
    assert 0 < low < high < 1
    assert low + high == 1  # symmetric about 0.5
    # The extremes give finite, opposite noise.
    assert laplace.laplace_inverse_cdf(low, 1) == -laplace.laplace_inverse_cdf(high, 1)
    assert laplace.laplace_inverse_cdf(high, 1) == pytest.approx(52 * math.log(2))
    with pytest.raises(ValueError):
        laplace.uniform_from_digest(b"\x00")


def test_laplace_inverse_cdf():
    assert laplace.laplace_inverse_cdf(0.25, 2) == pytest.approx(2 * math.log(0.5))
    assert laplace.laplace_inverse_cdf(0.75, 2) == pytest.approx(-2 * math.log(0.5))
    assert laplace.laplace_inverse_cdf(0.5, 3) == 0
    # The CDF of Laplace(0, b) at x > 0 is 1 - exp(-x / b) / 2.
    x = laplace.laplace_inverse_cdf(0.9, 1.5)
    assert 1 - math.exp(-x / 1.5) / 2 == pytest.approx(0.9)
    for u in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            laplace.laplace_inverse_cdf(u, 1)


def descriptions(count: int) -> list[bytes]:
    return [laplace.canonical_description("dwellings", _cell_key(i)) for i in range(count)]


def _cell_key(i: int) -> int:
    """Distinct, spread-out cell keys (sums of record hashes look like uniform 64-bit values)."""
    return (i * 0x9E3779B97F4A7C15 + 1) % 2**64


def test_determinism():
    description = descriptions(1)[0]
    assert laplace.cell_noise(CONFIG, description) == laplace.cell_noise(
        LaplaceConfig(1, "secret100"), description
    )
    first = laplace.perturb_cell(CONFIG, "dwellings", EXAMPLE_CELL_KEY, 17, {"a": 5})
    assert first == laplace.perturb_cell(CONFIG, "dwellings", EXAMPLE_CELL_KEY, 17, {"a": 5})
    assert first != laplace.perturb_cell(CONFIG, "dwellings", EXAMPLE_CELL_KEY + 1, 17, {"a": 5})


def test_key_sensitivity():
    other = LaplaceConfig(1, "secret101")
    cells = descriptions(500)
    a = [laplace.cell_noise(CONFIG, d) for d in cells]
    b = [laplace.cell_noise(other, d) for d in cells]
    assert sum(x != y for x, y in zip(a, b, strict=True)) == len(cells)
    assert abs(statistics.correlation(a, b)) < 0.15


def test_cell_sensitivity():
    cells = descriptions(500)
    noises = {laplace.cell_noise(CONFIG, d) for d in cells}
    assert len(noises) == len(cells)


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_distribution(scale: float):
    config = LaplaceConfig(scale, "distribution-test")
    xs = [laplace.cell_noise(config, d) for d in descriptions(20000)]
    # Laplace(0, b): mean 0 (sd of the sample mean ~ 0.01 b), E|X| = b, Var = 2 b^2,
    # P(|X| > b) = 1/e, P(X > 0) = 1/2, median |X| = b ln 2.
    assert abs(statistics.fmean(xs)) < 0.05 * scale
    assert statistics.fmean(abs(x) for x in xs) == pytest.approx(scale, rel=0.05)
    assert statistics.fmean(x * x for x in xs) == pytest.approx(2 * scale**2, rel=0.1)
    assert sum(abs(x) > scale for x in xs) / len(xs) == pytest.approx(math.exp(-1), abs=0.02)
    assert sum(x > 0 for x in xs) / len(xs) == pytest.approx(0.5, abs=0.02)
    assert statistics.median(abs(x) for x in xs) == pytest.approx(scale * math.log(2), rel=0.05)


# --------------------------------------------------------------------------------------------
# Perturbing counts and sums
# --------------------------------------------------------------------------------------------


def test_perturb_count_rounds_and_floors():
    for d in descriptions(300):
        noise = laplace.cell_noise(CONFIG, d)
        expected = max(0, math.floor(3 + noise + 0.5))
        assert laplace.perturb_count(CONFIG, 3, d) == expected
    assert any(laplace.perturb_count(CONFIG, 1, d) == 0 for d in descriptions(300))


def test_perturb_sum_keeps_the_type():
    d = descriptions(1)[0]
    noise = laplace.cell_noise(CONFIG, d)
    assert laplace.perturb_sum(CONFIG, 10, d) == pytest.approx(10 + noise)
    dec = laplace.perturb_sum(CONFIG, Decimal("10.50"), d)
    assert isinstance(dec, Decimal)
    assert float(dec) == pytest.approx(10.5 + noise)


def test_perturb_cell():
    key = EXAMPLE_CELL_KEY
    out = laplace.perturb_cell(CONFIG, "dwellings", key, 50, {"amount": Decimal(1000), "x": None})
    assert out is not None
    count_d = laplace.canonical_description("dwellings", key)
    sum_d = laplace.canonical_description("dwellings", key, "sum:amount")
    assert out.count == laplace.perturb_count(CONFIG, 50, count_d)
    assert out.sums["amount"] == laplace.perturb_sum(CONFIG, Decimal(1000), sum_d)
    assert out.means["amount"] == out.sums["amount"] / out.count
    assert out.sums["x"] is None and out.means["x"] is None
    # The count and the sum of one cell get different noise.
    assert laplace.cell_noise(CONFIG, count_d) != laplace.cell_noise(CONFIG, sum_d)


def test_zero_noisy_count_suppresses_sums_and_means():
    for i in range(300):
        out = laplace.perturb_cell(CONFIG, "dwellings", _cell_key(i), 1, {"amount": 5.0})
        assert out is not None
        if out.count == 0:
            assert out.sums == {"amount": None} and out.means == {"amount": None}
            return
    pytest.fail("no cell with a noisy count of 0")


def test_empty_cell_is_not_output_and_bad_counts_are_rejected():
    assert laplace.perturb_cell(CONFIG, "t", 1, 0) is None
    for bad in (-1, 1.5, True):
        with pytest.raises(LaplaceInputError):
            laplace.perturb_cell(CONFIG, "t", 1, bad)
