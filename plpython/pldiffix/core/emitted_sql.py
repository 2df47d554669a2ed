"""SQL fragments every mechanism emits around what it releases: the validated FROM tree,
equality filters as a condition, and released rows as a relation. Values go through
core/sqltext.py; types must come from format_type() or a fixed list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.query_model import FromItem, Join, RangeEntry
from pldiffix.core.sqltext import identifier


def from_sql(item: FromItem) -> str:
    """A validated FROM tree (core/query_model.py) as SQL: schema-qualified relations under their
    range variables, join conditions as qualified column equalities."""
    if isinstance(item, RangeEntry):
        relation = item.relation
        return (
            f"{identifier(relation.schema)}.{identifier(relation.name)} AS {identifier(item.alias)}"
        )
    assert isinstance(item, Join)
    left, right = from_sql(item.left), from_sql(item.right)
    kind = {"inner": "INNER", "left": "LEFT", "right": "RIGHT", "full": "FULL"}[item.kind]
    if not item.conditions:
        if item.kind == "inner":
            return f"({left} CROSS JOIN {right})"
        return f"({left} {kind} JOIN {right} ON TRUE)"
    condition = " AND ".join(
        f"{sqltext.render(c.left.to_sql())} OPERATOR(pg_catalog.=) "
        f"{sqltext.render(c.right.to_sql())}"
        for c in item.conditions
    )
    return f"({left} {kind} JOIN {right} ON {condition})"


def equalities_sql(equalities: Iterable[tuple[exp.Expression, exp.Expression]]) -> str:
    """`(subject) = (value) AND ...` for (subject, value) pairs; TRUE for none."""
    terms = [f"({sqltext.render(s)}) = ({sqltext.render(v)})" for s, v in equalities]
    return " AND ".join(terms) if terms else "TRUE"


def typed_literal(text: str | None, sql_type: str) -> str:
    """CAST('text' AS type), or a typed NULL for None."""
    if text is None:
        return f"CAST(NULL AS {sql_type})"
    return sqltext.typed_literal(text, sql_type)


def array_literal(texts: Sequence[str | None]) -> str:
    """A one-dimensional array's text input: every element quoted, NULL for None."""
    return (
        "{"
        + ",".join(
            "NULL" if t is None else '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for t in texts
        )
        + "}"
    )


def rows_relation(
    column_names: Sequence[str],
    column_types: Sequence[str],
    rows: Sequence[Sequence[str | None]],
    repeat_column: str | None,
) -> str:
    """`(SELECT ...)`: the rows as typed literals, optionally each repeated by a count column."""
    names = ", ".join(identifier(n) for n in column_names)
    if rows and not any(t.endswith("]") for t in column_types):
        # One array literal per column: a few tokens for the caller to parse, however many rows.
        columns = ", ".join(
            f"pg_catalog.unnest(CAST({sqltext.literal(array_literal([r[c] for r in rows]))} "
            f"AS {t}[]))"
            for c, t in enumerate(column_types)
        )
        source = f"ROWS FROM ({columns}) AS v({names})"
    elif rows:
        values = ", ".join(
            "("
            + ", ".join(typed_literal(v, t) for v, t in zip(row, column_types, strict=True))
            + ")"
            for row in rows
        )
        source = f"(VALUES {values}) AS v({names})"
    else:
        empty = ", ".join(
            f"{typed_literal(None, t)} AS {identifier(n)}"
            for n, t in zip(column_names, column_types, strict=True)
        )
        source = f"(SELECT {empty} WHERE FALSE) AS v"
    if repeat_column is None:
        return f"(SELECT * FROM {source})"
    return (
        f"(SELECT v.* FROM {source} CROSS JOIN LATERAL "
        f"pg_catalog.generate_series(1, v.{identifier(repeat_column)}) AS repeat(n))"
    )
