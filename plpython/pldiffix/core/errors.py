"""Errors a user can fix, raised in PL/Python as plpy.error with a SQLSTATE, detail and hint.

Every PL/Python entry point wraps its work in `reports_errors`. Each mechanism's errors that users
can act on derive from `UserError` and say how they are reported (`report`); core knows none of
them by name. Anything else propagates unchanged as an internal error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pldiffix.core import context

F = TypeVar("F", bound=Callable[..., Any])

# SQLSTATE codes (PostgreSQL's errcodes), so every error carries a meaningful code.
FEATURE_NOT_SUPPORTED = "0A000"
INSUFFICIENT_PRIVILEGE = "42501"
SYNTAX_ERROR = "42601"
UNDEFINED_TABLE = "42P01"
UNDEFINED_COLUMN = "42703"
UNDEFINED_FUNCTION = "42883"
AMBIGUOUS_COLUMN = "42702"
DUPLICATE_ALIAS = "42712"
GROUPING_ERROR = "42803"
INVALID_PARAMETER = "22023"
NAME_TOO_LONG = "42622"


@dataclass(frozen=True)
class Report:
    """How an error reaches the user: PostgreSQL's message, SQLSTATE, detail and hint."""

    message: str
    sqlstate: str
    detail: str | None = None
    hint: str | None = None


class UserError(Exception):
    """A problem the caller can fix, with its SQLSTATE and an optional hint.

    Subclasses set `default_sqlstate` and `message_prefix`, or override `detail_text`.
    """

    default_sqlstate: ClassVar[str] = INVALID_PARAMETER
    message_prefix: ClassVar[str] = ""

    def __init__(self, message: str, sqlstate: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate or self.default_sqlstate
        self.hint = hint

    def detail_text(self) -> str | None:
        return None

    def report(self) -> Report:
        return Report(
            self.message_prefix + self.message, self.sqlstate, self.detail_text(), self.hint
        )


def describe(error: Exception) -> Report | None:
    """The report of an error users can fix; None for any other."""
    if isinstance(error, UserError):
        return error.report()
    if isinstance(error, PermissionError):
        return Report(str(error), INSUFFICIENT_PRIVILEGE)
    return None


def reports_errors(function: F) -> F:
    @functools.wraps(function)
    def wrapper(plpy: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with context.entered(plpy):
                return function(plpy, *args, **kwargs)
        except Exception as error:
            report = describe(error)
            if report is None:
                raise
            extra = {k: v for k, v in (("detail", report.detail), ("hint", report.hint)) if v}
            plpy.error(report.message, sqlstate=report.sqlstate, **extra)

    return wrapper  # type: ignore[return-value]
