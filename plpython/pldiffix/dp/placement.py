"""The released rows of a DP query in the analyst's statement: where they go (the DP subquery
replaced by a marker, its ORDER BY, LIMIT and OFFSET applied to the released rows) and the
statement the caller runs over them with its own privileges (a rows relation).

`place` runs before any data is read or charged, so that nothing can fail between the charge
and the answer.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from pldiffix.core import catalog, ledger, sqltext
from pldiffix.core.emitted_sql import rows_relation
from pldiffix.core.statements import QueryError
from pldiffix.dp import markers, planner, release
from pldiffix.dp.query import DpQuery

_PLACEHOLDER = "__pldiffix_dp_rows"


@dataclass(frozen=True)
class Placement:
    """Where the released rows go: the analyst's statement with the DP subquery replaced by
    `SELECT * FROM <marker> AS <alias>` and the DP subquery's own ORDER BY, LIMIT and OFFSET,
    and the SQL types of the grouping values. Prepared before any data is read, so that nothing
    can fail between the charge and the answer."""

    template: str | None  # None: the rows themselves are the whole statement
    marker: str
    group_types: list[str]


def place(plpy: Any, query: DpQuery, plan: planner.Plan) -> Placement:
    marker = f"{_PLACEHOLDER}_{secrets.token_hex(8)}"
    types = _group_types(plpy, plan)
    clauses = finishing(query)
    if query.node is query.tree and not clauses:
        return Placement(None, marker, types)
    replacement = exp.select("*").from_(exp.to_table(marker).as_(_PLACEHOLDER))
    for key, clause in clauses.items():
        replacement.set(key, clause)
    tree = replacement if query.node is query.tree else query.tree
    query.node.replace(replacement)  # (the root has no parent to be replaced in)
    template = tree.sql(dialect=sqltext.POSTGRES)
    if template.count(marker) != 1 or template.count(f"FROM {marker} AS {_PLACEHOLDER}") != 1:
        raise QueryError("the DP subquery cannot be placed in this statement")
    return Placement(template, marker, types)


def finishing(query: DpQuery) -> dict[str, exp.Expression]:
    """The DP subquery's ORDER BY, LIMIT (or FETCH) and OFFSET, rewritten to apply to its
    released rows. They are post-processing: the aggregation never sees them (a LIMIT there
    would decide which rows are counted), and ordering released values costs no privacy."""
    node = query.node
    clauses: dict[str, exp.Expression] = {}
    order = node.args.get("order")
    if order is not None:
        ordered = [_by_position(key, query) for key in order.expressions]
        clauses["order"] = exp.Order(expressions=ordered)
    for key in ("limit", "offset"):
        clause = node.args.get(key)
        if clause is None:
            continue
        if any(clause.find_all(exp.Column, exp.Table, exp.Select, exp.Subquery)):
            raise QueryError(
                f"{key.upper()} of a DP query takes a constant",
                fragment=clause.sql(dialect=sqltext.POSTGRES),
                hint="write a number, e.g. LIMIT 10",
            )
        clauses[key] = clause.copy()
    return clauses


def _by_position(key: exp.Expression, query: DpQuery) -> exp.Ordered:
    """An ORDER BY key of the DP subquery as the position of the select item it names (an
    output name, a position, or an expression of the select list): the released rows have the
    select list's columns, under names that need not be unique."""
    ordered = key.copy() if isinstance(key, exp.Ordered) else exp.Ordered(this=key.copy())
    target = ordered.this
    items = query.node.expressions
    text = target.sql(dialect=sqltext.POSTGRES)
    if isinstance(target, exp.Literal) and not target.is_string:
        positions = [int(text)] if text.isdigit() and 1 <= int(text) <= len(items) else []
    elif (
        isinstance(target, exp.Column)
        and not target.table
        and any(output.name == target.name for output in query.outputs)
    ):
        positions = [i for i, o in enumerate(query.outputs, start=1) if o.name == target.name]
    else:
        shown = [item.this if isinstance(item, exp.Alias) else item for item in items]
        positions = [
            i
            for i, item in enumerate(shown, start=1)
            if item.sql(dialect=sqltext.POSTGRES) == text or _same_column(item, target)
        ][:1]
    if len(positions) != 1:
        raise QueryError(
            f"ORDER BY {text} names {'several' if positions else 'no'} columns of the select "
            "list; a DP query's rows are ordered after their release, by their columns",
            fragment=text,
            hint="order by an output name or position, or add the expression to the select list",
        )
    ordered.set("this", exp.Literal.number(positions[0]))
    return ordered


def _same_column(item: exp.Expression, target: exp.Expression) -> bool:
    """`city` and `v.city` name the same column of the one table a DP subquery reads."""
    return (
        isinstance(item, exp.Column) and isinstance(target, exp.Column) and item.name == target.name
    )


def post_processing(
    placement: Placement,
    query: DpQuery,
    rows: list[release.Released],
    remaining: ledger.Remaining,
) -> str:
    """The analyst's statement with the DP subquery replaced by its released rows."""
    columns = []
    for output in query.outputs:
        if output.group_index is not None:
            index = output.group_index
            values = [row.keys[index] for row in rows]
            columns.append((output.name, placement.group_types[index], values))
        elif output.marker == markers.BUDGET_MARKER:
            columns.append((output.name, "double precision", [remaining.epsilon] * len(rows)))
        elif output.marker is not None:
            assert output.aggregate_index is not None
            bound = markers.INTERVAL_MARKERS.index(output.marker)
            intervals = [row.values[output.aggregate_index].interval for row in rows]
            values = [None if i is None else float(i[bound]) for i in intervals]
            columns.append((output.name, "double precision", values))
        else:
            assert output.aggregate_index is not None
            kind = query.aggregates[output.aggregate_index].kind
            counted = kind in ("count_star", "count", "count_units")
            sql_type = "bigint" if counted else "double precision"
            values = [row.values[output.aggregate_index].value for row in rows]
            columns.append((output.name, sql_type, values))
    rows_sql = rows_relation(
        [name for name, _, _ in columns],
        [sql_type for _, sql_type, _ in columns],
        [[_as_text(values[i]) for _, _, values in columns] for i in range(len(rows))],
        None,
    )
    if placement.template is None:
        return rows_sql
    return placement.template.replace(placement.marker, rows_sql)


def _group_types(plpy: Any, plan: planner.Plan) -> list[str]:
    """The SQL types of the grouping values, as PostgreSQL types them in the plan's SQL."""
    if not plan.group_count:
        return []
    shape = plpy.execute(f"SELECT * FROM ({plan.sql}) AS q LIMIT 0")
    oids = shape.coltypes()[: plan.group_count]
    typmods = shape.coltypmods()[: plan.group_count]
    return catalog.type_names(plpy, oids, typmods)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
