"""The DP query subset: one SELECT over personal tables of one privacy unit, grouped, with
supported aggregates.

`parse` finds the one SELECT that reads a personal table (the DP subquery; SQL around it is
post-processing of its released rows, as for Diffix) and checks it. Grouping and filtering reuse
the statement validator of core/validation/ (Diffix's too): the SELECT's grouping expressions and
WHERE clause are validated as the query
`SELECT <groups>, count(*) FROM <from> WHERE <where> GROUP BY <groups>` at the trusted level
with the untrusted level's rules against expressions that can fail (an error only some row
triggers would answer a question about that row for nothing: validation/totality.py), which
resolves names, checks the generalizations and the simple equality filters and yields them
qualified, in the total form the engine runs. The aggregates, which Diffix does not all have,
are checked here.
Joins (docs/dp.md, "Joins on the privacy unit"): inner joins whose conditions the validator
accepts (equalities of plain columns that cannot fail), where every personal table's AID column
is equal to another's by a condition of the join itself (so that a joined row belongs to one
unit) and public tables join on any such equality. The first personal table in FROM is the
primary one: its AID is the unit's and its contribution bounds apply to the joined rows. That the
personal tables share one unit is the administrators' declaration (set_dp_unit_path), checked by
dp/joins.py once the catalog is read.
Everything outside the subset is a `QueryError` saying what to write instead; nothing was
computed and nothing was spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from sqlglot import exp

from pldiffix.core import reads, sqltext
from pldiffix.core.emitted_sql import equalities_sql, from_sql
from pldiffix.core.pgtypes import category, normalize_type
from pldiffix.core.query_model import (
    AnonymizingQuery,
    FromItem,
    Generalization,
    Join,
    RangeEntry,
)
from pldiffix.core.relations import Catalog, RelationInfo, RelationKind
from pldiffix.core.statements import QueryError
from pldiffix.core.validation import TRUSTED, parse_statement, validate
from pldiffix.core.validation.context import AggResult, Analysis
from pldiffix.core.validation.syntax import walk_nodes
from pldiffix.dp.markers import Marker, MarkerName, marker_of

AggregateKind = Literal[
    "count_star", "count", "count_units", "sum", "avg", "variance", "stddev", "quantile"
]
# Aggregates over a column's values, which need admin-declared bounds (set_dp_bounds).
BOUNDED_KINDS = frozenset({"sum", "avg", "variance", "stddev", "quantile"})
SUPPORTED = (
    "count(*), count(DISTINCT <aid>), count(col), sum(col), avg(col), stddev(col), "
    "variance(col), percentile_cont(q) WITHIN GROUP (ORDER BY col), median(col)"
)
_WRAP_HINT = "wrap the DP query and post-process its rows: SELECT * FROM (<DP query>) AS t {}"


@dataclass(frozen=True)
class DpAggregate:
    kind: AggregateKind
    column: str | None  # the aggregated column; None for count(*)
    column_type: str | None  # its normalized type
    quantile: float | None = None  # percentile_cont's fraction (0.5 for median)
    population: bool = False  # var_pop / stddev_pop (else the sample forms)
    table: str = ""  # the alias of the column's joined table; "" for the primary table


@dataclass(frozen=True)
class DpOutput:
    name: str
    group_index: int | None  # the grouping expression it shows, or
    aggregate_index: int | None  # the aggregate it shows (or whose interval a marker shows)
    marker: MarkerName | None = None  # dp/markers.py


@dataclass
class DpQuery:
    """The validated DP subquery. `node` is the SELECT inside `tree` that gets replaced by its
    released rows; `shadow` is the validated model (core/query_model.py) of its grouping and
    filters."""

    tree: exp.Expression
    node: exp.Select
    relation: RelationInfo
    alias: str
    aid: str
    shadow: AnonymizingQuery
    aggregates: tuple[DpAggregate, ...]
    outputs: tuple[DpOutput, ...]
    joined: dict[str, RelationInfo] = field(default_factory=dict)  # alias -> the other tables

    @property
    def personal_aliases(self) -> tuple[str, ...]:
        """The aliases of the joined personal tables other than the primary one."""
        return tuple(a for a, r in self.joined.items() if r.kind is RelationKind.PERSONAL)

    def relation_of(self, table: str) -> RelationInfo:
        """The relation of a DpAggregate.table ("" for the primary table)."""
        return self.joined[table] if table else self.relation

    @property
    def from_sql(self) -> str:
        """The FROM items as the engine runs them: the validated join tree, qualified."""
        return from_sql(self.shadow.from_tree)

    def table_of(self, alias: str) -> str:
        """A FROM alias as a DpAggregate.table: "" for the primary table."""
        return "" if alias == self.alias else alias

    @property
    def groups(self) -> tuple[Generalization, ...]:
        """The grouping expressions; `expression` is the total form the planner emits."""
        return tuple(replace(g, expression=g.emitted) for g in self.shadow.groups)

    @property
    def where_sql(self) -> str:
        """The filters as a condition, in the total form the security checks saw."""
        return equalities_sql((f.subject.emitted, f.value) for f in self.shadow.filters)


def parse(sql: str, catalog: Catalog, *, treat_unmarked_tables_as_public: bool = False) -> DpQuery:
    tree = parse_statement(sql)
    personal = {
        id(read.node)
        for read in reads.tables_read(tree)
        if (relation := reads.resolve(read, catalog)) is not None
        and relation.kind is RelationKind.PERSONAL
    }
    selects = [s for s in tree.find_all(exp.Select) if _reads_personal(s, personal)]
    if not selects:
        raise QueryError(
            "the query reads no personal table",
            hint="DP queries aggregate a personal table; public tables are read with "
            "diffix.query_json",
        )
    if len(selects) > 1:
        raise QueryError(
            "a DP query reads personal data in exactly one SELECT",
            fragment=_short(selects[1]),
            hint="send each aggregate query over personal tables in its own call",
        )
    node = selects[0]
    for inner in node.find_all(exp.Subquery, exp.CTE, exp.Union, exp.Window):
        raise QueryError(
            "subqueries, CTEs and window functions are not supported inside the DP query",
            fragment=_short(inner),
            hint="aggregate the table directly; post-process in an outer query",
        )
    _check_clauses(node)
    groups, outputs_spec = _grouping(node)
    shadow_sql = _shadow(node, groups)
    shadow = validate(
        shadow_sql,
        catalog,
        TRUSTED,
        _SHADOW_AGGREGATES,
        treat_unmarked_tables_as_public=treat_unmarked_tables_as_public,
        total_expressions=True,
    ).anonymizing[0]
    entries = list(shadow.relations)
    personal = [e for e in entries if e.relation.kind is RelationKind.PERSONAL]
    for entry in personal:
        if len(entry.aid_columns) != 1:
            raise QueryError(
                f"{entry.relation.qualified_name} has {len(entry.aid_columns)} AID columns; DP "
                "needs exactly one privacy unit",
                hint="mark the table personal with the single column that identifies a person",
            )
    _check_joins(shadow.from_tree, personal)
    primary = personal[0]
    tables: dict[str, RelationInfo] = {}
    for entry in entries:
        found = catalog.get_relation(entry.relation.schema, entry.relation.name)
        assert found is not None
        tables[entry.alias] = found
    relation = tables.pop(primary.alias)
    sources = _Sources(primary.alias, relation, tables)
    aid = primary.aid_columns[0]
    aggregates: list[DpAggregate] = []
    outputs: list[DpOutput | Marker] = []
    for name, item, group_index in outputs_spec:
        marker = marker_of(item)
        if group_index is not None:
            outputs.append(DpOutput(name, group_index, None))
        elif marker is not None:
            outputs.append(marker)  # placed once the aggregates it may show are known
        else:
            aggregates.append(_aggregate(item, sources, aid))
            outputs.append(DpOutput(name, None, len(aggregates) - 1))
    placed = tuple(
        _marker_output(name, output, aggregates, sources, aid)
        if isinstance(output, Marker)
        else output
        for (name, _, _), output in zip(outputs_spec, outputs, strict=True)
    )
    if not aggregates:
        raise QueryError(
            "a DP query needs at least one aggregate",
            fragment=_short(node),
            hint=f"add an aggregate to the SELECT list: {SUPPORTED}",
        )
    return DpQuery(
        tree,
        node,
        relation,
        primary.alias,
        aid,
        shadow,
        tuple(aggregates),
        placed,
        sources.joined,
    )


def _check_joins(tree: FromItem, personal: list[RangeEntry]) -> None:
    """Inner joins only, and every personal table's AID equal to another personal table's AID
    by a condition of the join (directly, not through other columns), so that all of a joined
    row's personal rows belong to the same unit and removing a unit removes exactly its joined
    rows. Public tables may join on any equality the validator accepted."""
    joins = _joins(tree)
    for join in joins:
        if join.kind != "inner":
            raise QueryError(
                f"{join.kind.upper()} JOIN is not supported in a DP query",
                hint="join with JOIN ... ON (an inner join)",
            )
    component = {entry.alias: entry.alias for entry in personal}

    def root(alias: str) -> str:
        while component[alias] != alias:
            alias = component[alias]
        return alias

    for join in joins:
        for condition in join.conditions:
            left, right = condition.left, condition.right
            if category(normalize_type(left.type)) != category(normalize_type(right.type)):
                raise QueryError(
                    f"the join compares {left.alias}.{left.name} ({left.type}) with "
                    f"{right.alias}.{right.name} ({right.type})",
                    hint="join columns of the same type",
                )
            if (
                left.alias in component
                and right.alias in component
                and left.is_aid
                and right.is_aid
            ):
                component[root(left.alias)] = root(right.alias)
    linked = {root(entry.alias) for entry in personal}
    if len(linked) > 1:
        names = ", ".join(entry.relation.qualified_name for entry in personal)
        raise QueryError(
            f"the personal tables {names} are not joined on their AID columns",
            hint="join personal tables on the columns that identify the person, e.g. JOIN "
            "customers c ON t.cid = c.id (declared with diffix.set_dp_unit_path); other data "
            "joins from public tables",
        )


def _joins(item: FromItem) -> list[Join]:
    if isinstance(item, RangeEntry):
        return []
    return [*_joins(item.left), *_joins(item.right), item]


def _marker_output(
    name: str,
    marker: Marker,
    aggregates: list[DpAggregate],
    sources: _Sources,
    aid: str,
) -> DpOutput:
    """An interval marker shows the interval of the first equal aggregate of the select list,
    or of its own aggregate (one more share of epsilon) when the list has none."""
    if marker.argument is None:
        return DpOutput(name, None, None, marker.name)
    aggregate = _aggregate(marker.argument, sources, aid)
    if aggregate not in aggregates:
        aggregates.append(aggregate)
    return DpOutput(name, None, aggregates.index(aggregate), marker.name)


def _short(node: exp.Expression | None) -> str | None:
    if node is None:
        return None
    text = sqltext.render(node)
    return text if len(text) <= 120 else text[:117] + "..."


def _reads_personal(select: exp.Select, personal: set[int]) -> bool:
    """Whether the SELECT's own FROM/JOIN items (not its subqueries) are among the personal
    tables read (ids of their nodes)."""
    items = [select.args.get("from_"), *(select.args.get("joins") or [])]
    return any(item is not None and id(item.this) in personal for item in items)


def _check_clauses(node: exp.Select) -> None:
    # ORDER BY, LIMIT and OFFSET apply to the released rows (dp/engine.py, _placement)
    if node.args.get("having") is not None:
        raise QueryError(
            "HAVING is not supported inside the DP query",
            fragment=_short(node.args["having"]),
            hint=_WRAP_HINT.format("WHERE ..."),
        )
    if node.args.get("distinct") is not None:
        raise QueryError(
            "SELECT DISTINCT is not supported in a DP query",
            hint="group by the columns instead: SELECT col, count(*) FROM t GROUP BY col",
        )


_AGGREGATE_NODES = (
    exp.Count,
    exp.Sum,
    exp.Avg,
    exp.Stddev,
    exp.StddevSamp,
    exp.StddevPop,
    exp.Variance,
    exp.VariancePop,
    exp.WithinGroup,
    exp.Median,
    exp.AggFunc,
)


def _grouping(
    node: exp.Select,
) -> tuple[list[exp.Expression], list[tuple[str, exp.Expression, int | None]]]:
    """The grouping expressions and, per SELECT item, (output name, expression, group index)."""
    items = [(_output_name(item), _unalias(item)) for item in node.expressions]
    aliases = {name: expr for name, expr in items if name}
    groups: list[exp.Expression] = []
    group_by = node.args.get("group")
    for entry in group_by.expressions if group_by is not None else []:
        if isinstance(entry, exp.Literal) and not entry.is_string:
            position = int(entry.this)
            if not 1 <= position <= len(items):
                raise QueryError(
                    f"GROUP BY position {position} is not in the select list",
                    hint="GROUP BY positions count the SELECT items from 1",
                )
            groups.append(items[position - 1][1])
        elif isinstance(entry, exp.Column) and not entry.table and entry.name in aliases:
            groups.append(aliases[entry.name])
        else:
            groups.append(entry)
    keys = [sqltext.render(g) for g in groups]
    spec = []
    for name, expr in items:
        if isinstance(expr, _AGGREGATE_NODES) or marker_of(expr) is not None:
            spec.append((name, expr, None))
            continue
        text = sqltext.render(expr)
        if text not in keys:
            raise QueryError(
                "every SELECT item of a DP query is a grouping expression or an aggregate",
                fragment=_short(expr),
                hint=f"group by it, or use one of {SUPPORTED}; arithmetic over aggregates goes "
                "in an outer query: SELECT c * 2 FROM (<DP query>) AS t",
            )
        spec.append((name, expr, keys.index(text)))
    return groups, spec


def _unalias(item: exp.Expression) -> exp.Expression:
    return item.this if isinstance(item, exp.Alias) else item


def _output_name(item: exp.Expression) -> str:
    """The column name PostgreSQL gives the SELECT item."""
    if isinstance(item, exp.Alias):
        return item.alias
    if isinstance(item, exp.Column):
        return item.name
    node = item
    while isinstance(node, exp.Cast):
        node = node.this
        if isinstance(node, exp.Column):
            return node.name
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        node = node.expression
    if isinstance(node, exp.WithinGroup):
        node = node.this
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    if isinstance(node, exp.Func):
        return {
            "count": "count",
            "stddev": "stddev",
            "stddev_samp": "stddev_samp",
            "stddev_pop": "stddev_pop",
            "variance": "variance",
            "variance_pop": "var_pop",
        }.get(node.key, node.sql_name().lower())
    return "?column?"


def _shadow(node: exp.Select, groups: list[exp.Expression]) -> str:
    """The query the statement validator checks the grouping and the filters in."""
    shadow = exp.Select(expressions=[g.copy() for g in groups] + [exp.Count(this=exp.Star())])
    shadow.set("from_", node.args["from_"].copy())
    if node.args.get("joins"):
        shadow.set("joins", [join.copy() for join in node.args["joins"]])
    if node.args.get("where") is not None:
        shadow.set("where", node.args["where"].copy())
    if groups:
        shadow.set("group", exp.Group(expressions=[g.copy() for g in groups]))
    return sqltext.render(shadow)


class _ShadowAggregates:
    """The `AggregateRules` of the shadow query: its one count(*). Any other aggregate call there
    comes from GROUP BY, where the grouping checks refuse it; the DP query's own aggregates are
    checked by `_aggregate`."""

    def check(self, analysis: Analysis, select: exp.Select) -> list[AggResult]:
        return [
            AggResult("count_star", node)
            for node in walk_nodes(select.expressions)
            if isinstance(node, exp.Count) and isinstance(node.this, exp.Star)
        ]


_SHADOW_AGGREGATES = _ShadowAggregates()


def _aggregate(node: exp.Expression, sources: _Sources, aid: str) -> DpAggregate:
    if isinstance(node, exp.Count):
        argument = node.this
        if isinstance(argument, exp.Star):
            return DpAggregate("count_star", None, None)
        if isinstance(argument, exp.Distinct):
            columns = argument.expressions
            found = _column(columns[0], sources, node) if len(columns) == 1 else None
            if found is None or not sources.is_aid(*found):
                raise QueryError(
                    "count(DISTINCT ...) is only supported over the AID column",
                    fragment=_short(node),
                    hint=f"count privacy units with count(DISTINCT {aid}), or rows with count(*)",
                )
            return DpAggregate("count_units", aid, None)
        table, column = _column(argument, sources, node)
        return DpAggregate("count", column, sources.type(table, column), table=table)
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        fraction = node.this.this
        order = node.expression
        ordered = order.expressions if isinstance(order, exp.Order) else []
        if (
            not isinstance(fraction, exp.Literal)
            or fraction.is_string
            or len(ordered) != 1
            or ordered[0].args.get("desc")
        ):
            raise QueryError(
                "percentile_cont takes a constant fraction and one ascending ORDER BY column",
                fragment=_short(node),
                hint="write percentile_cont(0.9) WITHIN GROUP (ORDER BY col)",
            )
        q = float(fraction.this)
        if not 0 <= q <= 1:
            raise QueryError(
                f"percentile_cont fraction {q:g} is outside [0, 1]", fragment=_short(node)
            )
        table, column = _numeric_column(ordered[0].this, sources, node)
        return DpAggregate("quantile", column, sources.type(table, column), quantile=q, table=table)
    simple: dict[type, tuple[AggregateKind, bool]] = {
        exp.Sum: ("sum", False),
        exp.Avg: ("avg", False),
        exp.Stddev: ("stddev", False),
        exp.StddevSamp: ("stddev", False),
        exp.StddevPop: ("stddev", True),
        exp.Variance: ("variance", False),
        exp.VariancePop: ("variance", True),
        exp.Median: ("quantile", False),
    }
    if type(node) in simple and not isinstance(node.this, exp.Distinct):
        kind, population = simple[type(node)]
        table, column = _numeric_column(node.this, sources, node)
        return DpAggregate(
            kind,
            column,
            sources.type(table, column),
            quantile=0.5 if kind == "quantile" else None,
            population=population,
            table=table,
        )
    raise QueryError(
        f"aggregate {_short(node)} is not supported in a DP query",
        fragment=_short(node),
        hint=f"use one of {SUPPORTED}",
    )


@dataclass(frozen=True)
class _Sources:
    """The tables of the DP SELECT: the primary personal table and the joined ones by alias."""

    alias: str
    relation: RelationInfo
    joined: dict[str, RelationInfo]

    def find(self, node: exp.Column) -> list[tuple[str, RelationInfo]]:
        """(table, relation) of every table the column reference can name ("" is primary)."""
        tables = [("", self.alias, self.relation)]
        tables += [(alias, alias, relation) for alias, relation in self.joined.items()]
        if node.table:
            named = [(t, r) for t, alias, r in tables if node.table == alias]
            if not named and not self.joined and node.table == self.relation.name:
                named = [("", self.relation)]
            return named
        return [(t, r) for t, _, r in tables if r.column(node.name) is not None]

    def is_aid(self, table: str, column: str) -> bool:
        relation = self.joined[table] if table else self.relation
        return relation.kind is RelationKind.PERSONAL and column in relation.aid_columns

    def type(self, table: str, column: str) -> str:
        relation = self.joined[table] if table else self.relation
        info = relation.column(column)
        assert info is not None
        return normalize_type(info.type)


def _column(node: exp.Expression, sources: _Sources, call: exp.Expression) -> tuple[str, str]:
    """(table, column) of a plain column of one of the SELECT's tables."""
    if isinstance(node, exp.Column) and not node.args.get("db"):
        named = sources.find(node)
        if len(named) > 1:
            raise QueryError(
                f'column reference "{node.name}" is ambiguous',
                fragment=_short(call),
                hint="qualify it with its table's alias",
            )
        if named and named[0][1].column(node.name) is not None:
            return named[0][0], node.name
        if named or not node.table:
            relation = named[0][1] if named else sources.relation
            raise QueryError(
                f'column "{node.name}" does not exist in {relation.schema}.{relation.name}',
                fragment=_short(call),
                hint="columns: " + ", ".join(c.name for c in relation.columns),
            )
    raise QueryError(
        "DP aggregates take a plain column of the table",
        fragment=_short(call),
        hint="aggregate the column itself (bounds are set per column with diffix.set_dp_bounds)",
    )


def _numeric_column(
    node: exp.Expression, sources: _Sources, call: exp.Expression
) -> tuple[str, str]:
    table, column = _column(node, sources, call)
    column_type = sources.type(table, column)
    if category(column_type) != "N":
        raise QueryError(
            f"{_short(call)} needs a numeric column; {column} is {column_type}",
            fragment=_short(call),
            hint="sums, averages, deviations and quantiles apply to numeric columns",
        )
    return table, column
