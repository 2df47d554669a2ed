"""Aggregate calls of an anonymizing SELECT: how one is recognised.

The statement validator knows what an aggregate call is (`aggregate_identity`); which ones a
query may use, on what arguments, is the mechanism's `AggregateRules` (context.py; Diffix's:
diffix/validation/aggregates.py; DP checks its own aggregates and gives the validator only the
count(*) of its grouping query).
"""

from __future__ import annotations

from sqlglot import exp

from .context import Analysis
from .functions import DIFFIX_AGGREGATES, builtin_name


def aggregate_identity(
    analysis: Analysis, node: exp.Expression
) -> tuple[str, list[exp.Expression]] | None:
    """("sum", args) when `node` is an aggregate call, with "diffix." names for ours."""
    if isinstance(node, exp.Count):
        return "count", [node.this] if node.this is not None else []
    if isinstance(node, exp.Sum):
        return "sum", [node.this]
    if isinstance(node, exp.Avg):
        return "avg", [node.this]
    if isinstance(node, exp.Window):
        return None
    if isinstance(node, exp.AggFunc):
        return (builtin_name(node) or type(node).__name__.lower()), list(node.iter_expressions())
    if isinstance(node, (exp.Anonymous, exp.Dot)):
        found = analysis.function_of(node)
        if found is None:
            return None
        info = analysis.lookup_function(found[0], found[1])
        if info is None:
            return None
        func = node.expression if isinstance(node, exp.Dot) else node
        args = list(func.expressions) if isinstance(func, exp.Anonymous) else []
        if info.schema == "diffix" and info.name in DIFFIX_AGGREGATES:
            return f"diffix.{info.name}", args
        if info.kind == "aggregate":
            return f"{info.schema}.{info.name}", args
    return None
