"""The order of released rows: a function of the released keys only (no database)."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import planner, release
from pldiffix.dp.mechanisms import rational_epsilon
from pldiffix.dp.query import parse

CATALOG = StaticCatalog(
    {
        ("public", "visits"): RelationInfo(
            "public",
            "visits",
            RelationKind.PERSONAL,
            (
                ColumnInfo("id", "integer", is_aid=True),
                ColumnInfo("city", "text"),
                ColumnInfo("age", "integer"),
            ),
        )
    }
)


def _plan(sql: str) -> planner.Plan:
    return planner.plan(parse(sql, CATALOG), planner.TableMetadata(unique_aid=True), seed=1)


def _groups(keys: list[tuple[Any, ...]], units: int) -> list[dict[str, Any]]:
    rows = []
    for key in keys:
        row: dict[str, Any] = {f"g{i}": value for i, value in enumerate(key)}
        rows.append(row | {"units": units, "a0_n": units})
    return rows


def test_a_key_that_is_never_released_does_not_change_the_order_of_the_others() -> None:
    """D: 40 keys of 300 units each; D': D plus one unit with a fresh key, which the executor's
    hash table also holds and so hands over the other groups in another order (simulated by a
    shuffle). At epsilon 1, delta 1e-6 the 40 keys are always released and the fresh key never
    is (its chance is below 1e-6 per run): the released order must be identical in every run."""
    plan = _plan("SELECT city, count(*) FROM visits GROUP BY city")
    budget = release.Budget(rational_epsilon(1.0), 1e-6, 1, True)
    keys = [(f"city {i:02d}",) for i in range(40)]
    shuffler = random.Random(7)
    expected = sorted(keys)
    for _ in range(50):
        executor_order = shuffler.sample(keys, len(keys))
        d = _groups(executor_order, 300)
        fresh = _groups([("a town of one",)], 1)
        d_prime = _groups(shuffler.sample(keys, len(keys)), 300)
        d_prime.insert(shuffler.randrange(len(d_prime) + 1), fresh[0])
        on_d = [row.keys for row in release.release(plan, budget, d, {}, 1)]
        on_d_prime = [row.keys for row in release.release(plan, budget, d_prime, {}, 1)]
        assert on_d == on_d_prime == expected


def test_declared_keys_come_in_key_order_too() -> None:
    """Without partition selection every key is released: still sorted, whatever the order the
    executor's join produced."""
    plan = _plan("SELECT city, age, count(*) FROM visits GROUP BY city, age")
    budget = release.Budget(Fraction(1), 0.0, 1, False)
    keys = [(city, age) for city in ("Rome", "Oslo", "Bern") for age in (40, 3, None, 25)]
    for seed in range(5):
        shuffled = random.Random(seed).sample(keys, len(keys))
        released = [row.keys for row in release.release(plan, budget, _groups(shuffled, 5), {}, 1)]
        assert released == [
            (city, age) for city in ("Bern", "Oslo", "Rome") for age in (3, 25, 40, None)
        ]


def _sorted(values: list[Any]) -> list[str]:
    return [repr(v) for v in sorted(values, key=lambda v: release.key_order((v,)))]


def test_the_key_order_is_total_and_typed() -> None:
    """Numbers numerically (not as text: 9 before 10), NaN after the numbers, NULL last, text
    by code point, values that compare equal but differ (0.0, -0.0) in one fixed order; the
    same order from any starting order."""
    numbers = [10.0, None, 9.0, -1.5, math.nan, 0.0, -0.0, math.inf, -math.inf]
    expected = ["-inf", "-1.5", "-0.0", "0.0", "9.0", "10.0", "inf", "nan", "None"]
    for start in range(len(numbers)):
        assert _sorted(numbers[start:] + numbers[:start]) == expected
        assert _sorted(numbers[start:][::-1] + numbers[:start]) == expected
    assert _sorted([None, 10, 9, -3]) == ["-3", "9", "10", "None"]
    decimals = [Decimal("NaN"), None, Decimal("2.5"), Decimal("-Infinity"), Decimal("10")]
    assert _sorted(decimals) == [
        "Decimal('-Infinity')",
        "Decimal('2.5')",
        "Decimal('10')",
        "Decimal('NaN')",
        "None",
    ]
    assert _sorted(["b", "B", None, "a", "", "ä"]) == ["''", "'B'", "'a'", "'b'", "'ä'", "None"]
    assert _sorted([b"\x02", None, b"\x01"]) == ["b'\\x01'", "b'\\x02'", "None"]
    assert _sorted([[2, 1], None, [1, 2]]) == ["[1, 2]", "[2, 1]", "None"]
    assert _sorted([True, None, False]) == ["False", "True", "None"]
    pairs = [("b", 1), ("a", None), ("a", 2), (None, 0)]
    assert sorted(pairs, key=release.key_order) == [("a", 2), ("a", None), ("b", 1), (None, 0)]
