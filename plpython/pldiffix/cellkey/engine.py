"""Analyst queries over cell-key (TBE or Laplace) tables.

The accepted subset, on one table:

    SELECT <column | diffix.tbe_range(column) | count(*) | sum(column) | avg(column)> [AS name], ...
    FROM table [AS alias]
    [WHERE c = constant AND c IN (constants) AND c IS NULL AND diffix.tbe_range(c) = 'range' ...]
    [GROUP BY column | diffix.tbe_range(column) | position, ...]
    [ORDER BY position | name | selected expression [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

The query is parsed with sqlglot and SQL is generated from catalog identifiers and parameters only.
SQL aggregates each cell (docs/tbe.md, "What the SQL side computes per cell"); Python perturbs each
cell with tbe.perturb_cell or laplace.perturb_cell; the perturbed cells return as a rows relation
in a post-processing query that applies the ORDER BY, LIMIT and OFFSET (core/mechanism.py).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pldiffix.cellkey import laplace, tbe, tbe_config
from pldiffix.cellkey.config import CellKeyTable, Column, load
from pldiffix.core import context, sqltext
from pldiffix.core.mechanism import Release
from pldiffix.core.statements import QueryError
from pldiffix.diffix.rewrite import rows_relation

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


# --- the engine side (SECURITY DEFINER, owned by diffix_engine) --------------------------------


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


def answer(plpy: Any, tree: exp.Expression, relid: int) -> Release:
    """The perturbed answer over the cell-key table `relid`: its cells as a rows relation in the
    post-processing query. Runs behind the gate (answers.py): never raw rows, and every level
    gets the same answers."""
    table = load(plpy, relid)
    plan = plan_query(tree, table)
    cells = _execute(plpy, plan)
    return Release(
        "laplace" if table.method == "laplace" else "cellkey",
        post_processing(plan, cells),
        rows=len(cells[plan.offset :][: plan.limit]),
    )


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
            qualifier_name = qualifier.name if qualifier.quoted else qualifier.name.lower()
            if qualifier_name not in self.names:
                raise _reject(f"unknown table or alias {qualifier.name!r}", node)
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            raise _reject("only plain column references are allowed", node)
        name = ident.name if ident.quoted else ident.name.lower()
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
        if node.this.name.lower() == "diffix" and node.expression.name.lower() == "tbe_range":
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
    table_name = table_node.name if table_node.this.quoted else table_node.name.lower()
    names = {table_name}
    alias = table_node.args.get("alias")
    if alias is not None:
        if alias.args.get("columns"):
            raise _reject("column aliases on the table are not supported", table_node)
        names = {alias.name if alias.this.quoted else alias.name.lower()}
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
        name = node.name if node.this.quoted else node.name.lower()
        for i, item in enumerate(items):
            if item.name == name:
                return i
    text = node.sql(dialect=sqltext.POSTGRES)
    for i, item in enumerate(items):
        if item.expression_sql == text:
            return i
    return None


# --- SQL generation and perturbation -----------------------------------------------------------


def _key_sql(table: CellKeyTable, key: GroupKey) -> str:
    if key.ranged:
        assert table.tbe_config is not None and table.tbe_config.scope_keys is not None
        return table.tbe_config.scope_keys.range_case_sql(
            table.field_of[key.column.name], key.column.sql
        )
    return key.column.sql


def _execute(plpy: Any, plan: Plan) -> list[list[str | None]]:
    """The perturbed cells, each value as text."""
    table = plan.table
    config = table.tbe_config
    where = _where(plpy, plan)

    select = [f"{_key_sql(table, g)} AS g{i}" for i, g in enumerate(plan.groups)]
    # The text of a declared non-numeric field's value is its value name for scope keys.
    select += [
        f"NULL::pg_catalog.text AS l{i}" if g.ranged else f"{g.column.sql}::pg_catalog.text AS l{i}"
        for i, g in enumerate(plan.groups)
    ]
    select.append("pg_catalog.count(*) AS n")
    if config is not None:
        assert table.record_key is not None and table.tiebreaker is not None
        key = table.record_key.sql
        collate = ' COLLATE "C"' if table.tiebreaker.collatable else ""
        tiebreaker = table.tiebreaker.sql + collate
        select += [
            f"pg_catalog.sum({key}::numeric) AS key_sum",
            f"pg_catalog.min({key}) AS key_min",
            f"pg_catalog.max({key}) AS key_max",
            f"pg_catalog.count({key}) AS key_n",
        ]
    else:
        # Laplace cell key: the sum of keyed hashes of the records (docs/tbe.md, "Laplace noise")
        assert table.laplace_config is not None
        seed = where.parameter(laplace.record_seed(table.laplace_config), "bigint")
        row = ", ".join(c.sql for c in table.record_columns)
        select.append(
            f"pg_catalog.sum(pg_catalog.hash_record_extended(ROW({row}), {seed})) AS record_key_sum"
        )
    select += [
        f"pg_catalog.bool_or({match}) AS w{i}_{j}"
        for i, (_, matches) in enumerate(where.scoped)
        for j, (_, match) in enumerate(matches)
        if match is not None
    ]
    for j, column in enumerate(plan.summed):
        y = column.sql
        select.append(f"pg_catalog.sum({y}) AS s{j}")
        if config is not None:
            select.append(
                f"(pg_catalog.array_agg({y} ORDER BY pg_catalog.abs({y}) DESC, {tiebreaker} ASC, "
                f"{y} ASC) FILTER (WHERE {y} IS NOT NULL))[1:{len(config.m)}] AS t{j}"
            )
    statement = f"SELECT {', '.join(select)} FROM {table.sql_name}"
    if where.sql:
        statement += " WHERE " + " AND ".join(where.sql)
    if plan.groups:
        statement += " GROUP BY " + ", ".join(_key_sql(table, g) for g in plan.groups)
    rows = plpy.execute(context.prepared(plpy, statement, tuple(where.types)), where.params)

    cells: list[list[str | None]] = []
    for row in rows:
        values = _perturb_row(plan, row, where.scoped)
        if values is not None:
            cells.append([_as_text(value) for value in values])
    return cells


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


def _as_text(value: Any) -> str | None:
    """A perturbed value as the text of its SQL type (group values arrive as text already)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _output_type(item: OutputItem) -> str:
    """The SQL type of an output column, for diffix.query's column definition list."""
    if item.group is not None:
        return "text" if item.group.ranged else item.group.column.type_sql
    return "bigint" if item.kind == "count" else "numeric"


@dataclass
class _Filter:
    """The WHERE clause in SQL, and what the scope keys need from it."""

    sql: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    # Per restricted, ungrouped field: the declared field and, per admitted value name, the SQL
    # matching it (None for the only value: present in every non-empty cell). A row's scope of
    # such a field is the value names present among the cell's records (docs/tbe.md,
    # "Canonical scopes").
    scoped: list[tuple[str, list[tuple[str, str | None]]]] = field(default_factory=list)

    def parameter(self, value: Any, type_name: str) -> str:
        self.params.append(value)
        self.types.append(type_name)
        return f"${len(self.params)}"


def _undeclared(condition: Condition, labels: Sequence[str | None], declared: Any) -> QueryError:
    shown = ", ".join("NULL" if v is None else repr(v) for v in labels)
    hint = "declared values: " + ", ".join(
        "NULL" if v == tbe_config.NULL_LABEL else repr(v) for v in declared
    )
    if tbe_config.NULL_LABEL in declared:
        hint += f"; for NULL write {condition.column.name} IS NULL"
    return QueryError(
        f"{shown} is not a declared value of {condition.column.name}",
        fragment=condition.fragment,
        hint=hint,
    )


def _where(plpy: Any, plan: Plan) -> _Filter:
    """The WHERE clause. On declared fields conditions are canonical: built from the declared
    value names they admit, dropped when they admit every declared value."""
    table = plan.table
    out = _Filter()
    grouped = {g.column.name for g in plan.groups}
    declarations = table.tbe_config.scope_keys if table.tbe_config else None
    for condition in plan.conditions:
        column = condition.column
        field_name = table.field_of.get(column.name) if declarations is not None else None
        if declarations is None or field_name is None:
            _typed_values(plpy, column, _non_null(condition.values), condition.fragment)
            out.sql.append(_condition_sql(condition, out))
            continue
        declared = declarations.fields[field_name]
        if column.numeric and not condition.ranged:
            condition = _point_ranges(condition, declarations, field_name)
        labels: list[str | None]
        if condition.ranged:
            labels = list(condition.values)  # range names; the sentinel '' is NULL in range SQL
        else:
            _, texts = _typed_values(plpy, column, _non_null(condition.values), condition.fragment)
            # a literal '' is the empty string, not the NULL sentinel: undeclared
            labels = [t for t in texts if t != tbe_config.NULL_LABEL]
            if len(labels) < len(texts):
                raise _undeclared(condition, [tbe_config.NULL_LABEL], declared)
            if None in condition.values:
                if tbe_config.NULL_LABEL not in declared:
                    raise _undeclared(condition, [None], declared)
                labels.append(tbe_config.NULL_LABEL)
        bad = [v for v in labels if v not in declared]
        if bad:
            raise _undeclared(condition, bad, declared)
        canonical = declarations.canonical_condition(field_name, labels)
        if canonical is None:
            continue  # every declared value: no restriction
        if column.numeric:
            label = _key_sql(table, GroupKey(column, True))
            out.sql.append(f"({label}) = ANY({out.parameter(list(canonical), 'text[]')})")
        else:
            canonical_condition = Condition(
                column, False, [None if v == tbe_config.NULL_LABEL else v for v in canonical]
            )
            out.sql.append(_condition_sql(canonical_condition, out))
        if column.name in grouped:
            continue
        matches: list[tuple[str, str | None]] = []
        for value in canonical:
            if len(canonical) == 1:
                matches.append((value, None))
            elif column.numeric:
                matches.append((value, f"({label}) = {out.parameter(value, 'text')}"))
            elif value == tbe_config.NULL_LABEL:
                matches.append((value, f"{column.sql} IS NULL"))
            else:
                constant = out.parameter(value, "text")
                matches.append((value, f"{column.sql} = {constant}::{column.type_sql}"))
        out.scoped.append((field_name, matches))
    return out


def _non_null(values: Sequence[str | None]) -> list[str]:
    return [v for v in values if v is not None]


def _condition_sql(condition: Condition, out: _Filter) -> str:
    """column = ANY(constants cast to the column's type) [OR column IS NULL]."""
    column = condition.column
    non_null = _non_null(condition.values)
    parts = []
    if non_null:
        constants = out.parameter(non_null, "text[]")
        parts.append(f"{column.sql} = ANY({constants}::{column.type_sql}[])")
    if None in condition.values:
        parts.append(f"{column.sql} IS NULL")
    return "(" + " OR ".join(parts) + ")"


def _point_ranges(
    condition: Condition, declarations: tbe_config.ScopeKeyDeclarations, field_name: str
) -> Condition:
    """`bedrooms = 2` on a numeric field: allowed where 2 is a declared single-value range."""
    labels: list[str | None] = []
    for value in condition.values:
        if value is None:
            labels.append(tbe_config.NULL_LABEL)
            continue
        try:
            number = Decimal(value)
            label = declarations.range_label(field_name, number)
            bounds = tbe_config.parse_range_label(label)
        except (ArithmeticError, ValueError) as error:
            raise QueryError(
                f"{condition.column.name} = {value}: {error}", fragment=condition.fragment
            ) from None
        if bounds.low != bounds.high or bounds.low != number:
            raise QueryError(
                f"numeric field {condition.column.name} can only be filtered by its declared "
                f"ranges; {value} lies in the range {label!r}",
                fragment=condition.fragment,
                hint=f"write diffix.tbe_range({condition.column.name}) = '{label}'",
            )
        labels.append(label)
    return Condition(condition.column, True, labels, condition.fragment)


def _typed_values(
    plpy: Any, column: Column, texts: Sequence[str], fragment: str
) -> tuple[list[Any], list[str | None]]:
    """The constants as values of the column's type (through PostgreSQL) and their text form."""
    if not texts:
        return [], []
    statement = (
        f"SELECT v::{column.type_sql} AS value, v::{column.type_sql}::text AS label "
        "FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i"
    )
    try:
        rows = plpy.execute(context.prepared(plpy, statement, ("text[]",)), [list(texts)])
    except plpy.SPIError as error:  # type: ignore[attr-defined]
        raise QueryError(
            f"a constant does not fit column {column.name} ({column.type_sql}): {error}",
            fragment=fragment,
        ) from None
    return [r["value"] for r in rows], [r["label"] for r in rows]


def _perturb_row(
    plan: Plan,
    row: Any,
    where_scoped: list[tuple[str, list[tuple[str, str | None]]]],
) -> list[Any] | None:
    table = plan.table
    n = row["n"]
    group_values = [row[f"g{i}"] for i in range(len(plan.groups))]
    counts: int
    sums: dict[str, Any]
    means: dict[str, Any]
    if table.tbe_config is not None:
        config = table.tbe_config
        if n and row["key_n"] != n:
            raise tbe_config.TbeInputError(
                f"{n - row['key_n']} record(s) have no record key; an administrator must give "
                "every record a key and re-run diffix.mark_tbe"
            )
        sk = None
        if config.scope_keys is not None and n:  # an empty cell is not perturbed
            group_scope: dict[str, str | None] = {}
            for i, key in enumerate(plan.groups):
                field_name = table.field_of[key.column.name]
                if key.ranged:
                    label = group_values[i]
                    if label is None:
                        raise tbe_config.TbeInputError(
                            f"field {field_name!r}: a value of {key.column.name} is in no "
                            "declared range; an administrator must declare it and re-run "
                            "diffix.mark_tbe"
                        )
                    group_scope[field_name] = label
                else:
                    group_scope[field_name] = row[f"l{i}"]
            # a restricted field's scope: the value names present in the cell, so that every
            # spelling of a condition over the same records has the same scope
            where_scope = {
                name: [
                    v for j, (v, match) in enumerate(matches) if match is None or row[f"w{i}_{j}"]
                ]
                for i, (name, matches) in enumerate(where_scoped)
            }
            sk = config.scope_keys.scope_key(tbe_config.row_scope(where_scope, group_scope))
        cell = tbe.CellInput(
            n=n,
            key_sum=row["key_sum"] if n else 0,
            sums={
                c.name: tbe.SumInput(row[f"s{j}"], tuple(row[f"t{j}"] or ()))
                for j, c in enumerate(plan.summed)
            },
            key_min=row["key_min"],
            key_max=row["key_max"],
        )
        output = tbe.perturb_cell(config, cell, scope_key=sk)
    else:
        config_l = table.laplace_config
        assert config_l is not None
        output = laplace.perturb_cell(
            config_l,
            table.canonical_name,
            laplace.cell_key_from_sum(row["record_key_sum"] if n else 0),
            n,
            {c.name: row[f"s{j}"] for j, c in enumerate(plan.summed)},
        )
    if output is None:
        if plan.groups:
            return None  # an empty group is not output (cannot happen with GROUP BY)
        counts, sums, means = 0, {}, {}
    else:
        counts, sums, means = output.count, output.sums, output.means
    values: list[Any] = []
    for item in plan.items:
        if item.kind == "group":
            assert item.group is not None
            index = plan.groups.index(item.group)
            values.append(group_values[index] if item.group.ranged else row[f"l{index}"])
        elif item.kind == "count":
            values.append(counts)
        else:
            assert item.column is not None
            source = sums if item.kind == "sum" else means
            values.append(source.get(item.column.name))
    return values
