"""The DP query subset: one SELECT over one personal table, grouped, with supported aggregates.

`parse` finds the one SELECT that reads a personal table (the DP subquery; SQL around it is
post-processing of its released rows, as for Diffix) and checks it. Grouping and filtering reuse
the Diffix validator: the SELECT's grouping expressions and WHERE clause are validated as the
query `SELECT <groups>, count(*) FROM <from> WHERE <where> GROUP BY <groups>` at the trusted
level with the untrusted level's rules against expressions that can fail (an error only some row
triggers would answer a question about that row for nothing: validation/totality.py), which
resolves names, checks the generalizations and the simple equality filters and yields them
qualified, in the total form the engine runs. The aggregates, which Diffix does not all have,
are checked here.
Everything outside the subset is a `QueryError` saying what to write instead; nothing was
computed and nothing was spent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.emitted_sql import equalities_sql
from pldiffix.core.relations import Catalog, RelationInfo, RelationKind
from pldiffix.core.statements import QueryError
from pldiffix.diffix.query_model import AnonymizingQuery, Generalization
from pldiffix.diffix.validation import TRUSTED, parse_statement, validate
from pldiffix.diffix.validation.pgtypes import category, normalize_type
from pldiffix.diffix.validation.syntax import ident_name
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
    column: str | None  # the aggregated column of the table; None for count(*)
    column_type: str | None  # its normalized type
    quantile: float | None = None  # percentile_cont's fraction (0.5 for median)
    population: bool = False  # var_pop / stddev_pop (else the sample forms)


@dataclass(frozen=True)
class DpOutput:
    name: str
    group_index: int | None  # the grouping expression it shows, or
    aggregate_index: int | None  # the aggregate it shows (or whose interval a marker shows)
    marker: MarkerName | None = None  # dp/markers.py


@dataclass
class DpQuery:
    """The validated DP subquery. `node` is the SELECT inside `tree` that gets replaced by its
    released rows; `shadow` is the Diffix model of its grouping and filters."""

    tree: exp.Expression
    node: exp.Select
    relation: RelationInfo
    alias: str
    aid: str
    shadow: AnonymizingQuery
    aggregates: tuple[DpAggregate, ...]
    outputs: tuple[DpOutput, ...]

    @property
    def groups(self) -> tuple[Generalization, ...]:
        """The grouping expressions; `expression` is the total form the planner emits."""
        return tuple(replace(g, expression=g.emitted) for g in self.shadow.groups)

    @property
    def where_sql(self) -> str:
        """The filters as the Diffix rewriter emits them (what the security checks saw)."""
        return equalities_sql((f.subject.emitted, f.value) for f in self.shadow.filters)


def parse(sql: str, catalog: Catalog, *, treat_unmarked_tables_as_public: bool = False) -> DpQuery:
    tree = parse_statement(sql)
    selects = [s for s in tree.find_all(exp.Select) if _reads_personal(s, catalog)]
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
        treat_unmarked_tables_as_public=treat_unmarked_tables_as_public,
        total_expressions=True,
    ).anonymizing[0]
    if len(shadow.relations) != 1:
        raise QueryError(
            "a DP query reads exactly one table",
            fragment=_short(node.args.get("from_")),
            hint="joins are not supported; aggregate one personal table (declare public "
            "lookup values with diffix.set_dp_domain)",
        )
    entry = shadow.relations[0]
    relation = catalog.get_relation(entry.relation.schema, entry.relation.name)
    assert relation is not None
    if len(entry.aid_columns) != 1:
        raise QueryError(
            f"{entry.relation.qualified_name} has {len(entry.aid_columns)} AID columns; DP "
            "needs exactly one privacy unit",
            hint="mark the table personal with the single column that identifies a person",
        )
    aid = entry.aid_columns[0]
    aggregates: list[DpAggregate] = []
    outputs: list[DpOutput | Marker] = []
    for name, item, group_index in outputs_spec:
        marker = marker_of(item)
        if group_index is not None:
            outputs.append(DpOutput(name, group_index, None))
        elif marker is not None:
            outputs.append(marker)  # placed once the aggregates it may show are known
        else:
            aggregates.append(_aggregate(item, relation, entry.alias, aid))
            outputs.append(DpOutput(name, None, len(aggregates) - 1))
    placed = tuple(
        _marker_output(name, output, aggregates, relation, entry.alias, aid)
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
    return DpQuery(tree, node, relation, entry.alias, aid, shadow, tuple(aggregates), placed)


def _marker_output(
    name: str,
    marker: Marker,
    aggregates: list[DpAggregate],
    relation: RelationInfo,
    alias: str,
    aid: str,
) -> DpOutput:
    """An interval marker shows the interval of the first equal aggregate of the select list,
    or of its own aggregate (one more share of epsilon) when the list has none."""
    if marker.argument is None:
        return DpOutput(name, None, None, marker.name)
    aggregate = _aggregate(marker.argument, relation, alias, aid)
    if aggregate not in aggregates:
        aggregates.append(aggregate)
    return DpOutput(name, None, aggregates.index(aggregate), marker.name)


def _short(node: exp.Expression | None) -> str | None:
    if node is None:
        return None
    text = sqltext.render(node)
    return text if len(text) <= 120 else text[:117] + "..."


def _reads_personal(select: exp.Select, catalog: Catalog) -> bool:
    """Whether the SELECT's own FROM/JOIN items (not its subqueries) name a personal table."""
    items = [select.args.get("from_"), *(select.args.get("joins") or [])]
    tables = [item.this for item in items if item is not None and isinstance(item.this, exp.Table)]
    return any(_is_personal(table, catalog) for table in tables)


def _is_personal(table: exp.Table, catalog: Catalog) -> bool:
    name = ident_name(table.this)
    db = table.args.get("db")
    schemas = [ident_name(db)] if db is not None else list(catalog.search_path)
    for schema in schemas:
        relation = catalog.get_relation(schema, name)
        if relation is not None:
            return relation.kind is RelationKind.PERSONAL
    return False


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
    if node.args.get("joins"):
        raise QueryError(
            "a DP query reads exactly one table",
            fragment=_short(node.args["joins"][0]),
            hint="joins are not supported; aggregate one personal table",
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
    """The Diffix query that validates the grouping and the filters."""
    shadow = exp.Select(expressions=[g.copy() for g in groups] + [exp.Count(this=exp.Star())])
    shadow.set("from_", node.args["from_"].copy())
    if node.args.get("where") is not None:
        shadow.set("where", node.args["where"].copy())
    if groups:
        shadow.set("group", exp.Group(expressions=[g.copy() for g in groups]))
    return sqltext.render(shadow)


def _aggregate(node: exp.Expression, relation: RelationInfo, alias: str, aid: str) -> DpAggregate:
    if isinstance(node, exp.Count):
        argument = node.this
        if isinstance(argument, exp.Star):
            return DpAggregate("count_star", None, None)
        if isinstance(argument, exp.Distinct):
            columns = argument.expressions
            column = _column(columns[0], relation, alias, node) if len(columns) == 1 else None
            if column is None or column != aid:
                raise QueryError(
                    "count(DISTINCT ...) is only supported over the AID column",
                    fragment=_short(node),
                    hint=f"count privacy units with count(DISTINCT {aid}), or rows with count(*)",
                )
            return DpAggregate("count_units", aid, None)
        column = _column(argument, relation, alias, node)
        return DpAggregate("count", column, _type(relation, column))
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
        column = _numeric_column(ordered[0].this, relation, alias, node)
        return DpAggregate("quantile", column, _type(relation, column), quantile=q)
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
        column = _numeric_column(node.this, relation, alias, node)
        return DpAggregate(
            kind,
            column,
            _type(relation, column),
            quantile=0.5 if kind == "quantile" else None,
            population=population,
        )
    raise QueryError(
        f"aggregate {_short(node)} is not supported in a DP query",
        fragment=_short(node),
        hint=f"use one of {SUPPORTED}",
    )


def _column(node: exp.Expression, relation: RelationInfo, alias: str, call: exp.Expression) -> str:
    if isinstance(node, exp.Column) and node.table in ("", alias, relation.name):
        if relation.column(node.name) is not None:
            return node.name
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
    node: exp.Expression, relation: RelationInfo, alias: str, call: exp.Expression
) -> str:
    column = _column(node, relation, alias, call)
    if category(_type(relation, column)) != "N":
        raise QueryError(
            f"{_short(call)} needs a numeric column; {column} is {_type(relation, column)}",
            fragment=_short(call),
            hint="sums, averages, deviations and quantiles apply to numeric columns",
        )
    return column


def _type(relation: RelationInfo, column: str) -> str:
    info = relation.column(column)
    assert info is not None
    return normalize_type(info.type)
