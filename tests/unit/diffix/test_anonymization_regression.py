"""pg_diffix's own regression figures (test/expected/*.out), replayed through the Python core.

Rows go through the stand-in for the SQL grouping in bucket_replay; the expected
numbers are copied from pg_diffix's expected outputs (salt 'diffix').
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from bucket_replay import (
    CUSTOMER_AIDS,
    CUSTOMERS,
    NOISY,
    PATIENT_AIDS,
    PATIENTS,
    PURCHASE_AIDS,
    PURCHASES,
    REGRESSION_SALT,
    count_col,
    count_distinct,
    count_histogram,
    count_star,
    run_query,
    sum_col,
)

from pldiffix.diffix.anonymization import AidKind, AnonymizationParams, SummandType

CITY = [lambda r: r["city"]]
CITY_SEED = ["test_customers.city"]


def test_noisy_basic_counts() -> None:
    assert run_query(CUSTOMERS, CUSTOMER_AIDS, [count_star(CUSTOMER_AIDS)], params=NOISY) == [
        ((), [4])
    ]
    assert run_query(PURCHASES, PURCHASE_AIDS, [count_star(PURCHASE_AIDS)], params=NOISY) == [
        ((), [23])
    ]
    aggs = [count_col(CUSTOMER_AIDS, "city"), count_distinct(CUSTOMER_AIDS, "city")]
    assert run_query(CUSTOMERS, CUSTOMER_AIDS, aggs, params=NOISY) == [((), [4, 1])]
    aggs = [count_distinct(PURCHASE_AIDS, "cid")]
    assert run_query(PURCHASES, PURCHASE_AIDS, aggs, params=NOISY) == [((), [9])]


def test_noisy_grouped_count_distinct_with_suppress_bin() -> None:
    rows = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_distinct(CUSTOMER_AIDS, "id")],
        params=NOISY,
        labels=CITY,
        materials=CITY_SEED,
    )
    assert rows == [(("*",), [16]), (("Rome",), [8])]


def test_noisy_where_equality_seeds_like_grouping() -> None:
    rows = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_star(CUSTOMER_AIDS)],
        params=NOISY,
        materials=["test_customers.planet"],
        where=[("planet", "Earth")],
    )
    assert rows == [((), [17])]
    # Berlin is suppressed when grouping (so HAVING city = 'Berlin' returns nothing), while the
    # filtered global count has no low-count filter and reports 17.
    grouped = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_star(CUSTOMER_AIDS)],
        params=NOISY,
        labels=CITY,
        materials=CITY_SEED,
    )
    assert grouped == [(("*",), [16]), (("Rome",), [8])]
    filtered = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_star(CUSTOMER_AIDS)],
        params=NOISY,
        materials=CITY_SEED,
        where=[("city", "Berlin")],
    )
    assert filtered == [((), [17])]


def test_noisy_where_on_function_and_numeric_constant() -> None:
    # WHERE city = 'Berlin' AND diffix.round_by(discount, 2) = 0 (round() rounds half to even).
    rows = [
        dict(r, rb=None if r["discount"] is None else round(r["discount"] / 2) * 2.0)
        for r in CUSTOMERS
    ]
    result = run_query(
        rows,
        CUSTOMER_AIDS,
        [count_star(CUSTOMER_AIDS)],
        params=NOISY,
        materials=["test_customers.city", "round_by,test_customers.discount,2"],
        where=[("city", "Berlin"), ("rb", 0)],
    )
    assert result == [((), [7])]


def test_noisy_sums() -> None:
    int_sum = [
        sum_col(CUSTOMER_AIDS, "id", SummandType.INT4),
        sum_col(CUSTOMER_AIDS, "id", SummandType.INT4, noise=True),
    ]
    real_sum = [
        sum_col(CUSTOMER_AIDS, "discount", SummandType.FLOAT4),
        sum_col(CUSTOMER_AIDS, "discount", SummandType.FLOAT4, noise=True),
    ]
    assert run_query(CUSTOMERS, CUSTOMER_AIDS, int_sum, params=NOISY) == [((), [34, 58.0])]
    [((), [total, noise])] = run_query(CUSTOMERS, CUSTOMER_AIDS, real_sum, params=NOISY)
    assert (total, noise) == (pytest.approx(7.8854094, rel=1e-7), 8.0)
    grouped = run_query(
        CUSTOMERS, CUSTOMER_AIDS, int_sum, params=NOISY, labels=CITY, materials=CITY_SEED
    )
    assert grouped == [(("*",), [122, 54.0]), (("Rome",), [64, 60.0])]
    grouped = run_query(
        CUSTOMERS, CUSTOMER_AIDS, real_sum, params=NOISY, labels=CITY, materials=CITY_SEED
    )
    assert [labels for labels, _ in grouped] == [("*",), ("Rome",)]
    assert grouped[0][1] == [pytest.approx(12.012415, rel=1e-7), 9.5]
    assert grouped[1][1] == [pytest.approx(4.601863, rel=1e-7), 4.4]


def test_noisy_reported_noise() -> None:
    aggs = [
        count_star(CUSTOMER_AIDS, noise=True),
        count_col(CUSTOMER_AIDS, "city", noise=True),
        count_distinct(CUSTOMER_AIDS, "city", noise=True),
    ]
    assert run_query(CUSTOMERS, CUSTOMER_AIDS, aggs, params=NOISY) == [
        ((), [7.0, 6.800000000000001, 0.0])
    ]


def test_noisy_multi_aid() -> None:
    aggs = [
        count_star(PATIENT_AIDS),
        count_col(PATIENT_AIDS, "city"),
        count_distinct(PATIENT_AIDS, "city"),
    ]
    assert run_query(PATIENTS, PATIENT_AIDS, aggs, params=NOISY) == [((), [4, 4, 0])]
    rows = run_query(
        PATIENTS, PATIENT_AIDS, [], params=NOISY, labels=CITY, materials=["test_patients.city"]
    )
    assert rows == [(("*",), [])]


def test_noisy_numeric_labels_in_suppress_bin() -> None:
    def floor_by(amount: int):
        return lambda r: math.floor(r["age"] / amount) * amount

    rows = run_query(
        PATIENTS,
        PATIENT_AIDS,
        [count_star(PATIENT_AIDS)],
        params=NOISY,
        labels=[floor_by(30)],
        text_labels=[False],
        materials=["floor_by,test_patients.age,30"],
    )
    assert rows == [((None,), [23])]
    rows = run_query(
        PATIENTS,
        PATIENT_AIDS,
        [count_star(PATIENT_AIDS)],
        params=NOISY,
        labels=[floor_by(30), floor_by(106)],
        text_labels=[False, False],
        materials=["floor_by,test_patients.age,30", "floor_by,test_patients.age,106"],
    )
    assert rows == [((None, None), [9])]


NOISELESS = AnonymizationParams(
    salt=REGRESSION_SALT,
    noise_layer_sd=0.0,
    low_count_layer_sd=0.0,
    outlier_count_min=1,
    outlier_count_max=1,
    top_count_min=3,
    top_count_max=3,
)


def test_noiseless_negative_and_mixed_sums() -> None:
    negative = [
        dict(r, discount=None if r["discount"] is None else -r["discount"]) for r in CUSTOMERS
    ]
    mixed = [
        dict(r, discount=None if r["discount"] is None else r["discount"] - 1.0) for r in CUSTOMERS
    ]
    aggs = [
        sum_col(CUSTOMER_AIDS, "discount", SummandType.FLOAT4),
        sum_col(CUSTOMER_AIDS, "discount", SummandType.FLOAT4, noise=True),
    ]
    assert run_query(negative, CUSTOMER_AIDS, aggs, params=NOISELESS) == [((), [-19.0, 0.0])]
    assert run_query(mixed, CUSTOMER_AIDS, aggs, params=NOISELESS) == [((), [2.5, 0.0])]


def test_noiseless_numeric_sum_per_city() -> None:
    aggs = [
        sum_col(CUSTOMER_AIDS, "discount", SummandType.NUMERIC),
        sum_col(CUSTOMER_AIDS, "discount", SummandType.NUMERIC, noise=True),
    ]
    rows = run_query(
        CUSTOMERS, CUSTOMER_AIDS, aggs, params=NOISELESS, labels=CITY, materials=CITY_SEED
    )
    assert rows == [
        (("*",), [None, None]),
        (("Berlin",), [Decimal(9), 0.0]),
        (("Rome",), [Decimal("4.83333333333333"), 0.0]),
    ]


def test_noiseless_minimal_counts() -> None:
    aggs = [count_distinct(CUSTOMER_AIDS, "planet")]
    assert run_query(CUSTOMERS, CUSTOMER_AIDS, aggs, params=NOISELESS) == [((), [1])]
    aggs = [count_distinct(CUSTOMER_AIDS, "city")]
    rows = run_query(
        CUSTOMERS, CUSTOMER_AIDS, aggs, params=NOISELESS, labels=CITY, materials=CITY_SEED
    )
    assert sorted(rows, key=str) == [(("*",), [3]), (("Berlin",), [3]), (("Rome",), [3])]
    rows = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_distinct(CUSTOMER_AIDS, "id")],
        params=NOISELESS,
        labels=[lambda r: r["discount"]],
        text_labels=[False],
        materials=["test_customers.discount"],
    )
    assert sorted(rows, key=str) == [
        ((0.5,), [4]),
        ((1.0,), [6]),
        ((2.0,), [4]),
        ((None,), [4]),
    ]


def test_count_histogram() -> None:
    params = AnonymizationParams(
        salt=REGRESSION_SALT, noise_layer_sd=0.0, low_count_min_threshold=2, low_count_layer_sd=0
    )
    rows_per_user = {1: 1, 2: 1, 3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 6, 9: 7, 10: 13}
    rows = [{"id": aid} for aid, n in rows_per_user.items() for _ in range(n)]
    aids = [("id", AidKind.INT4)]
    assert run_query(rows, aids, [count_histogram(aids, 0)], params=params) == [
        ((), [[[None, 3], [1, 4], [2, 3]]])
    ]
    assert run_query(rows, aids, [count_histogram(aids, 0, 5)], params=params) == [
        ((), [[[0, 7], [5, 2]]])
    ]


LED_PARAMS = AnonymizationParams(
    salt=REGRESSION_SALT,
    noise_layer_sd=0.0,
    low_count_min_threshold=3,
    low_count_layer_sd=0.0,
    outlier_count_min=1,
    outlier_count_max=1,
    top_count_min=3,
    top_count_max=3,
)
LED_BASE = (
    [(i, "math", "m", "prof") for i in range(1, 5)]
    + [(i, "math", "f", "prof") for i in range(5, 9)]
    + [(i, "history", "m", "prof") for i in range(9, 13)]
    + [(i, "history", "f", "prof") for i in range(13, 17)]
    + [(i, "cs", "m", "prof") for i in range(17, 21)]
)
LED_LABELS = [lambda r: r["dept"], lambda r: r["gender"], lambda r: r["title"]]
LED_SEED = ["t.dept", "t.gender", "t.title"]
LED_AIDS = [("id", AidKind.INT4)]


def led_query(extra: list[tuple[int, str, str, str]], distinct: bool = False) -> dict:
    rows = [{"id": i, "dept": d, "gender": g, "title": t} for i, d, g, t in LED_BASE + extra]
    agg = count_distinct(LED_AIDS, "id") if distinct else count_star(LED_AIDS)
    result = run_query(
        rows, LED_AIDS, [agg], params=LED_PARAMS, labels=LED_LABELS, materials=LED_SEED
    )
    return {labels: values[0] for labels, values in result}


BASE_BUCKETS = {
    ("math", "m", "prof"): 4,
    ("math", "f", "prof"): 4,
    ("history", "m", "prof"): 4,
    ("history", "f", "prof"): 4,
}


def test_led_merges_a_lone_victim_into_its_sibling() -> None:
    assert led_query([]) == {**BASE_BUCKETS, ("cs", "m", "prof"): 4}
    victim = [(21, "cs", "f", "prof")]
    assert led_query(victim) == {**BASE_BUCKETS, ("cs", "m", "prof"): 5}
    assert led_query(victim, distinct=True) == {**BASE_BUCKETS, ("cs", "m", "prof"): 5}
    two = [*victim, (22, "cs", "f", "prof")]
    assert led_query(two) == {**BASE_BUCKETS, ("cs", "m", "prof"): 6}


def test_led_leaves_high_count_buckets_alone() -> None:
    three = [(21, "cs", "f", "prof"), (22, "cs", "f", "prof"), (23, "cs", "f", "prof")]
    assert led_query(three) == {
        **BASE_BUCKETS,
        ("cs", "m", "prof"): 4,
        ("cs", "f", "prof"): 3,
    }


def test_led_needs_an_unknown_column() -> None:
    # The two cs/f buckets are siblings in the title column, so neither has an unknown column;
    # they are suppressed and too few to form a suppress bin.
    different = [(21, "cs", "f", "prof"), (22, "cs", "f", "asst")]
    assert led_query(different) == {**BASE_BUCKETS, ("cs", "m", "prof"): 4}


def test_led_and_suppress_bin_together() -> None:
    extra = [
        (21, "cs", "f", "prof"),
        (22, "biol", "f", "asst"),
        (23, "chem", "m", "asst"),
        (24, "biol", "f", "prof"),
    ]
    assert led_query(extra) == {
        ("*", "*", "*"): 3,
        **BASE_BUCKETS,
        ("cs", "m", "prof"): 5,
    }


def test_suppress_bin_can_be_switched_off() -> None:
    params = AnonymizationParams(
        salt=REGRESSION_SALT,
        noise_layer_sd=7.0,
        low_count_layer_sd=2.0,
        low_count_min_threshold=2,
        compute_suppress_bin=False,
    )
    rows = run_query(
        CUSTOMERS,
        CUSTOMER_AIDS,
        [count_distinct(CUSTOMER_AIDS, "id")],
        params=params,
        labels=CITY,
        materials=CITY_SEED,
    )
    assert rows == [(("Rome",), [8])]
