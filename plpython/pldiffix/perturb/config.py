"""Validation of per-column perturbation rules: which method fits which column type, and what
parameters each method takes. Pure: the server side (admin.py) supplies the column facts."""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pldiffix.core.errors import UserError

DATATYPE_MISMATCH = "42804"


class Category(StrEnum):
    INTEGER = "integer"
    NUMERIC = "numeric"
    FLOAT = "float"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TEXT = "text"
    OTHER = "other"


_CATEGORIES = {
    "int2": Category.INTEGER,
    "int4": Category.INTEGER,
    "int8": Category.INTEGER,
    "numeric": Category.NUMERIC,
    "float4": Category.FLOAT,
    "float8": Category.FLOAT,
    "date": Category.DATE,
    "timestamp": Category.TIMESTAMP,
    "timestamptz": Category.TIMESTAMP,
    "text": Category.TEXT,
    "varchar": Category.TEXT,
    "bpchar": Category.TEXT,
}

NUMBERS = frozenset({Category.INTEGER, Category.NUMERIC, Category.FLOAT})
DATES = frozenset({Category.DATE, Category.TIMESTAMP})


class PerturbationError(UserError):
    """A perturbation rule that cannot be applied; nothing was changed."""


@dataclass(frozen=True)
class Column:
    """A base-table column: its name, base type (pg_type.typname), the type as declared
    (format_type, e.g. numeric(10,2)) and, for numeric(p, s), its precision and scale."""

    name: str
    type_name: str
    declared_type: str
    scale: int | None = None
    precision: int | None = None

    @property
    def category(self) -> Category:
        return _CATEGORIES.get(self.type_name, Category.OTHER)


@dataclass(frozen=True)
class Rule:
    """A validated rule: the method and its normalized parameters."""

    method: str
    params: dict[str, Any]


def _number(params: dict[str, Any], name: str, *, positive: bool = False) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PerturbationError(f"parameter {name!r} must be a finite number, not {value!r}")
    if positive and value <= 0:
        raise PerturbationError(f"parameter {name!r} must be positive, not {value!r}")
    if value < 0:
        raise PerturbationError(f"parameter {name!r} must not be negative, not {value!r}")
    return float(value)


def _integer(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PerturbationError(
            f"parameter {name!r} must be an integer from {low} to {high}, not {value!r}"
        )
    return value


def _bound(params: dict[str, Any], name: str, column: Column) -> Any:
    """A clamping bound: a number for numeric columns, an ISO date for date columns."""
    value = params.get(name)
    if value is None:
        return None
    if column.category in DATES:
        try:
            return datetime.date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise PerturbationError(
                f"parameter {name!r} must be an ISO date (YYYY-MM-DD), not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PerturbationError(f"parameter {name!r} must be a finite number, not {value!r}")
    return value


def _clamp(params: dict[str, Any], column: Column) -> dict[str, Any]:
    bounds = {name: _bound(params, name, column) for name in ("min", "max")}
    if bounds["min"] is not None and bounds["max"] is not None and bounds["min"] > bounds["max"]:
        raise PerturbationError(f"min {bounds['min']!r} is greater than max {bounds['max']!r}")
    return {name: value for name, value in bounds.items() if value is not None}


# method -> (column categories it applies to, parameters it accepts)
METHODS: dict[str, tuple[frozenset[Category] | None, frozenset[str]]] = {
    "uniform": (NUMBERS, frozenset({"a", "min", "max", "digits"})),
    "gaussian": (NUMBERS, frozenset({"sd", "sd_fraction", "min", "max", "digits"})),
    "multiplicative": (NUMBERS, frozenset({"fraction", "min", "max", "digits"})),
    "round": (NUMBERS, frozenset({"step", "digits"})),
    "date_shift": (DATES, frozenset({"days", "min", "max"})),
    "generalize": (DATES, frozenset({"to"})),
    "pseudonym": (None, frozenset({"length", "domain"})),
    "mask": (frozenset({Category.TEXT}), frozenset({"keep_first", "keep_last", "char"})),
    "drop": (None, frozenset()),
    "keep": (None, frozenset()),
}
GENERALIZE_UNITS = ("month", "quarter", "year")
# Noise scales (a, sd, step) stay within these, so that no row's arithmetic in float8 can
# overflow or underflow (an error on some rows would be a yes/no about them).
SMALLEST_SCALE = 1e-250
LARGEST_SCALE = 1e290
DIGITS_RANGE = 20


def _scale(params: dict[str, Any], name: str, value: float | None) -> float | None:
    if value is not None and value != 0 and not SMALLEST_SCALE <= value <= LARGEST_SCALE:
        raise PerturbationError(
            f"parameter {name!r} must be between {SMALLEST_SCALE:g} and {LARGEST_SCALE:g}, "
            f"not {params.get(name)!r}"
        )
    return value


def _digits(params: dict[str, Any], column: Column) -> dict[str, int]:
    """The output's declared resolution: decimal digits after the point (negative: tens, ...)."""
    if "digits" not in params:
        return {}
    digits = _integer(params, "digits", 0, -DIGITS_RANGE, DIGITS_RANGE)
    if column.category is Category.INTEGER and digits > 0:
        raise PerturbationError(
            f"column {column.name!r} holds whole numbers: digits must be 0 or negative, "
            f"not {digits}"
        )
    if column.category is Category.NUMERIC and column.scale is not None and digits > column.scale:
        raise PerturbationError(
            f"column {column.name!r} is {column.declared_type}: digits must be at most "
            f"{column.scale}, not {digits}"
        )
    return {"digits": digits}


def validate(
    column: Column,
    method: str | None,
    params: dict[str, Any] | None,
    *,
    column_sd: float | None = None,
    is_row_key: bool = False,
) -> Rule:
    """The normalized rule for `column`, or PerturbationError saying what is wrong.

    `column_sd` is the column's standard deviation, needed only for gaussian's sd_fraction,
    which is resolved to an absolute sd here (so the view does not depend on the data).
    """
    method = (method or "").strip().lower()
    if method not in METHODS:
        raise PerturbationError(
            f"unknown perturbation method {method!r}",
            hint="use one of: " + ", ".join(METHODS),
        )
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise PerturbationError("params must be a JSON object")
    categories, accepted = METHODS[method]
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise PerturbationError(
            f"method {method} does not take parameter(s) {', '.join(unknown)}",
            hint="it takes: " + (", ".join(sorted(accepted)) or "no parameters"),
        )
    if categories is not None and column.category not in categories:
        raise PerturbationError(
            f"method {method} does not apply to column {column.name!r} of type "
            f"{column.declared_type}",
            sqlstate=DATATYPE_MISMATCH,
            hint="it applies to " + ", ".join(sorted(c.value for c in categories)) + " columns",
        )
    if is_row_key and method not in ("drop", "pseudonym"):
        raise PerturbationError(
            f"column {column.name!r} is the row key: it can only be dropped or pseudonymized",
            hint="the raw row key would let its readers link the perturbed rows back",
        )
    normalized = _normalized(method, params, column, column_sd)
    if method in ("uniform", "gaussian", "multiplicative", "round"):
        normalized |= _digits(params, column)
    return Rule(method, normalized)


def _normalized(
    method: str, params: dict[str, Any], column: Column, column_sd: float | None
) -> dict[str, Any]:
    if method == "uniform":
        a = _scale(params, "a", _number(params, "a", positive=True))
        if a is None:
            raise PerturbationError("method uniform needs parameter 'a' (noise in [-a, a])")
        return {"a": a, **_clamp(params, column)}
    if method == "gaussian":
        return _gaussian(params, column, column_sd)
    if method == "multiplicative":
        fraction = _number(params, "fraction", positive=True)
        if fraction is None or not 1e-6 <= fraction < 1:
            raise PerturbationError(
                "method multiplicative needs parameter 'fraction' in [0.000001, 1): "
                "values are multiplied by a factor in [1 - fraction, 1 + fraction]"
            )
        return {"fraction": fraction, **_clamp(params, column)}
    if method == "round":
        step = _scale(params, "step", _number(params, "step", positive=True))
        if step is None:
            raise PerturbationError("method round needs parameter 'step'")
        return {"step": step}
    if method == "date_shift":
        days = _integer(params, "days", 0, 1, 36500)
        return {"days": days, **_clamp(params, column)}
    if method == "generalize":
        unit = params.get("to")
        if unit not in GENERALIZE_UNITS:
            raise PerturbationError(
                f"parameter 'to' must be one of {', '.join(GENERALIZE_UNITS)}, not {unit!r}"
            )
        return {"to": unit}
    if method == "pseudonym":
        domain = params.get("domain", column.name)
        if not isinstance(domain, str) or not domain:
            raise PerturbationError("parameter 'domain' must be a non-empty string")
        return {"length": _integer(params, "length", 16, 8, 64), "domain": domain}
    if method == "mask":
        char = params.get("char", "*")
        if not isinstance(char, str) or len(char) != 1:
            raise PerturbationError("parameter 'char' must be a single character")
        return {
            "keep_first": _integer(params, "keep_first", 1, 0, 1000),
            "keep_last": _integer(params, "keep_last", 0, 0, 1000),
            "char": char,
        }
    return {}


def _gaussian(params: dict[str, Any], column: Column, column_sd: float | None) -> dict[str, Any]:
    sd = _number(params, "sd")
    fraction = _number(params, "sd_fraction")
    if (sd is None) == (fraction is None):
        raise PerturbationError(
            "method gaussian needs exactly one of 'sd' (absolute) and 'sd_fraction' "
            "(a fraction of the column's standard deviation)"
        )
    clamp = _clamp(params, column)
    if fraction is not None:
        if column_sd is None:
            raise PerturbationError(
                f"column {column.name!r} has no standard deviation (fewer than two values): "
                "give an absolute 'sd'"
            )
        return {
            "sd": _scale(params, "sd_fraction", fraction * column_sd),
            "sd_fraction": fraction,
            **clamp,
        }
    return {"sd": _scale(params, "sd", sd), **clamp}
