"""core/ledger.py and core/audit.py without a database: cost checks, how refusals become user
errors, and what the log says about a refused query."""

from __future__ import annotations

import math

import pytest

from pldiffix.core import audit, ledger
from pldiffix.core.errors import INVALID_PARAMETER, UserError, describe
from pldiffix.core.statements import QueryError


class SPIError(Exception):
    """What PL/Python raises for an error in a statement, with the fields PostgreSQL sent."""

    def __init__(self, message: str, sqlstate: str, detail=None, hint=None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.spidata = (0, detail, hint, None, 0, None, None, None, None, None)


class FakePlpy:
    SPIError = SPIError

    def __init__(self, outcome):
        self.outcome = outcome
        self.executed: list[list] = []

    def prepare(self, statement, types=()):
        return statement

    def execute(self, plan, args=None):
        self.executed.append(args)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("epsilon", "delta"),
    [(0.0, 0.0), (-1.0, 0.0), (math.nan, 0.0), (math.inf, 0.0), (1.0, -1e-9), (1.0, 1.0)],
)
def test_invalid_costs_are_refused_before_anything_is_computed(epsilon, delta):
    with pytest.raises(ledger.BudgetError) as error:
        ledger.check_cost(epsilon, delta)
    assert error.value.sqlstate == INVALID_PARAMETER


def test_valid_costs_pass():
    ledger.check_cost(0.1, 0.0)
    ledger.check_cost(5.0, 1e-6)


def test_affordable_compares_with_what_is_left():
    left = ledger.Remaining(1.0, 1e-5)
    assert ledger.affordable(left, 1.0, 1e-5)
    assert not ledger.affordable(left, 1.0000001, 0.0)
    assert not ledger.affordable(left, 0.1, 2e-5)
    assert not ledger.affordable(None, 0.1, 0.0)


def test_a_charge_returns_what_is_left():
    plpy = FakePlpy([{"epsilon_remaining": 2.0, "delta_remaining": 0.5, "rho_remaining": None}])
    left = ledger.charge(plpy, epsilon=1.0, delta=0.0, sql="SELECT 1", mechanism="dp")
    assert left == ledger.Remaining(2.0, 0.5)
    assert plpy.executed == [[1.0, 0.0, "SELECT 1", "dp", None]]


def test_a_zcdp_charge_passes_rho_and_returns_what_is_left():
    plpy = FakePlpy([{"epsilon_remaining": None, "delta_remaining": 0.0, "rho_remaining": 0.3}])
    left = ledger.charge(plpy, epsilon=None, delta=0.0, rho=0.2, sql="q", mechanism="dp")
    assert left == ledger.Remaining(None, 0.0, ledger.RHO, 0.3)
    assert plpy.executed == [[None, 0.0, "q", "dp", 0.2]]


def test_remaining_is_none_without_a_budget():
    assert ledger.remaining(FakePlpy([])) is None
    row = {"e": 0.5, "d": 0.0, "u": "eps_delta", "r": None}
    assert ledger.remaining(FakePlpy([row])) == ledger.Remaining(0.5, 0.0)


def test_a_cost_is_paid_in_the_budget_unit():
    laplace = ledger.Cost(epsilon=0.5, rho=0.125, delta=0.0)
    gaussian = ledger.Cost(epsilon=None, rho=0.125, delta=0.0)
    epsilon_budget = ledger.Remaining(0.5, 0.0)
    rho_budget = ledger.Remaining(None, 0.0, ledger.RHO, 0.125)
    assert ledger.covers(epsilon_budget, laplace) and ledger.covers(rho_budget, laplace)
    assert ledger.covers(rho_budget, gaussian)
    assert not ledger.covers(epsilon_budget, gaussian)  # Gaussian noise is not epsilon-DP
    assert not ledger.covers(ledger.Remaining(None, 0.0, ledger.RHO, 0.1), gaussian)
    assert not ledger.covers(rho_budget, ledger.Cost(None, 0.1, 1e-9))  # no delta left


@pytest.mark.parametrize(
    ("epsilon", "rho"), [(None, None), (None, -0.1), (None, math.inf), (0.5, math.nan)]
)
def test_an_invalid_zcdp_cost_never_reaches_the_ledger(epsilon, rho):
    plpy = FakePlpy([])
    with pytest.raises(ledger.BudgetError):
        ledger.charge(plpy, epsilon=epsilon, delta=0.0, rho=rho, sql="x", mechanism="dp")
    assert plpy.executed == []


def test_an_invalid_charge_never_reaches_the_ledger():
    plpy = FakePlpy([])
    with pytest.raises(ledger.BudgetError):
        ledger.charge(plpy, epsilon=-1.0, delta=0.0, sql="x", mechanism="dp")
    assert plpy.executed == []


@pytest.mark.parametrize("sqlstate", [ledger.NO_BUDGET, ledger.BUDGET_EXCEEDED])
def test_a_refused_charge_becomes_a_user_error_with_its_hint(sqlstate):
    refusal = SPIError("privacy budget exceeded", sqlstate, "nothing was spent", "ask for less")
    plpy = FakePlpy(refusal)
    with pytest.raises(ledger.BudgetError) as error:
        ledger.charge(plpy, epsilon=1.0, delta=0.0, sql="x", mechanism="dp")
    report = describe(error.value)
    assert (report.message, report.sqlstate, report.detail, report.hint) == (
        "privacy budget exceeded",
        sqlstate,
        "nothing was spent",
        "ask for less",
    )


def test_other_database_errors_pass_through_unchanged():
    broken = SPIError("could not connect", "08006")
    with pytest.raises(SPIError) as error:
        ledger.charge(FakePlpy(broken), epsilon=1.0, delta=0.0, sql="x", mechanism="dp")
    assert error.value is broken


def test_record_passes_the_row_and_never_an_identity():
    plpy = FakePlpy([])
    audit.record(
        plpy,
        level="anonymized_dp",
        mechanism="dp",
        sql="SELECT 1",
        accepted=True,
        rows=2,
        epsilon=0.5,
        delta=0.0,
    )
    assert plpy.executed == [["anonymized_dp", "dp", "SELECT 1", True, None, 2, 0.5, 0.0]]


def test_record_refuses_a_mechanism_the_log_does_not_know():
    plpy = FakePlpy([])
    with pytest.raises(ValueError, match="unknown mechanism"):
        audit.record(plpy, level="direct", mechanism="", sql="SELECT 1", accepted=True)
    assert plpy.executed == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (QueryError("column id is an AID", hint="count it"), "column id is an AID"),
        (PermissionError("only admins"), "only admins"),
        (
            SPIError("spiexceptions.UndefinedTable: relation x does not exist", "42P01"),
            "relation x does not exist",
        ),
        (SPIError("plpy.Error: plpy.Error: refused", "XX000"), "refused"),
        (UserError(""), ""),
        (RuntimeError(), "RuntimeError"),
    ],
)
def test_the_reason_is_the_message_the_user_sees(error, reason):
    assert audit.reason_of(error) == reason
