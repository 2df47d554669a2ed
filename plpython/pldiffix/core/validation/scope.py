"""What name resolution produces: range variables (FROM items), scopes, FROM trees and resolved
columns, and the model reference of a resolved column. The resolving itself is in resolve.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind

from ..query_model import ColumnRef, RelationRef

SourceKind = Literal["relation", "subquery", "cte", "function", "values"]

# Columns every table has besides its own.
SYSTEM_COLUMNS = {
    "ctid": "tid",
    "xmin": "xid",
    "xmax": "xid",
    "cmin": "cid",
    "cmax": "cid",
    "tableoid": "oid",
}


@dataclass
class Source:
    """A range variable: something in FROM that columns can be taken from."""

    alias: str
    kind: SourceKind
    columns: list[tuple[str, str | None]]  # (name, normalized type or None when unknown)
    node: exp.Expression
    relation: RelationInfo | None = None
    effective_kind: RelationKind | None = None  # label after treat-unmarked-as-public
    aliased: bool = False
    opaque: bool = False  # column list unknown (functions without a column definition list)
    used_columns: set[str] = field(default_factory=set)
    uses_all_columns: bool = False

    def has_column(self, name: str) -> bool:
        return self.opaque or any(c == name for c, _ in self.columns) or self.system_column(name)

    def column_type(self, name: str) -> str | None:
        for c, t in self.columns:
            if c == name:
                return t
        return SYSTEM_COLUMNS.get(name) if self.system_column(name) else None

    def system_column(self, name: str) -> bool:
        return self.kind == "relation" and name in SYSTEM_COLUMNS

    def column_info(self, name: str) -> ColumnInfo | None:
        return self.relation.column(name) if self.relation is not None else None

    @property
    def is_personal(self) -> bool:
        return self.kind == "relation" and self.effective_kind is RelationKind.PERSONAL


@dataclass
class Resolved:
    """What a column reference points at."""

    source: Source
    name: str
    type: str | None
    levels_up: int  # 0: this query level; >0: an outer query (correlated reference)
    system: bool = False
    whole_row: bool = False

    @property
    def info(self) -> ColumnInfo | None:
        return self.source.column_info(self.name)

    @property
    def is_aid(self) -> bool:
        info = self.info
        return self.source.is_personal and info is not None and info.is_aid

    @property
    def not_filterable(self) -> bool:
        info = self.info
        return info is not None and info.not_filterable


@dataclass
class Scope:
    """The FROM items of one query level, with a link to the enclosing level."""

    sources: list[Source]
    parent: Scope | None = None
    #: Columns merged by JOIN ... USING / NATURAL JOIN: name -> the source an unqualified
    #: reference is taken from.
    merged: dict[str, Source] = field(default_factory=dict)

    def find_source(self, table: str, schema: str | None) -> Source | None:
        for source in self.sources:
            if source.alias != table:
                continue
            if schema is not None and (
                source.aliased or source.relation is None or source.relation.schema != schema
            ):
                continue
            return source
        return None

    def candidates(self, name: str) -> list[Source]:
        if name in self.merged:
            return [self.merged[name]]
        known = [s for s in self.sources if not s.opaque and s.has_column(name)]
        if known:
            return known
        return [s for s in self.sources if s.opaque]


@dataclass
class FromLeaf:
    """A FROM item that is a range variable."""

    source: Source


@dataclass
class FromJoin:
    """Two FROM items joined (`comma`: a comma-separated FROM list)."""

    join: exp.Join
    left: FromLeaf | FromJoin
    right: FromLeaf | FromJoin
    comma: bool


FromTree = FromLeaf | FromJoin


def leaves(tree: FromTree) -> Iterator[Source]:
    """The range variables of a FROM tree, left to right."""
    if isinstance(tree, FromLeaf):
        yield tree.source
    else:
        yield from leaves(tree.left)
        yield from leaves(tree.right)


def column_ref(resolved: Resolved) -> ColumnRef:
    """A column of a relation as the query model refers to it."""
    relation = resolved.source.relation
    assert relation is not None
    return ColumnRef(
        resolved.source.alias,
        RelationRef(relation.schema, relation.name, relation.kind),
        resolved.name,
        resolved.type or "",
        resolved.is_aid,
    )
