"""The state one validation shares across its passes, the catalog's functions, and the shape of a
mechanism's aggregate rules (`AggregateRules`: which aggregate calls it accepts).

An `Analysis` is created per statement. Name resolution fills `resolved` (column node -> what it
points at), the passes record the relations and functions the statement uses, and every accepted
anonymizing SELECT adds its model to `anonymizing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlglot import exp

from pldiffix.core import errors as sqlstate
from pldiffix.core import reads
from pldiffix.core.relations import Catalog, FunctionInfo

from ..query_model import AnonymizingQuery, FunctionRef, RelationRef
from .errors import error_at
from .functions import SYNTAX_NOT_FUNCTIONS, builtin_name
from .scope import Resolved, Source
from .syntax import ident_name, strip_parens


@dataclass
class AggResult:
    """A verified aggregate call; `kind` is the mechanism's name for it."""

    kind: str
    node: exp.Expression
    column: Resolved | None = None
    bin_size: int | None = None


class AggregateRules(Protocol):
    """A mechanism's aggregates, as the validator asks for them."""

    def check(self, analysis: Analysis, select: exp.Select) -> list[AggResult]:
        """Every aggregate call in the select list, HAVING and ORDER BY, verified (raises
        `ValidationError` for one the mechanism does not accept)."""
        ...


TRUSTED = "anonymized_trusted"
UNTRUSTED = "anonymized_untrusted"


@dataclass
class Analysis:
    """What the passes over one statement share: the catalog, the level, and what they found."""

    catalog: Catalog
    access_level: str
    aggregate_rules: AggregateRules  # the mechanism's aggregates
    treat_unmarked_tables_as_public: bool = False
    total_expressions: bool = False  # the DP level asks for the untrusted level's total rules
    resolved: dict[int, Resolved] = field(default_factory=dict)
    relations: dict[tuple[str, str], RelationRef] = field(default_factory=dict)
    functions: dict[tuple[str, str], FunctionRef] = field(default_factory=dict)
    anonymizing: list[AnonymizingQuery] = field(default_factory=list)
    catalog_sources: list[Source] = field(default_factory=list)
    _function_cache: dict[tuple[str | None, str], FunctionInfo | None] = field(default_factory=dict)

    @property
    def untrusted(self) -> bool:
        return self.access_level == UNTRUSTED

    @property
    def total(self) -> bool:
        """Whether every expression run over personal rows must be unable to fail
        (totality.py): untrusted analysts and DP."""
        return self.untrusted or self.total_expressions

    def search_path(self) -> list[str]:
        """The schemas unqualified names are looked up in (pg_catalog first unless listed)."""
        return reads.lookup_path(self.catalog.search_path)

    def column_of(self, node: exp.Expression) -> Resolved | None:
        """The resolution of a (parenthesized) column reference; None for other expressions."""
        node = strip_parens(node)
        if isinstance(node, exp.Column):
            return self.resolved.get(id(node))
        return None

    def lookup_function(self, schema: str | None, name: str) -> FunctionInfo | None:
        key = (schema, name)
        if key not in self._function_cache:
            found = None
            for candidate in [schema] if schema is not None else self.search_path():
                found = self.catalog.get_function(candidate, name)
                if found is not None:
                    break
            self._function_cache[key] = found
        return self._function_cache[key]

    def function_of(self, node: exp.Expression) -> tuple[str | None, str, bool] | None:
        """(schema, name, builtin) of a function call node; None when `node` is no call."""
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            schema = ident_name(node.this)
            func = node.expression
            name = (
                ident_name(func.this)
                if isinstance(func, exp.Anonymous)
                else (builtin_name(func) or "")
            )
            return schema, name, False
        if isinstance(node, exp.Anonymous):
            name = ident_name(node.args.get("this"))
            info = self.lookup_function(None, name)
            return (info.schema if info else None), name, False
        if isinstance(node, exp.Func) and not isinstance(node, exp.Cast):
            name = builtin_name(node)
            if name is None:
                return None
            return "pg_catalog", name, True
        return None

    def note_function(self, node: exp.Expression) -> FunctionInfo | None:
        """Record a function call; unknown (non built-in) functions are an error."""
        found = self.function_of(node)
        if found is None:
            return None
        schema, name, builtin = found
        if builtin:
            if name not in SYNTAX_NOT_FUNCTIONS:
                self.functions.setdefault(
                    (schema or "", name), FunctionRef(schema or "", name, True)
                )
            return None
        info = self.lookup_function(schema, name)
        if info is None:
            where = f"{schema}.{name}" if schema else name
            raise error_at(
                node,
                f"function {where}() does not exist",
                "Check the spelling and the schema of the function"
                + ("" if schema else " (or qualify it, e.g. diffix.count_noise)")
                + ".",
                sqlstate=sqlstate.UNDEFINED_FUNCTION,
            )
        self.functions.setdefault(
            (info.schema, info.name), FunctionRef(info.schema, info.name, False)
        )
        return info
