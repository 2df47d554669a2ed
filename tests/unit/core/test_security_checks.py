"""What generated SQL may read and call (core/security_checks.py), without a database."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlglot

from pldiffix.core.relations import RelationKind, RelationRead
from pldiffix.core.security_checks import SecurityChecks


class _FakePlpy:
    """Answers the volatility lookup: `volatile` names are volatile."""

    def __init__(self, volatile: set[str]) -> None:
        self.volatile = volatile

    def prepare(self, sql, types):
        return sql

    def execute(self, plan, args):
        return [{"volatile": args[1] in self.volatile}]


@pytest.mark.parametrize(
    ("expression", "refused"),
    [
        ("diffix.floor_by(c.x, 1)", False),
        ("upper(c.city)", False),
        ("sandbox.f(c.x)", True),
        ("CAST(c.x AS sandbox.t)", True),
        ("setseed(c.x)", True),
    ],
)
def test_engine_refuses_foreign_functions_types_and_volatile_calls(expression, refused) -> None:
    checks = SecurityChecks(_FakePlpy({"setseed"}), "analyst", None)  # type: ignore[arg-type]
    node = sqlglot.parse_one(expression, read="postgres")
    if refused:
        with pytest.raises(PermissionError):
            checks._check_expression(node)
    else:
        checks._check_expression(node)


@dataclass
class _Details:
    oid: int
    relkind: str
    row_security: bool = False


class _Catalog:
    def __init__(self, details: dict) -> None:
        self.details = details


class _PrivilegePlpy:
    """Answers the privilege lookups: the role may use every schema and select nothing, except
    the columns in `columns`."""

    def __init__(self, columns: set[str]) -> None:
        self.columns = columns
        self.asked: list[list[str]] = []

    def prepare(self, sql, types):
        return sql

    def execute(self, plan, args):
        if "has_schema_privilege" in plan:
            return [{"usage": True, "can_select": False}]
        if "has_column_privilege" in plan:
            self.asked.append(args[2])
            return [{"ok": all(c in self.columns for c in args[2])}]
        return [{"volatile": False}]


def _checks(plpy, details) -> SecurityChecks:
    return SecurityChecks(plpy, "analyst", _Catalog(details))  # type: ignore[arg-type]


def test_relations_are_checked_by_schema_name_and_alias() -> None:
    personal = RelationRead("public", "customers", RelationKind.PERSONAL, "c")
    public = RelationRead("public", "cities", RelationKind.PUBLIC, "x")
    details = {("public", "customers"): _Details(1, "r"), ("public", "cities"): _Details(2, "r")}
    used = [
        sqlglot.parse_one("x.name", read="postgres"),
        sqlglot.parse_one("c.city", read="postgres"),
    ]
    plpy = _PrivilegePlpy({"name"})
    _checks(plpy, details).check([personal, public], used)
    assert plpy.asked == [["name"]]  # only the columns read through the public table's alias
    with pytest.raises(PermissionError, match="permission denied for table cities"):
        _checks(_PrivilegePlpy(set()), details).check([personal, public], used)
    with pytest.raises(PermissionError, match=r"relation public\.cities is not known"):
        _checks(plpy, {("public", "customers"): _Details(1, "r")}).check([personal, public], used)
    views = {**details, ("public", "cities"): _Details(2, "v")}
    with pytest.raises(PermissionError, match="view or foreign table"):
        _checks(plpy, views).check([personal, public], used)
