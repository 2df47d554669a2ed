"""Reads roles, labels and settings from the database through plpy.

Every statement here is schema-qualified: the functions that call it pin search_path, but the
invoker-rights ones do not, and a user's own objects must not shadow ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pldiffix.core import context, session, settings
from pldiffix.core.levels import AccessLevel, most_restricted
from pldiffix.core.relations import ColumnInfo, FunctionInfo, RelationInfo, RelationKind


def query(plpy: Any, sql: str, types: tuple[str, ...] = (), args: tuple[Any, ...] = ()) -> Any:
    """Runs a fixed, parameterized statement; its plan is kept per security context
    (core/context.py). Parameter types must be schema-qualified (pg_catalog.name)."""
    return plpy.execute(context.prepared(plpy, sql, types), list(args))


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
FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) $1
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
        "SELECT CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none' "
        "THEN CAST(pg_catalog.session_user() AS pg_catalog.text) "
        "ELSE pg_catalog.current_setting('role') END AS r",
    )
    return rows[0]["r"]


def require_admin(plpy: Any, action: str) -> str:
    """The invoking role, when it is a superuser or a member of diffix_admin; else a refusal
    saying it cannot do `action`."""
    role = invoking_role(plpy)
    if not role_facts(plpy, role).is_admin:
        raise PermissionError(f"only superusers and members of diffix_admin can {action}")
    return role


def database_settings(plpy: Any) -> dict[str, str]:
    """Database-wide values, without the salt (readable by everyone through a definer function)."""
    rows = query(plpy, "SELECT s.name, s.value FROM diffix._database_settings() s")
    return {row["name"]: row["value"] for row in rows}


def effective_settings(plpy: Any, *, include_salt: bool = False) -> dict[str, Any]:
    values = settings.defaults()
    for name, raw in database_settings(plpy).items():
        if name in settings.SPECS:
            values[name] = settings.parse_value(settings.SPECS[name], raw)
    if include_salt:
        salt = query(
            plpy,
            "SELECT s.value FROM diffix.database_settings s"
            " WHERE s.name OPERATOR(pg_catalog.=) 'salt'",
        )
        values["salt"] = salt[0]["value"] if salt else ""
    values.update(session.overrides(session_role(plpy)))
    return values


# Everything the session's level depends on, in one statement: the login (session_user), the
# role SET ROLE chose, their stored levels, and the database-wide level settings.
_PERSON = """
SELECT w.login, w.acting,
       l.oid IS NOT NULL AS login_exists, diffix._stored_level(l.oid) AS login_level,
       a.oid IS NOT NULL AS acting_exists,
       CASE WHEN a.oid OPERATOR(pg_catalog.<>) l.oid THEN diffix._stored_level(a.oid) END
         AS acting_level,
       d.default_access_level, d.session_access_level
FROM (SELECT CAST(pg_catalog.session_user() AS pg_catalog.text) AS login,
             CASE WHEN pg_catalog.current_setting('role') OPERATOR(pg_catalog.=) 'none'
                  THEN CAST(pg_catalog.session_user() AS pg_catalog.text)
                  ELSE pg_catalog.current_setting('role') END AS acting) AS w
LEFT JOIN pg_catalog.pg_roles l
  ON l.rolname OPERATOR(pg_catalog.=) CAST(w.login AS pg_catalog.name)
LEFT JOIN pg_catalog.pg_roles a
  ON a.rolname OPERATOR(pg_catalog.=) CAST(w.acting AS pg_catalog.name)
CROSS JOIN (
  SELECT pg_catalog.max(s.value)
           FILTER (WHERE s.name OPERATOR(pg_catalog.=) 'default_access_level')
           AS default_access_level,
         pg_catalog.max(s.value)
           FILTER (WHERE s.name OPERATOR(pg_catalog.=) 'session_access_level')
           AS session_access_level
  FROM diffix._database_settings() s) AS d
"""


def person_level(plpy: Any) -> AccessLevel:
    """The level the session answers at: the most restricted of the login's (session_user) and
    of the role SET ROLE chose, lowered (never raised) by session_access_level.

    SET ROLE to a role with a weaker level, or none (default_access_level), never weakens it:
    the level follows the person who logged in. Context-independent: the same in invoker and
    definer functions. Read from the catalog on every call, in one statement.
    """
    row = query(plpy, _PERSON)[0]
    for who in ("login", "acting"):
        if not row[f"{who}_exists"]:
            raise LookupError(f"role {row[who]!r} does not exist")
    values = {
        name: settings.parse_value(settings.SPECS[name], row[name])
        for name in ("default_access_level", "session_access_level")
        if row[name] is not None
    }
    values.update(session.overrides(row["login"]))
    default = values.get("default_access_level", _DEFAULT_LEVEL)
    level = _stored(row["login_level"], default)
    if row["acting"] != row["login"]:
        level = most_restricted(level, _stored(row["acting_level"], default))
    requested = values.get("session_access_level")
    if isinstance(requested, AccessLevel):
        level = most_restricted(level, requested)
    return level


_DEFAULT_LEVEL = settings.parse_value(
    settings.SPECS["default_access_level"], settings.SPECS["default_access_level"].default
)


def _stored(level: str | None, default: AccessLevel) -> AccessLevel:
    """A role's stored level, `default` when the role has none."""
    return AccessLevel(level) if level else default


# --- the validator's catalog, live ---------------------------------------------------------------

_RELATION = """
SELECT c.oid, c.relkind, c.relrowsecurity,
       CASE WHEN c.relkind OPERATOR(pg_catalog.<>) ALL (ARRAY['r', 'm']::pg_catalog."char"[])
              THEN NULL
            WHEN c.reltuples OPERATOR(pg_catalog.>=) 0 THEN CAST(c.reltuples AS pg_catalog.float8)
            ELSE CAST(pg_catalog.pg_relation_size(c.oid) AS pg_catalog.float8)
                 OPERATOR(pg_catalog./) 32.0 END AS estimated_rows,
       CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'r' THEN pg_catalog.pg_relation_size(c.oid)
            OPERATOR(pg_catalog./)
            CAST(pg_catalog.current_setting('block_size') AS pg_catalog.int8) END AS blocks,
       c.relhassubclass OR c.relispartition
         OR EXISTS (SELECT FROM pg_catalog.pg_inherits i
                    WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid) AS inheritance,
       c.relkind OPERATOR(pg_catalog.=) 'p' AND NOT c.relispartition AS partitioned,
       l.label
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
LEFT JOIN diffix.table_labels l ON l.relid OPERATOR(pg_catalog.=) c.oid
WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2
  AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::pg_catalog."char"[])
"""

_COLUMNS = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       tn.nspname AS type_schema,
       pg_catalog.array_agg(cl.label) FILTER (WHERE cl.label IS NOT NULL) AS labels
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.typnamespace
LEFT JOIN diffix.column_labels cl ON cl.relid OPERATOR(pg_catalog.=) a.attrelid
  AND cl.attnum OPERATOR(pg_catalog.=) a.attnum
WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0
  AND NOT a.attisdropped
GROUP BY a.attnum, a.attname, a.atttypid, a.atttypmod, tn.nspname
ORDER BY a.attnum
"""

_FUNCTION = """
SELECT p.prokind, p.proretset FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND p.proname OPERATOR(pg_catalog.=) $2
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
    'cellkey' (cell-key tables) count as unlabeled here: the anonymizing engine never reads them.
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
        return RelationInfo(
            schema,
            name,
            kind,
            infos,
            inheritance=bool(row["inheritance"]),
            partitioned=bool(row["partitioned"]),
        )

    def get_function(self, schema: str, name: str) -> FunctionInfo | None:
        rows = query(self._plpy, _FUNCTION, ("name", "name"), (schema, name))
        if not rows:
            return None
        kind = _FUNCTION_KINDS.get(rows[0]["prokind"], "function")
        return FunctionInfo(schema, name, kind, bool(rows[0]["proretset"]))  # type: ignore[arg-type]


# A valid, non-partial unique index whose only key column is the named one.
_UNIQUE_COLUMN = (
    "SELECT EXISTS (SELECT FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a "
    "ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid "
    "AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] "
    "WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid "
    "AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 AND i.indpred IS NULL "
    "AND a.attname OPERATOR(pg_catalog.=) $2) AS u"
)


def has_unique_index(plpy: Any, relid: int, column: str) -> bool:
    """Whether a unique index guarantees one row per value of `column` (e.g. one row per AID,
    which lets contribution bounding be skipped)."""
    return bool(query(plpy, _UNIQUE_COLUMN, ("oid", "name"), (relid, column))[0]["u"])


def current_schemas(plpy: Any) -> list[str]:
    """The session's effective search path without implicit schemas."""
    rows = query(plpy, "SELECT CAST(pg_catalog.current_schemas(false) AS pg_catalog.text[]) AS s")
    return list(rows[0]["s"] or [])


def usable_schemas(plpy: Any, role: str, schemas: Sequence[str]) -> list[str]:
    """`schemas` in order, keeping only existing ones `role` has USAGE on."""
    rows = query(
        plpy,
        "SELECT s.name FROM pg_catalog.unnest($1) WITH ORDINALITY AS s(name, i) "
        "JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) s.name "
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
        " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) WITH ORDINALITY"
        " AS t(oid, typmod, n) ORDER BY t.n",
        ("oid[]", "int[]"),
        (oids, typmods),
    )
    return [row["name"] for row in rows]
