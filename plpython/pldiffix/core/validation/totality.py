"""Bucket expressions that cannot fail on any row.

An error raised only when some row reaches an expression is a free, exact yes/no answer about
that row. So at the untrusted and DP levels (`Analysis.total`) `check_total` refuses, up front and
whatever the data, the constants that make a generalization fail on some value (a negative
substring length, a zero-width bucket, an unknown date unit, ...) and the aggregate arguments whose
cast can fail. At every level the engine runs the `total_form` of each bucket expression: every
conversion or call that would raise for some value (a narrowing or rounding cast out of range,
numeric to float beyond its range, date_trunc at the ends of the timestamp range, width_bucket of
NaN, diffix.floor_by dividing a float into overflow) gives NULL for that value instead. The
trusted level keeps pg_diffix's model: its constants are not checked, so it may still fail.
"""

from __future__ import annotations

import math

import sqlglot
from sqlglot import exp

from .context import Analysis
from .errors import error_at, render
from .expressions import const_number, generalizer, type_of
from .functions import PRIMARY_ARG, GeneralizerCall, choose_signature, family_display
from .pgtypes import INTEGER_TYPES, datatype_name, normalize_type
from .syntax import literal_value, strip_parens

DATE_TRUNC_UNITS = (
    "microseconds", "milliseconds", "second", "minute", "hour", "day", "week", "month",
    "quarter", "year", "decade", "century", "millennium",
)  # fmt: skip
_DATE_FIELDS = (
    "century", "day", "decade", "dow", "doy", "epoch", "isodow", "isoyear", "julian",
    "millennium", "month", "quarter", "week", "year",
)  # fmt: skip
_TIME_FIELDS = ("hour", "minute", "second", "milliseconds", "microseconds")
EXTRACT_FIELDS = {
    "date": _DATE_FIELDS,
    "timestamp": _DATE_FIELDS + _TIME_FIELDS,
    "timestamptz": _DATE_FIELDS + _TIME_FIELDS + ("timezone", "timezone_hour", "timezone_minute"),
}
# Bin sizes of diffix.floor_by & co. at the total levels; with |values| beyond the first limit
# or below the second (but not 0) NULL, neither the division nor the product can overflow or
# underflow (float8: |x / K| within 1e-300..1e300; numeric: far from its 1e131072).
BY_MIN, BY_MAX = 1e-100, 1e100
_BY_LIMITS = {"float8": ("1e200", "1e-200"), "numeric": ("1e130000", "1e-16000")}
WIDTH_BUCKET_MAX_COUNT = 2**31 - 2  # count + 1 must fit an int4

_INTEGER_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1),
                   "int8": (-(2**63), 2**63 - 1)}  # fmt: skip
# |x| beyond the first or below the second (and not 0) does not convert to float4/float8.
_FLOAT_RANGES = {"float4": ("3.4e38", "1e-37"), "float8": ("1.7976931348623157e308", "1e-307")}
_REAL_TYPES = frozenset({"float4", "float8", "numeric"})
# Timestamps whose truncation (to a millennium at worst) and conversion to local time (a session's
# UTC offset is under 168 hours) stay in range; dates whose midnight is a timestamptz in any zone.
_TIMESTAMP_LOW, _TIMESTAMP_HIGH = "4000-01-09 BC", "294276-12-20"
_DATE_TO_TIMESTAMP_LOW = "4713-01-02 BC"


# --------------------------------------------------------------------------------------------------
# Refusals (untrusted and DP levels)
# --------------------------------------------------------------------------------------------------


def check_total(analysis: Analysis, node: exp.Expression) -> None:
    """Refuse a bucket expression whose constants make it fail on some row."""
    bare = strip_parens(node)
    if isinstance(bare, exp.Cast):
        check_total(analysis, bare.this)
        return
    call = generalizer(analysis, bare)
    if call is None:
        return
    signature = choose_signature(call.family, [type_of(analysis, a) for a in call.args])
    if signature is None:
        return
    primary = PRIMARY_ARG.get(call.family, 0)
    check_total(analysis, call.args[primary])
    fname = family_display(call.family)
    if call.family == "substring" and len(call.args) == 3:
        length = const_number(analysis, call.args[2])
        if length is not None and not length >= 0:
            raise error_at(
                call.args[2],
                "the length of substring() cannot be negative",
                f"Write substring({render(call.args[0])}, 1, n) with n >= 0.",
            )
    elif call.family == "width_bucket":
        _check_width_bucket(analysis, call)
    elif call.family == "date_trunc":
        unit = _name_constant(call.args[0])
        if unit not in DATE_TRUNC_UNITS:
            raise error_at(
                call.args[0],
                f"date_trunc() unit {render(call.args[0])} is not one of "
                + ", ".join(DATE_TRUNC_UNITS),
                "Write the unit as one of these literals, e.g. date_trunc('month', col).",
            )
    elif call.family == "extract":
        fields = EXTRACT_FIELDS.get(signature.params[1], ())
        field = _name_constant(call.args[0])
        if field not in fields:
            raise error_at(
                call.args[0],
                f"extract() field {render(call.args[0])} is not one of {', '.join(fields)} "
                f"for a {signature.params[1]} value",
                "Write one of these fields, e.g. extract(year FROM col).",
            )
    elif call.family in ("floor_by", "round_by", "ceil_by"):
        size = const_number(analysis, call.args[1])
        if size is None or not BY_MIN <= size <= BY_MAX:
            raise error_at(
                call.args[1],
                f"the bin size of {fname}() must be a number between {BY_MIN:g} and {BY_MAX:g}",
                f"Write e.g. {fname}({render(call.args[0])}, 10).",
            )


def _check_width_bucket(analysis: Analysis, call: GeneralizerCall) -> None:
    low, high, count = (const_number(analysis, a) for a in call.args[1:4])
    if (
        low is None
        or high is None
        or not math.isfinite(low)
        or not math.isfinite(high)
        or low == high
        or not math.isfinite(high - low)
    ):
        raise error_at(
            call.node,
            "the bounds of width_bucket() must be two different finite numbers",
            "Write e.g. width_bucket(col, 0, 100, 10).",
        )
    if count is None or count != int(count) or not 1 <= count <= WIDTH_BUCKET_MAX_COUNT:
        raise error_at(
            call.args[3],
            f"the bucket count of width_bucket() must be an integer from 1 to "
            f"{WIDTH_BUCKET_MAX_COUNT}",
            "Write e.g. width_bucket(col, 0, 100, 10).",
        )


def _name_constant(node: exp.Expression) -> str | None:
    """The unit or field a date function names ('month', MONTH), lower case."""
    bare = strip_parens(node)
    if isinstance(bare, exp.Var):
        return bare.name.lower()
    value = literal_value(bare) if isinstance(bare, exp.Literal) and bare.is_string else None
    return value.strip().lower() if isinstance(value, str) else None


def comparison_can_fail(left: str | None, right: str | None) -> bool:
    """Whether `left = right` converts a value in a way that can fail: PostgreSQL compares a
    numeric with a float as floats, and a numeric beyond float's range does not convert."""
    types = {normalize_type(left or ""), normalize_type(right or "")}
    return "numeric" in types and bool(types & {"float4", "float8"})


def check_filter_total(analysis: Analysis, subject_type: str | None, value: exp.Expression) -> None:
    """`subject = value`: refuse a comparison that converts the subject in a way that can fail."""
    value_type = type_of(analysis, value)
    if comparison_can_fail(subject_type, value_type):
        raise error_at(
            value,
            f"comparing {subject_type} with {value_type} converts every row's value to a float, "
            "which fails for numerics beyond its range",
            "Compare with a constant of the column's type: drop the cast to real/double "
            "precision (or cast the column to numeric).",
        )


def check_join_total(condition: exp.Expression, left: str | None, right: str | None) -> None:
    """`a.x = b.y` in a JOIN: refuse a comparison that converts a column in a way that can fail."""
    if comparison_can_fail(left, right):
        raise error_at(
            condition,
            f"joining {left} with {right} converts the numeric column to a float, which fails "
            "for numerics beyond its range",
            "Join columns of the same type.",
        )


def cast_can_fail(source: str | None, target: str) -> bool:
    """Whether a cast the validator accepts can raise an error for some value."""
    source, target = normalize_type(source or ""), normalize_type(target)
    if source in _REAL_TYPES and target in INTEGER_TYPES:
        return True
    if source in INTEGER_TYPES and target in INTEGER_TYPES:
        return _INTEGER_RANGES[source][1] > _INTEGER_RANGES[target][1]
    if source in _REAL_TYPES and target in _FLOAT_RANGES:
        return source == "numeric" or (source, target) == ("float8", "float4")
    return source == "date" and target in ("timestamp", "timestamptz")


def check_aggregate_argument(analysis: Analysis, argument: exp.Expression) -> None:
    """Refuse a cast in an aggregate's argument that can fail on some value."""
    node = strip_parens(argument)
    while isinstance(node, exp.Cast):
        target, _ = datatype_name(node.to)
        if cast_can_fail(type_of(analysis, node.this), target):
            raise error_at(
                node,
                f"this cast fails for some values of {render(node.this)}, so it cannot be "
                "aggregated at this access level",
                "Aggregate the column itself and cast the anonymized result in an outer query.",
            )
        node = strip_parens(node.this)


# --------------------------------------------------------------------------------------------------
# The total form (every level)
# --------------------------------------------------------------------------------------------------


def total_form(analysis: Analysis, node: exp.Expression) -> exp.Expression:
    """A copy of a verified bucket expression that gives NULL where the original would fail.

    Call it once the expression's columns are qualified; `node` keeps its resolutions."""
    bare = strip_parens(node)
    if isinstance(bare, exp.Cast):
        inner = total_form(analysis, bare.this)
        target, _ = datatype_name(bare.to)
        cast = exp.Cast(this=inner, to=bare.to.copy())
        return _guarded_conversion(inner, type_of(analysis, bare.this), target, cast)
    call = generalizer(analysis, bare)
    signature = (
        None
        if call is None
        else choose_signature(call.family, [type_of(analysis, a) for a in call.args])
    )
    if call is None or signature is None:
        return bare.copy()
    primary = PRIMARY_ARG.get(call.family, 0)
    argument = call.args[primary]
    total_argument = total_form(analysis, argument)
    param = signature.params[primary]
    source = type_of(analysis, argument)
    if cast_can_fail(source, param):  # the implicit conversion to the parameter's type
        implicit = exp.Cast(this=total_argument, to=exp.DataType.build(param, dialect="postgres"))
        total_argument = _guarded_conversion(total_argument, source, param, implicit)
        source = param
    copy = bare.copy()
    _replace_argument(copy, call, argument, total_argument)
    if call.family == "width_bucket" and source in _REAL_TYPES:
        return _template(
            "CASE WHEN __x OPERATOR(pg_catalog.=) 'NaN' THEN NULL ELSE __call END",
            x=total_argument,
            call=copy,
        )
    if call.family == "date_trunc" or (call.family == "extract" and param != "date"):
        if source in ("date", "timestamp", "timestamptz"):
            return _template(
                f"CASE WHEN __x OPERATOR(pg_catalog.>=) '{_TIMESTAMP_LOW}' AND "
                f"__x OPERATOR(pg_catalog.<=) '{_TIMESTAMP_HIGH}' OR NOT pg_catalog.isfinite(__x) "
                "THEN __call END",
                x=total_argument,
                call=copy,
            )
        return copy
    if call.family in ("floor_by", "round_by", "ceil_by") and source in _REAL_TYPES:
        most, least = _BY_LIMITS[param]
        return _template(
            f"CASE WHEN {_out_of_range(most, least)} THEN NULL ELSE __call END",
            x=total_argument,
            call=copy,
        )
    return copy


def _replace_argument(
    copy: exp.Expression,
    call: GeneralizerCall,
    original: exp.Expression,
    replacement: exp.Expression,
) -> None:
    """Put `replacement` where `copy` (a copy of `call.node`) has the argument `original`."""
    path = _path_to(call.node, original)
    assert path is not None
    target = copy
    for key, index in path[:-1]:
        value = target.args[key]
        target = value[index] if index is not None else value
    key, index = path[-1]
    if index is None:
        target.set(key, replacement)
    else:
        items = list(target.args[key])
        items[index] = replacement
        target.set(key, items)


def _path_to(root: exp.Expression, wanted: exp.Expression) -> list[tuple[str, int | None]] | None:
    for key, value in root.args.items():
        children = value if isinstance(value, list) else [value]
        for index, child in enumerate(children):
            if not isinstance(child, exp.Expression):
                continue
            slot = (key, index if isinstance(value, list) else None)
            if child is wanted:
                return [slot]
            deeper = _path_to(child, wanted)
            if deeper is not None:
                return [slot, *deeper]
    return None


def _guarded_conversion(
    value: exp.Expression, source: str | None, target: str, cast: exp.Expression
) -> exp.Expression:
    """`cast` of `value`, NULL where the conversion from `source` to `target` would fail."""
    if not cast_can_fail(source, target):
        return cast
    if target in INTEGER_TYPES:
        low, high = _INTEGER_RANGES[target]
        # what rounds into the range: (low - 0.5, high + 0.5) for reals, [low, high] for integers
        below, above = (f"{low}.5", f"{high}.5") if source in _REAL_TYPES else (low - 1, high + 1)
        return _template(
            f"CASE WHEN __x OPERATOR(pg_catalog.>) {below} AND "
            f"__x OPERATOR(pg_catalog.<) {above} THEN __cast END",
            x=value,
            cast=cast,
        )
    if target in _FLOAT_RANGES:
        most, least = _FLOAT_RANGES[target]
        return _template(
            f"CASE WHEN {_out_of_range(most, least)} THEN NULL ELSE __cast END",
            x=value,
            cast=cast,
        )
    return _template(
        f"CASE WHEN __x OPERATOR(pg_catalog.>=) '{_DATE_TO_TIMESTAMP_LOW}' AND "
        f"__x OPERATOR(pg_catalog.<=) '{_TIMESTAMP_HIGH}' OR NOT pg_catalog.isfinite(__x) "
        "THEN __cast END",
        x=value,
        cast=cast,
    )


def _out_of_range(most: str, least: str) -> str:
    """`__x` is finite and |`__x`| above `most`, or not 0 and below `least` (NaN is neither)."""
    return (
        f"pg_catalog.abs(__x) OPERATOR(pg_catalog.>) {most} AND "
        "pg_catalog.abs(__x) OPERATOR(pg_catalog.<) 'Infinity' OR "
        f"__x OPERATOR(pg_catalog.<>) 0 AND pg_catalog.abs(__x) OPERATOR(pg_catalog.<) {least}"
    )


def _template(text: str, **parts: exp.Expression) -> exp.Expression:
    """Parse `text` and put a copy of `parts[name]` in place of each `__name`."""
    tree = sqlglot.parse_one(text, read="postgres")

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__"):
            return exp.paren(parts[node.name[2:]].copy(), copy=False)
        return node

    return exp.paren(tree.transform(swap), copy=False)
