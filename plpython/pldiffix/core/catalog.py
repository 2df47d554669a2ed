"""Reads roles, labels and settings from the database through plpy.

Every statement here is schema-qualified: the functions that call it pin search_path, but the
invoker-rights ones do not, and a user's own objects must not shadow ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pldiffix.core import session, settings
from pldiffix.core.levels import AccessLevel, most_restricted
from pldiffix.core.relations import ColumnInfo, FunctionInfo, RelationInfo, RelationKind

_plans: dict[str, Any] = {}


def query(plpy: Any, sql: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Any:
    """Runs a fixed, parameterized statement (plans are cached per backend)."""
    plan = _plans.get(sql)
    if plan is None:
        plan = plpy.prepare(sql, list(types))
        _plans[sql] = plan
    return plpy.execute(plan, list(args))


@dataclass(frozen=True)
class RoleFacts:
    name: str
    is_superuser: bool
    is_admin: bool
    labeled: AccessLevel | None


_ROLE_FACTS = """
SELECT r.rolname, r.rolsuper,
       r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'diffix_admin', 'MEMBER') AS is_admin,
       diffix._stored_level(r.oid) AS level
FROM pg_catalog.pg_roles r WHERE r.rolname = $1
"""


def role_facts(plpy: Any, role: str) -> RoleFacts:
    rows = query(plpy, _ROLE_FACTS, ("name",), (role,))
    if not rows:
        raise LookupError(f"role {role!r} does not exist")
    row = rows[0]
    labeled = AccessLevel(row["level"]) if row["level"] else None
    return RoleFacts(row["rolname"], row["rolsuper"], row["is_admin"], labeled)


def current_role(plpy: Any) -> str:
    return query(plpy, "SELECT pg_catalog.current_user() AS r")[0]["r"]


def session_role(plpy: Any) -> str:
    return query(plpy, "SELECT pg_catalog.session_user() AS r")[0]["r"]


def invoking_role(plpy: Any) -> str:
    """The role the session acts as, seen from inside a SECURITY DEFINER function.

    current_user there is the function's owner; the `role` setting still holds what SET ROLE
    chose (PostgreSQL only lets it name roles the session user is a member of).
    """
    rows = query(
        plpy,
        "SELECT CASE WHEN pg_catalog.current_setting('role') = 'none' "
        "THEN pg_catalog.session_user()::text "
        "ELSE pg_catalog.current_setting('role') END AS r",
    )
    return rows[0]["r"]


def database_settings(plpy: Any) -> dict[str, str]:
    """Database-wide values, without the salt (readable by everyone through a definer function)."""
    rows = query(plpy, "SELECT name, value FROM diffix._database_settings()")
    return {row["name"]: row["value"] for row in rows}


def effective_settings(plpy: Any, *, include_salt: bool = False) -> dict[str, Any]:
    values = settings.defaults()
    for name, raw in database_settings(plpy).items():
        if name in settings.SPECS:
            values[name] = settings.parse_value(settings.SPECS[name], raw)
    if include_salt:
        salt = query(plpy, "SELECT value FROM diffix.database_settings WHERE name = 'salt'")
        values["salt"] = salt[0]["value"] if salt else ""
    values.update(session.overrides(session_role(plpy)))
    return values


def role_level(facts: RoleFacts, default_level: AccessLevel) -> AccessLevel:
    return facts.labeled if facts.labeled is not None else default_level


def effective_level(plpy: Any, role: str) -> AccessLevel:
    """The role's level, lowered (never raised) by the session's session_access_level."""
    values = effective_settings(plpy)
    level = role_level(role_facts(plpy, role), values["default_access_level"])
    requested = values.get("session_access_level")
    if isinstance(requested, AccessLevel):
        level = most_restricted(level, requested)
    return level


# --- the validator's catalog, live ---------------------------------------------------------------

_RELATION = """
SELECT c.oid, c.relkind, c.relrowsecurity,
       CASE WHEN c.relkind NOT IN ('r', 'm') THEN NULL
            WHEN c.reltuples >= 0 THEN c.reltuples::float8
            ELSE pg_catalog.pg_relation_size(c.oid) / 32.0 END AS estimated_rows,
       CASE WHEN c.relkind = 'r' THEN pg_catalog.pg_relation_size(c.oid)
            / pg_catalog.current_setting('block_size')::pg_catalog.int8 END AS blocks,
       c.relhassubclass OR c.relispartition
         OR EXISTS (SELECT FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid) AS inheritance,
       l.label
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN diffix.table_labels l ON l.relid = c.oid
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
"""

_COLUMNS = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       tn.nspname AS type_schema,
       pg_catalog.array_agg(cl.label) FILTER (WHERE cl.label IS NOT NULL) AS labels
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN diffix.column_labels cl ON cl.relid = a.attrelid AND cl.attnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
GROUP BY a.attnum, a.attname, a.atttypid, a.atttypmod, tn.nspname
ORDER BY a.attnum
"""

_FUNCTION = """
SELECT p.prokind, p.proretset FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = $1 AND p.proname = $2
ORDER BY p.oid LIMIT 1
"""

_FUNCTION_KINDS = {"f": "function", "a": "aggregate", "w": "window", "p": "procedure"}


@dataclass(frozen=True)
class RelationDetails:
    """What the engine's security checks need beyond the validator's RelationInfo."""

    oid: int
    relkind: str
    row_security: bool
    column_type_schemas: tuple[str, ...]
    # The planner's row count (ANALYZE), else a bound from the size on disk; None if unknown
    estimated_rows: float | None = None
    blocks: int | None = None  # heap blocks of a plain table (main fork), None for other kinds


class LiveCatalog:
    """The `query_model.Catalog` protocol over plpy (labels from diffix.table_labels/column_labels).

    `search_path` is given by the caller: the session's `current_schemas(false)`, or in the engine
    the caller's schemas filtered to those the invoking role may use. Relations labeled
    'perturbed' (cell-key tables) count as unlabeled here: the anonymizing engine never reads them.
    """

    def __init__(self, plpy: Any, search_path: Sequence[str]) -> None:
        self._plpy = plpy
        self.search_path = tuple(search_path)
        self._relations: dict[tuple[str, str], RelationInfo | None] = {}
        self.details: dict[tuple[str, str], RelationDetails] = {}

    def get_relation(self, schema: str, name: str) -> RelationInfo | None:
        key = (schema, name)
        if key not in self._relations:
            self._relations[key] = self._load_relation(schema, name)
        return self._relations[key]

    def _load_relation(self, schema: str, name: str) -> RelationInfo | None:
        rows = query(self._plpy, _RELATION, ("name", "name"), (schema, name))
        if not rows:
            return None
        row = rows[0]
        kind = {
            "personal": RelationKind.PERSONAL,
            "public": RelationKind.PUBLIC,
        }.get(row["label"] or "", RelationKind.UNLABELED)
        columns = query(self._plpy, _COLUMNS, ("oid",), (row["oid"],))
        infos = tuple(
            ColumnInfo(
                c["attname"],
                c["type"],
                is_aid="aid" in (c["labels"] or []),
                not_filterable="not_filterable" in (c["labels"] or []),
            )
            for c in columns
        )
        self.details[(schema, name)] = RelationDetails(
            int(row["oid"]),
            row["relkind"],
            bool(row["relrowsecurity"]),
            tuple(c["type_schema"] for c in columns),
            None if row["estimated_rows"] is None else float(row["estimated_rows"]),
            None if row["blocks"] is None else int(row["blocks"]),
        )
        return RelationInfo(schema, name, kind, infos, inheritance=bool(row["inheritance"]))

    def get_function(self, schema: str, name: str) -> FunctionInfo | None:
        rows = query(self._plpy, _FUNCTION, ("name", "name"), (schema, name))
        if not rows:
            return None
        kind = _FUNCTION_KINDS.get(rows[0]["prokind"], "function")
        return FunctionInfo(schema, name, kind, bool(rows[0]["proretset"]))  # type: ignore[arg-type]


def current_schemas(plpy: Any) -> list[str]:
    """The session's effective search path without implicit schemas."""
    rows = query(plpy, "SELECT pg_catalog.current_schemas(false)::text[] AS s")
    return list(rows[0]["s"] or [])


def usable_schemas(plpy: Any, role: str, schemas: Sequence[str]) -> list[str]:
    """`schemas` in order, keeping only existing ones `role` has USAGE on."""
    rows = query(
        plpy,
        "SELECT s.name FROM pg_catalog.unnest($1::text[]) WITH ORDINALITY AS s(name, i) "
        "JOIN pg_catalog.pg_namespace n ON n.nspname = s.name "
        "WHERE pg_catalog.has_schema_privilege($2, n.oid, 'USAGE') ORDER BY s.i",
        ("text[]", "name"),
        (list(schemas), role),
    )
    return [row["name"] for row in rows]


def type_names(plpy: Any, oids: list[int], typmods: list[int]) -> list[str]:
    """format_type() of each (type OID, typmod): the exact SQL type names of a result."""
    rows = query(
        plpy,
        "SELECT pg_catalog.format_type(t.oid, t.typmod) AS name"
        " FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS t(oid, typmod, n) ORDER BY t.n",
        ("oid[]", "int[]"),
        (oids, typmods),
    )
    return [row["name"] for row in rows]
