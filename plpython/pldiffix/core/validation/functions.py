"""Generalizing functions, their PostgreSQL overloads, and the anonymizing aggregates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.pgtypes import UNKNOWN, category

from .pgtypes import PREFERRED_TYPES, implicitly_castable

# What the untrusted access level allows for an overload:
#   "ok"        always
#   "start_1"   only with a constant start position of 1 (substring)
#   "money"     only with a money-style bin size (1, 2, 5 times a power of ten)
#   "no"        never
UntrustedRule = Literal["ok", "start_1", "money", "no"]


@dataclass(frozen=True)
class Signature:
    params: tuple[str, ...]
    result: str
    allowed: bool  # whether pg_diffix accepts this overload as a generalization
    untrusted: UntrustedRule = "no"


# Overloads as PostgreSQL has them; `allowed=False` ones exist but do not generalize safely
# (date_trunc on intervals, zoned date_trunc, regular-expression substring, ...).
SIGNATURES: dict[str, tuple[Signature, ...]] = {
    "round": (
        Signature(("float8",), "float8", True, "ok"),
        Signature(("numeric",), "numeric", True, "no"),
        Signature(("numeric", "int4"), "numeric", True, "ok"),
    ),
    "ceil": (
        Signature(("float8",), "float8", True),
        Signature(("numeric",), "numeric", True),
    ),
    "floor": (
        Signature(("float8",), "float8", True, "ok"),
        Signature(("numeric",), "numeric", True, "ok"),
    ),
    "width_bucket": (
        Signature(("float8", "float8", "float8", "int4"), "int4", True),
        Signature(("numeric", "numeric", "numeric", "int4"), "int4", True),
    ),
    "substring": (
        Signature(("text", "int4", "int4"), "text", True, "start_1"),
        Signature(("text", "int4"), "text", True, "start_1"),
        Signature(("bytea", "int4", "int4"), "bytea", True, "start_1"),
        Signature(("bytea", "int4"), "bytea", True, "start_1"),
        Signature(("text", "text"), "text", False),
        Signature(("text", "text", "text"), "text", False),
    ),
    "date_trunc": (
        Signature(("text", "timestamp"), "timestamp", True),
        Signature(("text", "timestamptz"), "timestamptz", True),
        Signature(("text", "interval"), "interval", False),
        Signature(("text", "timestamptz", "text"), "timestamptz", False),
    ),
    "extract": (
        Signature(("text", "date"), "numeric", True),
        Signature(("text", "timestamp"), "numeric", True),
        Signature(("text", "timestamptz"), "numeric", True),
        Signature(("text", "time"), "numeric", False),
        Signature(("text", "timetz"), "numeric", False),
        Signature(("text", "interval"), "numeric", False),
    ),
    "floor_by": (
        Signature(("numeric", "numeric"), "numeric", True, "money"),
        Signature(("float8", "float8"), "float8", True, "money"),
    ),
    # The analyst guide forbids round_by for untrusted analysts (pg_diffix itself accepts it).
    "round_by": (
        Signature(("numeric", "numeric"), "numeric", True, "no"),
        Signature(("float8", "float8"), "float8", True, "no"),
    ),
    "ceil_by": (
        Signature(("numeric", "numeric"), "numeric", True),
        Signature(("float8", "float8"), "float8", True),
    ),
}

# Index of the argument that must be the column.
PRIMARY_ARG = {"date_trunc": 1, "extract": 1}

DIFFIX_GENERALIZERS = frozenset({"floor_by", "round_by", "ceil_by"})
_PG_GENERALIZER_NAMES = {
    "round": "round",
    "ceil": "ceil",
    "ceiling": "ceil",
    "floor": "floor",
    "width_bucket": "width_bucket",
    "substring": "substring",
    "substr": "substring",
    "date_trunc": "date_trunc",
    "date_part": "extract",
    "extract": "extract",
}


@dataclass(frozen=True)
class GeneralizerCall:
    """A call to one of the generalizing function families with its SQL-order arguments."""

    family: str
    args: tuple[exp.Expression, ...]
    node: exp.Expression


def generalizer_call(node: exp.Expression, schema: str | None) -> GeneralizerCall | None:
    """Recognize a call of a generalizing function family.

    `schema` is where an Anonymous call resolved (None for sqlglot's typed built-ins).
    """
    args: list[exp.Expression | None]
    if isinstance(node, exp.Substring):
        args = [node.this, node.args.get("start"), node.args.get("length")]
        family = "substring"
    elif isinstance(node, exp.Round):
        args = [node.this, node.args.get("decimals")]
        family = "round"
    elif isinstance(node, exp.Ceil):
        args = [node.this, node.args.get("decimals")]
        family = "ceil"
    elif isinstance(node, exp.Floor):
        args = [node.this, node.args.get("decimals")]
        family = "floor"
    elif isinstance(node, exp.WidthBucket):
        args = [
            node.this,
            node.args.get("min_value"),
            node.args.get("max_value"),
            node.args.get("num_buckets"),
        ]
        family = "width_bucket"
    elif isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
        args = [node.args.get("unit"), node.this, node.args.get("zone")]
        family = "date_trunc"
    elif isinstance(node, exp.Extract):
        args = [node.this, node.expression]
        family = "extract"
    elif isinstance(node, exp.Anonymous) and schema is not None:
        name = node.name.lower()
        if schema == "diffix" and name in DIFFIX_GENERALIZERS:
            family = name
        elif schema == "pg_catalog" and name in _PG_GENERALIZER_NAMES:
            family = _PG_GENERALIZER_NAMES[name]
        else:
            return None
        args = list(node.expressions)
    else:
        return None
    return GeneralizerCall(family, tuple(a for a in args if a is not None), node)


def choose_signature(family: str, arg_types: list[str | None]) -> Signature | None:
    """Pick the overload PostgreSQL would pick for arguments of these types (None if none)."""
    candidates = [
        s
        for s in SIGNATURES[family]
        if len(s.params) == len(arg_types)
        and all(implicitly_castable(a, p) for a, p in zip(arg_types, s.params, strict=True))
    ]
    if not candidates:
        return None

    def rank(sig: Signature) -> tuple[int, int]:
        exact = sum(1 for a, p in zip(arg_types, sig.params, strict=True) if a == p)
        preferred = sum(
            1
            for a, p in zip(arg_types, sig.params, strict=True)
            if a not in (p, UNKNOWN) and p in PREFERRED_TYPES and category(p) == category(a)
        )
        return exact, preferred

    return max(candidates, key=rank)


def family_display(family: str) -> str:
    return f"diffix.{family}" if family in DIFFIX_GENERALIZERS else family


def family_example(family: str) -> str:
    """A call of the generalizer family, to show in hints."""
    return {
        "substring": "substring(col, 1, 3)",
        "round": "round(col)",
        "ceil": "ceil(col)",
        "floor": "floor(col)",
        "width_bucket": "width_bucket(col, 0, 100, 10)",
        "date_trunc": "date_trunc('month', col)",
        "extract": "extract(year FROM col)",
        "floor_by": "diffix.floor_by(col, 10)",
        "round_by": "diffix.round_by(col, 10)",
        "ceil_by": "diffix.ceil_by(col, 10)",
    }.get(family, "floor(col)")


# --------------------------------------------------------------------------------------------------
# Function names
# --------------------------------------------------------------------------------------------------

# Built-in syntax that sqlglot models as functions but PostgreSQL has no pg_proc entry for.
SYNTAX_NOT_FUNCTIONS = frozenset(
    {"cast", "coalesce", "nullif", "greatest", "least", "array", "row", "case", "if", "exists"}
)

_LEADING_NAME = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_$]*|"[^"]+")\s*\(')


def builtin_name(node: exp.Func) -> str | None:
    """The PostgreSQL name of a sqlglot typed function node, as it will be rendered."""
    if isinstance(node, exp.Extract):
        return "extract"
    try:
        text = sqltext.render(node)
    except Exception:
        return None
    match = _LEADING_NAME.match(text)
    if match is None:
        return None
    return match.group(1).strip('"').lower()


# Set-returning functions sqlglot knows as typed nodes.
SRF_NODES: tuple[type[exp.Expression], ...] = (exp.ExplodingGenerateSeries, exp.Unnest, exp.Explode)

# The aggregates pg_diffix can anonymize.
DIFFIX_AGGREGATES = frozenset(
    {"count_noise", "sum_noise", "avg_noise", "count_histogram", "is_suppress_bin"}
)
