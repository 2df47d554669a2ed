"""The query subset of cell-key (TBE or Laplace) tables and the plan of one query. Pure.

The accepted subset, on one table:

    SELECT <column | diffix.tbe_range(column) | count(*) | sum(column) | avg(column)> [AS name], ...
    FROM table [AS alias]
    [WHERE c = constant AND c IN (constants) AND c IS NULL AND diffix.tbe_range(c) = 'range' ...]
    [GROUP BY column | diffix.tbe_range(column) | position, ...]
    [ORDER BY position | name | selected expression [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

`plan_query` checks a parsed query against the table's configuration; `post_processing` is the
statement the caller runs over the perturbed cells (engine.py): ORDER BY, LIMIT and OFFSET apply
to them there, never to the rows aggregated.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from pldiffix.cellkey.table import CellKeyTable, Column
from pldiffix.core import sqltext
from pldiffix.core.emitted_sql import rows_relation
from pldiffix.core.statements import QueryError

_ALLOWED_SELECT_ARGS = {
    "expressions",
    "from",
    "from_",
    "where",
    "group",
    "order",
    "limit",
    "offset",
}
_CLAUSE_NAMES = {
    "joins": "joins",
    "with": "WITH",
    "with_": "WITH",
    "distinct": "DISTINCT",
    "having": "HAVING",
    "windows": "WINDOW",
    "qualify": "QUALIFY",
    "laterals": "LATERAL",
    "locks": "FOR UPDATE/SHARE",
    "into": "INTO",
    "sample": "TABLESAMPLE",
}
_SUBSET_HINT = (
    "on cell-key tables write SELECT <grouping columns or diffix.tbe_range(column)>, count(*), "
    "sum(column), avg(column) FROM table [WHERE column = constant AND column IN (...)] "
    "GROUP BY ...; see docs/tbe.md"
)


@dataclass(frozen=True)
class GroupKey:
    column: Column
    ranged: bool  # diffix.tbe_range(column)


@dataclass
class OutputItem:
    name: str
    kind: str  # group, count, sum, avg
    group: GroupKey | None = None
    column: Column | None = None
    expression_sql: str = ""  # the unaliased expression, to match ORDER BY items


@dataclass
class Condition:
    column: Column
    ranged: bool
    values: list[str | None]  # literal texts (ranged: range names); None: IS NULL
    fragment: str = ""


@dataclass
class Plan:
    table: CellKeyTable
    items: list[OutputItem]
    groups: list[GroupKey]
    conditions: list[Condition]
    summed: list[Column]
    order: list[tuple[int, bool, bool]] = field(default_factory=list)  # index, desc, nulls first
    limit: int | None = None
    offset: int = 0


def _fragment(node: exp.Expression) -> str:
    text = node.sql(dialect=sqltext.POSTGRES)
    return text if len(text) <= 120 else text[:117] + "..."


def _reject(
    message: str, node: exp.Expression | None = None, hint: str = _SUBSET_HINT
) -> QueryError:
    return QueryError(message, fragment=_fragment(node) if node is not None else None, hint=hint)


class _Resolver:
    def __init__(self, table: CellKeyTable, names: set[str]):
        self.table = table
        self.names = names  # what a column may be qualified with

    def column(self, node: exp.Column) -> Column:
        if node.args.get("db") or node.args.get("catalog"):
            raise _reject("schema-qualified column references are not supported", node)
        qualifier = node.args.get("table")
        if qualifier is not None:
            qualifier_name = sqltext.ident_name(qualifier)
            if qualifier_name not in self.names:
                raise _reject(f"unknown table or alias {qualifier.name!r}", node)
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            raise _reject("only plain column references are allowed", node)
        name = sqltext.ident_name(ident)
        column = self.table.columns.get(name)
        if column is None:
            raise QueryError(
                f"column {name!r} does not exist in table {self.table.sql_name}",
                fragment=_fragment(node),
                hint="columns: " + ", ".join(c for c in self.table.columns if c not in self.hidden),
            )
        if name in self.hidden:
            raise QueryError(
                f"column {name!r} is {self.hidden[name]} and cannot be selected, filtered or "
                "aggregated",
                fragment=_fragment(node),
                hint="perturbation depends on the record keys staying secret; query the other "
                "columns",
            )
        return column

    @functools.cached_property
    def hidden(self) -> dict[str, str]:
        return self.table.hidden_columns

    def key(self, node: exp.Expression, *, where: bool = False) -> GroupKey | None:
        """A grouping or filtered expression (column or diffix.tbe_range(column)), else None."""
        if isinstance(node, exp.Column):
            return self._checked(GroupKey(self.column(node), False), node, where)
        call = _tbe_range_call(node)
        if call is not None:
            return self._checked(GroupKey(self.column(call), True), node, where)
        return None

    def _checked(self, key: GroupKey, node: exp.Expression, where: bool) -> GroupKey:
        table, column = self.table, key.column
        if key.ranged:
            if table.tbe_config is None or table.tbe_config.scope_keys is None:
                raise _reject(
                    f"diffix.tbe_range needs declared ranges; table {table.sql_name} has none",
                    node,
                    hint=f"use the column {column.name} itself",
                )
            if not column.numeric or column.name not in table.field_of:
                raise _reject(
                    f"diffix.tbe_range applies to declared numeric fields, not {column.name}",
                    node,
                    hint=f"use the column {column.name} itself",
                )
        elif table.tbe_config is not None and table.tbe_config.scoped:
            if column.name not in table.field_of:
                raise _reject(
                    f"column {column.name} has no scope key declarations and cannot be grouped "
                    "or filtered on",
                    node,
                    hint="group and filter on declared fields: " + ", ".join(table.field_of),
                )
            if column.numeric and not where:  # WHERE: single-value ranges, see _point_ranges
                raise _reject(
                    f"numeric field {column.name} can only be grouped by its declared ranges",
                    node,
                    hint=f"write diffix.tbe_range({column.name}) instead of {column.name}",
                )
        return key


def _tbe_range_call(node: exp.Expression) -> exp.Column | None:
    """The column of diffix.tbe_range(column); a QueryError for other tbe_range forms."""
    call: exp.Expression | None = None
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        schema = sqltext.ident_name(node.this)  # "DIFFIX" is another schema than diffix
        if schema == "diffix" and node.expression.name.lower() == "tbe_range":
            call = node.expression
    elif isinstance(node, exp.Anonymous) and node.name.lower() == "tbe_range":
        raise _reject(
            "write tbe_range with its schema",
            node,
            hint="diffix.tbe_range(column)",
        )
    if call is None:
        return None
    args = call.expressions
    if len(args) != 1 or not isinstance(args[0], exp.Column):
        raise _reject(
            "diffix.tbe_range takes one column in queries",
            node,
            hint="write diffix.tbe_range(column); the table and field come from the query",
        )
    return args[0]


def plan_query(tree: exp.Expression, table: CellKeyTable) -> Plan:
    """The plan of a query over `table`, or a QueryError saying what to write instead. Pure."""
    if not isinstance(tree, exp.Select):
        raise _reject("only a plain SELECT is supported on cell-key tables", tree)
    for key, value in tree.args.items():
        if value and key not in _ALLOWED_SELECT_ARGS:
            clause = _CLAUSE_NAMES.get(key, key.upper())
            raise _reject(f"{clause} is not supported on cell-key tables", tree)
    source = tree.args.get("from") or tree.args.get("from_")
    if source is None or not isinstance(source.this, exp.Table):
        raise _reject("the query must read exactly one table", tree)
    table_node = source.this
    for key, value in table_node.args.items():
        if value and key not in ("this", "db", "catalog", "alias"):
            raise _reject(f"{key} on the table is not supported", table_node)
    if not isinstance(table_node.this, exp.Identifier):
        raise _reject("the query must read a table", table_node)
    table_name = sqltext.ident_name(table_node.this)
    names = {table_name}
    alias = table_node.args.get("alias")
    if alias is not None:
        if alias.args.get("columns"):
            raise _reject("column aliases on the table are not supported", table_node)
        names = {sqltext.ident_name(alias.this)}
    resolver = _Resolver(table, names)

    items: list[OutputItem] = []
    summed: list[Column] = []
    for select_item in tree.expressions:
        node = select_item.this if isinstance(select_item, exp.Alias) else select_item
        alias_name = select_item.alias if isinstance(select_item, exp.Alias) else None
        item = _output_item(node, resolver)
        if alias_name:
            item.name = alias_name
        item.expression_sql = node.sql(dialect=sqltext.POSTGRES)
        if item.column is not None and item.column not in summed:
            summed.append(item.column)
        items.append(item)

    groups: list[GroupKey] = []
    group_node = tree.args.get("group")
    if group_node is not None:
        for key, value in group_node.args.items():
            if value and key != "expressions":
                raise _reject(f"GROUP BY {key.upper()} is not supported", group_node)
        for node in group_node.expressions:
            key = _group_key(node, items, resolver)
            if key not in groups:
                groups.append(key)
    for item in items:
        if item.kind == "group" and item.group not in groups:
            raise _reject(
                f"{item.expression_sql} must appear in the GROUP BY clause",
                hint="group by every selected column, or select only aggregates",
            )

    conditions = _conditions(tree.args.get("where"), resolver)
    plan = Plan(table, items, groups, conditions, summed)
    _order_and_limit(tree, plan)
    return plan


def _output_item(node: exp.Expression, resolver: _Resolver) -> OutputItem:
    if isinstance(node, exp.Count):
        if isinstance(node.this, exp.Star):
            return OutputItem("count", "count")
        raise _reject("only count(*) is supported on cell-key tables", node, hint="write count(*)")
    if isinstance(node, exp.Sum | exp.Avg):
        kind = "sum" if isinstance(node, exp.Sum) else "avg"
        argument = node.this
        if not isinstance(argument, exp.Column):
            raise _reject(f"{kind} takes one column on cell-key tables", node)
        column = resolver.column(argument)
        if not column.numeric:
            raise _reject(f"{kind}({column.name}): the column is not numeric", node)
        return OutputItem(kind, kind, column=column)
    key = resolver.key(node)
    if key is not None:
        return OutputItem("tbe_range" if key.ranged else key.column.name, "group", group=key)
    if isinstance(node, exp.AggFunc):
        raise _reject(
            f"aggregate {node.key} is not supported on cell-key tables",
            node,
            hint="use count(*), sum(column) or avg(column)",
        )
    raise _reject(
        "only grouping columns, diffix.tbe_range(column), count(*), sum(column) and avg(column) "
        "can be selected from cell-key tables",
        node,
    )


def _group_key(node: exp.Expression, items: list[OutputItem], resolver: _Resolver) -> GroupKey:
    if isinstance(node, exp.Literal) and not node.is_string:
        position = int(node.this) if node.this.isdigit() else 0
        if not 1 <= position <= len(items):
            raise _reject(f"GROUP BY position {node.this} is not in the select list", node)
        item = items[position - 1]
        if item.group is None:
            raise _reject(f"GROUP BY position {position} refers to an aggregate", node)
        return item.group
    key = resolver.key(node)
    if key is None:
        raise _reject(
            "GROUP BY accepts columns, diffix.tbe_range(column) and select-list positions", node
        )
    return key


def _literal_text(node: exp.Expression) -> str:
    if isinstance(node, exp.Literal):
        return str(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return "-" + str(node.this.this)
    if isinstance(node, exp.Boolean):
        return "true" if node.this else "false"
    raise _reject(
        "conditions compare with constants only",
        node,
        hint="write column = 'value' or column IN ('a', 'b') with literal values",
    )


def _conditions(where: exp.Where | None, resolver: _Resolver) -> list[Condition]:
    if where is None:
        return []
    conjuncts: list[exp.Expression] = []

    def flatten(node: exp.Expression) -> None:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.And):
            flatten(node.this)
            flatten(node.expression)
        else:
            conjuncts.append(node)

    flatten(where.this)
    conditions: list[Condition] = []
    seen: dict[str, exp.Expression] = {}
    for node in conjuncts:
        subject: exp.Expression
        if isinstance(node, exp.EQ):
            subject, other = node.this, node.expression
            if not _is_subject(subject):
                subject, other = other, subject
            values: list[str | None] = [_literal_text(other)]
        elif isinstance(node, exp.In) and not node.args.get("query") and not node.args.get("field"):
            subject = node.this
            values = [_literal_text(v) for v in node.expressions]
        elif isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
            subject = node.this
            values = [None]
        else:
            raise _reject(
                "only column = constant, column IN (constants) and column IS NULL, joined by "
                "AND, are allowed in the WHERE clause of a query on a cell-key table",
                node,
                hint="other conditions (ranges, OR, NOT) have no scope key; for numeric fields "
                "write diffix.tbe_range(column) = 'range name'",
            )
        key = resolver.key(subject, where=True) if _is_subject(subject) else None
        if key is None:
            raise _reject("a condition must compare a column with constants", node)
        if key.column.name in seen:
            raise _reject(
                f"column {key.column.name} is restricted twice",
                node,
                hint="combine the values into one IN list",
            )
        seen[key.column.name] = node
        conditions.append(Condition(key.column, key.ranged, values, _fragment(node)))
    return conditions


def _is_subject(node: exp.Expression) -> bool:
    return isinstance(node, exp.Column) or _tbe_range_call_or_none(node) is not None


def _tbe_range_call_or_none(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        return node
    return None


def _order_and_limit(tree: exp.Select, plan: Plan) -> None:
    order = tree.args.get("order")
    if order is not None:
        for ordered in order.expressions:
            node = ordered.this
            index = _order_index(node, plan.items)
            if index is None:
                raise _reject(
                    "ORDER BY must name a selected column: by position, output name or the same "
                    "expression",
                    node,
                    hint="e.g. ORDER BY 1 or ORDER BY count(*) DESC",
                )
            desc = bool(ordered.args.get("desc"))
            nulls_first = ordered.args.get("nulls_first")
            plan.order.append((index, desc, desc if nulls_first is None else bool(nulls_first)))
    for clause in ("limit", "offset"):
        node = tree.args.get(clause)
        if node is None:
            continue
        value = node.args.get("expression") or node.this
        if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
            raise _reject(f"{clause.upper()} takes a non-negative integer constant", node)
        if clause == "limit":
            plan.limit = int(value.this)
        else:
            plan.offset = int(value.this)


def _order_index(node: exp.Expression, items: list[OutputItem]) -> int | None:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        position = int(node.this)
        return position - 1 if 1 <= position <= len(items) else None
    if isinstance(node, exp.Column) and not node.table:
        name = sqltext.ident_name(node.this)
        for i, item in enumerate(items):
            if item.name == name:
                return i
    text = node.sql(dialect=sqltext.POSTGRES)
    for i, item in enumerate(items):
        if item.expression_sql == text:
            return i
    return None


def post_processing(plan: Plan, cells: Sequence[Sequence[str | None]]) -> str:
    """The statement the caller runs: the perturbed cells (text, in the order SQL grouped them)
    as a rows relation, ordered as the query asks (text by code point, ties and no ORDER BY in
    the cells' order), then limited. Pure."""
    names = [f"c{i}" for i in range(len(plan.items))] + ["o"]
    types = [_output_type(item) for item in plan.items] + ["bigint"]
    relation = rows_relation(names, types, [[*c, str(i)] for i, c in enumerate(cells)], None)
    columns = ", ".join(
        f"t.c{i} AS {sqltext.identifier(item.name)}" for i, item in enumerate(plan.items)
    )
    keys = []
    for index, desc, nulls_first in plan.order:
        collate = ' COLLATE "C"' if _is_text(plan.items[index]) else ""
        direction = "DESC" if desc else "ASC"
        keys.append(f"t.c{index}{collate} {direction} NULLS {'FIRST' if nulls_first else 'LAST'}")
    statement = f"SELECT {columns} FROM {relation} AS t ORDER BY {', '.join([*keys, 't.o'])}"
    if plan.limit is not None:
        statement += f" LIMIT {plan.limit}"
    return statement + (f" OFFSET {plan.offset}" if plan.offset else "")


def _is_text(item: OutputItem) -> bool:
    if item.group is None:
        return False
    return item.group.ranged or item.group.column.collatable


def _output_type(item: OutputItem) -> str:
    """The SQL type of an output column, for diffix.query's column definition list."""
    if item.group is not None:
        return "text" if item.group.ranged else item.group.column.type_sql
    return "bigint" if item.kind == "count" else "numeric"
