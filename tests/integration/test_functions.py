"""Plain functions: generalization, histograms, noise placeholders at the direct level."""

from __future__ import annotations

from decimal import Decimal

import pytest


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("diffix.floor_by(17, 5)", Decimal(15)),
        ("diffix.floor_by(-17, 5)", Decimal(-20)),
        ("diffix.floor_by(1.27::numeric, 0.2)", Decimal("1.2")),
        ("diffix.floor_by(17.5::float8, 5)", 15.0),
        ("diffix.round_by(17, 5)", Decimal(15)),
        ("diffix.round_by(17.5::float8, 5)", 20.0),
        ("diffix.ceil_by(11, 5)", Decimal(15)),
        ("diffix.ceil_by(11.0::float8, 0.5)", 11.0),
        ("diffix.floor_by(17, 0)", None),
        ("diffix.round_by(17, -5)", None),
        ("diffix.ceil_by(NULL::numeric, 5)", None),
    ],
)
def test_generalization_functions(db, expression, expected):
    assert db.execute(f"SELECT {expression}") == [(expected,)]


def test_unnest_histogram_splits_the_first_dimension(db):
    assert db.execute("SELECT diffix.unnest_histogram('{{1,2},{NULL,7}}'::bigint[])") == [
        ([1, 2],),
        ([None, 7],),
    ]
    assert db.execute("SELECT count(*) FROM diffix.unnest_histogram('{}'::bigint[])") == [(0,)]


def test_count_histogram_at_the_direct_level_is_exact(db):
    db.admin.execute(
        "CREATE TABLE tx (account int); "
        "INSERT INTO tx SELECT a FROM generate_series(1, 5) a, generate_series(1, a) r;"
        "INSERT INTO tx VALUES (NULL)"
    )
    assert db.execute("SELECT diffix.count_histogram(account) FROM tx") == [
        ([[1, 1], [2, 1], [3, 1], [4, 1], [5, 1]],)
    ]
    assert db.execute("SELECT diffix.count_histogram(account, 2) FROM tx") == [
        ([[0, 1], [2, 2], [4, 2]],)
    ]


def test_noise_aggregates_report_zero_and_no_suppress_bin_at_the_direct_level(db):
    assert db.execute(
        "SELECT diffix.count_noise(*), diffix.count_noise(x), diffix.sum_noise(x), "
        "diffix.avg_noise(x), diffix.is_suppress_bin(*) FROM generate_series(1, 3) x"
    ) == [(0.0, 0.0, 0.0, 0.0, False)]
