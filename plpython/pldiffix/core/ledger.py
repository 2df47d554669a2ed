"""Privacy budgets: what a role has left, and durable charges against it.

The budget is the one of the role the session acts as (what SET ROLE chose, else the login
role); the SQL side takes that identity from the session itself, never from an argument. A
charge is committed over the loopback connection (sql/core/66_ledger.sql) before `charge`
returns, so a later ROLLBACK of the caller's transaction does not undo it. Concurrent charges
on one budget serialize on its row: none can overspend.

The DP path checks `remaining`, computes its answer, then calls `charge` and only then returns
the answer; so a query that fails spends nothing, and no answer leaves without its charge.
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


@dataclass(frozen=True)
class Remaining:
    """Budget left in the current period."""

    epsilon: float
    delta: float


class BudgetError(UserError):
    """A charge was refused (no budget, not enough left, an invalid cost); nothing was spent."""

    def __init__(
        self, message: str, sqlstate: str, detail: str | None = None, hint: str | None = None
    ):
        super().__init__(message, sqlstate, hint)
        self.detail = detail

    def detail_text(self) -> str | None:
        return self.detail


def check_cost(epsilon: float, delta: float) -> None:
    """Refuses a cost the ledger would refuse, before anything is computed."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise BudgetError(
            f"invalid privacy cost: epsilon {epsilon}",
            INVALID_PARAMETER,
            hint="epsilon must be a positive finite number",
        )
    if not (math.isfinite(delta) and 0 <= delta < 1):
        raise BudgetError(
            f"invalid privacy cost: delta {delta}",
            INVALID_PARAMETER,
            hint="delta must be a number in [0, 1)",
        )


def affordable(remaining: Remaining | None, epsilon: float, delta: float) -> bool:
    """Whether a charge of (epsilon, delta) fits what is left (None: no budget at all)."""
    return remaining is not None and epsilon <= remaining.epsilon and delta <= remaining.delta


def remaining(plpy: Any) -> Remaining | None:
    """What the session's role has left, None when it has no budget. A snapshot for checking
    before computing; only `charge` decides."""
    rows = plpy.execute(
        context.prepared(
            plpy,
            "SELECT CAST(b.epsilon_remaining AS pg_catalog.float8) AS e,"
            " CAST(b.delta_remaining AS pg_catalog.float8) AS d"
            " FROM diffix.privacy_budget() b"
            " WHERE b.role OPERATOR(pg_catalog.=) diffix._invoking_role()",
        )
    )
    if not rows:
        return None
    return Remaining(rows[0]["e"], rows[0]["d"])


def charge(plpy: Any, *, epsilon: float, delta: float, sql: str, mechanism: str) -> Remaining:
    """Spends (epsilon, delta) of the session role's budget, committed before returning.

    Raises BudgetError (SQLSTATE, a message naming what is left, a hint) and spends nothing when
    the role has no budget or not enough of it.
    """
    check_cost(epsilon, delta)
    plan = context.prepared(
        plpy,
        "SELECT epsilon_remaining, delta_remaining FROM diffix._charge_budget($1, $2, $3, $4)",
        ("float8", "float8", "text", "text"),
    )
    try:
        rows = plpy.execute(plan, [float(epsilon), float(delta), sql, mechanism])
    except plpy.SPIError as error:
        refused = refusal(error)
        if refused is None:
            raise
        raise refused from None
    return Remaining(rows[0]["epsilon_remaining"], rows[0]["delta_remaining"])


def refusal(error: Exception) -> BudgetError | None:
    """The ledger's refusal carried by an SPI error, None for any other error."""
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate not in _LEDGER_SQLSTATES:
        return None
    message = error.args[0] if error.args else str(error)
    # PL/Python keeps the error's fields in spidata: (code, detail, hint, query, position, ...)
    spidata = getattr(error, "spidata", None) or (None, None, None)
    return BudgetError(str(message), sqlstate, spidata[1], spidata[2])
