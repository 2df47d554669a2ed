"""Clause checks of an anonymizing SELECT: unsupported features, WHERE, grouping, and what may
be computed from the grouped values (the select list, HAVING and ORDER BY).

Grouping is explicit (GROUP BY) or implicit (no aggregates: every selected column is a bucket);
each grouping expression must be a bucket expression as generalizers.py defines it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from pldiffix.core import errors as sqlstate

from .aggregates import aggregate_identity
from .context import Analysis
from .errors import error_at, error_rendered, render
from .expressions import canon, is_const
from .functions import SRF_NODES
from .generalizers import GenResult, verify_bucket, verify_untrusted
from .hints import negation_hint
from .syntax import conjuncts, ident_name, strip_parens, unalias, walk_nodes
from .totality import check_filter_total, check_total


def check_unsupported_features(analysis: Analysis, select: exp.Select) -> None:
    """Set-returning functions, grouping sets, window functions and DISTINCT."""
    for node in walk_nodes(select.expressions, select.args.get("order")):
        info = _set_returning_function(analysis, node)
        if info is not None:
            raise error_at(
                node,
                f"set-returning function {info}() is not allowed in a query that reads "
                "personal tables",
                "Call it in an outer query over the anonymized result.",
            )
    group = select.args.get("group")
    if group is not None:
        special = [
            e for e in group.expressions if isinstance(e, (exp.GroupingSets, exp.Cube, exp.Rollup))
        ]
        special += [e for e in group.expressions if isinstance(e, exp.Tuple) and not e.expressions]
        for key in ("grouping_sets", "cube", "rollup"):
            value = group.args.get(key)
            if value:
                special.extend(value if isinstance(value, list) else [value])
        if special or group.args.get("all") or group.args.get("totals"):
            raise error_rendered(
                special[0] if special else group,
                "GROUPING SETS, CUBE, ROLLUP and GROUP BY ALL/() are not supported in queries "
                "that read personal tables",
                "List the grouping columns in a plain GROUP BY and run one query per grouping.",
            )
    for node in walk_nodes(select.expressions, select.args.get("having"), select.args.get("order")):
        if isinstance(node, exp.Window):
            raise error_at(
                node,
                "window functions are not supported in queries that read personal tables",
                "Apply the window function in an outer query over the anonymized result.",
            )
    if select.args.get("windows"):
        raise error_at(
            select.args["windows"][0],
            "window definitions are not supported in queries that read personal tables",
            "Apply window functions in an outer query over the anonymized result.",
        )
    distinct = select.args.get("distinct")
    if distinct is not None:
        raise error_rendered(
            distinct,
            "SELECT DISTINCT is not supported in queries that read personal tables",
            "Without DISTINCT, selected columns are already grouped into anonymized buckets; "
            "use GROUP BY (with count(*)) or apply DISTINCT in an outer query.",
        )


def _set_returning_function(analysis: Analysis, node: exp.Expression) -> str | None:
    if isinstance(node, SRF_NODES):
        found = analysis.function_of(node)
        return found[1] if found else type(node).__name__.lower()
    if isinstance(node, (exp.Anonymous, exp.Dot)):
        found = analysis.function_of(node)
        if found is None:
            return None
        info = analysis.lookup_function(found[0], found[1])
        if info is not None and info.returns_set:
            return info.name
    return None


def check_where(analysis: Analysis, select: exp.Select) -> list[tuple[GenResult, exp.Expression]]:
    """WHERE: `bucket expression = constant` conditions joined by AND."""
    where = select.args.get("where")
    if where is None:
        return []
    filters = []
    for condition in conjuncts(where.this):
        if isinstance(condition, (exp.Not, exp.NEQ)):
            raise error_at(
                condition,
                f"{'NOT' if isinstance(condition, exp.Not) else '<>'} cannot be used in the "
                "WHERE clause of a query that reads personal tables: only equality conditions "
                "joined by AND are allowed",
                negation_hint(analysis, condition),
            )
        if not isinstance(condition, exp.EQ):
            raise error_at(
                condition,
                "only equality conditions joined by AND are allowed in the WHERE clause of a "
                "query that reads personal tables",
                "Write conditions as `column = constant` (the column may be generalized, e.g. "
                "substring(city, 1, 1) = 'B'). Other conditions can be applied after "
                "anonymization: in HAVING on grouped columns, or in an outer query.",
            )
        subject, target = condition.this, condition.expression
        gen = verify_bucket(analysis, subject, "filter")
        column = gen.column
        if column.is_aid:
            raise error_at(
                gen.column_node,
                f"the AID column {column.name} cannot be used in WHERE",
                "AID columns identify the protected entities; filter on other columns.",
            )
        if analysis.untrusted and column.not_filterable:
            raise error_at(
                gen.column_node,
                f"column {column.name} is marked not_filterable and cannot be used in WHERE by "
                "untrusted analysts",
                f"Group by {column.name} instead of filtering on it.",
            )
        if not is_const(analysis, target):
            raise error_at(
                target,
                "the right side of an equality in WHERE must be a constant",
                f"Compare {render(subject)} with a literal value, e.g. "
                f"{render(subject)} = 'value'; the (generalized) column goes on the left.",
            )
        if analysis.total:
            check_total(analysis, subject)
            check_filter_total(analysis, gen.type, target)
        filters.append((gen, target))
    return filters


def check_grouping(
    analysis: Analysis, select: exp.Select, aliases: dict[str, int], has_aggregates: bool
) -> tuple[list[GenResult], bool, bool, list[int | None]]:
    """The grouping expressions, verified, whether grouping is explicit or implicit, and for each
    SELECT item the index of the grouping expression it is (None: computed from them)."""
    items = list(select.expressions)
    group = select.args.get("group")
    explicit = group is not None and bool(group.expressions)
    implicit = not explicit and not has_aggregates and select.args.get("having") is None
    exprs: list[exp.Expression] = []
    item_group: list[int | None] = [None] * len(items)
    if explicit:
        assert group is not None
        for node in group.expressions:
            index = _select_item_ref(analysis, node, items, aliases, prefer_alias=False)
            exprs.append(unalias(items[index]) if index is not None else node)
    elif implicit:
        for item in items:
            if any(isinstance(n, exp.Column) for n in item.walk()):
                exprs.append(unalias(item))
        order = select.args.get("order")
        for ordered in order.expressions if order is not None else []:
            node = ordered.this
            if _select_item_ref(analysis, node, items, aliases, prefer_alias=True) is not None:
                continue
            if any(isinstance(n, exp.Column) for n in node.walk()):
                exprs.append(node)

    groups: list[GenResult] = []
    keys: list[str] = []
    for node in exprs:
        bare = strip_parens(node)
        column = analysis.column_of(bare)
        if column is not None and column.is_aid:
            raise error_at(
                bare,
                f"selecting or grouping by the AID column {column.name} would suppress every "
                "row: each value belongs to a single protected entity",
                f"Count it instead (count(DISTINCT {column.name})), or generalize it, e.g. "
                f"diffix.floor_by({column.name}, 1000).",
            )
    for node in exprs:
        key = canon(analysis, node)
        if key in keys:
            continue
        if analysis.untrusted:  # first, so that no hint offers what the level refuses
            verify_untrusted(analysis, node)
        gen = verify_bucket(analysis, node, "group")
        if analysis.total:
            check_total(analysis, node)
        groups.append(gen)
        keys.append(key)
    for i, item in enumerate(items):
        key = canon(analysis, unalias(item))
        if key in keys:
            item_group[i] = keys.index(key)
    return groups, explicit, implicit, item_group


def _select_item_ref(
    analysis: Analysis,
    node: exp.Expression,
    items: Sequence[exp.Expression],
    aliases: dict[str, int],
    prefer_alias: bool,
) -> int | None:
    """Index of the SELECT item a GROUP BY/ORDER BY entry refers to (position or alias)."""
    bare = strip_parens(node)
    if isinstance(bare, exp.Literal) and not bare.is_string and bare.this.isdigit():
        position = int(bare.this)
        if not 1 <= position <= len(items):
            raise error_at(
                bare,
                f"position {position} is not in the select list",
                f"Use a number between 1 and {len(items)}.",
                sqlstate=sqlstate.UNDEFINED_COLUMN,
            )
        return position - 1
    if isinstance(bare, exp.Column) and not bare.args.get("table"):
        name = ident_name(bare.this)
        if name in aliases and (prefer_alias or analysis.resolved.get(id(bare)) is None):
            return aliases[name]
    return None


def check_post_processing(
    analysis: Analysis, select: exp.Select, groups: list[GenResult], aliases: dict[str, int]
) -> None:
    """Outside of aggregates, only grouping expressions may be referenced."""
    group_keys = {canon(analysis, g.node) for g in groups}
    items = list(select.expressions)

    def visit(node: exp.Expression) -> None:
        if canon(analysis, node) in group_keys or aggregate_identity(analysis, node) is not None:
            return
        if isinstance(node, exp.Column):
            resolved = analysis.resolved.get(id(node))
            if resolved is None:
                return  # an output alias (ORDER BY) or a keyword
            shown = render(node)
            raise error_at(
                node,
                f"column {shown} must appear in GROUP BY or be used in an aggregate",
                f"Add {shown} to GROUP BY, or aggregate it (e.g. count({shown})).",
                sqlstate=sqlstate.GROUPING_ERROR,
            )
        for child in node.iter_expressions():
            visit(child)

    for item in items:
        visit(unalias(item))
    having = select.args.get("having")
    if having is not None:
        visit(having.this)
    order = select.args.get("order")
    for ordered in order.expressions if order is not None else []:
        if _select_item_ref(analysis, ordered.this, items, aliases, prefer_alias=True) is None:
            visit(ordered.this)
