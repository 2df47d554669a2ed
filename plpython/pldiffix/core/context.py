"""The security context a PL/Python entry point runs in, and the plans prepared in it.

PL/Python keeps one interpreter per backend for every function, whatever its owner: module
globals written while an analyst's invoker-rights function runs are seen by a SECURITY DEFINER
function later in the session. A plan prepared in the analyst's context resolves its parameter
types, functions and operators with the analyst's search_path (a `pg_temp.name` domain whose CHECK
calls the analyst's function, say); reused inside a definer, that function would run with the
definer's rights. So prepared plans are kept per security context: the current user and the
search_path in force when the entry point was entered. Every entry point enters its context
(core/errors.py `reports_errors`); SQL outside any entry point is prepared afresh each time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_stack: list[tuple[str, str]] = []
_plans: dict[tuple[tuple[str, str], str, tuple[str, ...]], Any] = {}

_CURRENT = "SELECT pg_catalog.current_user() AS u, pg_catalog.current_setting('search_path') AS p"


@contextmanager
def entered(plpy: Any) -> Iterator[None]:
    """Runs the body in the caller's current security context (nested entries stack)."""
    row = plpy.execute(_CURRENT)[0]
    _stack.append((row["u"], row["p"]))
    try:
        yield
    finally:
        _stack.pop()


def current() -> tuple[str, str] | None:
    """(current user, search_path) of the innermost entry point, None outside any."""
    return _stack[-1] if _stack else None


def prepared(plpy: Any, sql: str, types: tuple[str, ...] | list[str] = ()) -> Any:
    """A plan for `sql`, prepared in and kept for the current security context only. Its
    parameter types are resolved in pg_catalog whatever the search_path (`qualified_type`)."""
    qualified = tuple(qualified_type(name) for name in types)
    here = current()
    if here is None:
        return plpy.prepare(sql, list(qualified))
    key = (here, sql, qualified)
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(sql, list(qualified))
    return plan


# SQL's spellings of built-in types that are not pg_catalog's names for them
_CANONICAL = {
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "boolean": "bool",
    "double precision": "float8",
    "real": "float4",
    "decimal": "numeric",
}


def qualified_type(name: str) -> str:
    """`name` (a built-in type, possibly an array) as pg_catalog.<name>: a parameter type
    spelled without a schema would be looked up in pg_temp first."""
    base = name.strip()
    suffix = ""
    while base.endswith("[]"):
        base, suffix = base[:-2].rstrip(), suffix + "[]"
    if "." in base:
        return base + suffix
    return f"pg_catalog.{_CANONICAL.get(base.lower(), base.lower())}{suffix}"
