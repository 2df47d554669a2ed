"""dp/grid.py: the grid of DP's numeric statistics, as SQL that cannot fail on any row."""

from __future__ import annotations

import pytest

from pldiffix.dp import grid

BOUNDS = grid.Bounds(-50.0, 150.0)


def test_the_step_gives_at_least_ten_thousand_grid_points_and_one_for_integers() -> None:
    assert grid.grid_step(BOUNDS, "numeric") == 0.01
    assert grid.grid_step(BOUNDS, "int4") == 1.0
    assert grid.grid_step(grid.Bounds(0.0, 1e9), "float8") == 1e5
    assert grid.quantile_grid(BOUNDS, 0.01) == 10_000
    assert BOUNDS.middle == 50.0


@pytest.mark.parametrize(
    ("limit", "integer_type", "bound"),
    [
        (grid.INT8_LIMIT, "pg_catalog.int8", grid.double_literal(float(grid.INT8_LIMIT))),
        (grid.INT8_LIMIT * 4, "pg_catalog.numeric", grid.numeric_literal(grid.INT8_LIMIT * 4)),
    ],
)
def test_grid_units_are_int8_up_to_the_limit_and_numeric_beyond(limit, integer_type, bound) -> None:
    sql = grid.grid_units("v", 0.5, limit)
    assert sql.startswith("CASE WHEN v IS NULL THEN NULL WHEN pg_catalog.abs(v) < ")
    assert f"THEN CAST(0 AS {integer_type}) ELSE " in sql
    assert bound in sql


def test_a_numeric_column_stays_numeric_and_a_float_is_clamped_as_double() -> None:
    numeric = grid.grid_value('"t"."x"', "numeric", BOUNDS, 0.01, 10_000, BOUNDS.middle)
    assert "double precision" not in numeric
    assert numeric.startswith("pg_catalog.int8smaller(pg_catalog.int8larger(CAST(")
    floating = grid.grid_value('"t"."x"', "float8", BOUNDS, 0.01, 10_000, None)
    assert 'CASE WHEN "t"."x" IS NULL THEN NULL ELSE pg_catalog.float8smaller(' in floating


def test_a_clamped_numeric_below_the_smallest_double_counts_as_zero() -> None:
    sql = grid.clamp("x", "numeric", BOUNDS)
    assert f"pg_catalog.abs(x) < {grid.numeric_literal(grid.TINY_NUMERIC)}" in sql
    assert grid.double_literal(0.0) in sql
