"""Pure helpers over sqlglot expressions, independent of any catalog or scope.

Identifiers as PostgreSQL folds them (`ident_name`, from core/sqltext.py), literal constants,
the constant folding that tells a WHERE clause which is always false, conjuncts, and the output
names PostgreSQL gives to SELECT items.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlglot import exp

from pldiffix.core.sqltext import ident_name

from .functions import builtin_name
from .pgtypes import datatype_name, literal_number


def strip_parens(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def unalias(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def is_literal_constant(node: exp.Expression) -> bool:
    """A token the parser turns into a Const (before any cast is applied)."""
    node = strip_parens(node)
    if isinstance(node, exp.Neg):
        inner = strip_parens(node.this)
        return isinstance(inner, exp.Literal) and not inner.is_string
    return isinstance(node, (exp.Literal, exp.Null, exp.Boolean, exp.Var, exp.HexString))


def literal_value(node: exp.Expression) -> float | str | None:
    """The value of a string or (possibly negated) number literal; None for anything else."""
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else literal_number(node.this)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        value = literal_number(node.this.this)
        return None if value is None else -value
    return None


def _const_truth(node: exp.Expression) -> bool | str | None:
    """Evaluate a WHERE clause made of literals: True, False, None (NULL) or "unknown"."""
    node = strip_parens(node)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Not):
        value = _const_truth(node.this)
        return value if value in (None, "unknown") else not value
    if isinstance(node, exp.And):
        values = [_const_truth(node.this), _const_truth(node.expression)]
        if False in values:
            return False
        if "unknown" in values:
            return "unknown"
        return None if None in values else True
    if isinstance(node, exp.Or):
        values = [_const_truth(node.this), _const_truth(node.expression)]
        if True in values:
            return True
        if "unknown" in values:
            return "unknown"
        return None if None in values else False
    if isinstance(node, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)):
        left, right = strip_parens(node.this), strip_parens(node.expression)
        if isinstance(left, exp.Null) or isinstance(right, exp.Null):
            return None
        a, b = literal_value(left), literal_value(right)
        if a is None or b is None or type(a) is not type(b):
            return "unknown"
        ops = {
            exp.EQ: a == b,
            exp.NEQ: a != b,
            exp.GT: a > b,
            exp.GTE: a >= b,
            exp.LT: a < b,
            exp.LTE: a <= b,
        }
        return ops[type(node)]
    return "unknown"


def where_always_false(select: exp.Select) -> bool:
    where = select.args.get("where")
    return where is not None and _const_truth(where.this) in (False, None)


def conjuncts(node: exp.Expression) -> Iterator[exp.Expression]:
    """The operands of a chain of ANDs."""
    node = strip_parens(node)
    if isinstance(node, exp.And):
        yield from conjuncts(node.this)
        yield from conjuncts(node.expression)
    else:
        yield node


def walk_nodes(*parts: object) -> Iterator[exp.Expression]:
    """Every node of the given expressions (None and nested lists allowed)."""
    for part in parts:
        if part is None:
            continue
        if isinstance(part, exp.Expression):
            yield from part.walk()
        elif isinstance(part, Iterable):
            for item in part:
                yield from walk_nodes(item)


def zip_aliases(select: exp.Select) -> list[tuple[str, bool]]:
    """(output name, has explicit alias) of each SELECT item."""
    return [(output_name(item), isinstance(item, exp.Alias)) for item in select.expressions]


def output_name(node: exp.Expression) -> str:
    """The column name PostgreSQL gives to a SELECT item."""
    if isinstance(node, exp.Alias):
        return ident_name(node.args.get("alias"))
    node = strip_parens(node)
    if isinstance(node, exp.Column):
        return ident_name(node.this)
    if isinstance(node, exp.Cast):
        inner = output_name(node.this)
        if inner != "?column?":
            return inner
        return datatype_name(node.to)[0]
    if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
        return output_name(node.expression)
    if isinstance(node, exp.Anonymous):
        return ident_name(node.args.get("this"))
    if isinstance(node, exp.Exists):
        return "exists"
    if isinstance(node, exp.Case):
        return "case"
    if (
        isinstance(node, exp.Subquery)
        and isinstance(node.this, exp.Select)
        and node.this.expressions
    ):
        return output_name(node.this.expressions[0])
    if isinstance(node, exp.Func):
        return builtin_name(node) or "?column?"
    return "?column?"
