"""The pure parts of diffix.dp_suggest_bounds: the grid, the rounding, the suggestion."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest

from pldiffix.dp import bounds


def test_cells_tile_the_line_in_increasing_order() -> None:
    ranges = [bounds.cell_range(i) for i in range(bounds.CELLS)]
    for (low, high), (next_low, _) in itertools.pairwise(ranges):
        assert low < high
        assert high == pytest.approx(next_low, rel=1e-12)
    assert ranges[bounds.ZERO] == (-(2.0**-20), 2.0**-20)
    assert ranges[-1][0] == 2.0**64 and ranges[0][1] == -(2.0**64)
    with pytest.raises(ValueError):
        bounds.cell_range(bounds.CELLS)


@pytest.mark.parametrize("value", [0.0, 1e-7, -1e-7, 1.0, -1.0, 3.5, -3.5, 1e6, -42.25, 1e18])
def test_a_value_is_in_its_cell(value: float) -> None:
    low, high = bounds.cell_range(bounds.cell_of(value))
    assert low - abs(low) * 1e-12 <= value <= high + abs(high) * 1e-12


def test_random_values_fall_in_their_cells() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        value = rng.choice([-1, 1]) * 10 ** rng.uniform(-8, 19)
        low, high = bounds.cell_range(bounds.cell_of(value))
        assert low - abs(low) * 1e-12 <= value <= high + abs(high) * 1e-12


def test_extremes_are_clamped_to_the_outer_cells() -> None:
    assert bounds.cell_of(1e300) == bounds.CELLS - 1
    assert bounds.cell_of(math.inf) == bounds.CELLS - 1
    assert bounds.cell_of(math.nan) == bounds.CELLS - 1
    assert bounds.cell_of(-math.inf) == 0


def test_rounding_goes_outwards_to_three_digits() -> None:
    assert bounds.rounded_out(12.3456, 98.7654) == (12.3, 98.8)
    assert bounds.rounded_out(-12.3456, -0.0012344) == (-12.4, -0.00123)
    assert bounds.rounded_out(0.0, 1000.0) == (0.0, 1000.0)
    rng = random.Random(3)
    for _ in range(1000):
        low, high = sorted(rng.uniform(-1e6, 1e6) for _ in range(2))
        rounded_low, rounded_high = bounds.rounded_out(low, high)
        assert rounded_low <= low and rounded_high >= high


def _histogram(values: list[float]) -> list[int]:
    counts = [0] * bounds.CELLS
    for value in values:
        counts[bounds.cell_of(value)] += 1
    return counts


def test_the_suggestion_covers_most_of_the_data() -> None:
    rng = random.Random(11)
    values = [rng.lognormvariate(4, 1) for _ in range(20_000)]
    ordered = sorted(values)
    for _ in range(20):
        low, high = bounds.suggested(_histogram(values), Fraction(1), 1)
        inside = sum(low <= v <= high for v in values) / len(values)
        assert inside >= 0.95
        # not absurdly wide: within a few cells of the true 1% and 99% quantiles
        assert low >= ordered[len(values) // 100] / 2 and high <= ordered[-len(values) // 100] * 2


def test_negative_data_gets_negative_bounds() -> None:
    rng = random.Random(5)
    values = [-rng.uniform(100, 200) for _ in range(10_000)]
    low, high = bounds.suggested(_histogram(values), Fraction(1), 1)
    assert -260 <= low <= -190 and -110 <= high <= -80


def test_sensitivity_widens_the_draws() -> None:
    """A unit holding many values makes the mechanism noisier: with k = 1 the bounds of 10^4
    equal values are their own cell; with k = 500 they often wander below it."""
    values = [50.0] * 10_000
    cell = bounds.cell_range(bounds.cell_of(50.0))
    draws = {
        k: [bounds.suggested(_histogram(values), Fraction(1), k) for _ in range(20)]
        for k in (1, 500)
    }
    assert all(low >= cell[0] * 0.99 and high <= cell[1] * 1.01 for low, high in draws[1])
    assert sum(low < cell[0] * 0.99 for low, _ in draws[500]) >= 5
