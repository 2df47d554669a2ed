"""The first gate for analyst SQL: exactly one read-only SELECT statement."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from pldiffix.core import sqltext
from pldiffix.core.errors import FEATURE_NOT_SUPPORTED, UserError

_QUERY_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery)
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter)


class QueryError(UserError):
    """An analyst query was rejected. `hint` says what to write instead."""

    default_sqlstate = FEATURE_NOT_SUPPORTED

    def __init__(self, message: str, *, fragment: str | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.fragment = fragment

    def detail_text(self) -> str | None:
        return f"offending expression: {self.fragment}" if self.fragment else None


def parse_single_select(sql: str | None) -> exp.Expression:
    """Parses `sql` and returns its tree, or raises QueryError unless it is one SELECT."""
    if sql is None or not sql.strip():
        raise QueryError("the query is empty", hint="pass one SELECT statement as text")
    try:
        statements = [s for s in sqlglot.parse(sql, read="postgres") if s is not None]
    except (ParseError, TokenError) as error:
        raise QueryError(
            f"could not parse the query: {_first_line(error)}",
            hint="check the syntax; only one SELECT statement is accepted",
        ) from None
    if len(statements) != 1:
        raise QueryError(
            f"expected exactly one statement, got {len(statements)}",
            hint="send each SELECT in its own call",
        )
    tree = statements[0]
    if not isinstance(tree, _QUERY_ROOTS):
        kind = tree.key.upper() if not isinstance(tree, exp.Command) else str(tree.this).upper()
        raise QueryError(
            f"only SELECT statements are allowed, not {kind}",
            fragment=_short(tree.sql(dialect=sqltext.POSTGRES)),
            hint="diffix.query_json runs read-only SELECT queries",
        )
    for node in tree.walk():
        if isinstance(node, _WRITES):
            raise QueryError(
                "data-modifying statements are not allowed inside a query",
                fragment=_short(node.sql(dialect=sqltext.POSTGRES)),
                hint="remove the INSERT/UPDATE/DELETE from the WITH clause",
            )
        if isinstance(node, exp.Into):
            raise QueryError(
                "SELECT INTO creates a table and is not allowed",
                fragment=_short(node.sql(dialect=sqltext.POSTGRES)),
                hint="remove the INTO clause",
            )
        if isinstance(node, exp.Lock):
            raise QueryError(
                "locking clauses (FOR UPDATE/SHARE) are not allowed",
                fragment=_short(node.sql(dialect=sqltext.POSTGRES)),
                hint="remove the FOR ... clause",
            )
    return tree


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
