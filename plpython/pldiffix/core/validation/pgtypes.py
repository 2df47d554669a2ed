"""Just enough of PostgreSQL's type system to validate generalizations.

Types are named by their `pg_type.typname` (int4, float8, timestamptz, ...). The rules mirror what
the PostgreSQL parser does before pg_diffix sees a query: which casts exist implicitly, which
casts are plain re-labelings, and which are conversions through a function. The type names,
their normal spelling and categories are core/pgtypes.py's (DP uses them too).
"""

from __future__ import annotations

import enum
import math
import re

from sqlglot import exp

from pldiffix.core.pgtypes import (
    DATETIME_TYPES,
    INTEGER_TYPES,
    NUMERIC_TYPES,
    REAL_TYPES,
    STRING_TYPES,
    UNKNOWN,
    normalize_type,
)

_DTYPE_NAMES: dict[exp.DataType.Type, str] = {
    exp.DataType.Type.SMALLINT: "int2",
    exp.DataType.Type.INT: "int4",
    exp.DataType.Type.BIGINT: "int8",
    exp.DataType.Type.FLOAT: "float4",
    exp.DataType.Type.DOUBLE: "float8",
    exp.DataType.Type.DECIMAL: "numeric",
    exp.DataType.Type.TEXT: "text",
    exp.DataType.Type.VARCHAR: "varchar",
    exp.DataType.Type.CHAR: "bpchar",
    exp.DataType.Type.BPCHAR: "bpchar",
    exp.DataType.Type.NAME: "name",
    exp.DataType.Type.DATE: "date",
    exp.DataType.Type.TIME: "time",
    exp.DataType.Type.TIMETZ: "timetz",
    exp.DataType.Type.TIMESTAMP: "timestamp",
    exp.DataType.Type.TIMESTAMPTZ: "timestamptz",
    exp.DataType.Type.INTERVAL: "interval",
    exp.DataType.Type.BOOLEAN: "bool",
    exp.DataType.Type.VARBINARY: "bytea",
    exp.DataType.Type.MONEY: "money",
    exp.DataType.Type.JSON: "json",
    exp.DataType.Type.JSONB: "jsonb",
    exp.DataType.Type.UUID: "uuid",
}


def datatype_name(dtype: exp.DataType) -> tuple[str, bool]:
    """(typname, has_typmod) of a sqlglot DataType as PostgreSQL would read it."""
    kind = dtype.this
    if kind == exp.DataType.Type.ARRAY:
        inner = dtype.expressions[0] if dtype.expressions else None
        inner_name = datatype_name(inner)[0] if isinstance(inner, exp.DataType) else "unknown"
        return inner_name + "[]", False
    if kind == exp.DataType.Type.USERDEFINED:
        return normalize_type(
            dtype.args["kind"].name if dtype.args.get("kind") else "unknown"
        ), bool(dtype.expressions)
    name = _DTYPE_NAMES.get(kind, kind.value.lower())
    has_typmod = bool(dtype.expressions)
    if name == "bpchar" and kind == exp.DataType.Type.CHAR:
        has_typmod = True  # plain `char` means char(1)
    if name == "float8" and dtype.expressions:
        # float(p) is real for p <= 24 and double precision above; no typmod either way
        param = dtype.expressions[0]
        try:
            precision = int(param.name)
        except ValueError:
            precision = 53
        return ("float4" if precision <= 24 else "float8"), False
    return name, has_typmod


PREFERRED_TYPES = frozenset({"float8", "text", "timestamptz", "interval", "bool"})

_IMPLICIT: dict[str, frozenset[str]] = {
    "int2": frozenset({"int4", "int8", "float4", "float8", "numeric"}),
    "int4": frozenset({"int8", "float4", "float8", "numeric"}),
    "int8": frozenset({"float4", "float8", "numeric"}),
    "float4": frozenset({"float8"}),
    "numeric": frozenset({"float4", "float8"}),
    "date": frozenset({"timestamp", "timestamptz"}),
    "timestamp": frozenset({"timestamptz"}),
    "time": frozenset({"interval", "timetz"}),
    "varchar": frozenset({"text", "bpchar"}),
    "bpchar": frozenset({"text", "varchar"}),
    "text": frozenset({"varchar", "bpchar"}),
    "name": frozenset({"text"}),
}


def implicitly_castable(src: str | None, dst: str) -> bool:
    """Whether a value of type `src` can be passed where `dst` is expected."""
    if src is None:
        return False
    return src in (dst, UNKNOWN) or dst in _IMPLICIT.get(src, frozenset())


class CastKind(enum.Enum):
    """How PostgreSQL implements a conversion, and what pg_diffix makes of it."""

    NONE = "none"  # same type or an untyped literal: no node at all
    RELABEL = "relabel"  # binary coercible (varchar -> text): transparent
    FUNCTION = "function"  # conversion function that pg_diffix treats as transparent
    TO_TEXT = "to_text"  # date/time to text through I/O: transparent
    ROUNDING = "rounding"  # real -> integer: itself a generalization
    NOT_TO_TEXT = "not_to_text"  # any other type to text through I/O: rejected
    OTHER = "other"  # any other conversion function: rejected


# Numeric conversions pg_diffix looks through (int2 <-> int8 are missing there, so are here).
_TRANSPARENT_NUMERIC = frozenset(
    {
        ("int2", "float8"),
        ("int2", "float4"),
        ("int2", "int4"),
        ("int4", "int2"),
        ("int4", "float8"),
        ("int4", "float4"),
        ("int8", "float8"),
        ("int8", "float4"),
        ("int4", "int8"),
        ("int8", "int4"),
        ("float4", "float8"),
        ("float8", "float4"),
        ("int2", "numeric"),
        ("int4", "numeric"),
        ("int8", "numeric"),
        ("float4", "numeric"),
        ("float8", "numeric"),
        ("numeric", "float4"),
        ("numeric", "float8"),
    }
)


def classify_cast(src: str | None, dst: str, dst_typmod: bool = False) -> CastKind:
    """Classify the conversion of a value of type `src` to `dst`."""
    if src == UNKNOWN:
        return CastKind.NONE
    if src == dst:
        return CastKind.OTHER if dst_typmod else CastKind.NONE
    if src is None:
        return CastKind.OTHER
    if dst_typmod:
        return CastKind.OTHER  # a length/precision coercion function sits on top
    if src in NUMERIC_TYPES and dst in NUMERIC_TYPES:
        if (src, dst) in _TRANSPARENT_NUMERIC:
            return CastKind.FUNCTION
        if src in REAL_TYPES and dst in INTEGER_TYPES:
            return CastKind.ROUNDING
        return CastKind.OTHER
    if src in ("varchar", "text") and dst in ("varchar", "text", "bpchar"):
        return CastKind.RELABEL
    if src == "bpchar" and dst == "varchar":
        return CastKind.RELABEL
    if src == "date" and dst == "timestamptz":
        return CastKind.FUNCTION
    if dst in STRING_TYPES and dst != "name":
        return CastKind.TO_TEXT if src in DATETIME_TYPES else CastKind.NOT_TO_TEXT
    return CastKind.OTHER


def literal_type(node: exp.Literal) -> str:
    """Type PostgreSQL gives to a literal token."""
    if node.is_string:
        return UNKNOWN
    text = node.this
    if re.fullmatch(r"\d+", text):
        value = int(text)
        if value <= 2**31 - 1:
            return "int4"
        if value <= 2**63 - 1:
            return "int8"
        return "numeric"
    return "numeric"


def literal_number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def money_neighbours(x: float) -> tuple[float, float]:
    """The money-style values just below and above x, for hints."""
    if x <= 0:
        return 1.0, 1.0
    tens = 10.0 ** math.floor(math.log10(x))
    candidates = sorted({tens * s for s in (0.5, 1, 2, 5, 10, 20)})
    below = max((c for c in candidates if c <= x), default=candidates[0])
    above = min((c for c in candidates if c >= x), default=candidates[-1])
    return below, above


def format_number(x: float) -> str:
    if x == int(x) and abs(x) < 1e18:
        return str(int(x))
    return f"{x:.15g}"


def type_display(typ: str | None) -> str:
    """A type name as PostgreSQL spells it in messages (integer, not int4)."""
    names = {
        "int2": "smallint",
        "int4": "integer",
        "int8": "bigint",
        "float4": "real",
        "float8": "double precision",
        "bpchar": "character",
        "varchar": "character varying",
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
        "time": "time without time zone",
        "timetz": "time with time zone",
        "bool": "boolean",
    }
    if typ is None:
        return "?"
    return names.get(typ, typ)
