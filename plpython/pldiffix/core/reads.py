"""Which tables a statement reads: the one answer the gate, the mechanisms and the proxy share.

A table name in FROM or JOIN is a common table expression when one of that name is in scope
there (sqlglot's scope module decides, on names folded as PostgreSQL folds them), and a table
otherwise: a CTE defined in another subquery does not hide a table, nor does one of another
spelling ("People" is not people). Names a statement cannot have in scope are counted as tables,
so an answer errs on the side of a table read. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import traverse_scope

from pldiffix.core import sqltext
from pldiffix.core.relations import RelationInfo


@dataclass(frozen=True)
class TableRead:
    """One table a statement names: its node in the statement and its name as PostgreSQL folds
    it (unquoted names in lower case)."""

    node: exp.Table
    schema: str | None
    name: str

    @property
    def text(self) -> str:
        """The name as written, qualified as written (for pg_catalog.to_regclass)."""
        parts = [self.node.args.get(key) for key in ("catalog", "db", "this")]
        return ".".join(p.sql(dialect=sqltext.POSTGRES) for p in parts if p is not None)


class Relations(Protocol):
    """What resolving a name needs of a catalog (core/relations.Catalog has it)."""

    @property
    def search_path(self) -> Sequence[str]: ...

    def get_relation(self, schema: str, name: str) -> RelationInfo | None: ...


def tables_read(tree: exp.Expression) -> list[TableRead]:
    """Each table `tree` names, in the order of the tree, common table expressions left out."""
    ctes = _cte_references(tree)
    reads = []
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier) or id(table) in ctes:
            continue  # a function in FROM (generate_series(...)), or a CTE
        schema = table.args.get("db")
        folded = None if schema is None else sqltext.ident_name(schema)
        reads.append(TableRead(table, folded, sqltext.ident_name(table.this)))
    return reads


def resolve(read: TableRead, relations: Relations) -> RelationInfo | None:
    """The relation a read names (see `find`)."""
    return find(relations, read.schema, read.name)


def find(relations: Relations, schema: str | None, name: str) -> RelationInfo | None:
    """The relation `schema.name` (folded names) as PostgreSQL finds it: in its schema, or in
    the first schema of the search path that has it (pg_catalog first unless the path lists
    it)."""
    if schema is not None:
        return relations.get_relation(schema, name)
    for candidate in lookup_path(relations.search_path):
        relation = relations.get_relation(candidate, name)
        if relation is not None:
            return relation
    return None


def lookup_path(search_path: Sequence[str]) -> list[str]:
    """The schemas an unqualified name is looked up in: pg_catalog first unless the path lists
    it, as PostgreSQL does."""
    path = list(search_path)
    return path if "pg_catalog" in path else ["pg_catalog", *path]


def relations_read(tree: exp.Expression, relations: Relations) -> list[RelationInfo]:
    """The known relations `tree` reads (names that resolve to none are left out)."""
    found = (resolve(read, relations) for read in tables_read(tree))
    return [relation for relation in found if relation is not None]


def _cte_references(tree: exp.Expression) -> set[int]:
    """The ids of the Table nodes of `tree` that name a common table expression in scope."""
    folded = normalize_identifiers(tree.copy(), dialect=sqltext.POSTGRES)
    originals = {id(copy): node for copy, node in zip(folded.walk(), tree.walk(), strict=True)}
    try:
        scopes = traverse_scope(folded)
    except SqlglotError:
        return set()  # no scopes: every name counts as a table
    references = set()
    for scope in scopes:
        for table in scope.tables:
            if table.args.get("db") is None and table.name in scope.cte_sources:
                references.add(id(originals[id(table)]))
    return references
