"""PostgreSQL's type names and categories, as the mechanisms read catalog types. Pure.

Types are named by their `pg_type.typname` (int4, float8, timestamptz, ...); `normalize_type`
turns a `format_type` spelling into that name.
"""

from __future__ import annotations

import re

INTEGER_TYPES = frozenset({"int2", "int4", "int8"})
REAL_TYPES = frozenset({"float4", "float8", "numeric"})
NUMERIC_TYPES = INTEGER_TYPES | REAL_TYPES
DATETIME_TYPES = frozenset({"date", "time", "timetz", "timestamp", "timestamptz"})
STRING_TYPES = frozenset({"text", "varchar", "bpchar", "name"})
UNKNOWN = "unknown"  # an untyped literal ('...' or NULL) that adapts to its context

_ALIASES = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "real": "float4",
    "double precision": "float8",
    "float": "float8",
    "decimal": "numeric",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "boolean": "bool",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
    "smallserial": "int2",
    "serial": "int4",
    "bigserial": "int8",
}


def normalize_type(name: str) -> str:
    """Normalize a catalog type name (`format_type` or `typname` spelling) to its typname."""
    text = re.sub(r"\s+", " ", name.strip().lower())
    text = re.sub(r"\(.*?\)", "", text).strip()  # drop typmods: varchar(20), numeric(10,2)
    if text.startswith("pg_catalog."):
        text = text[len("pg_catalog.") :]
    text = text.replace('"', "")
    if text.endswith("[]"):
        return text
    return _ALIASES.get(text, text)


def category(typ: str | None) -> str:
    """PostgreSQL type category letter (N numeric, S string, D datetime, T timespan, ...)."""
    if typ in NUMERIC_TYPES:
        return "N"
    if typ in STRING_TYPES:
        return "S"
    if typ in DATETIME_TYPES:
        return "D"
    if typ == "interval":
        return "T"
    if typ == "bool":
        return "B"
    if typ == UNKNOWN:
        return "X"
    return "U"
