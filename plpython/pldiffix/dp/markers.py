"""Accuracy and budget columns a DP query's select list may carry, for clients that see columns
only (a BI tool through the proxy, diffix.query_json).

`diffix.dp_ci_low(<aggregate>)` and `diffix.dp_ci_high(<aggregate>)` are the bounds of the 95%
interval of the aggregate's released value (dp/release.py); `diffix.dp_budget_remaining()` is the
epsilon the role has left after the query is paid. They cost nothing: an interval is a function
of the noise scale, which is public, and of the released value. The DP validator recognises them
in the DP subquery's select list; the engine fills them in with the released rows. Anywhere else
the SQL functions of the same names (sql/dp/65_query.sql) raise an error or, for the budget,
read the role's budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from pldiffix.core.errors import FEATURE_NOT_SUPPORTED, UserError
from pldiffix.core.sqltext import ident_name

MarkerName = Literal["dp_ci_low", "dp_ci_high", "dp_budget_remaining"]
INTERVAL_MARKERS: tuple[MarkerName, ...] = ("dp_ci_low", "dp_ci_high")
BUDGET_MARKER: MarkerName = "dp_budget_remaining"
_SCHEMA = "diffix"


class MarkerError(UserError):
    """A marker called with the wrong arguments; nothing was computed and nothing was spent."""

    default_sqlstate = FEATURE_NOT_SUPPORTED


@dataclass(frozen=True)
class Marker:
    name: MarkerName
    argument: exp.Expression | None  # the aggregate whose interval it shows


def marker_of(node: exp.Expression) -> Marker | None:
    """The marker `node` calls (`diffix.<name>(...)`, schema-qualified), None for anything else.
    Raises MarkerError when a marker has the wrong arguments."""
    if not (
        isinstance(node, exp.Dot)
        and isinstance(node.this, exp.Identifier)
        and ident_name(node.this) == _SCHEMA
        and isinstance(node.expression, exp.Anonymous)
    ):
        return None
    name = str(node.expression.name).lower()
    arguments = list(node.expression.expressions)
    text = node.sql(dialect="postgres")
    if name in INTERVAL_MARKERS:
        if len(arguments) != 1:
            raise MarkerError(
                f"{_SCHEMA}.{name} takes one aggregate, not {text}",
                hint=f"write {_SCHEMA}.{name}(count(*)) next to count(*) in the DP query",
            )
        return Marker(name, arguments[0])  # type: ignore[arg-type]
    if name == BUDGET_MARKER:
        if arguments:
            raise MarkerError(
                f"{_SCHEMA}.{name} takes no arguments, not {text}",
                hint=f"write {_SCHEMA}.{name}()",
            )
        return Marker(BUDGET_MARKER, None)
    return None
