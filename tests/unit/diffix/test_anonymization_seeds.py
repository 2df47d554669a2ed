"""Seed material of labels and bucket expressions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pldiffix.diffix.anonymization.hashing import hash_string
from pldiffix.diffix.anonymization.seeds import (
    SeedMaterial,
    SeedMaterialTooLong,
    bucket_seed,
    format_datetime,
    format_float8,
    label_hash,
    label_material,
    sql_seed,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # Expected texts are PostgreSQL 15's float8 output (extra_float_digits = 1).
        (1e14, "100000000000000"),
        (1e15, "1e+15"),
        (123456789012345.6, "123456789012345.6"),
        (1234567890123456.0, "1.234567890123456e+15"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (1e100, "1e+100"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (1e21, "1e+21"),
        (12345678901234567890.0, "1.2345678901234567e+19"),
        (0.10000000149011612, "0.10000000149011612"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (100.0, "100"),
    ],
)
def test_format_float8_matches_postgresql(value: float, text: str) -> None:
    assert format_float8(value) == text


def test_numbers_of_any_type_share_one_material() -> None:
    assert label_material(2) == label_material(2.0) == label_material(Decimal("2.00")) == "2"
    assert label_material(Decimal("0.5")) == "0.5"
    assert label_material(10**20) == "1e+20"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # Expected texts are PostgreSQL 15's to_json output with TimeZone = UTC.
        (dt.date(2020, 1, 2), "2020-01-02"),
        (dt.datetime(2020, 1, 2, 3, 4, 5, 500000), "2020-01-02T03:04:05.5"),
        (dt.datetime(2020, 1, 2, 3, 4, 5, 123456), "2020-01-02T03:04:05.123456"),
        (dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2020-01-02T03:04:05+00:00"),
        (
            dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2020-01-02T01:04:05+00:00",
        ),
        (dt.time(3, 4, 5), "03:04:05"),
        (dt.time(3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), "03:04:05+02"),
        (
            dt.time(3, 4, 5, tzinfo=dt.timezone(-dt.timedelta(hours=5, minutes=30))),
            "03:04:05-05:30",
        ),
    ],
)
def test_datetime_material_matches_to_json(value: dt.date | dt.time, text: str) -> None:
    assert format_datetime(value) == text
    assert label_material(value) == text


def test_other_materials() -> None:
    assert label_material(None) == "NULL"
    assert label_material(True) == "t"
    assert label_material(False) == "f"
    assert label_material("Rome") == "Rome"
    assert label_hash("Rome") == hash_string("Rome")
    with pytest.raises(TypeError):
        label_material(object())


def test_seed_material_walk() -> None:
    assert SeedMaterial().column("test_customers", "city").text == "test_customers.city"
    material = SeedMaterial().function("floor_by").column("test_patients", "age").constant(30)
    assert material.text == "floor_by,test_patients.age,30"
    assert SeedMaterial().function("date_part").constant("year").column("t", "ts").text == (
        "extract,year,t.ts"
    )
    assert SeedMaterial().function("round_by").column("t", "x").constant(0.5).text == (
        "round_by,t.x,0.5"
    )


def test_seed_material_length_limit() -> None:
    material = SeedMaterial().column("t", "x" * 1000)
    with pytest.raises(SeedMaterialTooLong):
        material.constant("y" * 30)


def test_bucket_seed_combines_distinct_hashes() -> None:
    static = sql_seed(["test_customers.city"])
    assert static == hash_string("test_customers.city")
    assert sql_seed(["a.b", "a.b"]) == hash_string("a.b")
    rome = label_hash("Rome")
    assert bucket_seed(static, [rome]) == static ^ rome
    # A label equal to a base label (from WHERE x = 'Rome') is counted once.
    assert bucket_seed(static, [rome], [rome]) == static ^ rome
    # Equal labels in two columns are counted once too.
    assert bucket_seed(0, [label_hash("m"), label_hash("m")]) == label_hash("m")
