"""Anonymizing queries over personal tables (validate, rewrite, execute, anonymize)."""

from __future__ import annotations

from typing import Any

from pldiffix.levels import AccessLevel
from pldiffix.statements import QueryError


def run(plpy: Any, sql: str, level: AccessLevel) -> str:
    raise QueryError(
        "anonymizing queries over personal tables are not available in this version",
        hint="query public tables, or ask an administrator for direct access",
    )
