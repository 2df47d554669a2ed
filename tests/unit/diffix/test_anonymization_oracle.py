"""Figures produced by pg_diffix itself (PostgreSQL 15) on small fixed datasets.

The datasets exercise what the regression suite does not: two AID instances with NULL AIDs
(unaccounted-for rows), negative summands, float and bigint sums, avg's numeric scale, count
histograms over a text AID, and bigint AIDs with negative values.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from bucket_replay import (
    avg_col,
    count_col,
    count_distinct,
    count_histogram,
    count_star,
    run_query,
    sum_col,
)

from pldiffix.diffix.anonymization import AidKind, AnonymizationParams, SummandType

ORDERS = [
    {
        "id": None if i % 17 == 5 else i % 23,
        "uid": None if i % 11 == 3 else f"user{i % 19}",
        "cat": ["a", "b", "c"][i % 3],
        "amount": None if i % 13 == 0 else (i * 7) % 41 - 10,
        "price": round((i * 37 % 101) * 1.25, 2),
    }
    for i in range(60)
]
ORDER_AIDS = [("id", AidKind.INT4), ("uid", AidKind.TEXT)]
PARAMS = AnonymizationParams(salt="pldiffix")


def test_grouped_aggregates_with_two_aid_instances() -> None:
    aids = ORDER_AIDS
    aggs = [
        count_star(aids),
        count_col(aids, "amount"),
        count_distinct(aids, "amount"),
        sum_col(aids, "amount", SummandType.INT4),
        sum_col(aids, "price", SummandType.FLOAT8),
        avg_col(aids, "amount", SummandType.INT4),
        count_star(aids, noise=True),
        sum_col(aids, "price", SummandType.FLOAT8, noise=True),
        avg_col(aids, "price", SummandType.FLOAT8, noise=True),
    ]
    rows = run_query(
        ORDERS, aids, aggs, params=PARAMS, labels=[lambda r: r["cat"]], materials=["orders.cat"]
    )
    got = dict(rows)
    assert got.keys() == {("a",), ("b",), ("c",)}
    expected = {
        ("a",): [17, 17, 17, 107, 1119.9198328484297, "6.2941176470588235", 1.0, 70.0,
                 4.117647058823529],
        ("b",): [18, 17, 15, 192, 1155.1336559077085, "11.2941176470588235", 1.0, 68.0,
                 3.7777777777777777],
        ("c",): [17, 16, 17, 199, 1101.1813157036788, "12.4375000000000000", 1.0, 64.0,
                 3.764705882352941],
    }  # fmt: skip
    for labels, values in expected.items():
        actual = got[labels]
        assert actual[:4] == values[:4]
        assert actual[4] == pytest.approx(values[4], rel=1e-9)
        assert str(actual[5]) == values[5]
        assert actual[6:8] == values[6:8]
        assert actual[8] == pytest.approx(values[8], rel=1e-12)


def test_global_aggregates_with_two_aid_instances() -> None:
    aids = ORDER_AIDS
    aggs = [
        count_star(aids),
        count_col(aids, "amount"),
        count_distinct(aids, "amount"),
        sum_col(aids, "amount", SummandType.INT4),
        sum_col(aids, "price", SummandType.FLOAT8),
        avg_col(aids, "amount", SummandType.INT4),
        count_star(aids, noise=True),
        count_distinct(aids, "amount", noise=True),
        count_distinct(aids, "uid"),
        count_distinct(aids, "id"),
    ]
    [((), values)] = run_query(ORDERS, aids, aggs, params=PARAMS)
    assert values[:4] == [54, 51, 36, 496]
    assert values[4] == pytest.approx(3371.4362071148516, rel=1e-9)
    assert values[5] == Decimal("9.7254901960784314")
    assert values[6:] == [2.8000000000000003, 2.0, 18, 22]


def test_count_histograms_over_each_aid_instance() -> None:
    aids = ORDER_AIDS
    aggs = [count_histogram(aids, 0), count_histogram(aids, 1, 2)]
    assert run_query(ORDERS, aids, aggs, params=PARAMS) == [((), [[[2, 8], [3, 12]], [[2, 16]]])]


BIG = [
    {
        "aid": [-1, -(2**40), 2**40, 7, -7, 123456789012, 0, 5][i % 8] if i % 9 else None,
        "grp": ["p", "q"][i % 2],
        "v": (i * 13) % 29 - 9,
    }
    for i in range(40)
]
BIG_AIDS = [("aid", AidKind.INT8)]
BIG_PARAMS = AnonymizationParams(
    salt="pldiffix", low_count_min_threshold=2, low_count_layer_sd=0.5, noise_layer_sd=2.0
)


def test_bigint_aids_and_bigint_sums() -> None:
    aids = BIG_AIDS
    aggs = [
        count_star(aids),
        sum_col(aids, "v", SummandType.INT8),
        avg_col(aids, "v", SummandType.INT8),
        count_distinct(aids, "v"),
    ]
    rows = run_query(
        BIG, aids, aggs, params=BIG_PARAMS, labels=[lambda r: r["grp"]], materials=["big.grp"]
    )
    assert [(labels, [str(v) for v in values]) for labels, values in rows] == [
        (("p",), ["28", "195.88057199873", "6.9957347142403571", "28"]),
        (("q",), ["20", "135.363214389534", "6.7681607194767000", "20"]),
    ]
    aggs = [
        count_star(aids),
        sum_col(aids, "v", SummandType.INT8),
        sum_col(aids, "v", SummandType.INT8, noise=True),
    ]
    [((), values)] = run_query(BIG, aids, aggs, params=BIG_PARAMS)
    assert values[:2] == [34, Decimal("237.545432251775")]
    assert values[2] == pytest.approx(60.40695324215582, rel=1e-12)
