"""The catalog protocol: what every mechanism's validation needs to know about the database.

The catalog is a small protocol so that validation stays pure: the server implements it with plpy
(`core.catalog.LiveCatalog`), unit tests with dictionaries (see `StaticCatalog`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol


class RelationKind(enum.Enum):
    """The anonymization label of a relation."""

    PERSONAL = "personal"
    PUBLIC = "public"
    UNLABELED = "unlabeled"


@dataclass(frozen=True)
class ColumnInfo:
    """A column of a catalog relation.

    `type` is a PostgreSQL type name as given by `format_type()` or `pg_type.typname`
    (`integer`/`int4`, `timestamp with time zone`/`timestamptz`, `character varying(20)`, ...).
    """

    name: str
    type: str
    is_aid: bool = False
    not_filterable: bool = False


@dataclass(frozen=True)
class RelationInfo:
    """A table, view or other relation found in the catalog."""

    schema: str
    name: str
    kind: RelationKind
    columns: tuple[ColumnInfo, ...]
    #: True when the relation has a parent or children in an inheritance (or partition) tree.
    inheritance: bool = False
    #: True for the root of a declarative partition tree (relkind 'p', itself no partition).
    partitioned: bool = False

    @property
    def aid_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.is_aid)

    def column(self, name: str) -> ColumnInfo | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True)
class RelationRead:
    """A catalog relation a generated statement reads, under the alias its expressions use
    (core/security_checks.py)."""

    schema: str
    name: str
    kind: RelationKind
    alias: str


FunctionKind = Literal["function", "aggregate", "window", "procedure"]


@dataclass(frozen=True)
class FunctionInfo:
    """A function name that exists in a schema (any overload)."""

    schema: str
    name: str
    kind: FunctionKind = "function"
    returns_set: bool = False


class Catalog(Protocol):
    """What validation needs to know about the database.

    Names are passed already case-folded the way PostgreSQL does it (unquoted identifiers in lower
    case). Validation resolves unqualified names itself: `pg_catalog` first (unless `search_path`
    lists it explicitly elsewhere), then the schemas of `search_path` in order.
    """

    @property
    def search_path(self) -> Sequence[str]:
        """Effective schemas of the session, in order (`current_schemas(false)`)."""
        ...

    def get_relation(self, schema: str, name: str) -> RelationInfo | None:
        """The relation `schema.name`, or None if it does not exist."""
        ...

    def get_function(self, schema: str, name: str) -> FunctionInfo | None:
        """A function/aggregate named `schema.name` (any argument types), or None."""
        ...


@dataclass
class StaticCatalog:
    """An in-memory `Catalog` (tests, and a reference for the live implementation)."""

    relations: Mapping[tuple[str, str], RelationInfo] = field(default_factory=dict)
    functions: Mapping[tuple[str, str], FunctionInfo] = field(default_factory=dict)
    search_path: Sequence[str] = ("public",)

    def get_relation(self, schema: str, name: str) -> RelationInfo | None:
        return self.relations.get((schema, name))

    def get_function(self, schema: str, name: str) -> FunctionInfo | None:
        return self.functions.get((schema, name))
