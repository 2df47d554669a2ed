"""What must hold before a mechanism executes SQL generated for an analyst with its own privileges.

A mechanism that reads personal tables as the engine (Diffix, DP) hands over what its generated
statement reads (`RelationRead`: the relations under their aliases) and every analyst-derived
expression it emits; the checks refuse relations the invoking role may not read, views and
foreign tables, row-level security on joined tables, user-defined types, functions outside
pg_catalog and diffix, and volatile functions that could observe or change something.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from pldiffix.core import catalog
from pldiffix.core.relations import RelationKind, RelationRead

ENGINE_SCHEMAS = frozenset({"pg_catalog", "diffix"})
# Volatile functions that cannot observe or change anything an analyst could abuse.
HARMLESS_VOLATILE = frozenset({"random", "clock_timestamp", "timeofday"})


@dataclass
class SecurityChecks:
    """The checks for one invoking role, against the live catalog of its usable schemas."""

    plpy: Any
    role: str
    catalog: catalog.LiveCatalog

    def check(
        self, relations: Sequence[RelationRead], expressions: Sequence[exp.Expression]
    ) -> None:
        """Raises PermissionError unless the statement reading `relations` and emitting
        `expressions` may run as the engine on the role's behalf."""
        for relation in relations:
            details = self.catalog.details.get((relation.schema, relation.name))
            if details is None:
                raise PermissionError(f"relation {relation.schema}.{relation.name} is not known")
            self._check_relation(relation, details, relations, expressions)
        for expression in expressions:
            self._check_expression(expression)

    def _check_relation(
        self,
        relation: RelationRead,
        details: Any,
        relations: Sequence[RelationRead],
        expressions: Sequence[exp.Expression],
    ) -> None:
        schema, name = relation.schema, relation.name
        shown = f"{schema}.{name}"
        if details.relkind not in ("r", "p", "m"):
            raise PermissionError(
                f"{shown} is a view or foreign table; queries over personal tables can only join "
                "plain tables"
            )
        row = catalog.query(
            self.plpy,
            "SELECT pg_catalog.has_schema_privilege($1, n.oid, 'USAGE') AS usage, "
            "pg_catalog.has_table_privilege($1, $2::oid, 'SELECT') AS can_select "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = $2::oid",
            ("name", "oid"),
            (self.role, details.oid),
        )[0]
        if not row["usage"]:
            raise PermissionError(f"permission denied for schema {schema}")
        if details.relkind == "p":  # partitions attached later (docs/scale-out.md)
            _check_partition_tree(self.plpy, details.oid, shown)
        if relation.kind is RelationKind.PERSONAL:
            return
        if details.row_security:
            raise PermissionError(
                f"{shown} has row-level security and cannot be joined in a query over personal "
                "tables"
            )
        if row["can_select"]:
            return
        aliases = {r.alias for r in relations if r.name == name}
        used = sorted(
            {
                c.name
                for expression in expressions
                for c in expression.find_all(exp.Column)
                if c.table in aliases
            }
        )
        allowed = catalog.query(
            self.plpy,
            "SELECT pg_catalog.bool_and(pg_catalog.has_column_privilege($1, $2::oid, c, 'SELECT')) "
            "AS ok FROM pg_catalog.unnest($3::text[]) AS c",
            ("name", "oid", "text[]"),
            (self.role, details.oid, used),
        )[0]["ok"]
        if not used or not allowed:
            raise PermissionError(f"permission denied for table {name}")

    def _check_expression(self, expression: exp.Expression) -> None:
        for node in expression.walk():
            if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
                raise PermissionError(
                    f"type {node.sql(dialect='postgres')} is not allowed in queries over "
                    "personal tables; only built-in types are"
                )
            if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
                schema = node.this.name if isinstance(node.this, exp.Identifier) else ""
                if schema not in ENGINE_SCHEMAS:
                    raise PermissionError(
                        f"function {node.sql(dialect='postgres')} is not allowed in queries over "
                        "personal tables; only built-in and diffix functions are"
                    )
                self._check_volatility(schema, node.expression.name)
            elif isinstance(node, exp.Anonymous) and not isinstance(node.parent, exp.Dot):
                self._check_volatility("pg_catalog", node.name)

    def _check_volatility(self, schema: str, name: str) -> None:
        rows = catalog.query(
            self.plpy,
            "SELECT pg_catalog.bool_or(p.provolatile = 'v') AS volatile FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = $1 AND p.proname = $2",
            ("name", "name"),
            (schema, name.lower()),
        )
        if rows and rows[0]["volatile"] and name.lower() not in HARMLESS_VOLATILE:
            raise PermissionError(f"volatile function {name} is not allowed")


def _check_partition_tree(plpy: Any, relid: int, shown: str) -> None:
    """Raises PermissionError when the partition tree rooted at `relid` may not be read: its
    partitions must still be plain or postgres_fdw foreign tables, unlabeled, without children
    (sql/core/44_partition_trees.sql)."""
    refusal = catalog.query(
        plpy, "SELECT diffix._partition_tree_refusal($1) AS refusal", ("oid",), (relid,)
    )[0]["refusal"]
    if refusal is not None:
        raise PermissionError(f"{shown} cannot be read in an anonymizing query: {refusal}")
