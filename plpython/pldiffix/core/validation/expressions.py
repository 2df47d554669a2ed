"""What the validator tells of an expression without running it, once its names are resolved.

Its type (as far as a generalization or an aggregate needs it), the generalizer it calls, the
casts pg_diffix looks through, whether it is a constant, and a structural key that identifies
equal expressions (GROUP BY entries and SELECT items).
"""

from __future__ import annotations

from sqlglot import exp

from .context import Analysis
from .functions import GeneralizerCall, choose_signature, generalizer_call
from .pgtypes import UNKNOWN, CastKind, classify_cast, datatype_name, literal_number, literal_type
from .syntax import ident_name, is_literal_constant, literal_value, strip_parens


def generalizer(analysis: Analysis, node: exp.Expression) -> GeneralizerCall | None:
    """The generalizing function `node` calls, if it is one."""
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Anonymous):
        call = generalizer_call(node.expression, ident_name(node.this))
        return None if call is None else GeneralizerCall(call.family, call.args, node)
    if isinstance(node, exp.Anonymous):
        found = analysis.function_of(node)
        return generalizer_call(node, found[0] if found else None)
    return generalizer_call(node, None)


def generalizer_family(analysis: Analysis, node: exp.Expression) -> str | None:
    call = generalizer(analysis, strip_parens(node))
    return call.family if call is not None else None


def unwrap(analysis: Analysis, node: exp.Expression) -> exp.Expression:
    """Strip parentheses and casts pg_diffix looks through."""
    while True:
        node = strip_parens(node)
        if not isinstance(node, exp.Cast):
            return node
        target, typmod = datatype_name(node.to)
        kind = classify_cast(type_of(analysis, node.this), target, typmod)
        if kind in (CastKind.NONE, CastKind.RELABEL, CastKind.FUNCTION, CastKind.TO_TEXT) or (
            kind is CastKind.ROUNDING
            and generalizer_family(analysis, unwrap(analysis, node.this)) == "extract"
        ):
            node = node.this
        else:
            return node


def is_const(analysis: Analysis, node: exp.Expression) -> bool:
    """A literal (or interval literal), possibly behind casts pg_diffix looks through."""
    inner = unwrap(analysis, node)
    if is_literal_constant(inner):
        return True
    return isinstance(inner, exp.Interval) and is_literal_constant(inner.this)


def const_number(analysis: Analysis, node: exp.Expression) -> float | None:
    """The number a constant stands for; None when it is no number."""
    inner = strip_parens(unwrap(analysis, node))
    value = literal_value(inner)
    if isinstance(value, str):
        return literal_number(value)
    return value


def type_of(analysis: Analysis, node: exp.Expression | None) -> str | None:
    """The typname of an expression, or None when it cannot be told without the server."""
    if node is None:
        return None
    node = strip_parens(node)
    if isinstance(node, exp.Column):
        resolved = analysis.resolved.get(id(node))
        return resolved.type if resolved is not None else None
    if isinstance(node, exp.Literal):
        return literal_type(node)
    if isinstance(node, exp.Neg) and isinstance(strip_parens(node.this), exp.Literal):
        return literal_type(strip_parens(node.this))
    if isinstance(node, (exp.Null, exp.Var)):
        return UNKNOWN
    if isinstance(node, exp.Boolean):
        return "bool"
    if isinstance(node, exp.Interval):
        return "interval"
    if isinstance(node, exp.Cast):
        return datatype_name(node.to)[0]
    if isinstance(node, exp.Count):
        return "int8"
    call = generalizer(analysis, node)
    if call is not None:
        signature = choose_signature(call.family, [type_of(analysis, a) for a in call.args])
        return signature.result if signature is not None else None
    return None


def canon(analysis: Analysis, node: exp.Expression) -> str:
    """A structural key of an expression with columns replaced by their resolution."""
    node = strip_parens(node)
    if isinstance(node, exp.Alias):
        return canon(analysis, node.this)
    if isinstance(node, exp.Column):
        resolved = analysis.resolved.get(id(node))
        if resolved is not None:
            return f"<col {id(resolved.source)}.{resolved.name}>"
        return f"<name {ident_name(node.this)}>"
    if isinstance(node, exp.Identifier):
        return ident_name(node)
    parts = [type(node).__name__]
    for key, value in sorted(node.args.items()):
        if isinstance(value, exp.Expression):
            parts.append(f"{key}={canon(analysis, value)}")
        elif isinstance(value, list):
            inner = ",".join(
                canon(analysis, v) if isinstance(v, exp.Expression) else repr(v) for v in value
            )
            parts.append(f"{key}=[{inner}]")
        elif value is not None and value is not False:
            parts.append(f"{key}={str(value).lower()!r}")
    return "(" + " ".join(parts) + ")"
