"""Hints that show the analyst what to write instead, built from their own query.

Every hint offers only what the caller's level accepts: `generalizations(analysis)` lists the
grouping generalizations of the level, and the rewrites suggested here (a CASE over the buckets of
diffix.floor_by, an equality instead of a negation, JOIN ... ON instead of a comma join) are
queries that level runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from sqlglot import exp

from pldiffix.core.pgtypes import INTEGER_TYPES, category

from .context import Analysis
from .errors import render
from .scope import FromLeaf, FromTree, Resolved, Source, leaves
from .syntax import conjuncts, ident_name, literal_value, strip_parens

GENERALIZERS_TRUSTED = (
    "substring(col, start, length), floor(col), round(col), ceil(col), "
    "width_bucket(col, low, high, count), date_trunc('unit', col), extract(field FROM col), "
    "date_part('field', col), diffix.floor_by(col, K), diffix.round_by(col, K), "
    "diffix.ceil_by(col, K), and casts between numeric types or from date/time to text"
)

GENERALIZERS_UNTRUSTED = (
    "substring(col, 1, length), floor(col), round(col) and diffix.floor_by(col, K) with K "
    "1, 2 or 5 times a power of ten"
)

# The caveat of every suggestion that adds anonymized counts up in an outer query.
_OUTER_SUM_CAVEAT = (
    "The outer sum adds up the noise of its buckets and leaves out the rows of buckets too "
    "small to be released, so it is less accurate than a count over one bucket."
)

CONSTRUCT_NAMES: dict[type[exp.Expression], str] = {
    exp.Case: "CASE",
    exp.If: "CASE",
    exp.Coalesce: "COALESCE",
    exp.Nullif: "NULLIF",
    exp.Greatest: "GREATEST",
    exp.Least: "LEAST",
}


def generalizations(analysis: Analysis) -> str:
    """The grouping generalizations the caller's level accepts, to list in hints."""
    return GENERALIZERS_UNTRUSTED if analysis.untrusted else GENERALIZERS_TRUSTED


def bin_size_example(analysis: Analysis) -> str:
    """A call of diffix.floor_by the caller's level accepts."""
    return "diffix.floor_by(col, 10)" if analysis.untrusted else "diffix.floor_by(col, K)"


# --------------------------------------------------------------------------------------------------
# CASE (and COALESCE & co.) as a grouping expression or in WHERE
# --------------------------------------------------------------------------------------------------


def construct_hint(analysis: Analysis, node: exp.Expression, context: str) -> str:
    """What to write instead of a CASE/COALESCE/... over personal rows.

    A CASE that splits one numeric column at constant bounds becomes a diffix.floor_by whose
    buckets do not straddle the bounds, with the CASE applied to the buckets in an outer query.
    """
    name = CONSTRUCT_NAMES[type(node)]
    if context != "group":
        return (
            f"Compare a column, or one of {generalizations(analysis)}, with a constant; or group "
            f"by the column and apply {name} to the anonymized result in an outer query."
        )
    column = _single_column(analysis, node)
    if column is None:
        shown = "CASE ... END" if name == "CASE" else f"{name}(...)"
        return (
            f"Group by the bare column or one of: {generalizations(analysis)}; then apply "
            f"{name} to the anonymized result in an outer query, e.g. SELECT {shown}, sum(n) "
            "FROM (SELECT col, count(*) AS n FROM ... GROUP BY col) t GROUP BY 1. "
            + _OUTER_SUM_CAVEAT
        )
    resolved, column_node = column
    size = _bin_size(analysis, node, resolved)
    if size == 1:  # the bounds share no larger divisor: each value is its own bucket
        bucket = resolved.name
        start = f"Group by {resolved.name} and "
    elif size is not None:
        bucket = f"diffix.floor_by({resolved.name}, {size})"
        start = f"Group by {bucket}, whose buckets do not straddle the bounds of the {name}, and "
    elif category(resolved.type) == "N":
        size_rule = " (1, 2 or 5 times a power of ten)" if analysis.untrusted else ""
        bucket = f"diffix.floor_by({resolved.name}, K)"
        start = (
            f"Group by {bucket} with a bin size K{size_rule} that divides the {name}'s bounds, and "
        )
    else:
        bucket = resolved.name
        start = f"Group by {resolved.name} and "
    named = bucket if bucket == resolved.name else f"{bucket} AS {resolved.name}"
    inner = f"SELECT {named}, count(*) AS n {_from_text(node)} GROUP BY 1"
    alias = node.parent.args.get("alias") if isinstance(node.parent, exp.Alias) else None
    outer = _unqualified(node, column_node) + (f" AS {render(alias)}" if alias else "")
    return (
        start + f"apply the {name} to the anonymized buckets in an outer query: SELECT {outer}, "
        f"sum(n) FROM ({inner}) t GROUP BY 1. " + _OUTER_SUM_CAVEAT
    )


def _single_column(analysis: Analysis, node: exp.Expression) -> tuple[Resolved, exp.Column] | None:
    """The one table column an expression reads (None for none or several)."""
    found: tuple[Resolved, exp.Column] | None = None
    for column in node.find_all(exp.Column):
        resolved = analysis.column_of(column)
        if resolved is None or resolved.system or resolved.whole_row:
            return None
        if found is not None and (
            found[0].source is not resolved.source or found[0].name != resolved.name
        ):
            return None
        found = (resolved, column)
    return found


def _bin_size(analysis: Analysis, node: exp.Expression, column: Resolved) -> int | None:
    """The largest bin size of diffix.floor_by, accepted at the caller's level, whose buckets
    each fall into one branch of a CASE comparing `column` with integer bounds (None when the
    CASE is not of that form)."""
    if not isinstance(node, exp.Case) or node.args.get("this") is not None:
        return None
    if category(column.type) != "N":
        return None
    bounds: list[int] = []
    for branch in node.args.get("ifs") or []:
        for comparison in _comparisons(branch.this):
            bound = _lower_bound(comparison, column.type in INTEGER_TYPES)
            if bound is None:
                return None
            bounds.append(bound)
    size = math.gcd(*bounds) if bounds else 0
    if size == 0:
        return None
    if analysis.untrusted:
        size = max(m for m in _money_sizes(size) if size % m == 0)
    return size


def _comparisons(condition: exp.Expression) -> Iterator[exp.Expression]:
    """The comparisons of a condition made of AND and OR (a non-comparison is yielded as is)."""
    condition = strip_parens(condition)
    if isinstance(condition, (exp.And, exp.Or)):
        yield from _comparisons(condition.this)
        yield from _comparisons(condition.expression)
    elif isinstance(condition, exp.Between):
        yield exp.GTE(this=condition.this, expression=condition.args["low"])
        yield exp.LTE(this=condition.this, expression=condition.args["high"])
    else:
        yield condition


_FLIPPED: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.LT: exp.GT,
    exp.GT: exp.LT,
    exp.LTE: exp.GTE,
    exp.GTE: exp.LTE,
}


_EXACT_INTEGERS = 2.0**53  # bounds beyond it are not told apart from their neighbours


def _lower_bound(comparison: exp.Expression, integer: bool) -> int | None:
    """The first value of the upper side of `col <op> constant`: buckets starting there or
    ending just before it do not straddle the comparison."""
    kind = type(comparison)
    if kind not in _FLIPPED:
        return None
    left, right = strip_parens(comparison.this), strip_parens(comparison.expression)
    if not isinstance(left, exp.Column):
        left, right, kind = right, left, _FLIPPED[kind]
    value = literal_value(right)
    if not isinstance(left, exp.Column) or not isinstance(value, float):
        return None
    if not abs(value) <= _EXACT_INTEGERS or value != int(value):  # NaN, huge or fractional
        return None
    if kind in (exp.LT, exp.GTE):
        return int(value)
    return int(value) + 1 if integer else None  # col <= c, col > c: the next integer


def _money_sizes(limit: int) -> Iterator[int]:
    """1, 2 and 5 times a power of ten, up to `limit`."""
    power = 1
    while power <= limit:
        for digit in (1, 2, 5):
            if digit * power <= limit:
                yield digit * power
        power *= 10


def _unqualified(node: exp.Expression, column: exp.Column) -> str:
    """`node` as SQL with its column referring to the outer query's bucket column."""
    copy = node.copy()
    for reference in copy.find_all(exp.Column):
        reference.set("table", None)
        reference.set("db", None)
    return render(copy) or ident_name(column)


def _from_text(node: exp.Expression, without: exp.Expression | None = None) -> str:
    """The FROM clause, joins and WHERE of the SELECT `node` is part of (WHERE less the
    condition `without`)."""
    select = node.find_ancestor(exp.Select)
    if select is None or select.args.get("from_") is None:
        return "FROM ..."
    parts = [render(p) or "" for p in [select.args["from_"], *(select.args.get("joins") or [])]]
    where = select.args.get("where")
    kept = [c for c in conjuncts(where.this) if c is not without] if where is not None else []
    if kept:
        parts.append("WHERE " + " AND ".join(render(c) or "" for c in kept))
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# NOT and <> in WHERE
# --------------------------------------------------------------------------------------------------


def negation_hint(analysis: Analysis, condition: exp.Expression) -> str:
    """What to write instead of `NOT col = value` or `col <> value` in WHERE."""
    inner = strip_parens(condition.this) if isinstance(condition, exp.Not) else condition
    if isinstance(condition, exp.Not) and isinstance(inner, exp.NEQ):
        return (
            f"NOT ... <> is an equality: write {render(inner.this)} = {render(inner.expression)}."
        )
    if not isinstance(inner, (exp.EQ, exp.NEQ)):
        return (
            "Write the WHERE clause as `column = constant` conditions joined by AND; apply other "
            "conditions in an outer query over the anonymized result."
        )
    subject, value = inner.this, inner.expression
    shown, shown_value = render(subject), render(value)
    resolved = analysis.column_of(subject)
    filterable = resolved is None or not (
        resolved.is_aid or (analysis.untrusted and resolved.not_filterable)
    )
    advice = "Negations (NOT, <>) are not allowed in this WHERE clause. "
    if filterable:
        advice += f"Write {_complement(shown, value)}, or count"
    else:
        advice += "Count"
    advice += f" per value and drop {shown} = {shown_value} in an outer query, where any condition"
    if isinstance(strip_parens(subject), exp.Column):
        name = ident_name(strip_parens(subject))
        counts = f"SELECT {name}, count(*) AS n {_from_text(condition, condition)} GROUP BY {name}"
        outer = f"SELECT {name}, n FROM ({counts}) t WHERE {name} <> {shown_value}"
        return f"{advice} works: {outer}."
    return f"{advice} works."


def _complement(subject: str, value: exp.Expression) -> str:
    """The equality that selects the rows `subject <> value` selects, as far as it can be told."""
    value = strip_parens(value)
    if isinstance(value, exp.Boolean):
        return f"{subject} = {'false' if value.this else 'true'}"
    number = literal_value(value)
    if number in (0, 1) and not isinstance(number, str):
        return f"{subject} = {1 - int(number)} if {subject} holds only the values 0 and 1"
    return f"an equality for each value you want ({subject} = ...)"


# --------------------------------------------------------------------------------------------------
# Comma joins
# --------------------------------------------------------------------------------------------------


def join_on_rewrite(
    analysis: Analysis, tree: FromTree, links: list[exp.Expression], where: exp.Expression | None
) -> str | None:
    """FROM ... JOIN ... ON ... [WHERE ...] for a FROM list joined only by commas (or CROSS
    JOIN) whose WHERE equalities `links` connect every item to the ones before it; None
    otherwise."""
    if not _only_cross_joins(tree):
        return None
    sources = list(leaves(tree))
    used: list[exp.Expression] = []
    text = f"FROM {_table_text(sources[0])}"
    for k, source in enumerate(sources[1:], start=1):
        on = [c for c in links if _connects(analysis, c, source, sources[:k])]
        if not on:
            return None
        used.extend(on)
        text += f" JOIN {_table_text(source)} ON " + " AND ".join(render(c) or "" for c in on)
    rest = [c for c in conjuncts(where) if not any(c is u for u in used)] if where else []
    if rest:
        text += " WHERE " + " AND ".join(render(c) or "" for c in rest)
    return text


def _only_cross_joins(tree: FromTree) -> bool:
    if isinstance(tree, FromLeaf):
        return True
    cross = tree.comma or tree.join.args.get("kind") == "CROSS"
    return cross and _only_cross_joins(tree.left) and _only_cross_joins(tree.right)


def _connects(
    analysis: Analysis, condition: exp.Expression, source: Source, earlier: list[Source]
) -> bool:
    sides = [analysis.column_of(condition.this), analysis.column_of(condition.expression)]
    owners = [side.source for side in sides if side is not None]
    return any(o is source for o in owners) and any(any(o is e for e in earlier) for o in owners)


def _table_text(source: Source) -> str:
    """A FROM item as `table alias`."""
    node = source.node.copy()
    node.set("alias", None)
    return f"{render(node)} {source.alias}" if source.aliased else render(node) or source.alias
