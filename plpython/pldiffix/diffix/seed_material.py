"""Seed material of an anonymizing query, as pg_diffix builds it: per bucket expression the
function names, `relation.column` names and constants of a pre-order walk; constants are rendered
by PostgreSQL (`SeedPlan.constants`) before `join_material` joins the pieces."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.query_model import AnonymizingQuery
from pldiffix.core.validation.pgtypes import normalize_type

_FUNCTION_NAMES: dict[type, str] = {
    exp.Substring: "substring",
    exp.Round: "round",
    exp.Ceil: "ceil",
    exp.Floor: "floor",
    exp.WidthBucket: "width_bucket",
    exp.Trunc: "trunc",
    exp.Upper: "upper",
    exp.Lower: "lower",
    exp.Left: "left",
    exp.Right: "right",
    exp.Length: "length",
}
_DECIMAL_TYPES = frozenset({"float4", "float8", "numeric"})
_INTEGER_TYPES = frozenset({"int2", "int4", "int8"})


@dataclass
class MaterialPiece:
    """A piece of seed material: fixed text, or a constant PostgreSQL must render."""

    text: str | None = None
    separator: str = ","
    constant: exp.Expression | None = None
    constant_type: str | None = None


@dataclass
class SeedPlan:
    """The bucket expressions' seed materials and the base-label constants of one query."""

    materials: list[list[MaterialPiece]] = field(default_factory=list)
    base_labels: list[tuple[exp.Expression, str]] = field(default_factory=list)

    def constants(self) -> list[tuple[exp.Expression, str]]:
        out = [
            (p.constant, p.constant_type or "text")
            for m in self.materials
            for p in m
            if p.constant is not None
        ]
        return out + self.base_labels


def _literal_type(node: exp.Expression, context_type: str | None) -> str:
    """The type PostgreSQL gives a constant: its cast, a number, or the context's type."""
    if isinstance(node, exp.Cast):
        to = node.args.get("to")
        return normalize_type(to.sql(dialect=sqltext.POSTGRES)) if to is not None else "text"
    if isinstance(node, exp.Literal) and not node.is_string:
        return "numeric"
    if isinstance(node, exp.Neg):
        return "numeric"
    if isinstance(node, exp.Boolean):
        return "bool"
    return context_type or "text"


def _is_constant(node: exp.Expression) -> bool:
    if isinstance(node, exp.Paren):
        return _is_constant(node.this)
    if isinstance(node, exp.Cast):
        return _is_constant(node.this)
    if isinstance(node, exp.Neg):
        return _is_constant(node.this)
    return isinstance(node, exp.Literal | exp.Null | exp.Boolean)


def _unwrap_casts(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def seed_material(
    node: exp.Expression,
    relation_of_alias: dict[str, str],
    type_of: Any,
) -> list[MaterialPiece]:
    """Pre-order walk as pg_diffix does: function names, `relation.column`, constants.

    `type_of(column)` gives the normalized type of a qualified column (for casts).
    """
    pieces: list[MaterialPiece] = []

    def expression_type(item: exp.Expression) -> str | None:
        item = _unwrap_casts(item)
        if isinstance(item, exp.Column):
            return type_of(item)
        if isinstance(item, exp.Cast):
            return _literal_type(item, None)
        if isinstance(item, exp.Extract):
            return "numeric"
        if isinstance(item, exp.Round | exp.Floor | exp.Ceil | exp.Trunc):
            return expression_type(item.this)
        return None

    def visit(item: exp.Expression) -> None:
        if isinstance(item, exp.Paren | exp.Alias):
            visit(item.this)
            return
        if _is_constant(item):
            pieces.append(MaterialPiece(constant=item, constant_type=_literal_type(item, None)))
            return
        if isinstance(item, exp.Column):
            table = item.table
            pieces.append(MaterialPiece(text=relation_of_alias.get(table, table)))
            pieces.append(MaterialPiece(text=item.name, separator="."))
            return
        if isinstance(item, exp.Cast):
            target = _literal_type(item, None)
            source = expression_type(item.this)
            inner = _unwrap_casts(item.this)
            if (
                target in _INTEGER_TYPES
                and source in _DECIMAL_TYPES
                and not isinstance(inner, exp.Extract)
            ):
                pieces.append(MaterialPiece(text=target))
            visit(item.this)
            return
        if isinstance(item, exp.Dot) and isinstance(item.expression, exp.Anonymous):
            visit(item.expression)
            return
        if isinstance(item, exp.Anonymous):
            name = item.name.lower()
            pieces.append(MaterialPiece(text="extract" if name == "date_part" else name))
            for arg in item.expressions:
                visit(arg)
            return
        if isinstance(item, exp.Extract):
            pieces.append(MaterialPiece(text="extract"))
            pieces.append(MaterialPiece(text=item.this.name.lower()))
            visit(item.expression)
            return
        if isinstance(item, exp.TimestampTrunc | exp.DateTrunc):
            pieces.append(MaterialPiece(text="date_trunc"))
            unit = item.args.get("unit")
            pieces.append(MaterialPiece(text=(unit.name if unit is not None else "").lower()))
            visit(item.this)
            return
        if isinstance(item, exp.Func):
            name = _FUNCTION_NAMES.get(type(item), item.sql_name().lower())
            pieces.append(MaterialPiece(text=name))
            for arg in _ordered_args(item):
                visit(arg)
            return
        for child in item.iter_expressions():
            visit(child)

    visit(node)
    return pieces


def _ordered_args(node: exp.Func) -> list[exp.Expression]:
    out: list[exp.Expression] = []
    for key in node.arg_types:
        value = node.args.get(key)
        if isinstance(value, exp.Expression):
            out.append(value)
        elif isinstance(value, list):
            out.extend(v for v in value if isinstance(v, exp.Expression))
    return out


def join_material(pieces: Sequence[MaterialPiece], constants: dict[int, str]) -> str:
    text = ""
    for piece in pieces:
        value = constants[id(piece.constant)] if piece.constant is not None else piece.text or ""
        text = f"{text}{piece.separator}{value}" if text else value
    return text


def seed_plan(model: AnonymizingQuery, type_of: Any) -> SeedPlan:
    relation_of_alias = {entry.alias: entry.relation.name for entry in model.relations}
    plan = SeedPlan()
    for group in model.groups:
        plan.materials.append(seed_material(group.expression, relation_of_alias, type_of))
    for item in model.filters:
        plan.materials.append(seed_material(item.subject.expression, relation_of_alias, type_of))
        value = item.value
        while isinstance(value, exp.Paren):
            value = value.this
        subject_type = normalize_type(item.subject.type) if item.subject.type else None
        plan.base_labels.append((value, _literal_type(value, subject_type)))
    return plan
