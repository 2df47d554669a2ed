"""Analyst queries over cell-key (TBE or Laplace) tables: SQL, perturbation, the answer.

The query is checked and planned by plan.py. SQL generated from catalog identifiers and
parameters only aggregates each cell (docs/tbe.md, "What the SQL side computes per cell"); Python
perturbs each cell with tbe.perturb_cell or laplace.perturb_cell; the perturbed cells return as a
rows relation in a post-processing query that applies the ORDER BY, LIMIT and OFFSET
(plan.post_processing, core/mechanism.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pldiffix.cellkey import laplace, tbe, tbe_config
from pldiffix.cellkey.config import load
from pldiffix.cellkey.plan import Condition, GroupKey, Plan, plan_query, post_processing
from pldiffix.cellkey.table import CellKeyTable, Column
from pldiffix.core import context
from pldiffix.core.mechanism import Release
from pldiffix.core.statements import QueryError


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


def _as_text(value: Any) -> str | None:
    """A perturbed value as the text of its SQL type (group values arrive as text already)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
