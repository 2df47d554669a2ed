"""The rewriter's SQL fragments: an anonymizing query's WHERE and label types (its FROM is
core/emitted_sql.py's `from_sql`), canonical texts of values, conversions that cannot fail, and
the analyst's statement turned into a SELECT over the anonymized rows (`replace_by_rows`). The
per-bucket query is built in `bucket_query.py`, seed material in `seed_material.py`, the rows
themselves by core/emitted_sql.py.

Everything emitted by the rewriter (these modules and the aggregates' modules under
anonymization/) comes from the validated model: schema-qualified relations from the catalog,
column references qualified by the validator, sqlglot-generated generalizations and literals,
and names of our own. No text of the analyst's query is pasted.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.emitted_sql import equalities_sql, from_sql
from pldiffix.core.query_model import AnonymizingQuery
from pldiffix.core.sqltext import identifier
from pldiffix.diffix.anonymization.bucket_columns import LABEL, numbered

NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})
TEXT_LABEL_TYPES = frozenset({"text", "varchar", "bpchar", "cstring"})

# Our own column names; prefixed so that they cannot clash with an analyst's output names.
BUCKETS_ALIAS = "__pldiffix_b"


def sql(node: exp.Expression) -> str:
    return sqltext.render(node)


@dataclass(frozen=True)
class SqlType:
    """A result type as the catalog knows it."""

    oid: int
    sql_type: str  # format_type(), usable in CAST
    name: str  # normalized type name (int4, timestamptz, ...)
    category: str  # pg_type.typcategory

    @property
    def is_datetime(self) -> bool:
        return self.category == "D"

    @property
    def is_text(self) -> bool:
        return self.name in TEXT_LABEL_TYPES


# --- WHERE, label types --------------------------------------------------------------------------


def where_sql(model: AnonymizingQuery) -> str:
    """The model's filters as a condition."""
    return equalities_sql((f.subject.emitted, f.value) for f in model.filters)


def label_types_sql(model: AnonymizingQuery) -> str:
    """A query that reads no row and tells the label types (via the result's column types)."""
    if not model.groups:
        return "SELECT"
    columns = ", ".join(
        f"{sql(g.emitted)} AS {identifier(numbered(LABEL, k))}" for k, g in enumerate(model.groups)
    )
    return f"SELECT {columns} FROM {from_sql(model.from_tree)} WHERE FALSE"


# --- canonical texts (seed material) -------------------------------------------------------------


def canonical_sql(expression: str, typ: SqlType | str) -> tuple[str, str]:
    """SQL whose value Python turns into pg_diffix's seed text, and how (see `canonical_text`)."""
    name = typ.name if isinstance(typ, SqlType) else typ
    datetime = typ.is_datetime if isinstance(typ, SqlType) else name in _DATETIME
    if name == "numeric":
        return float8_of_numeric(expression), "number"
    if name in NUMERIC_TYPES:
        return f"({expression})::pg_catalog.float8", "number"
    if name == "timestamptz":
        return f"pg_catalog.to_json(({expression}) AT TIME ZONE 'UTC') #>> '{{}}'", "utc"
    if datetime:
        return f"pg_catalog.to_json({expression}) #>> '{{}}'", "text"
    if name == "bool":
        return f"({expression})::pg_catalog.bool", "bool"
    return f"({expression})::pg_catalog.text", "text"


_DATETIME = frozenset({"date", "time", "timetz", "timestamp", "timestamptz"})


# --- conversions that cannot fail (an error only some row triggers tells of that row) ------------


def float8_of_numeric(expression: str) -> str:
    """A numeric as float8 without the errors of `::float8`: NULL beyond float8's range, 0 when
    so small that it would be 0."""
    x = f"(({expression})::pg_catalog.numeric)"
    return (
        f"CASE WHEN pg_catalog.abs({x}) OPERATOR(pg_catalog.>) 1.7976931348623157e308 AND "
        f"pg_catalog.abs({x}) OPERATOR(pg_catalog.<) 'Infinity' THEN NULL::pg_catalog.float8 "
        f"WHEN pg_catalog.abs({x}) OPERATOR(pg_catalog.<) 1e-300 THEN 0::pg_catalog.float8 "
        f"ELSE {x}::pg_catalog.float8 END"
    )


def canonical_value(value: Any, how: str) -> Any:
    """The Python value `label_material` must see for a value fetched with `canonical_sql`."""
    if value is None:
        return None
    if how == "utc" and value not in ("infinity", "-infinity"):
        return value + "+00:00"
    return value


# --- anonymized rows as a relation ---------------------------------------------------------------


def value_text(value: Any) -> str | None:
    """Text input for a Python value of an aggregate result."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple):
        return "{" + ",".join(value_text(v) or "NULL" for v in value) + "}"
    return str(value)


def replace_by_rows(
    model: AnonymizingQuery, placeholder: str, label_names: list[str], aggregate_names: list[str]
) -> None:
    """Turns `model.node` in place into a SELECT over the anonymized rows.

    Aggregates become columns, grouping expressions become label columns; the output list keeps
    its names; HAVING becomes WHERE; ORDER BY gets the emit order (suppress bin first) as its
    last key; LIMIT/OFFSET/DISTINCT stay.
    """
    node = model.node

    def column(name: str) -> exp.Column:
        return exp.column(name, table=BUCKETS_ALIAS, quoted=True)

    for aggregate, name in zip(model.aggregates, aggregate_names, strict=False):
        aggregate.node.replace(column(name))

    groups = [(g.expression, label_names[k]) for k, g in enumerate(model.groups)]

    def substitute(item: exp.Expression) -> exp.Expression:
        for expression, name in groups:
            if item == expression:
                return column(name)
        return item

    outputs = []
    for index, item in enumerate(node.expressions):
        inner = item.this if isinstance(item, exp.Alias) else item
        output = model.outputs[index] if index < len(model.outputs) else None
        if output is not None and output.group_index is not None:
            new = column(label_names[output.group_index])
        else:
            new = inner.transform(substitute, copy=False)
        name = output.name if output is not None else item.alias_or_name
        outputs.append(exp.alias_(new, name, quoted=True))
    node.set("expressions", outputs)
    having = node.args.get("having")
    node.set("having", None)
    node.set("group", None)
    node.set("joins", None)
    node.set("where", None)
    if having is not None:
        node.set("where", exp.Where(this=having.this.transform(substitute, copy=False)))
    node.set(
        "from_",
        exp.From(
            this=exp.Table(
                this=exp.to_identifier(placeholder, quoted=True),
                alias=exp.TableAlias(this=exp.to_identifier(BUCKETS_ALIAS, quoted=True)),
            )
        ),
    )
    order = node.args.get("order")
    keys = []
    if order is not None:
        keys = [k.transform(substitute, copy=False) for k in order.expressions]
    if not node.args.get("distinct") and not isinstance(node.parent, exp.SetOperation):
        keys.append(exp.Ordered(this=column("__i")))
    node.set("order", exp.Order(expressions=keys) if keys else None)
