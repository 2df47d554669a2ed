"""Privacy budgets: what a role has left, and durable charges against it.

The budget is the one of the role the session acts as (what SET ROLE chose, else the login
role); the SQL side takes that identity from the session itself, never from an argument. A
charge is committed over the loopback connection (sql/core/66_ledger.sql) before `charge`
returns, so a later ROLLBACK of the caller's transaction does not undo it. Concurrent charges
on one budget serialize on its row: none can overspend.

A budget counts in its unit: 'eps_delta' (epsilon and delta add up) or 'rho' (zCDP: rho adds
up, an epsilon-DP answer costing epsilon^2 / 2; delta counts partition selection). What is left
is the smaller of what the period and the lifetime cap leave.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pldiffix.core import context
from pldiffix.core.errors import INVALID_PARAMETER, UserError

NO_BUDGET = "42501"  # insufficient_privilege: the role has no budget
BUDGET_EXCEEDED = "54000"  # program_limit_exceeded: not enough budget left
_LEDGER_SQLSTATES = {NO_BUDGET, BUDGET_EXCEEDED, INVALID_PARAMETER}


EPS_DELTA = "eps_delta"
RHO = "rho"


@dataclass(frozen=True)
class Remaining:
    """Budget left now: epsilon for an (epsilon, delta) budget, rho for a zCDP one."""

    epsilon: float | None
    delta: float
    unit: str = EPS_DELTA
    rho: float | None = None


@dataclass(frozen=True)
class Cost:
    """What one answer costs: epsilon when it is epsilon-DP (None for Gaussian noise), its
    zCDP rho, and delta (partition selection)."""

    epsilon: float | None
    rho: float
    delta: float

    def in_unit(self, unit: str) -> float | None:
        """The amount a budget of `unit` is charged; None when it cannot pay it."""
        return self.rho if unit == RHO else self.epsilon


class BudgetError(UserError):
    """A charge was refused (no budget, not enough left, an invalid cost); nothing was spent."""

    def __init__(
        self, message: str, sqlstate: str, detail: str | None = None, hint: str | None = None
    ):
        super().__init__(message, sqlstate, hint)
        self.detail = detail

    def detail_text(self) -> str | None:
        return self.detail


def check_cost(epsilon: float | None, delta: float, rho: float | None = None) -> None:
    """Refuses a cost the ledger would refuse, before anything is computed."""
    for name, amount in (("epsilon", epsilon), ("rho", rho)):
        if amount is not None and not (math.isfinite(amount) and amount > 0):
            raise BudgetError(
                f"invalid privacy cost: {name} {amount}",
                INVALID_PARAMETER,
                hint=f"{name} must be a positive finite number",
            )
    if epsilon is None and rho is None:
        raise BudgetError(
            "invalid privacy cost: neither epsilon nor rho", INVALID_PARAMETER, hint="give one"
        )
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise BudgetError(
            f"invalid privacy cost: delta {delta}",
            INVALID_PARAMETER,
            hint="delta must be a number in [0, 1)",
        )


def affordable(remaining: Remaining | None, epsilon: float, delta: float) -> bool:
    """Whether a charge of (epsilon, delta) fits what is left of an (epsilon, delta) budget
    (None: no budget at all)."""
    return (
        remaining is not None
        and remaining.epsilon is not None
        and epsilon <= remaining.epsilon
        and delta <= remaining.delta
    )


def covers(remaining: Remaining, cost: Cost) -> bool:
    """Whether what is left pays `cost` in the budget's unit."""
    amount = cost.in_unit(remaining.unit)
    left = remaining.rho if remaining.unit == RHO else remaining.epsilon
    return (
        amount is not None and left is not None and amount <= left and cost.delta <= remaining.delta
    )


def remaining(plpy: Any) -> Remaining | None:
    """What the session's role has left, None when it has no budget. A snapshot for checking
    before computing; only `charge` decides."""
    rows = plpy.execute(
        context.prepared(
            plpy,
            "SELECT CAST(b.epsilon_remaining AS pg_catalog.float8) AS e,"
            " CAST(b.delta_remaining AS pg_catalog.float8) AS d, b.unit AS u,"
            " CAST(b.rho_remaining AS pg_catalog.float8) AS r"
            " FROM diffix.privacy_budget() b"
            " WHERE b.role OPERATOR(pg_catalog.=) diffix._invoking_role()",
        )
    )
    if not rows:
        return None
    row = rows[0]
    return Remaining(row["e"], row["d"], row["u"], row["r"])


def charge(
    plpy: Any,
    *,
    epsilon: float | None,
    delta: float,
    sql: str,
    mechanism: str,
    rho: float | None = None,
) -> Remaining:
    """Spends the cost of one answer from the session role's budget, committed before returning:
    epsilon and delta from an (epsilon, delta) budget; from a zCDP budget rho (epsilon^2 / 2 when
    rho is None) and delta. epsilon None (Gaussian noise) is refused by an (epsilon, delta)
    budget.

    Raises BudgetError (SQLSTATE, a message naming what is left, a hint) and spends nothing when
    the role has no budget, not enough of it, or one in the other unit.
    """
    check_cost(epsilon, delta, rho)
    plan = context.prepared(
        plpy,
        "SELECT epsilon_remaining, delta_remaining, rho_remaining"
        " FROM diffix._charge_budget($1, $2, $3, $4, $5)",
        ("float8", "float8", "text", "text", "float8"),
    )
    arguments = [
        None if epsilon is None else float(epsilon),
        float(delta),
        sql,
        mechanism,
        None if rho is None else float(rho),
    ]
    try:
        rows = plpy.execute(plan, arguments)
    except plpy.SPIError as error:
        refused = refusal(error)
        if refused is None:
            raise
        raise refused from None
    row = rows[0]
    unit = RHO if row["rho_remaining"] is not None else EPS_DELTA
    return Remaining(row["epsilon_remaining"], row["delta_remaining"], unit, row["rho_remaining"])


def refusal(error: Exception) -> BudgetError | None:
    """The ledger's refusal carried by an SPI error, None for any other error."""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate not in _LEDGER_SQLSTATES:
        return None
    message = error.args[0] if error.args else str(error)
    # PL/Python keeps the error's fields in spidata: (code, detail, hint, query, position, ...)
    spidata = getattr(error, "spidata", None) or (None, None, None)
    return BudgetError(str(message), sqlstate, spidata[1], spidata[2])
