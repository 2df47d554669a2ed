"""The perturbed view's SQL, generated from validated rules. Pure.

Every cell's noise is a pure function of the secret key, the table's tag, the column's draw
slots and the row key. Per row, hash i is sha256(table key || row key || "/i") (no suffix for
i = 0) with the table key sha256(secret || "/" || tag); each hash gives five 48-bit uniform
draws, slot s being draw s % 5 of hash s // 5. A column gets its slots when it is configured and
keeps them (admin.py), so its values never change while the key stays. One hash per row serves up
to five noisy columns: sha256 is most of the cost of reading a view.

The table key is a scalar subquery on diffix.microdata_key, which PostgreSQL evaluates once per
query (an InitPlan) with the view owner's privileges; the secret never appears in the view text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pldiffix.perturb.config import Category, Column, Rule

_BASE = "t"  # alias of the base table in the view
_NOISE = "n"  # alias of the per-row hashes
_TWO_48 = "281474976710656.0"  # 2^48: 48 hash bits make one uniform
DRAWS_PER_HASH = 5  # 32 bytes of sha256 hold five 6-byte draws
SLOTS = {"uniform": 1, "multiplicative": 1, "date_shift": 1, "gaussian": 2}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _float(value: float) -> str:
    return repr(float(value))


def _keyed(material: str) -> str:
    """sha256(secret || material): one InitPlan per query, read with the view owner's rights."""
    return (
        "(SELECT pg_catalog.sha256(pg_catalog.convert_to(k.secret || "
        f"{quote_literal(material)}, 'UTF8')) FROM diffix.microdata_key k)"
    )


def table_key(tag: str) -> str:
    return _keyed(f"/{tag}")


def pseudonym_key(domain: str) -> str:
    """Pseudonyms depend on the key and the domain only, so that equal values join."""
    return _keyed(f"/pseudonym/{domain}")


def _row_hash(key: str, value_sql: str, suffix: str = "") -> str:
    text = f"({value_sql})::pg_catalog.text"
    if suffix:
        text += f" || {quote_literal(suffix)}"
    return f"pg_catalog.sha256({key} || pg_catalog.convert_to({text}, 'UTF8'))"


def hash_alias(slot: int) -> str:
    return f"{_NOISE}.h{slot // DRAWS_PER_HASH}"


def uniform(slot: int) -> str:
    """A uniform draw in (0, 1): 48 bits of the row's hash for `slot`."""
    h = hash_alias(slot)
    offset = 6 * (slot % DRAWS_PER_HASH)
    bits = " | ".join(
        f"(pg_catalog.get_byte({h}, {offset + i})::pg_catalog.int8 << {8 * (5 - i)})"
        for i in range(6)
    )
    return f"((({bits})::pg_catalog.float8 + 0.5) / {_TWO_48})"


def _symmetric(slots: Sequence[int]) -> str:
    """A uniform draw in (-1, 1)."""
    return f"(2.0 * {uniform(slots[0])} - 1.0)"


def _gaussian(slots: Sequence[int]) -> str:
    """A standard normal draw (Box-Muller on two independent uniforms)."""
    return (
        f"(pg_catalog.sqrt(-2.0 * pg_catalog.ln({uniform(slots[0])})) * "
        f"pg_catalog.cos(2.0 * pg_catalog.pi() * {uniform(slots[1])}))"
    )


def _clamped(expression: str, params: dict[str, Any], bound_type: str | None = None) -> str:
    """Clamped to [min, max]: numbers as float8 (or numeric), dates as literals of
    `bound_type`."""
    for name, function in (("min", "GREATEST"), ("max", "LEAST")):
        if name in params:
            if bound_type is None:
                bound = f"{_float(params[name])}::pg_catalog.float8"
            elif bound_type == "pg_catalog.numeric":
                bound = f"{_float(params[name])}::pg_catalog.numeric"
            else:
                bound = f"{quote_literal(str(params[name]))}::{bound_type}"
            expression = f"{function}({expression}, {bound})"
    return expression


def _as_column_type(expression: str, column: Column, scale: int) -> str:
    """Back to the column's type: integers rounded, numeric to `scale`."""
    if column.category is Category.INTEGER:
        return f"(pg_catalog.round({expression}))::{column.declared_type}"
    if column.category is Category.NUMERIC:
        rounded = f"pg_catalog.round(({expression})::pg_catalog.numeric, {scale})"
        return f"({rounded})::{column.declared_type}"
    return f"({expression})::{column.declared_type}"


# Numeric columns of up to this scale add their noise as an int8 count of the last decimal
# (float8 to numeric conversion costs as much as the hash); beyond it, through float8.
_EXACT_NUMERIC_SCALE = 6


def _noisy(value: str, noise: str, column: Column, params: dict[str, Any]) -> str:
    """value + noise (a float8 expression), clamped, in the column's type and scale."""
    scale = column.scale if column.scale is not None else params.get("scale", 0)
    if column.category is Category.NUMERIC and scale <= _EXACT_NUMERIC_SCALE:
        unit = f"{10**-scale:.{scale}f}" if scale else "1"
        sum_sql = (
            f"({value} + (pg_catalog.round({noise} * {10**scale}.0))::pg_catalog.int8"
            f" * {unit}::pg_catalog.numeric)"
        )
        return _as_column_type(_clamped(sum_sql, params, "pg_catalog.numeric"), column, scale)
    total = f"({value}::pg_catalog.float8 + {noise})"
    return _as_column_type(_clamped(total, params), column, scale)


def cell(column: Column, rule: Rule | None) -> str | None:
    """The view's expression for one column; None when the column is dropped. Noisy methods
    draw from their rule's `slots`."""
    value = f"{_BASE}.{quote_ident(column.name)}"
    if rule is None or rule.method == "keep":
        return value
    p = rule.params
    slots = p.get("slots", [])
    if rule.method == "drop":
        return None
    if rule.method == "uniform":
        return _noisy(value, f"({_float(p['a'])} * {_symmetric(slots)})", column, p)
    if rule.method == "gaussian":
        return _noisy(value, f"({_float(p['sd'])} * {_gaussian(slots)})", column, p)
    if rule.method == "multiplicative":
        noise = f"({value}::pg_catalog.float8 * {_float(p['fraction'])} * {_symmetric(slots)})"
        return _noisy(value, noise, column, p)
    if rule.method == "round":
        step = _float(p["step"])
        if column.category is Category.NUMERIC:
            step_sql = f"{step}::pg_catalog.numeric"
            rounded = f"(pg_catalog.round({value} / {step_sql}) * {step_sql})"
            return f"({rounded})::{column.declared_type}"
        number = f"{value}::pg_catalog.float8"
        return _as_column_type(f"(pg_catalog.round({number} / {step}) * {step})", column, 0)
    if rule.method == "date_shift":
        days = p["days"]
        shift = (
            f"(pg_catalog.floor({uniform(slots[0])} * {2 * days + 1})::pg_catalog.int4 - {days})"
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
    hash_numbers: set[int] = set()
    for position, column in enumerate(columns):
        rule = rules.get(column.name)
        if column.name == row_key and (rule is None or rule.method != "pseudonym"):
            continue
        expression = cell(column, rule)
        if expression is None:
            continue
        assert rule is None or len(rule.params.get("slots", [])) == SLOTS.get(rule.method, 0)
        if rule is not None:
            hash_numbers.update(slot // DRAWS_PER_HASH for slot in rule.params.get("slots", []))
        if paired:
            targets.append(f"{expression} AS p{position}")
            targets.append(f"{_BASE}.{quote_ident(column.name)} AS o{position}")
        else:
            targets.append(f"{expression} AS {quote_ident(column.name)}")
    if not targets:
        targets.append("NULL::pg_catalog.text AS nothing_shown")
    source = f"{table} {_BASE}"
    if hash_numbers:
        row_key_sql = f"{_BASE}.{quote_ident(row_key)}"
        hashes = ", ".join(
            f"{_row_hash(table_key(tag), row_key_sql, f'/{i}' if i else '')} AS h{i}"
            for i in sorted(hash_numbers)
        )
        source += f" CROSS JOIN LATERAL (SELECT {hashes} OFFSET 0) {_NOISE}"
    return "SELECT " + ", ".join(targets) + f" FROM {source}"
