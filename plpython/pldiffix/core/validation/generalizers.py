"""Generalizations: the expressions an anonymizing SELECT may group by or filter on.

A bucket expression is a column, possibly generalized by one function (substring, floor,
date_trunc, diffix.floor_by, ...) or a cast, with constant arguments; untrusted analysts are held
to the stricter rules pg_diffix applies at that level (bin sizes, substring from 1, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from pldiffix.core import errors as sqlstate
from pldiffix.core.money import is_money_rounded

from ..query_model import Generalization, GeneralizationKind
from .context import Analysis
from .errors import error_at, render
from .expressions import const_number, generalizer, generalizer_family, is_const, type_of, unwrap
from .functions import (
    PRIMARY_ARG,
    GeneralizerCall,
    Signature,
    choose_signature,
    family_display,
    family_example,
)
from .hints import (
    CONSTRUCT_NAMES,
    bin_size_example,
    construct_hint,
    generalizations,
)
from .pgtypes import (
    CastKind,
    classify_cast,
    datatype_name,
    format_number,
    money_neighbours,
    type_display,
)
from .scope import Resolved, column_ref
from .syntax import is_literal_constant, strip_parens
from .totality import total_form


@dataclass
class GenResult:
    """A verified grouping/filtering expression."""

    kind: GeneralizationKind
    column: Resolved
    column_node: exp.Column
    args: list[exp.Expression]
    node: exp.Expression
    type: str | None


def verify_bucket(analysis: Analysis, node: exp.Expression, context: str) -> GenResult:
    """Check a grouping (or WHERE) expression: a column, possibly generalized."""
    where = "a grouping expression" if context == "group" else "a WHERE condition"
    node_bare = strip_parens(node)
    if isinstance(node_bare, exp.Column):
        column = analysis.column_of(node_bare)
        if column is None:
            raise error_at(node_bare, "unsupported column reference", "Use a table column.")
        if column.system or column.whole_row:
            raise error_at(
                node_bare,
                f"{'system column ' if column.system else 'whole-row reference '}{column.name} "
                "cannot be used in a query that reads personal tables",
                "Use the ordinary columns of the table.",
            )
        return GenResult("column", column, node_bare, [], node, column.type)
    if is_literal_constant(node_bare) or is_const(analysis, node_bare):
        raise error_at(
            node_bare,
            f"a constant cannot be used as {where} of a query that reads personal tables",
            "Remove it from GROUP BY; a constant can still be selected without grouping by it."
            if context == "group"
            else "Put a (generalized) column on the left side of `=`.",
        )
    if isinstance(node_bare, exp.Cast):
        return _verify_cast(analysis, node_bare, node, where)
    call = generalizer(analysis, node_bare)
    if call is not None:
        return _verify_generalizer(analysis, call, node, where)
    construct = CONSTRUCT_NAMES.get(type(node_bare))
    if construct is not None:
        raise error_at(
            node_bare,
            f"{construct} cannot be used as {where} of a query that reads personal tables",
            construct_hint(analysis, node_bare, context),
        )
    function = analysis.function_of(node_bare)
    if function is not None:
        fname = function[1]
        raise error_at(
            node_bare,
            f"{fname}() cannot be used as {where} of a query that reads personal tables",
            f"Group by the column and apply {fname}() to the grouped value (for example "
            f"SELECT {fname}(col), count(*) ... GROUP BY col), or use one of: "
            f"{generalizations(analysis)}.",
        )
    if isinstance(node_bare, (exp.Binary, exp.Unary)) and not isinstance(
        node_bare, (exp.Connector, exp.Not)
    ):
        raise error_at(
            node_bare,
            f"operators cannot be used in {where} of a query that reads personal tables",
            "Group by the column and apply the operator to the grouped value, e.g. "
            "SELECT city || 'x', count(*) ... GROUP BY city; for numeric ranges use "
            f"{bin_size_example(analysis)}.",
        )
    raise error_at(
        node_bare,
        f"this expression cannot be used as {where} of a query that reads personal tables",
        f"Use the bare column or one of: {generalizations(analysis)}.",
    )


def _verify_cast(
    analysis: Analysis, cast: exp.Cast, whole: exp.Expression, where: str
) -> GenResult:
    target, typmod = datatype_name(cast.to)
    source_type = type_of(analysis, cast.this)
    kind = classify_cast(source_type, target, typmod)
    if kind in (CastKind.NONE, CastKind.RELABEL, CastKind.FUNCTION, CastKind.TO_TEXT):
        inner = verify_bucket(analysis, cast.this, "group" if "grouping" in where else "filter")
        return GenResult(inner.kind, inner.column, inner.column_node, inner.args, whole, target)
    if kind is CastKind.ROUNDING:
        inner_node = unwrap(analysis, cast.this)
        if generalizer_family(analysis, inner_node) == "extract":
            inner = verify_bucket(analysis, cast.this, "group" if "grouping" in where else "filter")
            return GenResult(inner.kind, inner.column, inner.column_node, inner.args, whole, target)
        column = analysis.column_of(inner_node)
        if column is None or column.system:
            raise error_at(
                cast,
                f"a cast to {cast.to.sql(dialect='postgres')} rounds its input, which must be "
                "a plain column",
                "Apply a single generalization directly to a column, e.g. "
                + ("floor(col)." if analysis.untrusted else "CAST(col AS integer) or floor(col)."),
            )
        return GenResult("integer_cast", column, inner_node, [], whole, target)
    if kind is CastKind.NOT_TO_TEXT:
        raise error_at(
            cast,
            f"only date/time values can be cast to text in {where} of a query that reads "
            f"personal tables ({render(cast.this)} is {type_display(source_type)})",
            "Group by the column itself, or generalize numbers with "
            + (
                "floor(col), round(col) or diffix.floor_by(col, 10)."
                if analysis.untrusted
                else "diffix.floor_by(col, K) or width_bucket(col, low, high, count)."
            ),
        )
    raise error_at(
        cast,
        f"casting {source_type or 'this value'} to {cast.to.sql(dialect='postgres')} is not "
        f"allowed in {where} of a query that reads personal tables",
        "Untrusted analysts can cast date/time values to text or varchar and text to "
        "varchar; generalize numbers with floor(col), round(col) or diffix.floor_by(col, 10)."
        if analysis.untrusted
        else "Allowed casts: between smallint/integer/bigint/real/double precision/numeric "
        "(without precision), from date/time types to text or varchar, and from date to "
        "timestamptz.",
    )


def signature_of(analysis: Analysis, call: GeneralizerCall) -> Signature:
    """The overload a generalizer call resolves to, as PostgreSQL would choose it."""
    arg_types = [type_of(analysis, a) for a in call.args]
    signature = choose_signature(call.family, arg_types)
    if signature is None:
        shown = ", ".join(type_display(t) for t in arg_types)
        hint = "Check the argument types and add an explicit cast where needed."
        if call.family == "round" and len(call.args) == 2:
            hint = "round(value, digits) needs a numeric value: write round(col::numeric, digits)."
        elif call.family in ("date_trunc", "extract"):
            hint = f"{call.family} works on date, timestamp and timestamptz columns."
        raise error_at(
            call.node,
            f"function {family_display(call.family)}({shown}) does not exist",
            hint,
            sqlstate=sqlstate.UNDEFINED_FUNCTION,
        )
    return signature


def _verify_generalizer(
    analysis: Analysis, call: GeneralizerCall, whole: exp.Expression, where: str
) -> GenResult:
    fname = family_display(call.family)
    signature = signature_of(analysis, call)
    if not signature.allowed:
        if call.family == "date_trunc" and len(call.args) == 3:
            message = "date_trunc with a time zone cannot be used to generalize"
            hint = "Write date_trunc('unit', col) without the time zone argument."
        elif call.family == "substring":
            message = "substring with a pattern cannot be used to generalize"
            hint = "Use substring(col, start, length) with integer positions."
        else:
            arg_type = type_of(analysis, call.args[PRIMARY_ARG.get(call.family, 0)])
            message = f"{fname}() on a {type_display(arg_type)} value cannot be used to generalize"
            hint = f"{fname} generalizes date, timestamp and timestamptz columns."
        raise error_at(
            call.node, f"{message} in {where} of a query that reads personal tables", hint
        )
    primary = PRIMARY_ARG.get(call.family, 0)
    column_node: exp.Column | None = None
    column: Resolved | None = None
    for i, arg in enumerate(call.args):
        param = signature.params[i]
        arg_type = type_of(analysis, arg)
        if i == primary:
            implicit = classify_cast(arg_type, param)
            inner = arg
            if implicit in (
                CastKind.NONE,
                CastKind.RELABEL,
                CastKind.FUNCTION,
                CastKind.TO_TEXT,
            ):
                inner = unwrap(analysis, arg)
            column = analysis.column_of(inner)
            if column is None or column.system or column.whole_row:
                position = "the source" if primary else "the first argument"
                raise error_at(
                    arg,
                    f"{position} of {fname}() must be a plain column of the table",
                    f"Generalize a column directly, e.g. {family_example(call.family)}; nested "
                    "functions and computed values are not allowed as its input.",
                )
            column_node = strip_parens(inner)  # type: ignore[assignment]
        elif not is_const(analysis, arg):
            raise error_at(
                arg,
                f"argument {i + 1} of {fname}() must be a constant",
                f"Replace {render(arg)} with a literal value, e.g. {family_example(call.family)}.",
            )
    assert column is not None and column_node is not None
    args = [a for i, a in enumerate(call.args) if i != primary]
    kind: GeneralizationKind = call.family  # type: ignore[assignment]
    return GenResult(kind, column, column_node, args, whole, signature.result)


def verify_untrusted(analysis: Analysis, node: exp.Expression) -> None:
    """Extra restrictions on grouping expressions for untrusted analysts."""
    bare = strip_parens(node)
    if isinstance(bare, exp.Cast):
        target, typmod = datatype_name(bare.to)
        kind = classify_cast(type_of(analysis, bare.this), target, typmod)
        if kind in (CastKind.NONE, CastKind.RELABEL, CastKind.TO_TEXT):
            verify_untrusted(analysis, bare.this)
            return
        raise error_at(
            bare,
            f"casting to {bare.to.sql(dialect='postgres')} in a grouping expression is not "
            "allowed for untrusted analysts",
            f"Select the column without the cast and cast the anonymized result in an outer "
            f"query, or generalize with {generalizations(analysis)}.",
        )
    call = generalizer(analysis, bare)
    if call is None:
        return
    fname = family_display(call.family)
    signature = signature_of(analysis, call)
    rule = signature.untrusted
    if rule == "ok":
        return
    if rule == "start_1":
        start = call.args[1]
        value = const_number(analysis, start)
        if value != 1:
            raise error_at(
                start,
                "untrusted analysts can only use substring starting at position 1",
                f"Write substring({render(call.args[0])}, 1, n).",
            )
        return
    if rule == "money":
        size_node = call.args[1]
        value = const_number(analysis, size_node)
        if value is None or not is_money_rounded(value):
            shown = format_number(value) if value is not None else render(size_node)
            hint = "Use 1, 2 or 5 times a power of ten (..., 0.1, 0.2, 0.5, 1, 2, 5, 10, ...)."
            if value is not None and value > 0:
                below, above = money_neighbours(value)
                hint = (
                    f"Use {format_number(below)} or {format_number(above)} (bin sizes must "
                    "be 1, 2 or 5 times a power of ten)."
                )
            raise error_at(
                size_node,
                f"untrusted analysts must use a bin size of 1, 2 or 5 times a power of ten in "
                f"{fname}(), not {shown}",
                hint,
            )
        return
    raise error_at(
        call.node,
        f"{fname}() is not allowed for untrusted analysts"
        + (" with a numeric argument" if call.family == "round" else ""),
        f"Untrusted analysts can generalize with {generalizations(analysis)}.",
    )


def generalization(analysis: Analysis, gen: GenResult) -> Generalization:
    """The query model of a verified (and qualified) grouping or filtering expression."""
    return Generalization(
        gen.kind,
        column_ref(gen.column),
        tuple(a.copy() for a in gen.args),
        strip_parens(gen.node).copy(),
        gen.type,
        total_form(analysis, gen.node),
    )
