"""The SQL of a synthesis, built from the column plans (pure; every name and value quoted by
core/sqltext.py, every type and function schema-qualified)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from pldiffix.core.sqltext import identifier, literal, qualified
from pldiffix.synth.columns import INTEGER_TYPES, Column

SCHEMA = "diffix_synthetic"
CHUNK_ROWS = 100_000
_NEWLINE = "pg_catalog.chr(10)"


def cell_names(modeled: Sequence[Column]) -> list[str]:
    return [f"c{i}" for i in range(len(modeled))]


def marginals_sql(
    schema: str,
    table: str,
    aid: str | None,
    modeled: Sequence[Column],
    contributions: int | None,
    seed: int,
    pairs: bool,
) -> str:
    """Counts of every one-way marginal (and, if `pairs`, every two-way one) in one scan:
    rows (c0, c1, ..., n) of GROUPING SETS, a column that is NULL not being grouped (cells are
    never NULL). With `aid`, rows without a unit are left out and, unless `contributions` is
    None (a unique AID), each unit keeps at most `contributions` rows, chosen by a hash of the
    row's position under a secret seed. Without any modeled column: the row count alone."""
    source = f"{qualified(schema, table)} AS t"
    cells = [column.cell_sql(f"t.{identifier(column.name)}") for column in modeled]
    names = cell_names(modeled)
    items = [f"{cell} AS {name}" for cell, name in zip(cells, names, strict=True)] or ["1 AS one"]
    where = f" WHERE t.{identifier(aid)} IS NOT NULL" if aid is not None else ""
    if aid is not None and contributions is not None:
        rank = (
            f"pg_catalog.row_number() OVER (PARTITION BY t.{identifier(aid)} ORDER BY "
            f"pg_catalog.hashtidextended(t.ctid, {int(seed)})) AS r"
        )
        bounded = (
            f"SELECT * FROM (SELECT {', '.join([*items, rank])} FROM {source}{where}) AS ranked "
            f"WHERE ranked.r OPERATOR(pg_catalog.<=) {int(contributions)}"
        )
    else:
        bounded = f"SELECT {', '.join(items)} FROM {source}{where}"
    if not names:
        return f"WITH bounded AS ({bounded}) SELECT pg_catalog.count(*) AS n FROM bounded"
    sets = [f"({name})" for name in names]
    if pairs:
        sets += [f"({a}, {b})" for a, b in itertools.combinations(names, 2)]
    return (
        f"WITH bounded AS ({bounded}) SELECT {', '.join(names)}, pg_catalog.count(*) AS n "
        f"FROM bounded GROUP BY GROUPING SETS ({', '.join(sets)})"
    )


def create_sql(name: str, columns: Sequence[Column]) -> str:
    """The twin: the table's column names and types (format_type, safe as written)."""
    items = ", ".join(f"{identifier(c.name)} {c.sql_type}" for c in columns)
    return f"CREATE TABLE {qualified(SCHEMA, name)} ({items})"


def rows_sql(columns: Sequence[Column]) -> tuple[str, list[str]]:
    """A SELECT of one chunk of synthetic rows, one output column per column of the twin (named
    as it), from newline-separated payloads (one text parameter per modeled column, the empty
    string for NULL; categorical columns send cell numbers and read their categories from a
    text[] parameter), and the parameters' types. $1 is the first row number of the chunk, $2
    the chunk's row count."""
    types = ["int8", "int8"]
    sources = [
        "pg_catalog.generate_series($1, $1 OPERATOR(pg_catalog.+) $2 OPERATOR(pg_catalog.-) 1)"
    ]
    values = []
    for column in columns:
        target = column.sql_type
        if column.kind in ("binned", "categorical"):
            types.append("text")
            payload = f"v{len(sources)}"
            sources.append(
                f"pg_catalog.unnest(pg_catalog.string_to_array(${len(types)}, {_NEWLINE}, ''))"
            )
            if column.kind == "binned":
                values.append(f"CAST(u.{payload} AS {target})")
            else:
                types.append("text[]")
                values.append(
                    f"CAST((${len(types)})[CAST(u.{payload} AS pg_catalog.int4)] AS {target})"
                )
        elif column.kind == "identifier" and target in INTEGER_TYPES:
            values.append(f"CAST(u.n AS {target})")
        elif column.kind in ("identifier", "placeholder"):
            text = f"{literal('synthetic_')} OPERATOR(pg_catalog.||) CAST(u.n AS pg_catalog.text)"
            values.append(f"CAST({text} AS {target})")
        else:
            values.append(f"CAST(NULL AS {target})")
    aliases = ["n", *(f"v{i}" for i in range(1, len(sources)))]
    named = ", ".join(f"{v} AS {identifier(c.name)}" for v, c in zip(values, columns, strict=True))
    sql = f"SELECT {named} FROM ROWS FROM ({', '.join(sources)}) AS u({', '.join(aliases)})"
    return sql, types


def insert_sql(name: str, columns: Sequence[Column]) -> tuple[str, list[str]]:
    """INSERT of one chunk of `rows_sql` into the twin, and the parameters' types."""
    select, types = rows_sql(columns)
    targets = ", ".join(identifier(c.name) for c in columns)
    return f"INSERT INTO {qualified(SCHEMA, name)} ({targets}) {select}", types


def sample_sql(columns: Sequence[Column]) -> tuple[str, list[str]]:
    """One chunk of `rows_sql` as jsonb objects (column "row"), and the parameters' types."""
    select, types = rows_sql(columns)
    return f"SELECT pg_catalog.to_jsonb(s) AS row FROM ({select}) AS s", types


def matches_sql(schema: str, table: str, twin: str, modeled: Sequence[Column]) -> str:
    """How many rows of the twin equal some row of the source on every modeled column (NULL
    equals nothing)."""
    columns = ", ".join(identifier(c.name) for c in modeled)
    synthetic = ", ".join(f"s.{identifier(c.name)}" for c in modeled)
    return (
        f"SELECT pg_catalog.count(*) AS n FROM {qualified(SCHEMA, twin)} AS s "
        f"WHERE ({synthetic}) IN (SELECT {columns} FROM {qualified(schema, table)})"
    )
