"""Reads roles, labels and settings from the database through plpy.

Every statement here is schema-qualified: the functions that call it pin search_path, but the
invoker-rights ones do not, and a user's own objects must not shadow ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pldiffix import session, settings
from pldiffix.levels import AccessLevel, most_restricted

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
