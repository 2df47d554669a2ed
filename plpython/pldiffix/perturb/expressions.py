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
from decimal import Decimal
from typing import Any

from pldiffix.core.sqltext import identifier, literal
from pldiffix.perturb import methods
from pldiffix.perturb.config import Category, Column, Rule
from pldiffix.perturb.methods import Rounding

_BASE = "t"  # alias of the base table in the view
_NOISE = "n"  # alias of the per-row hashes
_RAW = "r"  # alias of the per-row raw noisy values (float columns)
_TWO_48 = "281474976710656.0"  # 2^48: 48 hash bits make one uniform
DRAWS_PER_HASH = 5  # 32 bytes of sha256 hold five 6-byte draws
SLOTS = {"uniform": 1, "multiplicative": 1, "date_shift": 1, "gaussian": 2}


def _float(value: float) -> str:
    return repr(float(value))


def _keyed(material: str) -> str:
    """sha256(secret || material): one InitPlan per query, read with the view owner's rights."""
    return (
        "(SELECT pg_catalog.sha256(pg_catalog.convert_to(k.secret || "
        f"{literal(material)}, 'UTF8')) FROM diffix.microdata_key k)"
    )


def table_key(tag: str) -> str:
    return _keyed(f"/{tag}")


def pseudonym_key(domain: str) -> str:
    """Pseudonyms depend on the key and the domain only, so that equal values join."""
    return _keyed(f"/pseudonym/{domain}")


def _row_hash(key: str, value_sql: str, suffix: str = "") -> str:
    text = f"({value_sql})::pg_catalog.text"
    if suffix:
        text += f" || {literal(suffix)}"
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
                bound = f"{literal(str(params[name]))}::{bound_type}"
            expression = f"{function}({expression}, {bound})"
    return expression


# --- numbers: value + noise, rounded (methods.py), clamped, in the column's type -------------
#
# No row may make the arithmetic fail: the noise scales are bounded (config.py), every step
# that could overflow or underflow in float8 is guarded, and results are clamped to the
# column type's range before the cast. NaN and infinities pass through (GREATEST/LEAST order
# NaN above every number, so a clamp to a maximum turns it into that maximum).

_FLOAT8_EXACT = 2.0**52  # beyond 2^52 / 10^digits, float8's own spacing is the resolution
_INTEGER_RANGES = {
    "int2": (-32768.0, 32767.0),
    "int4": (-2147483648.0, 2147483647.0),
    "int8": (-9223372036854775808.0, 9223372036854774784.0),  # float8 values that fit int8
}
_FLOAT4_MAX = 3.4028234663852886e38
_FLOAT4_TINY = 1e-45  # below this a float8 value has no float4 neighbour but 0


def _power_of_ten(exponent: int) -> str:
    return _float(10.0**exponent)


def _decimal_unit(digits: int) -> str:
    """10^-digits as a numeric literal (0.01, 1, 100)."""
    return format(Decimal(1).scaleb(-digits), "f")


def round_float(value: str, digits: int) -> str:
    """`value` (float8, referred to several times) rounded to 10^-digits; left as it is where
    float8's own spacing is coarser, or where it is NaN or infinite."""
    limit = _float(min(_FLOAT8_EXACT / 10.0**digits, 1e308))
    if digits >= 0:
        scale = _power_of_ten(digits)
        rounded = f"pg_catalog.round({value} * {scale}) / {scale}"
        return f"CASE WHEN pg_catalog.abs({value}) < {limit} THEN {rounded} ELSE {value} END"
    scale = _power_of_ten(-digits)
    return (
        f"CASE WHEN pg_catalog.abs({value}) < {_float(10.0**-digits / 2)}"
        " THEN 0.0::pg_catalog.float8"
        f" WHEN pg_catalog.abs({value}) < {limit}"
        f" THEN pg_catalog.round({value} / {scale}) * {scale} ELSE {value} END"
    )


def round_float_relative(value: str, relative: float) -> str:
    """`value` (float8) rounded, per row, to the largest power of ten not above
    |value| * relative (methods.Rounding.relative); values of magnitude below 1e-290 or above
    1e300, NaN and infinities as they are."""
    exponent = f"pg_catalog.floor(pg_catalog.log10(pg_catalog.abs({value}) * {_float(relative)}))"
    ten = "10.0::pg_catalog.float8"
    return (
        f"CASE WHEN NOT (pg_catalog.abs({value}) >= 1e-290 AND pg_catalog.abs({value}) <= 1e300)"
        f" THEN {value}"
        f" WHEN {exponent} >= 0"
        f" THEN pg_catalog.round({value} / pg_catalog.power({ten}, {exponent}))"
        f" * pg_catalog.power({ten}, {exponent})"
        f" ELSE pg_catalog.round({value} * pg_catalog.power({ten}, -{exponent}))"
        f" / pg_catalog.power({ten}, -{exponent}) END"
    )


def _rounded_float(value: str, rounding: Rounding) -> str:
    if rounding.digits is not None:
        return round_float(value, rounding.digits)
    if rounding.relative is not None:
        return round_float_relative(value, rounding.relative)
    return value


def _as_float_type(expression: str, column: Column) -> str:
    if column.type_name != "float4":
        return f"({expression})::{column.declared_type}"
    value = f"({expression})"
    fitted = (
        f"CASE WHEN pg_catalog.abs({value}) < {_FLOAT4_TINY} THEN 0.0::pg_catalog.float8"
        f" WHEN pg_catalog.abs({value}) <= {_FLOAT4_MAX} THEN {value}"
        f" WHEN pg_catalog.abs({value}) < 'Infinity'::pg_catalog.float8"
        f" THEN pg_catalog.sign({value}) * {_FLOAT4_MAX} ELSE {value} END"
    )
    return f"({fitted})::{column.declared_type}"


def _as_integer_type(expression: str, column: Column) -> str:
    low, high = _INTEGER_RANGES[column.type_name]
    fitted = f"LEAST(GREATEST({expression}, {_float(low)}), {_float(high)})"
    return f"({fitted})::{column.declared_type}"


def _as_numeric_type(expression: str, column: Column) -> str:
    if column.precision is None or column.scale is None:
        return f"({expression})::{column.declared_type}"
    largest = Decimal(10) ** (column.precision - column.scale) - Decimal(1).scaleb(-column.scale)
    fitted = (
        f"LEAST(GREATEST({expression}, -{largest}::pg_catalog.numeric),"
        f" {largest}::pg_catalog.numeric)"
    )
    return f"({fitted})::{column.declared_type}"


def _guarded_float(value: str, low: float, high: float) -> str:
    """`value` where low <= |value| <= high, else 0 (also for NaN and infinities)."""
    return (
        f"CASE WHEN pg_catalog.abs({value}) >= {_float(low)} AND pg_catalog.abs({value})"
        f" <= {_float(high)} THEN {value} ELSE 0 END"
    )


def _noise(value: str, rule: Rule, float_value: str) -> str:
    """The rule's noise as a float8 expression; multiplicative noise scales `float_value`."""
    p, slots = rule.params, rule.params.get("slots", [])
    if rule.method == "uniform":
        return f"({_float(p['a'])} * {_symmetric(slots)})"
    if rule.method == "gaussian":
        return f"({_float(p['sd'])} * {_gaussian(slots)})"
    assert rule.method == "multiplicative"
    return f"({float_value} * {_float(p['fraction'])} * {_symmetric(slots)})"


def _numeric_noisy(value: str, column: Column, rule: Rule, rounding: Rounding) -> str:
    """round(v, digits) plus the noise rounded to 10^-digits, in exact decimals: as an int8
    count of 10^-digits when the noise is bounded well within int8, else through numeric."""
    digits = rounding.digits if rounding.digits is not None else 0
    bound = methods.noise_bound(rule)
    if bound is not None and bound * 10.0**digits < 2.0**62:
        noise = _noise(value, rule, "")
        added = (
            f"(pg_catalog.round({noise} * {_power_of_ten(digits)}))::pg_catalog.int8"
            f" * {_decimal_unit(digits)}::pg_catalog.numeric"
        )
    else:
        magnitude = _guarded_float(value, 1e-290, 1e300)
        noise = _noise(value, rule, f"({magnitude})::pg_catalog.float8")
        added = f"pg_catalog.round(({noise})::pg_catalog.numeric, {digits})"
    base = (
        value
        if column.scale is not None and digits >= column.scale
        else f"pg_catalog.round({value}, {digits})"
    )
    total = f"({base} + {added})"
    return _as_numeric_type(_clamped(total, rule.params, "pg_catalog.numeric"), column)


def noisy_number(value: str, column: Column, rule: Rule, raw_ref: str) -> tuple[str, str | None]:
    """A noisy method's shown value and, for float columns, the raw `v + noise` that the lateral
    computes once per row and the shown value refers to as `raw_ref`."""
    rounding = methods.rounding(column, rule)
    if column.category is Category.NUMERIC:
        return _numeric_noisy(value, column, rule, rounding), None
    as_float = f"{value}::pg_catalog.float8"
    if column.category is Category.INTEGER:
        total = f"({as_float} + {_noise(value, rule, as_float)})"
        rounded = (
            _rounded_float(total, rounding) if rounding.digits else f"pg_catalog.round({total})"
        )
        return _as_integer_type(_clamped(rounded, rule.params), column), None
    multiplied = _guarded_float(as_float, 1e-290, 8.9e307)
    raw = f"({as_float} + {_noise(value, rule, f'({multiplied})')})"
    shown = _clamped(_rounded_float(raw_ref, rounding), rule.params)
    return _as_float_type(shown, column), raw


def _rounded_to_step(value: str, column: Column, rule: Rule) -> str:
    """round(v / step) * step in the column's type, then to the rule's digits."""
    step = rule.params["step"]
    rounding = methods.rounding(column, rule)
    if column.category is Category.NUMERIC:
        step_sql = f"{_float(step)}::pg_catalog.numeric"
        rounded = f"(pg_catalog.round({value} / {step_sql}) * {step_sql})"
        if rounding.digits is not None:
            rounded = f"pg_catalog.round({rounded}, {rounding.digits})"
        return _as_numeric_type(rounded, column)
    number = f"{value}::pg_catalog.float8"
    limit = _float(min(_FLOAT8_EXACT * step, 1e308))
    stepped = (
        f"CASE WHEN pg_catalog.abs({number}) < {_float(step / 2)} THEN 0.0::pg_catalog.float8"
        f" WHEN pg_catalog.abs({number}) < {limit}"
        f" THEN pg_catalog.round({number} / {_float(step)}) * {_float(step)} ELSE {number} END"
    )
    if column.category is Category.INTEGER:
        rounded = _rounded_float(f"({stepped})", rounding) if rounding.digits else stepped
        return _as_integer_type(f"pg_catalog.round({rounded})", column)
    return _as_float_type(_rounded_float(f"({stepped})", rounding), column)


def cell(column: Column, rule: Rule | None, raw_ref: str = "raw") -> tuple[str, str | None] | None:
    """The view's expression for one column, and the raw per-row value it refers to as
    `raw_ref` (None when it refers to none); None when the column is dropped. Noisy methods
    draw from their rule's `slots`."""
    value = f"{_BASE}.{identifier(column.name)}"
    if rule is None or rule.method == "keep":
        return value, None
    p = rule.params
    if rule.method == "drop":
        return None
    if rule.method in methods.NOISY:
        return noisy_number(value, column, rule, raw_ref)
    if rule.method == "round":
        return _rounded_to_step(value, column, rule), None
    if rule.method == "date_shift":
        return _shifted(value, column, p), None
    if rule.method == "generalize":
        truncated = f"pg_catalog.date_trunc({literal(p['to'])}, {value})"
        return f"({truncated})::{column.declared_type}", None
    if rule.method == "pseudonym":
        digest = _row_hash(pseudonym_key(p["domain"]), value)
        return (
            f"CASE WHEN {value} IS NULL THEN NULL ELSE "
            f"pg_catalog.left(pg_catalog.encode({digest}, 'hex'), {p['length']}) END"
        ), None
    if rule.method == "mask":
        return _mask(value, column, p), None
    raise AssertionError(f"unhandled method {rule.method}")


# Dates shifted by up to 36500 days stay within their type's range from these (beyond them
# the value is taken as the bound, so that no row's shift can fail).
_SHIFTABLE = {
    Category.DATE: ("4600-01-01 BC", "5874700-01-01"),
    Category.TIMESTAMP: ("4600-01-01 00:00:00 BC", "294100-01-01 00:00:00"),
}


def _shifted(value: str, column: Column, p: dict[str, Any]) -> str:
    """date_shift: a whole number of days from [-days, days]; infinities as they are."""
    days, slot = p["days"], p["slots"][0]
    shift = f"(pg_catalog.floor({uniform(slot)} * {2 * days + 1})::pg_catalog.int4 - {days})"
    low, high = (
        f"{literal(bound)}::{column.declared_type}" for bound in _SHIFTABLE[column.category]
    )
    base = (
        f"CASE WHEN pg_catalog.isfinite({value}) THEN LEAST(GREATEST({value}, {low}), {high})"
        f" ELSE {value} END"
    )
    if column.category is Category.DATE:
        shifted = f"({base} + {shift})"
    else:
        shifted = f"({base} + pg_catalog.make_interval(days => {shift}))"
    return _clamped(shifted, p, column.declared_type)


def _mask(value: str, column: Column, p: dict[str, Any]) -> str:
    first, last, char = p["keep_first"], p["keep_last"], literal(p["char"])
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
    planner from inlining, and so repeating, them), and so are float columns' raw `v + noise`,
    which their rounding refers to several times.
    """
    targets: list[str] = [f"{_BASE}.{identifier(row_key)} AS row_key"] if paired else []
    hash_numbers: set[int] = set()
    raw_values: list[str] = []
    for position, column in enumerate(columns):
        rule = rules.get(column.name)
        if column.name == row_key and (rule is None or rule.method != "pseudonym"):
            continue
        parts = cell(column, rule, f"{_RAW}.v{position}")
        if parts is None:
            continue
        expression, raw = parts
        if raw is not None:
            raw_values.append(f"{raw} AS v{position}")
        assert rule is None or len(rule.params.get("slots", [])) == SLOTS.get(rule.method, 0)
        if rule is not None:
            hash_numbers.update(slot // DRAWS_PER_HASH for slot in rule.params.get("slots", []))
        if paired:
            targets.append(f"{expression} AS p{position}")
            targets.append(f"{_BASE}.{identifier(column.name)} AS o{position}")
        else:
            targets.append(f"{expression} AS {identifier(column.name)}")
    if not targets:
        targets.append("NULL::pg_catalog.text AS nothing_shown")
    source = f"{table} {_BASE}"
    if hash_numbers:
        row_key_sql = f"{_BASE}.{identifier(row_key)}"
        hashes = ", ".join(
            f"{_row_hash(table_key(tag), row_key_sql, f'/{i}' if i else '')} AS h{i}"
            for i in sorted(hash_numbers)
        )
        source += f" CROSS JOIN LATERAL (SELECT {hashes} OFFSET 0) {_NOISE}"
    if raw_values:
        source += f" CROSS JOIN LATERAL (SELECT {', '.join(raw_values)} OFFSET 0) {_RAW}"
    return "SELECT " + ", ".join(targets) + f" FROM {source}"
