"""Walks a parsed statement, resolves names and validates every anonymizing SELECT.

A SELECT is anonymizing when its own FROM clause reads a personal relation (and its WHERE is not
constant false). Anonymizing SELECTs must stay inside the subset pg_diffix supports; everything
around them (outer queries, CTEs, set operations, sublinks) is post-processing and unrestricted.
"""

from __future__ import annotations

from sqlglot import exp

from pldiffix.core import errors as sqlstate

from ..query_model import (
    Aggregate,
    AnonymizingQuery,
    Filter,
    FunctionRef,
    OutputColumn,
)
from .aggregates import check_aggregates
from .clauses import check_grouping, check_post_processing, check_unsupported_features, check_where
from .context import Analysis
from .errors import error_at, error_rendered
from .from_clause import check_from
from .generalizers import generalization
from .resolve import (
    expand_stars,
    qualify,
    rename_columns,
    resolve_column,
    resolve_relation,
    star_columns,
)
from .scope import FromJoin, FromLeaf, FromTree, Scope, Source, column_ref, leaves
from .syntax import (
    ident_name,
    output_name,
    unalias,
    where_always_false,
    zip_aliases,
)

Outputs = tuple[list[tuple[str, str | None]], bool]  # (columns, opaque)


class Analyzer(Analysis):
    # ----------------------------------------------------------------------------------------------
    # Queries
    # ----------------------------------------------------------------------------------------------

    def analyze_query(
        self, node: exp.Expression, parent: Scope | None, ctes: dict[str, Outputs]
    ) -> Outputs:
        if isinstance(node, exp.Subquery):
            outputs = self.analyze_query(node.this, parent, ctes)
            self._walk_trailing(node, outputs, parent, ctes)
            return outputs
        if isinstance(node, exp.SetOperation):
            ctes = self.with_clause(node, parent, ctes)
            outputs = self.analyze_query(node.this, parent, ctes)
            self.analyze_query(node.expression, parent, ctes)
            self._walk_trailing(node, outputs, parent, ctes)
            return outputs
        if isinstance(node, exp.Select):
            return self.analyze_select(node, parent, ctes)
        if isinstance(node, exp.Values):
            width = 0
            for row in node.expressions:
                self.walk(row, parent, ctes)
                width = max(width, len(row.expressions) if isinstance(row, exp.Tuple) else 1)
            return [(f"column{i + 1}", None) for i in range(width)], False
        raise error_at(
            node, "only SELECT queries are supported", "Write a single SELECT statement."
        )

    def _walk_trailing(
        self, node: exp.Expression, outputs: Outputs, parent: Scope | None, ctes: dict[str, Outputs]
    ) -> None:
        """ORDER BY / LIMIT attached to a set operation or parenthesized query."""
        pseudo = Source("", "subquery", outputs[0], node, opaque=outputs[1])
        scope = Scope([pseudo], parent)
        for key in ("order", "limit", "offset"):
            part = node.args.get(key)
            if part is not None:
                self.walk(part, scope, ctes)

    def with_clause(
        self, node: exp.Expression, parent: Scope | None, ctes: dict[str, Outputs]
    ) -> dict[str, Outputs]:
        with_ = node.args.get("with_")
        if with_ is None:
            return ctes
        env = dict(ctes)
        recursive = bool(with_.args.get("recursive"))
        for cte in with_.expressions:
            name = ident_name(cte.alias_or_name)
            body = cte.this
            if not isinstance(body, exp.Query):
                raise error_at(
                    body,
                    "only SELECT is allowed inside WITH",
                    "Data-modifying statements are not allowed; use a SELECT in the CTE.",
                )
            alias_node = cte.args.get("alias")
            if recursive:
                names = [ident_name(c) for c in (alias_node.columns if alias_node else [])]
                env[name] = ([(n, None) for n in names], not names)
            columns, opaque = self.analyze_query(body, parent, env)
            env[name] = (rename_columns(columns, alias_node, cte), opaque)
        return env

    def analyze_select(
        self, select: exp.Select, parent: Scope | None, ctes: dict[str, Outputs]
    ) -> Outputs:
        if select.args.get("into") is not None:
            raise error_at(
                select.args["into"],
                "SELECT INTO is not allowed",
                "Remove the INTO clause; query results are returned, not stored.",
            )
        has_with = select.args.get("with_") is not None
        ctes = self.with_clause(select, parent, ctes)
        scope = Scope([], parent)
        tree = self.build_from(select, scope, ctes)
        anonymizing = any(s.is_personal for s in scope.sources) and not where_always_false(select)
        if anonymizing:
            assert tree is not None
            return self.anonymizing_select(select, scope, tree, has_with)
        return self.plain_select(select, scope, ctes)

    # ----------------------------------------------------------------------------------------------
    # FROM
    # ----------------------------------------------------------------------------------------------

    def build_from(
        self, select: exp.Select, scope: Scope, ctes: dict[str, Outputs]
    ) -> FromTree | None:
        from_ = select.args.get("from_")
        if from_ is None:
            if select.args.get("joins"):
                raise error_at(select, "JOIN without FROM", "Add a FROM clause.")
            return None
        tree = self.from_item(from_.this, scope, ctes)
        for join in select.args.get("joins") or []:
            tree = self.join_item(tree, join, scope, ctes)
        return tree

    def join_item(
        self, left: FromTree, join: exp.Join, scope: Scope, ctes: dict[str, Outputs]
    ) -> FromTree:
        right = self.from_item(join.this, scope, ctes)
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
            self.walk(on, scope, ctes)
        return FromJoin(join, left, right, comma)

    def from_item(self, item: exp.Expression, scope: Scope, ctes: dict[str, Outputs]) -> FromTree:
        if (
            isinstance(item, exp.Subquery)
            and isinstance(item.this, exp.Table)
            and item.this.args.get("joins")
        ):
            # A parenthesized join: (a JOIN b ON ...)
            inner = item.this
            tree = self.from_item(inner, scope, ctes)
            for join in inner.args["joins"]:
                tree = self.join_item(tree, join, scope, ctes)
            return tree
        source = self.make_source(item, scope, ctes)
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

    def make_source(self, item: exp.Expression, scope: Scope, ctes: dict[str, Outputs]) -> Source:
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
            return resolve_relation(self, item)
        if isinstance(item, exp.Table):  # a function in FROM
            if item.args.get("db") is not None and isinstance(item.this, exp.Func):
                self.note_function(
                    exp.Dot(this=item.args["db"].copy(), expression=item.this.copy())
                )
                for arg in item.this.iter_expressions():
                    self.walk(arg, scope, ctes)
            else:
                self.walk(item.this, scope, ctes)
            fname = ident_name(item.this.this) if isinstance(item.this, exp.Anonymous) else "f"
            columns = rename_columns([], alias_node, item)
            return Source(alias or fname, "function", columns, item, opaque=not columns)
        if isinstance(item, exp.Subquery):
            outer = scope.parent
            outputs = self.analyze_query(item.this, outer, ctes)
            self._walk_trailing(item, outputs, outer, ctes)
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
                outputs = self.analyze_query(inner.this, scope, ctes)
            else:
                self.walk(inner, scope, ctes)
                outputs = ([], True)
            lateral_alias = item.args.get("alias")
            name = (
                ident_name(lateral_alias.this)
                if lateral_alias and lateral_alias.this
                else "lateral"
            )
            columns = rename_columns(outputs[0], lateral_alias, item)
            source = Source(name, "subquery", columns, item, aliased=True, opaque=outputs[1])
            source.node.meta["pldiffix_lateral"] = True
            return source
        if isinstance(item, exp.Values):
            outputs = self.analyze_query(item, scope.parent, ctes)
            columns = rename_columns(outputs[0], alias_node, item)
            return Source(alias or "*VALUES*", "values", columns, item, aliased=alias is not None)
        if isinstance(item, exp.Unnest):
            for arg in item.expressions:
                self.walk(arg, scope, ctes)
            self.functions.setdefault(
                ("pg_catalog", "unnest"), FunctionRef("pg_catalog", "unnest", True)
            )
            columns = rename_columns([], alias_node, item)
            return Source(alias or "unnest", "function", columns, item, opaque=not columns)
        raise error_at(item, "unsupported item in FROM", "Use tables, subqueries or functions.")

    # ----------------------------------------------------------------------------------------------
    # Expressions
    # ----------------------------------------------------------------------------------------------

    def walk(
        self,
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
                self.analyze_query(current, scope, ctes)
                continue
            if isinstance(current, exp.Column):
                resolve_column(self, current, scope, output_aliases)
                continue
            if isinstance(current, (exp.Parameter, exp.Placeholder)):
                raise error_rendered(
                    current,
                    "query parameters are not supported",
                    "Write the value into the query as a literal.",
                    sqlstate=sqlstate.INVALID_PARAMETER,
                )
            if isinstance(current, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Command)):
                raise error_at(
                    current, "only SELECT queries are supported", "Remove the statement."
                )
            if isinstance(current, exp.Dot) and isinstance(current.expression, exp.Func):
                self.note_function(current)
                stack.extend(current.expression.iter_expressions())
                continue
            if isinstance(current, exp.Func):
                self.note_function(current)
            stack.extend(current.iter_expressions())

    # ----------------------------------------------------------------------------------------------
    # Non-anonymizing SELECT
    # ----------------------------------------------------------------------------------------------

    def plain_select(self, select: exp.Select, scope: Scope, ctes: dict[str, Outputs]) -> Outputs:
        outputs, opaque = self.select_outputs(select, scope)
        aliases = frozenset(name for name, item in zip_aliases(select) if item)
        for item in select.expressions:
            if isinstance(item, exp.Star):
                for source in scope.sources:
                    source.uses_all_columns = True
                continue
            self.walk(item, scope, ctes)
        for key in ("where", "having", "qualify", "limit", "offset", "distinct"):
            part = select.args.get(key)
            if part is not None:
                self.walk(part, scope, ctes)
        for key in ("group", "order"):
            part = select.args.get(key)
            if part is not None:
                self.walk(part, scope, ctes, aliases)
        for window in select.args.get("windows") or []:
            self.walk(window, scope, ctes)
        return outputs, opaque

    def select_outputs(self, select: exp.Select, scope: Scope) -> Outputs:
        columns: list[tuple[str, str | None]] = []
        opaque = False
        for item in select.expressions:
            if isinstance(item, exp.Star):
                opaque = opaque or any(s.opaque for s in scope.sources)
                columns.extend(star_columns(scope))
            elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
                table = ident_name(item.args.get("table"))
                source = scope.find_source(table, None)
                if source is None:
                    raise error_at(
                        item,
                        f'missing FROM-clause entry for table "{table}"',
                        "Reference tables by the alias given in FROM.",
                        sqlstate=sqlstate.UNDEFINED_TABLE,
                    )
                opaque = opaque or source.opaque
                columns.extend(source.columns)
            else:
                columns.append((output_name(item), None))
        return columns, opaque

    # ----------------------------------------------------------------------------------------------
    # Anonymizing SELECT
    # ----------------------------------------------------------------------------------------------

    def anonymizing_select(
        self, select: exp.Select, scope: Scope, tree: FromTree, has_with: bool
    ) -> Outputs:
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
        clauses = _anonymizing_clauses(select)
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

        expand_stars(self, select, scope)
        aliases = {name: i for i, (name, is_alias) in enumerate(zip_aliases(select)) if is_alias}
        alias_set = frozenset(aliases)
        for item in select.expressions:
            self.walk(item, scope, {})
        for key in ("where", "having", "qualify", "limit", "offset", "distinct"):
            part = select.args.get(key)
            if part is not None:
                self.walk(part, scope, {})
        for key in ("group", "order"):
            part = select.args.get(key)
            if part is not None:
                self.walk(part, scope, {}, alias_set)
        for window in select.args.get("windows") or []:
            self.walk(window, scope, {})
        for clause in clauses:
            for node in clause.walk():
                resolved = self.resolved.get(id(node)) if isinstance(node, exp.Column) else None
                if resolved is not None and resolved.levels_up > 0:
                    raise error_at(
                        node,
                        "a query that reads personal tables cannot reference columns of an outer "
                        "query",
                        "Anonymize the subquery on its own and join the anonymized results in the "
                        "outer query.",
                    )

        check_unsupported_features(self, select)
        filters = check_where(self, select)
        aggregates = check_aggregates(self, select)
        entries, from_model = check_from(self, tree)
        groups, explicit, implicit, output_groups = check_grouping(
            self, select, aliases, bool(aggregates)
        )
        if not implicit:
            check_post_processing(self, select, groups, aliases)

        # All checks passed: qualify columns and build the model.
        for clause in clauses:
            for node in clause.walk():
                if isinstance(node, exp.Column):
                    qualify(self, node)
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
            filters=tuple(Filter(generalization(g), value.copy()) for g, value in filters),
            groups=tuple(generalization(g) for g in groups),
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
        self.anonymizing.append(model)
        return [(name, None) for name in names], False

    # -- WHERE ---------------------------------------------------------------------------------

    # -- aggregates ------------------------------------------------------------------------------

    # -- FROM ------------------------------------------------------------------------------------

    # -- grouping --------------------------------------------------------------------------------

    # -- generalizations -------------------------------------------------------------------------

    # -- model -----------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _anonymizing_clauses(select: exp.Select) -> list[exp.Expression]:
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
