"""The perturbed view's SQL, generated from validated rules. Pure.

Every cell's noise is a pure function of the secret key, the table's tag, the column and the
row key: sha256(column key || row key) where the column key is sha256(secret/tag/column). The
column key is a scalar subquery on diffix.microdata_key, which PostgreSQL evaluates once per
query (an InitPlan) with the view owner's privileges; the key never appears in the view text.
Per row, only sha256 and arithmetic run in the executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.perturb.config import Category, Column, Rule

_BASE = "t"  # alias of the base table in the view
_NOISE = "n"  # alias of the per-row hashes
_TWO_48 = "281474976710656.0"  # 2^48: 48 hash bits make one uniform


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _float(value: float) -> str:
    return repr(float(value))


def column_key(tag: str, column: str) -> str:
    """The per-column noise key: one InitPlan per query, read with the view owner's rights."""
    material = quote_literal(f"/{tag}/{column}")
    return (
        "(SELECT pg_catalog.sha256(pg_catalog.convert_to(k.secret || "
        f"{material}, 'UTF8')) FROM diffix.microdata_key k)"
    )


def pseudonym_key(domain: str) -> str:
    """Pseudonyms depend on the key and the domain only, so that equal values join."""
    material = quote_literal(f"/pseudonym/{domain}")
    return (
        "(SELECT pg_catalog.sha256(pg_catalog.convert_to(k.secret || "
        f"{material}, 'UTF8')) FROM diffix.microdata_key k)"
    )


def _row_hash(key: str, value_sql: str) -> str:
    return (
        f"pg_catalog.sha256({key} || pg_catalog.convert_to(({value_sql})::pg_catalog.text, 'UTF8'))"
    )


def uniform(hash_sql: str, offset: int) -> str:
    """A uniform draw in (0, 1) from 48 bits of the hash starting at byte `offset`."""
    return (
        f"(((('x' || pg_catalog.encode(pg_catalog.substr({hash_sql}, {offset + 1}, 6), 'hex'))"
        f"::pg_catalog.bit(48)::pg_catalog.int8)::pg_catalog.float8 + 0.5) / {_TWO_48})"
    )


def _symmetric(hash_sql: str) -> str:
    """A uniform draw in (-1, 1)."""
    return f"(2.0 * {uniform(hash_sql, 0)} - 1.0)"


def _gaussian(hash_sql: str) -> str:
    """A standard normal draw (Box-Muller on two independent uniforms of the same hash)."""
    return (
        f"(pg_catalog.sqrt(-2.0 * pg_catalog.ln({uniform(hash_sql, 0)})) * "
        f"pg_catalog.cos(2.0 * pg_catalog.pi() * {uniform(hash_sql, 6)}))"
    )


def _clamped(expression: str, params: dict[str, Any], bound_type: str | None = None) -> str:
    """Clamped to [min, max]: numbers as float8, dates as literals of `bound_type`."""
    for name, function in (("min", "GREATEST"), ("max", "LEAST")):
        if name in params:
            if bound_type is None:
                bound = f"{_float(params[name])}::pg_catalog.float8"
            else:
                bound = f"{quote_literal(str(params[name]))}::{bound_type}"
            expression = f"{function}({expression}, {bound})"
    return expression


def _as_column_type(expression: str, column: Column) -> str:
    """Back to the column's type: integers rounded, numeric to the column's scale."""
    if column.category is Category.INTEGER:
        return f"(pg_catalog.round({expression}))::{column.declared_type}"
    if column.category is Category.NUMERIC:
        scale = column.scale if column.scale is not None else 0
        rounded = f"pg_catalog.round(({expression})::pg_catalog.numeric, {scale})"
        return f"({rounded})::{column.declared_type}"
    return f"({expression})::{column.declared_type}"


def needs_hash(rule: Rule) -> bool:
    return rule.method in ("uniform", "gaussian", "multiplicative", "date_shift")


def cell(column: Column, rule: Rule | None, hash_sql: str | None) -> str | None:
    """The view's expression for one column; None when the column is dropped."""
    value = f"{_BASE}.{quote_ident(column.name)}"
    if rule is None or rule.method == "keep":
        return value
    p = rule.params
    number = f"{value}::pg_catalog.float8"
    if rule.method == "drop":
        return None
    if rule.method == "uniform":
        noisy = f"({number} + {_float(p['a'])} * {_symmetric(hash_sql or '')})"
        return _as_column_type(_clamped(noisy, p), column)
    if rule.method == "gaussian":
        noisy = f"({number} + {_float(p['sd'])} * {_gaussian(hash_sql or '')})"
        return _as_column_type(_clamped(noisy, p), column)
    if rule.method == "multiplicative":
        noisy = f"({number} * (1.0 + {_float(p['fraction'])} * {_symmetric(hash_sql or '')}))"
        return _as_column_type(_clamped(noisy, p), column)
    if rule.method == "round":
        step = _float(p["step"])
        return _as_column_type(f"(pg_catalog.round({number} / {step}) * {step})", column)
    if rule.method == "date_shift":
        days = p["days"]
        shift = (
            f"(pg_catalog.floor({uniform(hash_sql or '', 0)} * {2 * days + 1})"
            f"::pg_catalog.int4 - {days})"
        )
        if column.category is Category.DATE:
            shifted = f"({value} + {shift})"
        else:
            shifted = f"({value} + pg_catalog.make_interval(days => {shift}))"
        return _clamped(shifted, p, column.declared_type)
    if rule.method == "generalize":
        truncated = f"pg_catalog.date_trunc({quote_literal(p['to'])}, {value})"
        return f"({truncated})::{column.declared_type}"
    if rule.method == "pseudonym":
        digest = _row_hash(pseudonym_key(p["domain"]), value)
        return (
            f"CASE WHEN {value} IS NULL THEN NULL ELSE "
            f"pg_catalog.left(pg_catalog.encode({digest}, 'hex'), {p['length']}) END"
        )
    if rule.method == "mask":
        return _mask(value, column, p)
    raise AssertionError(f"unhandled method {rule.method}")


def _mask(value: str, column: Column, p: dict[str, Any]) -> str:
    first, last, char = p["keep_first"], p["keep_last"], quote_literal(p["char"])
    text = f"({value})::pg_catalog.text"
    length = f"pg_catalog.length({text})"
    kept_end = f" || pg_catalog.right({text}, {last})" if last else ""
    masked = (
        f"CASE WHEN {length} <= {first + last} THEN pg_catalog.repeat({char}, {length}) "
        f"ELSE pg_catalog.left({text}, {first}) || "
        f"pg_catalog.repeat({char}, {length} - {first + last}){kept_end} END"
    )
    return f"({masked})::{column.declared_type}"


def select_sql(
    table: str,
    tag: str,
    columns: Sequence[Column],
    rules: dict[str, Rule],
    row_key: str,
    *,
    paired: bool = False,
) -> str:
    """The perturbed rows of `table` (a quoted, qualified name): configured columns perturbed,
    others as they are, the row key dropped unless it is pseudonymized.

    With `paired` (for the report, never for a view) every shown column is named p<i> and comes
    with its original value o<i>, i its position in `columns`, and the row key as row_key.

    The per-row hashes are computed once per row in a LATERAL subquery (OFFSET 0 keeps the
    planner from inlining, and so repeating, them).
    """
    targets: list[str] = [f"{_BASE}.{quote_ident(row_key)} AS row_key"] if paired else []
    hashes: list[str] = []
    for position, column in enumerate(columns):
        rule = rules.get(column.name)
        if column.name == row_key and (rule is None or rule.method != "pseudonym"):
            continue
        hash_sql = None
        if rule is not None and needs_hash(rule):
            alias = f"h{len(hashes) + 1}"
            row_key_sql = f"{_BASE}.{quote_ident(row_key)}"
            hashes.append(f"{_row_hash(column_key(tag, column.name), row_key_sql)} AS {alias}")
            hash_sql = f"{_NOISE}.{alias}"
        expression = cell(column, rule, hash_sql)
        if expression is None:
            continue
        if paired:
            targets.append(f"{expression} AS p{position}")
            targets.append(f"{_BASE}.{quote_ident(column.name)} AS o{position}")
        else:
            targets.append(f"{expression} AS {quote_ident(column.name)}")
    if not targets:
        targets.append("NULL::pg_catalog.text AS nothing_shown")
    source = f"{table} {_BASE}"
    if hashes:
        source += f" CROSS JOIN LATERAL (SELECT {', '.join(hashes)} OFFSET 0) {_NOISE}"
    return "SELECT " + ", ".join(targets) + f" FROM {source}"
