"""The checks of a SELECT that reads personal tables, in order, and its query model.

The SELECT must be a single query level (no WITH, locking or subqueries, no reference to an outer
query); then come the unsupported features, WHERE, aggregates, FROM and grouping, and only when all
pass are its columns qualified and its `AnonymizingQuery` recorded.
"""

from __future__ import annotations

from sqlglot import exp

from ..query_model import Aggregate, AnonymizingQuery, Filter, OutputColumn
from .clauses import check_grouping, check_post_processing, check_unsupported_features, check_where
from .context import Analysis
from .errors import error_at, error_rendered
from .from_clause import check_cross_joins, check_from
from .generalizers import generalization
from .resolve import qualify
from .scope import FromTree, Scope, column_ref
from .syntax import output_name, unalias, zip_aliases


def check_single_level(select: exp.Select, scope: Scope, has_with: bool) -> list[exp.Expression]:
    """No WITH, locking clause or subquery: an anonymizing SELECT is one query level.

    Returns the clauses of `select` that the other checks look at.
    """
    personal = [s for s in scope.sources if s.is_personal]
    tables = ", ".join(f"{s.relation.schema}.{s.relation.name}" for s in personal if s.relation)
    if has_with:
        raise error_at(
            select.args["with_"],
            f"WITH cannot be attached to a query that reads personal tables ({tables})",
            "Put the query on personal tables inside the CTE and post-process outside: "
            "WITH c AS (SELECT city, count(*) FROM personal_table GROUP BY city) "
            "SELECT ... FROM c.",
        )
    if select.args.get("locks"):
        raise error_at(
            select.args["locks"][0],
            "FOR UPDATE/SHARE is not allowed in a query that reads personal tables",
            "Remove the locking clause.",
        )
    clauses = anonymizing_clauses(select)
    for clause in clauses:
        for node in clause.walk():
            if isinstance(node, (exp.Query, exp.Subquery)):
                raise error_rendered(
                    node,
                    "subqueries are not allowed inside a query that reads personal tables "
                    f"({tables})",
                    "Anonymize each part in its own subquery and combine the anonymized "
                    "results in an outer query, e.g. SELECT ... FROM (SELECT ...) a JOIN "
                    "(SELECT ...) b ON ...",
                )
    return clauses


def check_no_outer_references(analysis: Analysis, clauses: list[exp.Expression]) -> None:
    """Refuse correlated references (once the names in `clauses` are resolved)."""
    for clause in clauses:
        for node in clause.walk():
            resolved = analysis.resolved.get(id(node)) if isinstance(node, exp.Column) else None
            if resolved is not None and resolved.levels_up > 0:
                raise error_at(
                    node,
                    "a query that reads personal tables cannot reference columns of an outer query",
                    "Anonymize the subquery on its own and join the anonymized results in the "
                    "outer query.",
                )


def check_and_model(
    analysis: Analysis, select: exp.Select, tree: FromTree, clauses: list[exp.Expression]
) -> list[str]:
    """Run the clause, aggregate, FROM and grouping checks; record the accepted model.

    Returns the output column names.
    """
    aliases = {name: i for i, (name, is_alias) in enumerate(zip_aliases(select)) if is_alias}
    check_unsupported_features(analysis, select)
    check_cross_joins(analysis, select, tree)
    filters = check_where(analysis, select)
    aggregates = analysis.aggregate_rules.check(analysis, select)
    entries, from_model = check_from(analysis, tree)
    groups, explicit, implicit, output_groups = check_grouping(
        analysis, select, aliases, bool(aggregates)
    )
    if not implicit:
        check_post_processing(analysis, select, groups, aliases)

    # All checks passed: qualify columns and build the model.
    for clause in clauses:
        for node in clause.walk():
            if isinstance(node, exp.Column):
                qualify(analysis, node)
    names = [output_name(item) for item in select.expressions]
    outputs = tuple(
        OutputColumn(names[i], unalias(item), output_groups[i])
        for i, item in enumerate(select.expressions)
    )
    order = select.args.get("order")
    model = AnonymizingQuery(
        node=select,
        relations=tuple(entries),
        from_tree=from_model,
        filters=tuple(Filter(generalization(analysis, g), value.copy()) for g, value in filters),
        groups=tuple(generalization(analysis, g) for g in groups),
        implicit_grouping=implicit,
        explicit_grouping=explicit,
        aggregates=tuple(
            Aggregate(
                a.kind,
                column_ref(a.column) if a.column is not None else None,
                a.node,
                a.bin_size,
            )
            for a in aggregates
        ),
        outputs=outputs,
        having=select.args["having"].this if select.args.get("having") else None,
        order_by=order,
        limit=select.args["limit"].expression if select.args.get("limit") else None,
        offset=select.args["offset"].expression if select.args.get("offset") else None,
    )
    analysis.anonymizing.append(model)
    return names


def anonymizing_clauses(select: exp.Select) -> list[exp.Expression]:
    """Every expression of a SELECT except its FROM items."""
    parts: list[exp.Expression] = list(select.expressions)
    for key in ("where", "group", "having", "qualify", "order", "limit", "offset", "distinct"):
        part = select.args.get(key)
        if part is not None:
            parts.append(part)
    for join in select.args.get("joins") or []:
        if join.args.get("on") is not None:
            parts.append(join.args["on"])
    from_ = select.args.get("from_")
    if from_ is not None:
        for table in from_.find_all(exp.Table):
            for join in table.args.get("joins") or []:
                if join.args.get("on") is not None:
                    parts.append(join.args["on"])
    for join in select.args.get("joins") or []:
        for table in join.find_all(exp.Table):
            for inner in table.args.get("joins") or []:
                if inner.args.get("on") is not None:
                    parts.append(inner.args["on"])
    parts.extend(select.args.get("windows") or [])
    return parts
