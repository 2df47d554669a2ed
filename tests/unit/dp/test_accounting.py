"""How a query's privacy is shared out and charged (zCDP and pure composition), and which
queries count as the same for free replays (no database)."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
import sqlglot

from pldiffix.core import ledger
from pldiffix.core.exact_sampling import rational_epsilon
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import engine, planner, release, replay
from pldiffix.dp.mechanisms import DiscreteGaussian, DiscreteLaplace

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


@pytest.mark.parametrize("aggregates", [1, 2, 5])
@pytest.mark.parametrize("selection", [False, True])
def test_gaussian_shares_compose_to_the_query_rho(aggregates: int, selection: bool) -> None:
    """zCDP composes by adding rho: the statistics' rho and the pure-DP mechanisms' epsilon^2/2
    (partition selection, quantiles) add up to at most epsilon^2 / 2, the query's charge."""
    budget = release.Budget(Fraction(3, 10), 1e-6, aggregates, selection, release.GAUSSIAN)
    assert budget.rho == Fraction(9, 200)
    statistics = 3  # e.g. a variance: count, sum, sum of squares
    spent = aggregates * statistics * (budget.rho_share / statistics)
    if selection:
        spent += budget.share * budget.share / 2
    assert spent <= budget.rho
    assert float(spent) == pytest.approx(float(budget.rho), rel=1e-5)  # little is left unused
    mechanism = budget.statistic_mechanism(2, statistics)
    assert isinstance(mechanism, DiscreteGaussian)
    assert mechanism.variance_parameter == Fraction(4) / (2 * budget.rho_share / statistics)


def test_laplace_shares_compose_to_the_query_epsilon() -> None:
    budget = release.Budget(Fraction(1, 2), 1e-6, 3, True)
    assert budget.share == Fraction(1, 8) and budget.share * 4 == budget.epsilon
    mechanism = budget.statistic_mechanism(1, 2)
    assert isinstance(mechanism, DiscreteLaplace) and mechanism.epsilon == Fraction(1, 16)


def test_one_gaussian_count_has_sigma_sensitivity_over_epsilon() -> None:
    """A single count at epsilon: rho = epsilon^2 / 2, so sigma^2 = 1 / (2 rho) = 1 / epsilon^2."""
    budget = release.Budget(Fraction(1, 10), 0.0, 1, False, release.GAUSSIAN)
    assert budget.statistic_mechanism(1, 1).scale == pytest.approx(10.0)


@pytest.mark.parametrize("epsilon", [0.1, 0.3, 1e-3, 7.123457, 99.999999])
def test_a_gaussian_charge_is_never_below_the_rho_the_noise_used(epsilon: float) -> None:
    """The charge goes to the ledger as float8 and becomes numeric with 15 significant digits:
    rounded up to 12 digits first, it arrives exactly, at or above the noise's rho."""
    budget = release.Budget(rational_epsilon(epsilon), 0.0, 1, False, release.GAUSSIAN)
    cost = engine._cost(epsilon, budget)
    assert cost.epsilon is None and cost.delta == 0.0
    as_numeric = Decimal(f"{cost.rho:.15g}")
    assert Fraction(as_numeric) >= budget.rho
    assert float(as_numeric) == pytest.approx(epsilon * epsilon / 2, rel=1e-5)


def test_a_laplace_charge_is_epsilon_and_its_zcdp_equivalent() -> None:
    budget = release.Budget(rational_epsilon(0.5), 1e-6, 1, True)
    assert engine._cost(0.5, budget) == ledger.Cost(0.5, 0.125, 1e-6)


def _key(sql: str, **changes: object) -> str:
    arguments: dict = {
        "tree": sqlglot.parse_one(sql, read="postgres"),
        "relation": ("public", "visits", 16384),
        "search_path": ["public"],
        "epsilon": 0.5,
        "delta": 0.0,
        "noise": "laplace",
        "metadata": planner.TableMetadata(1, True, {"age": planner.Bounds(0.0, 100.0)}),
        "snapshot": [[16384, 16384, 10, 0, 0]],
    }
    return replay.replay_key(**(arguments | changes))


def test_a_replay_key_ignores_layout_case_and_comments() -> None:
    key = _key("SELECT city, count(*) FROM visits GROUP BY city")
    assert key == _key("select city , COUNT( * )\n from visits -- note\n group by city")
    assert key == _key("SELECT City, count(*) FROM Visits GROUP BY CITY")
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("sql", "changes"),
    [
        ("SELECT city, count(*) AS n FROM visits GROUP BY city", {}),
        ('SELECT "City", count(*) FROM visits GROUP BY "City"', {}),
        ("SELECT city, count(*) FROM public.visits GROUP BY city", {}),
        ("SELECT city, count(*) FROM visits GROUP BY 1", {}),
        (None, {"epsilon": 0.25}),
        (None, {"delta": 1e-6}),
        (None, {"noise": "gaussian"}),
        (None, {"search_path": ["other", "public"]}),
        (None, {"relation": ("public", "visits", 16999)}),
        (None, {"snapshot": [[16384, 16384, 11, 0, 0]]}),  # a row inserted
        (None, {"snapshot": [[16384, 16390, 10, 0, 0]]}),  # TRUNCATE, VACUUM FULL, ...
        (None, {"snapshot": [[16384, 16384, 10, 0, 0], [16400, 16400, 1, 0, 0]]}),  # a child
        (None, {"metadata": planner.TableMetadata(2, True, {"age": planner.Bounds(0.0, 100.0)})}),
        (None, {"metadata": planner.TableMetadata(1, True, {"age": planner.Bounds(0.0, 90.0)})}),
    ],
)
def test_anything_that_can_change_the_answer_changes_the_key(sql: str | None, changes) -> None:
    base = "SELECT city, count(*) FROM visits GROUP BY city"
    assert _key(sql or base, **changes) != _key(base)


def test_a_replayed_answer_reports_nothing_spent_and_what_is_left_now() -> None:
    stored = {
        "query": "SELECT 1",
        "dp": {
            "epsilon": 0.5,
            "delta": 1e-6,
            "replayed": False,
            "remaining": {"epsilon": 1.0, "delta": 0.0},
        },
    }
    again = replay.replayed(stored, {"epsilon": 0.7, "delta": 0.0})
    assert again["query"] == "SELECT 1"
    assert again["dp"] == {
        "epsilon": 0.0,
        "delta": 0.0,
        "replayed": True,
        "remaining": {"epsilon": 0.7, "delta": 0.0},
    }
    assert stored["dp"]["epsilon"] == 0.5  # the stored answer itself is unchanged


def test_the_gaussian_report_names_its_mechanism_rho_and_sigma() -> None:
    from pldiffix.dp.query import parse

    plan = planner.plan(
        parse("SELECT count(*), avg(age) FROM visits", CATALOG),
        planner.TableMetadata(1, True, {"age": planner.Bounds(0.0, 100.0)}),
        seed=1,
    )
    budget = release.Budget(Fraction(1), 0.0, 2, False, release.GAUSSIAN)
    count, average = release.noise_report(plan, budget)
    assert count["mechanism"] == "discrete_gaussian" and "epsilon" not in count
    assert count["rho"] == 0.25 and count["noise_scale"]["n"] == pytest.approx(math.sqrt(2))
    assert average["rho"] == 0.25 and set(average["noise_scale"]) == {"n", "s"}
