"""FROM checks of an anonymizing SELECT, and its range entries and join tree for the model.

Only labeled tables (no subqueries, CTEs, functions or VALUES, no inheritance or partitions other
than the root of a partitioned personal table, no TABLESAMPLE),
personal ones with AID columns, joined by equalities of plain columns (ON, USING or NATURAL);
cross joins and comma-separated lists are refused.
"""

from __future__ import annotations

from sqlglot import exp

from ..query_model import FromItem, Join, JoinCondition, JoinKind, RangeEntry, RelationRef
from .context import Analysis
from .errors import error_at
from .expressions import unwrap
from .hints import join_on_rewrite
from .scope import FromJoin, FromLeaf, FromTree, Resolved, column_ref, leaves
from .syntax import conjuncts, ident_name
from .totality import check_join_total


def check_from(analysis: Analysis, tree: FromTree) -> tuple[list[RangeEntry], FromItem]:
    """The range entries (one per table) and the join tree of the model."""
    entries: list[RangeEntry] = []
    by_source: dict[int, RangeEntry] = {}
    for source in leaves(tree):
        node = source.node
        if source.kind == "subquery":
            raise error_at(
                node,
                "a subquery in FROM cannot be combined with personal tables in the same query",
                "Anonymize the personal table in a subquery of its own and join the anonymized "
                "results: SELECT ... FROM (SELECT ... FROM personal_table GROUP BY ...) a "
                "JOIN (...) b ON ...",
            )
        if source.kind != "relation" or source.relation is None:
            what = {"cte": "a WITH query", "function": "a function", "values": "VALUES"}.get(
                source.kind, source.kind
            )
            raise error_at(
                node,
                f"{what} in FROM cannot be combined with personal tables in the same query",
                "Only tables can be joined in a query that reads personal tables; combine "
                "other data with the anonymized result in an outer query.",
            )
        relation = source.relation
        # A partitioned personal table is read through its root, whose label covers every
        # partition (docs/scale-out.md); partitions and other trees are refused.
        if relation.inheritance and not (relation.partitioned and source.is_personal):
            raise error_at(
                node,
                f"table {relation.schema}.{relation.name} is part of an inheritance or "
                "partition tree, which is not supported in anonymizing queries",
                "Ask an administrator for a plain table or view.",
            )
        if isinstance(node, exp.Table) and node.args.get("sample") is not None:
            raise error_at(
                node.args["sample"],
                "TABLESAMPLE is not supported on tables in anonymizing queries",
                "Remove TABLESAMPLE.",
            )
        personal = source.is_personal
        aids = relation.aid_columns if personal else ()
        if personal and not aids:
            raise error_at(
                node,
                f"personal table {relation.schema}.{relation.name} has no AID column",
                "Ask an administrator to mark its AID column(s) with diffix.mark_personal.",
            )
        entry = RangeEntry(
            source.alias,
            RelationRef(relation.schema, relation.name, relation.kind),
            tuple(aids),
        )
        entries.append(entry)
        by_source[id(source)] = entry
    return entries, _from_model(analysis, tree, by_source)


def check_cross_joins(analysis: Analysis, select: exp.Select, tree: FromTree) -> None:
    """Refuse comma-separated FROM lists and CROSS JOIN, before WHERE is checked: the condition
    of a comma join is in WHERE, where it would be refused as a filter, while JOIN ... ON with
    the same condition is accepted."""
    crossed = _first_cross_join(tree)
    if crossed is None:
        return
    where = select.args.get("where")
    links = [c for c in conjuncts(where.this) if _links_sources(analysis, c)] if where else []
    rewrite = join_on_rewrite(analysis, tree, links, where.this if where else None)
    if rewrite is None:
        raise error_at(
            crossed.join.this,
            "CROSS JOIN and comma-separated FROM lists are not allowed in queries that read "
            "personal tables",
            "Join on equal columns instead: FROM a JOIN b ON a.col = b.col.",
        )
    raise error_at(
        links[0],
        "a join condition in WHERE (an implicit join of a comma-separated FROM list) is not "
        "allowed in queries that read personal tables",
        f"Join with JOIN ... ON instead: {rewrite}.",
    )


def _first_cross_join(tree: FromTree) -> FromJoin | None:
    if isinstance(tree, FromLeaf):
        return None
    if tree.comma or tree.join.args.get("kind") == "CROSS":
        return tree
    return _first_cross_join(tree.left) or _first_cross_join(tree.right)


def _links_sources(analysis: Analysis, condition: exp.Expression) -> bool:
    """Whether a condition is an equality between columns of two different FROM items."""
    if not isinstance(condition, exp.EQ):
        return False
    left = analysis.column_of(condition.this)
    right = analysis.column_of(condition.expression)
    return left is not None and right is not None and left.source is not right.source


def _from_model(analysis: Analysis, tree: FromTree, entries: dict[int, RangeEntry]) -> FromItem:
    if isinstance(tree, FromLeaf):
        return entries[id(tree.source)]
    join = tree.join
    left = _from_model(analysis, tree.left, entries)
    right = _from_model(analysis, tree.right, entries)
    side = (join.args.get("side") or "").upper()
    kind: JoinKind = {"LEFT": "left", "RIGHT": "right", "FULL": "full"}.get(side, "inner")  # type: ignore[assignment]
    conditions: list[JoinCondition] = []
    using = join.meta.get("pldiffix_natural_columns")
    if using is None and join.args.get("using"):
        using = [ident_name(i) for i in join.args["using"]]
    if using is not None:
        if not using:
            raise error_at(
                join.this,
                "NATURAL JOIN without common columns is a cross join, which is not allowed in "
                "queries that read personal tables",
                "Join on equal columns: JOIN ... ON a.col = b.col.",
            )
        for name in using:
            lsrc = next(s for s in leaves(tree.left) if s.has_column(name))
            rsrc = next(s for s in leaves(tree.right) if s.has_column(name))
            if analysis.total:
                check_join_total(join, lsrc.column_type(name), rsrc.column_type(name))
            conditions.append(
                JoinCondition(
                    column_ref(Resolved(lsrc, name, lsrc.column_type(name), 0)),
                    column_ref(Resolved(rsrc, name, rsrc.column_type(name), 0)),
                )
            )
    else:
        on = join.args.get("on")
        if on is None:
            raise error_at(join, "JOIN without a condition", "Add ON a.col = b.col.")
        for condition in conjuncts(on):
            if not isinstance(condition, exp.EQ):
                raise error_at(
                    condition,
                    "only equalities between columns joined by AND are allowed in the JOIN "
                    "condition of a query that reads personal tables",
                    "Write the join condition as a.col = b.col [AND ...].",
                )
            sides = []
            types: list[str | None] = []
            for side_name, operand in (
                ("left", condition.this),
                ("right", condition.expression),
            ):
                inner = unwrap(analysis, operand)
                column = analysis.column_of(inner)
                if column is None or column.system:
                    raise error_at(
                        operand,
                        f"the {side_name} side of an equality in a JOIN condition must be a "
                        "plain column",
                        "Join on columns directly: a.col = b.col.",
                    )
                sides.append(column_ref(column))
                types.append(column.type)
            if analysis.total:
                check_join_total(condition, types[0], types[1])
            conditions.append(JoinCondition(sides[0], sides[1]))
    return Join(kind, left, right, tuple(conditions))
