"""Diffix's aggregates: which calls an anonymizing SELECT may use and on what arguments (the
`AggregateRules` the statement validator of core/validation/ is given).

count, sum and avg of plain columns (count also with DISTINCT or `*`), the diffix noise and
histogram aggregates, and nothing else; FILTER, WITHIN GROUP and ORDER BY inside a call are
refused.
"""

from __future__ import annotations

from typing import Literal

from sqlglot import exp

from pldiffix.core import errors as sqlstate
from pldiffix.core.money import is_money_rounded
from pldiffix.core.validation.aggregates import aggregate_identity
from pldiffix.core.validation.context import AggResult, Analysis
from pldiffix.core.validation.errors import error_at, error_rendered
from pldiffix.core.validation.expressions import type_of, unwrap
from pldiffix.core.validation.pgtypes import (
    NUMERIC_TYPES,
    UNKNOWN,
    format_number,
    literal_number,
    money_neighbours,
    type_display,
)
from pldiffix.core.validation.scope import Resolved
from pldiffix.core.validation.syntax import literal_value, strip_parens, walk_nodes
from pldiffix.core.validation.totality import check_aggregate_argument

AggregateKind = Literal[
    "count_star",
    "count",
    "count_distinct",
    "sum",
    "avg",
    "count_noise_star",
    "count_noise",
    "count_distinct_noise",
    "sum_noise",
    "avg_noise",
    "count_histogram",
    "is_suppress_bin",
]

AGGREGATES_HINT = (
    "Supported aggregates: count(*), count(col), count(DISTINCT col), sum(col), avg(col), "
    "diffix.count_noise(...), diffix.sum_noise(col), diffix.avg_noise(col), "
    "diffix.count_histogram(aid_col[, bin_size]) and diffix.is_suppress_bin(*). Other "
    "aggregates can be computed over anonymized results in an outer query."
)


class DiffixAggregates:
    """The `AggregateRules` of Diffix's anonymizing queries."""

    def check(self, analysis: Analysis, select: exp.Select) -> list[AggResult]:
        return check_aggregates(analysis, select)


def check_aggregates(analysis: Analysis, select: exp.Select) -> list[AggResult]:
    """Every aggregate call in the select list, HAVING and ORDER BY, verified."""
    results: list[AggResult] = []
    having = select.args.get("having")
    order = select.args.get("order")
    for node in walk_nodes(select.expressions, having, order):
        if isinstance(node, exp.Filter):
            raise error_rendered(
                node,
                "FILTER clauses are not supported in aggregates of queries that read personal "
                "tables",
                "Filter rows with a WHERE equality, or aggregate per group with GROUP BY.",
            )
        if isinstance(node, exp.WithinGroup):
            raise error_rendered(
                node,
                "ordered-set aggregates (WITHIN GROUP) are not supported in queries that read "
                "personal tables",
                AGGREGATES_HINT,
            )
    seen: set[int] = set()
    for node in walk_nodes(select.expressions, having, order):
        if id(node) in seen:
            continue
        result = _check_aggregate(analysis, node)
        if result is not None:
            results.append(result)
            for sub in node.walk():
                seen.add(id(sub))
    return results


def _check_aggregate(analysis: Analysis, node: exp.Expression) -> AggResult | None:
    identity = aggregate_identity(analysis, node)
    if identity is None:
        return None
    name, args = identity
    distinct = False
    if len(args) == 1 and isinstance(args[0], exp.Distinct):
        distinct = True
        inner = args[0].expressions
        args = list(inner)
    if len(args) == 1 and isinstance(args[0], exp.Order):
        raise error_rendered(
            node,
            "ORDER BY inside an aggregate is not supported in queries that read personal tables",
            "Remove the ORDER BY from the aggregate call.",
        )
    star = len(args) == 1 and isinstance(args[0], exp.Star)
    if name not in ("count", "sum", "avg") and not name.startswith("diffix."):
        raise error_at(
            node,
            f"{name}() is not supported in queries that read personal tables",
            AGGREGATES_HINT,
        )
    if name.startswith("diffix.") and name not in (
        "diffix.count_noise",
        "diffix.sum_noise",
        "diffix.avg_noise",
        "diffix.count_histogram",
        "diffix.is_suppress_bin",
    ):
        raise error_at(node, f"{name}() is not an aggregate", AGGREGATES_HINT)
    if name == "diffix.is_suppress_bin":
        if not star:
            raise error_at(
                node,
                "diffix.is_suppress_bin takes `*` as its argument",
                "Write diffix.is_suppress_bin(*).",
            )
        return AggResult("is_suppress_bin", node)
    if name == "diffix.count_histogram":
        return _check_count_histogram(analysis, node, args, distinct)
    if distinct and name not in ("count", "diffix.count_noise"):
        raise error_at(
            node,
            f"DISTINCT is not supported in {name}()",
            "Only count(DISTINCT col) and diffix.count_noise(DISTINCT col) accept DISTINCT; "
            f"remove it from {name}().",
        )
    if star:
        if name == "count":
            return AggResult("count_star", node)
        if name == "diffix.count_noise":
            return AggResult("count_noise_star", node)
        raise error_at(node, f"{name}(*) does not exist", f"Pass a column: {name}(col).")
    if len(args) != 1:
        raise error_at(
            node,
            f"{name}() takes exactly one argument",
            f"Write {name}(col).",
            sqlstate=sqlstate.UNDEFINED_FUNCTION,
        )
    arg = args[0]
    arg_type = type_of(analysis, arg)
    base = name.removeprefix("diffix.")
    if (
        base in ("sum", "avg", "sum_noise", "avg_noise")
        and arg_type is not None
        and arg_type not in NUMERIC_TYPES
    ):
        raise error_at(
            node,
            f"{name}() needs a numeric argument, not {type_display(arg_type)}",
            "Count the rows instead (count(col)), or aggregate a numeric column.",
        )
    inner = unwrap(analysis, arg)
    column = analysis.column_of(inner)
    if column is not None and column.whole_row:
        raise error_at(
            arg,
            f"a whole-row reference cannot be aggregated by {name}() in a query that reads "
            "personal tables",
            f"Use {name}(*) or {name}(column)."
            if name.startswith("count") or "count" in name
            else f"Use {name}(column).",
        )
    if column is None:
        raise error_at(
            arg,
            f"the argument of {name}() must be a plain column",
            f"Aggregate the column and compute with the result instead, e.g. {name}(col) + 5 "
            f"rather than {name}(col + 5), or compute in an outer query.",
        )
    if column.system:
        raise error_at(
            inner,
            f"system column {column.name} cannot be used in a query that reads personal tables",
            "Use the columns of the table.",
        )
    if analysis.total:
        check_aggregate_argument(analysis, arg)
    kinds: dict[tuple[str, bool], AggregateKind] = {
        ("count", False): "count",
        ("count", True): "count_distinct",
        ("sum", False): "sum",
        ("avg", False): "avg",
        ("count_noise", False): "count_noise",
        ("count_noise", True): "count_distinct_noise",
        ("sum_noise", False): "sum_noise",
        ("avg_noise", False): "avg_noise",
    }
    return AggResult(kinds[(base, distinct)], node, column)


def _check_count_histogram(
    analysis: Analysis, node: exp.Expression, args: list[exp.Expression], distinct: bool
) -> AggResult:
    if distinct:
        raise error_at(
            node,
            "DISTINCT is not supported in diffix.count_histogram()",
            "Write diffix.count_histogram(aid_column).",
        )
    if not args or len(args) > 2:
        raise error_at(
            node,
            "diffix.count_histogram takes an AID column and an optional bin size",
            "Write diffix.count_histogram(aid_column) or diffix.count_histogram(aid_column, 5).",
            sqlstate=sqlstate.UNDEFINED_FUNCTION,
        )
    target = strip_parens(args[0])
    column = analysis.column_of(target)
    if column is None or not column.is_aid:
        aids = ", ".join(_aids_in_scope(column)) if column else ""
        raise error_at(
            args[0],
            "the first argument of diffix.count_histogram must be an AID column",
            "Pass the column that identifies the protected entities"
            + (f" ({aids})" if aids else "")
            + ".",
        )
    bin_size = 1
    if len(args) == 2:
        raw = args[1]
        value_node = unwrap(analysis, raw)
        value_type = type_of(analysis, value_node)
        value = literal_value(strip_parens(value_node))
        if isinstance(strip_parens(value_node), exp.Literal) and value_type == UNKNOWN:
            value = literal_number(strip_parens(value_node).this)
            value_type = "int8" if value is not None and value == int(value) else None
        if value_type not in ("int4", "int8") or not isinstance(value, float):
            raise error_at(
                raw,
                "the bin size of diffix.count_histogram must be a constant integer",
                "Write an integer literal, e.g. diffix.count_histogram(aid_column, 5).",
            )
        if value < 1 or value > 2**63 - 1:
            raise error_at(
                raw,
                "the bin size of diffix.count_histogram must be at least 1",
                "Use a positive bin size.",
            )
        if analysis.untrusted and not is_money_rounded(value):
            below, above = money_neighbours(value)
            raise error_at(
                raw,
                f"untrusted analysts must use a bin size of 1, 2 or 5 times a power of ten, "
                f"not {format_number(value)}",
                f"Use {format_number(below)} or {format_number(above)}.",
            )
        bin_size = int(value)
    return AggResult("count_histogram", node, column, bin_size)


def _aids_in_scope(column: Resolved) -> list[str]:
    source = column.source
    if source.relation is None:
        return []
    return [f"{source.alias}.{a}" for a in source.relation.aid_columns]
