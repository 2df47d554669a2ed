"""Errors a user can fix, raised in PL/Python as plpy.error with a SQLSTATE, detail and hint.

Every PL/Python entry point wraps its work in `reports_errors`; each exception type users can
act on maps to one report here. Anything else propagates unchanged as an internal error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pldiffix import laplace, settings, tbe
from pldiffix.anonymization.seeds import SeedMaterialTooLong
from pldiffix.statements import QueryError
from pldiffix.validation.errors import (
    FEATURE_NOT_SUPPORTED,
    INSUFFICIENT_PRIVILEGE,
    INVALID_PARAMETER,
    ValidationError,
)

F = TypeVar("F", bound=Callable[..., Any])

NAME_TOO_LONG = "42622"


class UserError(Exception):
    """A problem the caller can fix, with its SQLSTATE and an optional hint."""

    def __init__(self, message: str, sqlstate: str = INVALID_PARAMETER, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.hint = hint


def describe(error: Exception) -> tuple[str, str, dict[str, str | None]] | None:
    """(message, SQLSTATE, detail and hint) of an error users can fix; None for any other."""
    if isinstance(error, QueryError):
        return error.message, FEATURE_NOT_SUPPORTED, {"detail": error.detail(), "hint": error.hint}
    if isinstance(error, ValidationError):
        detail = f"offending expression: {error.fragment}" if error.fragment else None
        return error.message, error.sqlstate, {"detail": detail, "hint": error.hint}
    if isinstance(error, UserError):
        return error.message, error.sqlstate, {"hint": error.hint}
    if isinstance(error, tbe.TbeConfigError | laplace.LaplaceConfigError):
        return f"invalid configuration: {error}", INVALID_PARAMETER, {}
    if isinstance(error, settings.SettingError | tbe.TbeInputError | laplace.LaplaceInputError):
        return str(error), INVALID_PARAMETER, {}
    if isinstance(error, SeedMaterialTooLong):
        return str(error), NAME_TOO_LONG, {}
    if isinstance(error, PermissionError):
        return str(error), INSUFFICIENT_PRIVILEGE, {}
    return None


def reports_errors(function: F) -> F:
    @functools.wraps(function)
    def wrapper(plpy: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(plpy, *args, **kwargs)
        except Exception as error:
            report = describe(error)
            if report is None:
                raise
            message, sqlstate, extra = report
            plpy.error(message, sqlstate=sqlstate, **{k: v for k, v in extra.items() if v})

    return wrapper  # type: ignore[return-value]
