"""Walks a parsed statement, resolves names and validates every anonymizing SELECT.

A SELECT is anonymizing when its own FROM clause reads a personal relation (and its WHERE is not
constant false). Anonymizing SELECTs must stay inside the subset pg_diffix supports; everything
around them (outer queries, CTEs, set operations, sublinks) is post-processing and unrestricted.
"""

from __future__ import annotations

from sqlglot import exp

from pldiffix.core import errors as sqlstate
from pldiffix.core.relations import Catalog

from ..query_model import FunctionRef
from .anonymizing import check_and_model, check_no_outer_references, check_single_level
from .context import AggregateRules, Analysis
from .errors import error_at, error_rendered
from .resolve import (
    expand_stars,
    rename_columns,
    resolve_column,
    resolve_relation,
    star_columns,
    star_source,
)
from .scope import FromJoin, FromLeaf, FromTree, Scope, Source, leaves
from .syntax import ident_name, output_name, where_always_false, zip_aliases

Outputs = tuple[list[tuple[str, str | None]], bool]  # (columns, opaque)


def analyze(
    ast: exp.Query,
    catalog: Catalog,
    access_level: str,
    aggregates: AggregateRules,
    *,
    treat_unmarked_tables_as_public: bool = False,
    total_expressions: bool = False,
) -> Analysis:
    """Resolve and check a whole statement; the result holds what it uses and its models."""
    analysis = Analysis(
        catalog, access_level, aggregates, treat_unmarked_tables_as_public, total_expressions
    )
    analyze_query(analysis, ast, None, {})
    return analysis


def analyze_query(
    analysis: Analysis, node: exp.Expression, parent: Scope | None, ctes: dict[str, Outputs]
) -> Outputs:
    if isinstance(node, exp.Subquery):
        outputs = analyze_query(analysis, node.this, parent, ctes)
        _walk_trailing(analysis, node, outputs, parent, ctes)
        return outputs
    if isinstance(node, exp.SetOperation):
        ctes = _with_clause(analysis, node, parent, ctes)
        outputs = analyze_query(analysis, node.this, parent, ctes)
        analyze_query(analysis, node.expression, parent, ctes)
        _walk_trailing(analysis, node, outputs, parent, ctes)
        return outputs
    if isinstance(node, exp.Select):
        return _analyze_select(analysis, node, parent, ctes)
    if isinstance(node, exp.Values):
        width = 0
        for row in node.expressions:
            walk(analysis, row, parent, ctes)
            width = max(width, len(row.expressions) if isinstance(row, exp.Tuple) else 1)
        return [(f"column{i + 1}", None) for i in range(width)], False
    raise error_at(node, "only SELECT queries are supported", "Write a single SELECT statement.")


def _walk_trailing(
    analysis: Analysis,
    node: exp.Expression,
    outputs: Outputs,
    parent: Scope | None,
    ctes: dict[str, Outputs],
) -> None:
    """ORDER BY / LIMIT attached to a set operation or parenthesized query."""
    pseudo = Source("", "subquery", outputs[0], node, opaque=outputs[1])
    scope = Scope([pseudo], parent)
    for key in ("order", "limit", "offset"):
        part = node.args.get(key)
        if part is not None:
            walk(analysis, part, scope, ctes)


def _with_clause(
    analysis: Analysis, node: exp.Expression, parent: Scope | None, ctes: dict[str, Outputs]
) -> dict[str, Outputs]:
    with_ = node.args.get("with_")
    if with_ is None:
        return ctes
    env = dict(ctes)
    recursive = bool(with_.args.get("recursive"))
    for cte in with_.expressions:
        alias_node = cte.args.get("alias")
        # folded as PostgreSQL folds it: WITH "Customers" does not hide the table customers
        name = ident_name(alias_node.this if alias_node is not None else cte.alias_or_name)
        body = cte.this
        if not isinstance(body, exp.Query):
            raise error_at(
                body,
                "only SELECT is allowed inside WITH",
                "Data-modifying statements are not allowed; use a SELECT in the CTE.",
            )
        if recursive:
            names = [ident_name(c) for c in (alias_node.columns if alias_node else [])]
            env[name] = ([(n, None) for n in names], not names)
        columns, opaque = analyze_query(analysis, body, parent, env)
        env[name] = (rename_columns(columns, alias_node, cte), opaque)
    return env


def _analyze_select(
    analysis: Analysis, select: exp.Select, parent: Scope | None, ctes: dict[str, Outputs]
) -> Outputs:
    if select.args.get("into") is not None:
        raise error_at(
            select.args["into"],
            "SELECT INTO is not allowed",
            "Remove the INTO clause; query results are returned, not stored.",
        )
    has_with = select.args.get("with_") is not None
    ctes = _with_clause(analysis, select, parent, ctes)
    scope = Scope([], parent)
    tree = _build_from(analysis, select, scope, ctes)
    anonymizing = any(s.is_personal for s in scope.sources) and not where_always_false(select)
    if anonymizing:
        assert tree is not None
        return _anonymizing_select(analysis, select, scope, tree, has_with)
    return _plain_select(analysis, select, scope, ctes)


def _build_from(
    analysis: Analysis, select: exp.Select, scope: Scope, ctes: dict[str, Outputs]
) -> FromTree | None:
    from_ = select.args.get("from_")
    if from_ is None:
        if select.args.get("joins"):
            raise error_at(select, "JOIN without FROM", "Add a FROM clause.")
        return None
    tree = _from_item(analysis, from_.this, scope, ctes)
    for join in select.args.get("joins") or []:
        tree = _join_item(analysis, tree, join, scope, ctes)
    return tree


def _join_item(
    analysis: Analysis, left: FromTree, join: exp.Join, scope: Scope, ctes: dict[str, Outputs]
) -> FromTree:
    right = _from_item(analysis, join.this, scope, ctes)
    comma = not any(join.args.get(k) for k in ("kind", "side", "method", "on", "using"))
    using = [ident_name(i) for i in join.args.get("using") or []]
    if join.args.get("method") == "NATURAL":
        left_names = {c for s in leaves(left) for c, _ in s.columns}
        right_names = [c for s in leaves(right) for c, _ in s.columns]
        using = [c for c in right_names if c in left_names]
        join.meta["pldiffix_natural_columns"] = using
    for name in using:
        left_sources = [s for s in leaves(left) if s.has_column(name)]
        right_sources = [s for s in leaves(right) if s.has_column(name)]
        if not left_sources or not right_sources:
            raise error_at(
                join,
                f'column "{name}" specified in USING does not exist on both sides of the join',
                "USING columns must exist in both joined tables.",
                sqlstate=sqlstate.UNDEFINED_COLUMN,
            )
        side = join.args.get("side")
        scope.merged[name] = right_sources[0] if side == "RIGHT" else left_sources[0]
    on = join.args.get("on")
    if on is not None:
        walk(analysis, on, scope, ctes)
    return FromJoin(join, left, right, comma)


def _from_item(
    analysis: Analysis, item: exp.Expression, scope: Scope, ctes: dict[str, Outputs]
) -> FromTree:
    if (
        isinstance(item, exp.Subquery)
        and isinstance(item.this, exp.Table)
        and item.this.args.get("joins")
    ):
        # A parenthesized join: (a JOIN b ON ...)
        inner = item.this
        tree = _from_item(analysis, inner, scope, ctes)
        for join in inner.args["joins"]:
            tree = _join_item(analysis, tree, join, scope, ctes)
        return tree
    source = _make_source(analysis, item, scope, ctes)
    for existing in scope.sources:
        if existing.alias == source.alias and not (
            existing.relation is not None
            and source.relation is not None
            and not existing.aliased
            and not source.aliased
            and existing.relation.schema != source.relation.schema
        ):
            raise error_at(
                item,
                f'table name "{source.alias}" is specified more than once',
                "Give each occurrence its own alias, e.g. FROM t AS t1 JOIN t AS t2 ON ...",
                sqlstate=sqlstate.DUPLICATE_ALIAS,
            )
    scope.sources.append(source)
    return FromLeaf(source)


def _make_source(
    analysis: Analysis, item: exp.Expression, scope: Scope, ctes: dict[str, Outputs]
) -> Source:
    alias_node = (
        item.args.get("alias") if isinstance(item.args.get("alias"), exp.TableAlias) else None
    )
    alias = ident_name(alias_node.this) if alias_node is not None and alias_node.this else None
    if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
        name = ident_name(item.this)
        if not item.args.get("db") and name in ctes:
            columns, opaque = ctes[name]
            return Source(
                alias or name,
                "cte",
                rename_columns(columns, alias_node, item),
                item,
                aliased=alias is not None,
                opaque=opaque,
            )
        return resolve_relation(analysis, item)
    if isinstance(item, exp.Table):  # a function in FROM
        if item.args.get("db") is not None and isinstance(item.this, exp.Func):
            analysis.note_function(
                exp.Dot(this=item.args["db"].copy(), expression=item.this.copy())
            )
            for arg in item.this.iter_expressions():
                walk(analysis, arg, scope, ctes)
        else:
            walk(analysis, item.this, scope, ctes)
        fname = ident_name(item.this.this) if isinstance(item.this, exp.Anonymous) else "f"
        columns = rename_columns([], alias_node, item)
        return Source(alias or fname, "function", columns, item, opaque=not columns)
    if isinstance(item, exp.Subquery):
        outer = scope.parent
        outputs = analyze_query(analysis, item.this, outer, ctes)
        _walk_trailing(analysis, item, outputs, outer, ctes)
        if alias is None:
            raise error_at(
                item,
                "a subquery in FROM must have an alias",
                "Add an alias: FROM (SELECT ...) AS x",
            )
        columns = rename_columns(outputs[0], alias_node, item)
        return Source(alias, "subquery", columns, item, aliased=True, opaque=outputs[1])
    if isinstance(item, exp.Lateral):
        inner = item.this
        if isinstance(inner, exp.Subquery):
            outputs = analyze_query(analysis, inner.this, scope, ctes)
        else:
            walk(analysis, inner, scope, ctes)
            outputs = ([], True)
        lateral_alias = item.args.get("alias")
        name = ident_name(lateral_alias.this) if lateral_alias and lateral_alias.this else "lateral"
        columns = rename_columns(outputs[0], lateral_alias, item)
        source = Source(name, "subquery", columns, item, aliased=True, opaque=outputs[1])
        source.node.meta["pldiffix_lateral"] = True
        return source
    if isinstance(item, exp.Values):
        outputs = analyze_query(analysis, item, scope.parent, ctes)
        columns = rename_columns(outputs[0], alias_node, item)
        return Source(alias or "*VALUES*", "values", columns, item, aliased=alias is not None)
    if isinstance(item, exp.Unnest):
        for arg in item.expressions:
            walk(analysis, arg, scope, ctes)
        analysis.functions.setdefault(
            ("pg_catalog", "unnest"), FunctionRef("pg_catalog", "unnest", True)
        )
        columns = rename_columns([], alias_node, item)
        return Source(alias or "unnest", "function", columns, item, opaque=not columns)
    raise error_at(item, "unsupported item in FROM", "Use tables, subqueries or functions.")


def walk(
    analysis: Analysis,
    node: exp.Expression,
    scope: Scope | None,
    ctes: dict[str, Outputs],
    output_aliases: frozenset[str] = frozenset(),
) -> None:
    """Resolve columns, record functions and analyze nested queries in an expression."""
    stack: list[exp.Expression] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (exp.Query, exp.Subquery)):
            analyze_query(analysis, current, scope, ctes)
            continue
        if isinstance(current, exp.Column):
            resolve_column(analysis, current, scope, output_aliases)
            continue
        if isinstance(current, (exp.Parameter, exp.Placeholder)):
            raise error_rendered(
                current,
                "query parameters are not supported",
                "Write the value into the query as a literal.",
                sqlstate=sqlstate.INVALID_PARAMETER,
            )
        if isinstance(current, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Command)):
            raise error_at(current, "only SELECT queries are supported", "Remove the statement.")
        if isinstance(current, exp.Dot) and isinstance(current.expression, exp.Func):
            analysis.note_function(current)
            stack.extend(current.expression.iter_expressions())
            continue
        if isinstance(current, exp.Func):
            analysis.note_function(current)
        stack.extend(current.iter_expressions())


def _plain_select(
    analysis: Analysis, select: exp.Select, scope: Scope, ctes: dict[str, Outputs]
) -> Outputs:
    outputs = _select_outputs(select, scope)
    _walk_select(analysis, select, scope, ctes)
    return outputs


def _anonymizing_select(
    analysis: Analysis, select: exp.Select, scope: Scope, tree: FromTree, has_with: bool
) -> Outputs:
    clauses = check_single_level(select, scope, has_with)
    expand_stars(analysis, select, scope)
    _walk_select(analysis, select, scope, {})
    check_no_outer_references(analysis, clauses)
    names = check_and_model(analysis, select, tree, clauses)
    return [(name, None) for name in names], False


def _walk_select(
    analysis: Analysis, select: exp.Select, scope: Scope, ctes: dict[str, Outputs]
) -> None:
    """Resolve the names in every clause of a SELECT but its FROM items."""
    aliases = frozenset(name for name, is_alias in zip_aliases(select) if is_alias)
    for item in select.expressions:
        if isinstance(item, exp.Star):
            for source in scope.sources:
                source.uses_all_columns = True
            continue
        walk(analysis, item, scope, ctes)
    for key in ("where", "having", "qualify", "limit", "offset", "distinct"):
        part = select.args.get(key)
        if part is not None:
            walk(analysis, part, scope, ctes)
    for key in ("group", "order"):
        part = select.args.get(key)
        if part is not None:
            walk(analysis, part, scope, ctes, aliases)
    for window in select.args.get("windows") or []:
        walk(analysis, window, scope, ctes)


def _select_outputs(select: exp.Select, scope: Scope) -> Outputs:
    columns: list[tuple[str, str | None]] = []
    opaque = False
    for item in select.expressions:
        if isinstance(item, exp.Star):
            opaque = opaque or any(s.opaque for s in scope.sources)
            columns.extend(star_columns(scope))
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            source = star_source(scope, ident_name(item.args.get("table")), item)
            opaque = opaque or source.opaque
            columns.extend(source.columns)
        else:
            columns.append((output_name(item), None))
    return columns, opaque
