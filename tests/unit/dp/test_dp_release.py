"""The order of released rows: a function of the released keys only (no database)."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pldiffix.core.exact_sampling import rational_epsilon
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import planner, release
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

ONE_ROW = planner.TableMetadata(unique_aid=True)  # one row per unit


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
        on_d = [row.keys for row in release.release(plan, budget, d, {}, ONE_ROW)]
        on_d_prime = [row.keys for row in release.release(plan, budget, d_prime, {}, ONE_ROW)]
        assert on_d == on_d_prime == expected


def test_declared_keys_come_in_key_order_too() -> None:
    """Without partition selection every key is released: still sorted, whatever the order the
    executor's join produced."""
    plan = _plan("SELECT city, age, count(*) FROM visits GROUP BY city, age")
    budget = release.Budget(Fraction(1), 0.0, 1, False)
    keys = [(city, age) for city in ("Rome", "Oslo", "Bern") for age in (40, 3, None, 25)]
    for seed in range(5):
        shuffled = random.Random(seed).sample(keys, len(keys))
        released = [
            row.keys for row in release.release(plan, budget, _groups(shuffled, 5), {}, ONE_ROW)
        ]
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


class _FakeCursor:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows, self.closed = rows, False

    def fetch(self, size: int) -> list[dict[str, Any]]:
        batch, self.rows = self.rows[:size], self.rows[size:]
        return batch

    def close(self) -> None:
        self.closed = True


class _FakePlpy:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.cursors: list[_FakeCursor] = []
        self._rows = rows

    def cursor(self, sql: str) -> _FakeCursor:
        self.cursors.append(_FakeCursor(list(self._rows)))
        return self.cursors[-1]


def test_histograms_are_read_one_group_at_a_time_across_fetches(monkeypatch: Any) -> None:
    """Rows ordered by group, fetched 2 at a time: each group comes whole, once, and the cursor
    is closed; a group whose rows span fetches is not split."""
    from pldiffix.dp import engine

    monkeypatch.setattr(engine, "HISTOGRAM_FETCH", 2)
    rows = [
        {"g0": "Oslo", "bin": -3, "n": 1},
        {"g0": "Oslo", "bin": 0, "n": 4},
        {"g0": "Oslo", "bin": 7, "n": 2},
        {"g0": "Rome", "bin": 1, "n": 5},
        {"g0": None, "bin": 2, "n": 1},
    ]
    plpy = _FakePlpy(rows)
    read = list(engine._histograms(plpy, "unused", 1))
    assert read == [(("Oslo",), {-3: 1, 0: 4, 7: 2}), (("Rome",), {1: 5}), ((None,), {2: 1})]
    assert plpy.cursors[0].closed
    assert list(engine._histograms(_FakePlpy([]), "unused", 1)) == []


def test_quantiles_are_drawn_for_released_groups_only() -> None:
    """Partition selection by the count drops the one-unit group before its histogram is read;
    the released groups get a quantile (a group without values: drawn from an empty one), and
    list-valued keys (arrays) work."""
    query = "SELECT city, count(*), median(age) FROM visits GROUP BY city"
    bounds = {"age": planner.Bounds(0.0, 100.0)}
    metadata = planner.TableMetadata(1, False, bounds)
    plan = planner.plan(parse(query, CATALOG), metadata, seed=1)
    budget = release.Budget(Fraction(10), 1e-6, 2, True, selection_by_count=True)
    groups = [
        {"g0": "Rome", "units": 500, "a0_n": 500},
        {"g0": "Lonely", "units": 1, "a0_n": 1},
        {"g0": ["an", "array"], "units": 400, "a0_n": 400},
    ]
    drawn: list[tuple[Any, ...]] = []

    def histogram() -> Any:
        for keys, counts in [(("Lonely",), {0: 1}), (("Rome",), {-20: 250, 10: 250})]:
            drawn.append(keys)
            yield keys, counts

    released = release.release(plan, budget, groups, {1: histogram()}, metadata)
    by_key = {row.keys: row.values for row in released if not isinstance(row.keys[0], list)}
    assert set(by_key) == {("Rome",)} and len(released) == 2
    assert 30.0 <= by_key[("Rome",)][1].value <= 60.0  # between the two values (30 and 60)
    assert 0.0 <= released[-1].values[1].value <= 100.0  # the array's group: no values
    assert drawn == [("Lonely",), ("Rome",)]  # read once, in the reader's order
