"""The audit log: one durable row per analyst query, accepted or refused.

`record` hands the row to diffix._audit_record, which takes who asked from the session itself
(session_user and the role SET ROLE chose) and appends it over the ledger's loopback connection,
so that a ROLLBACK does not erase it. Administrators' queries are not logged (the SQL side
decides); their publications of synthetic twins are (`record_publication`).
"""

from __future__ import annotations

import re
from typing import Any

from pldiffix.core import context
from pldiffix.core.errors import describe

MECHANISMS = ("diffix", "cellkey", "laplace", "dp", "direct", "public", "synthetic")

_RECORD = (
    "SELECT diffix._audit_record($1, $2, $3, $4, $5, $6, $7, $8)",
    ("text", "text", "text", "bool", "text", "int8", "float8", "float8"),
)
_PUBLICATION = (
    "SELECT diffix._audit_publication($1, $2, $3, $4, $5, $6, $7)",
    ("text", "text", "bool", "text", "int8", "float8", "float8"),
)
_PREFIX = re.compile(r"^((plpy|spiexceptions)\.\w+: )+")


def record(
    plpy: Any,
    *,
    level: str,
    mechanism: str,
    sql: str | None,
    accepted: bool,
    reason: str | None = None,
    rows: int | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
) -> None:
    """Appends one row for the session's role; committed before returning."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown mechanism {mechanism!r} for the audit log")
    plpy.execute(
        context.prepared(plpy, *_RECORD),
        [level, mechanism, sql, accepted, reason, rows, epsilon, delta],
    )


def record_publication(
    plpy: Any,
    *,
    sql: str,
    accepted: bool,
    reason: str | None = None,
    rows: int | None = None,
    epsilon: float | None = None,
    delta: float | None = None,
    mechanism: str = "synthetic",
) -> None:
    """Appends the row of an administrator's publication (a synthetic twin, or DP bounds:
    mechanism 'dp_bounds'), which `record` leaves out for administrators; committed before
    returning."""
    plpy.execute(
        context.prepared(plpy, *_PUBLICATION),
        [mechanism, sql, accepted, reason, rows, epsilon, delta],
    )


def reason_of(error: BaseException) -> str:
    """What the log says about a refused query: the message the user sees, without PL/Python's
    exception prefixes."""
    report = describe(error) if isinstance(error, Exception) else None
    text = report.message if report is not None else (str(error) or type(error).__name__)
    return _PREFIX.sub("", text)
