"""Noise primitives and the C numeric semantics they rely on."""

from __future__ import annotations

import hashlib
import math
import statistics

import pytest

from pldiffix.core.money import money_round
from pldiffix.diffix.anonymization._cnum import c_div, c_max, c_round, to_int32
from pldiffix.diffix.anonymization.hashing import hash_string
from pldiffix.diffix.anonymization.noise import (
    layered_noise,
    low_count_threshold,
    normal,
    prepare_seed,
    round_reported_noise_sd,
    salted_seed,
    uniform_int,
)
from pldiffix.diffix.anonymization.params import AnonymizationParams


def test_c_round_goes_away_from_zero() -> None:
    assert [c_round(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5)] == [1.0, 2.0, 3.0, -1.0, -3.0]
    assert c_round(0.49999999999999994) == 0.0
    assert c_round(-1.2) == -1.0


def test_c_helpers() -> None:
    assert c_max(math.nan, 3.0) == 3.0
    assert c_max(-0.0, 0.0) == 0.0
    assert to_int32(2**31) == -(2**31)
    assert c_div(-7, 2) == -3


def test_salted_seed_is_sha256_of_salt_and_little_endian_seed() -> None:
    digest = hashlib.sha256(b"diffix" + (0x0102).to_bytes(8, "little")).digest()
    assert salted_seed("diffix", 0x0102) == int.from_bytes(digest[:8], "little")
    assert salted_seed("diffix", 0) == 0xE2E97F1FCA250AD0
    assert prepare_seed("diffix", 1, "noise") == salted_seed("diffix", 1) ^ hash_string("noise")
    assert prepare_seed("diffix", 1, "noise") == 0x31224DFD0F8152E7


def test_uniform_int_is_deterministic_and_bounded() -> None:
    assert uniform_int("diffix", 42, "outlier", 1, 2) == 2
    assert uniform_int("diffix", 42, "top", 3, 4) == 4
    assert uniform_int("x", 42, "top", 0, 1000) == 223
    assert uniform_int("diffix", 42, "top", 5, 5) == 5
    draws = {uniform_int("s", seed, "top", 2, 4) for seed in range(200)}
    assert draws == {2, 3, 4}
    with pytest.raises(ValueError):
        uniform_int("s", 1, "top", 3, 2)


def test_normal_noise_values_and_distribution() -> None:
    assert normal("diffix", 42, "noise", 1.0) == pytest.approx(-0.11450595649603634, rel=1e-12)
    assert normal("diffix", 7, "suppress", 2.0) == pytest.approx(2.0023899414354034, rel=1e-12)
    assert normal("diffix", 42, "noise", 0.0) == 0.0
    draws = [normal("s", seed, "noise", 1.0) for seed in range(20000)]
    assert abs(statistics.mean(draws)) < 0.03
    assert statistics.pstdev(draws) == pytest.approx(1.0, abs=0.03)


def test_layered_noise_adds_one_draw_per_layer() -> None:
    expected = normal("s", 1, "noise", 2.0) + normal("s", 2, "noise", 2.0)
    assert layered_noise("s", [1, 2], "noise", 2.0) == expected
    assert layered_noise("s", [], "noise", 2.0) == 0.0


def test_low_count_threshold() -> None:
    params = AnonymizationParams(salt="diffix")
    assert low_count_threshold(params, 42) == pytest.approx(6.968473144700667, rel=1e-12)
    flat = AnonymizationParams(low_count_min_threshold=4, low_count_layer_sd=0.0)
    assert low_count_threshold(flat, 42) == 4.0
    # Never below the minimum, even with a large negative draw.
    wide = AnonymizationParams(salt="s", low_count_min_threshold=2, low_count_layer_sd=50.0)
    assert min(low_count_threshold(wide, seed) for seed in range(200)) == 2.0


def test_certainly_high_count_bounds_every_threshold() -> None:
    params = AnonymizationParams(salt="s")
    assert params.certainly_high_count() == 13
    assert max(low_count_threshold(params, seed) for seed in range(20000)) < 13


@pytest.mark.parametrize(
    ("x", "rounded"),
    [(1.4, 1.0), (1.5, 2.0), (3.4, 2.0), (3.5, 5.0), (7.4, 5.0), (7.5, 10.0), (0.034, 0.02)],
)
def test_money_round(x: float, rounded: float) -> None:
    assert money_round(x) == pytest.approx(rounded, rel=1e-12)


def test_round_reported_noise_sd() -> None:
    assert round_reported_noise_sd(0.0) == 0.0
    assert round_reported_noise_sd(1.0) == 1.0
    assert round_reported_noise_sd(2.37) == 2.4000000000000004
    # Figures reported by pg_diffix's count_noise in its regression tests.
    assert round_reported_noise_sd(7.0) == 7.0
    assert round_reported_noise_sd(6.8) == 6.800000000000001
