"""Keyed Laplace noise: the same cell gets the same noise in every query.

A cell's noise is a Laplace(0, scale) draw whose uniform comes from HMAC-SHA256(key, the cell's
canonical description). Pure Python, standard library only. The description's exact bytes are
specified in docs/tbe.md ("Laplace noise"); changing them changes every published value.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pldiffix.cellkey.tbe import round_half_away_from_zero
from pldiffix.core.errors import UserError

Number = int | float | Decimal

TRANSFORM_NAME = "laplace_perturb"
PARAMETER_NAMES = frozenset({"scale", "key"})
DESCRIPTION_VERSION = "pldiffix-laplace-v1"
COUNT_MEASURE = "count"


class LaplaceConfigError(UserError, ValueError):
    """The Laplace configuration is invalid."""

    message_prefix = "invalid configuration: "


class LaplaceInputError(UserError, ValueError):
    """A cell description or value cannot be used."""


@dataclass(frozen=True)
class LaplaceConfig:
    scale: float
    key: str = field(repr=False)  # secret: keep it out of reprs, logs and error messages

    def __post_init__(self) -> None:
        if (
            isinstance(self.scale, bool)
            or not isinstance(self.scale, int | float | Decimal)
            or not math.isfinite(self.scale)
            or self.scale <= 0
        ):
            raise LaplaceConfigError(f"scale must be a finite number > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))
        if not isinstance(self.key, str) or not self.key:
            raise LaplaceConfigError("key must be a non-empty string")


def parse_config(obj: Mapping[str, Any] | str) -> LaplaceConfig:
    """A LaplaceConfig from the dataset configuration, its transform_definitions, the
    laplace_perturb transform or just its parameters (a dict or JSON text)."""
    if isinstance(obj, str):
        try:
            obj = json.loads(obj)
        except json.JSONDecodeError as exc:
            raise LaplaceConfigError(f"configuration is not valid JSON: {exc}") from None
    if not isinstance(obj, Mapping):
        raise LaplaceConfigError("configuration must be a JSON object")
    if "transform_definitions" in obj:
        obj = obj["transform_definitions"]
        if not isinstance(obj, Mapping) or TRANSFORM_NAME not in obj:
            raise LaplaceConfigError(f"transform_definitions has no {TRANSFORM_NAME!r} entry")
    if TRANSFORM_NAME in obj:
        obj = obj[TRANSFORM_NAME]
    elif any(isinstance(k, str) and k.endswith("_perturb") for k in obj):
        raise LaplaceConfigError(f"transform_definitions has no {TRANSFORM_NAME!r} entry")
    if isinstance(obj, Mapping) and "parameters" in obj:
        obj = obj["parameters"]
    if not isinstance(obj, Mapping):
        raise LaplaceConfigError(f"{TRANSFORM_NAME}: parameters must be a JSON object")
    unknown = sorted(set(obj) - PARAMETER_NAMES)
    if unknown:
        raise LaplaceConfigError(f"{TRANSFORM_NAME}: unknown parameter(s): {', '.join(unknown)}")
    for name in ("scale", "key"):
        if name not in obj:
            raise LaplaceConfigError(f"{TRANSFORM_NAME}: missing parameter {name!r}")
    return LaplaceConfig(scale=obj["scale"], key=obj["key"])


# --------------------------------------------------------------------------------------------
# Canonical cell description
# --------------------------------------------------------------------------------------------


def value_text(value: Any) -> str | None:
    """A value's canonical text (None for NULL).

    Numbers are written in plain decimal notation without exponent or trailing zeros, so 1,
    Decimal("1.00") and 1.0 are all "1"; floats use their shortest repr digits (0.1 -> "0.1").
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return _decimal_text(Decimal(repr(value)))
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "Infinity" if value > 0 else "-Infinity"
        return _decimal_text(value)
    if isinstance(value, str):
        return value
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date
        return value.isoformat()
    raise LaplaceInputError(f"cannot describe a cell by a value of type {type(value).__name__}")


def _decimal_text(value: Decimal) -> str:
    if value == 0:
        return "0"  # also -0 and 0E-5
    return format(value.normalize(), "f")


def canonical_description(
    table: str,
    pairs: Iterable[tuple[str, Any]] | Mapping[str, Any],
    measure: str = COUNT_MEASURE,
) -> bytes:
    """The bytes HMAC'd for a cell: ASCII JSON of
    ["pldiffix-laplace-v1", table, measure, [[column, value text or null], ...]]
    with the distinct pairs sorted by column, then value (NULL first), by code points.

    `pairs` are the WHERE equalities and the group labels; a column may appear in both (with the
    same value), which is the same cell as appearing once.
    """
    if not isinstance(table, str) or not table:
        raise LaplaceInputError("table must be a non-empty string")
    if not isinstance(measure, str) or not measure:
        raise LaplaceInputError("measure must be a non-empty string")
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    distinct: set[tuple[str, str | None]] = set()
    for pair in items:
        column, value = pair
        if not isinstance(column, str) or not column:
            raise LaplaceInputError(f"column name must be a non-empty string, got {column!r}")
        distinct.add((column, value_text(value)))
    ordered = sorted(distinct, key=lambda p: (p[0], p[1] is not None, p[1] or ""))
    document = [DESCRIPTION_VERSION, table, measure, [list(p) for p in ordered]]
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def sum_measure(column: str) -> str:
    """The measure name of sum(column), kept apart from the count so their noises differ."""
    return f"sum:{column}"


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------

_UNIFORM_BITS = 52


def keyed_uniform(key: str, description: bytes) -> float:
    """A uniform in (0, 1) from HMAC-SHA256(key, description): (2k + 1) / 2**53 where k is the
    digest's first 52 bits. Exact in a double, never 0, 1 or 0.5, and symmetric about 0.5."""
    return uniform_from_digest(hmac.new(key.encode("utf-8"), description, hashlib.sha256).digest())


def uniform_from_digest(digest: bytes) -> float:
    """(2k + 1) / 2**53, k = the first 52 bits of the digest (big-endian)."""
    if len(digest) < 8:
        raise ValueError("digest too short")
    k = int.from_bytes(digest[:8], "big") >> (64 - _UNIFORM_BITS)
    return (2 * k + 1) / 2 ** (_UNIFORM_BITS + 1)


def laplace_inverse_cdf(u: float, scale: float) -> float:
    """The Laplace(0, scale) quantile of u in (0, 1)."""
    if not 0.0 < u < 1.0:
        raise ValueError(f"u must be in (0, 1), got {u!r}")
    if u < 0.5:
        return scale * math.log(2.0 * u)
    return -scale * math.log(2.0 * (1.0 - u))


def cell_noise(config: LaplaceConfig, description: bytes) -> float:
    return laplace_inverse_cdf(keyed_uniform(config.key, description), config.scale)


def perturb_count(config: LaplaceConfig, n: int, description: bytes) -> int:
    """max(0, round(n + noise)), halves away from zero."""
    return max(0, round_half_away_from_zero(n + cell_noise(config, description)))


def perturb_sum(config: LaplaceConfig, total: Number, description: bytes) -> Number:
    """total + noise; Decimal totals stay Decimal."""
    noise = cell_noise(config, description)
    if isinstance(total, Decimal):
        return total + Decimal(repr(noise))
    return float(total) + noise


@dataclass(frozen=True)
class LaplaceOutput:
    count: int
    sums: dict[str, Number | None]
    means: dict[str, Number | None]


def perturb_cell(
    config: LaplaceConfig,
    table: str,
    pairs: Iterable[tuple[str, Any]] | Mapping[str, Any],
    n: int,
    sums: Mapping[str, Number | None] | None = None,
) -> LaplaceOutput | None:
    """Noisy count, sums and means of one cell; None for an empty cell (not output).

    As with TBE, sums and means are NULL when the noisy count is 0; a mean is the noisy sum over
    the noisy count. Each measure has its own description, so count and sum noises differ.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise LaplaceInputError(f"cell count must be an integer >= 0, got {n!r}")
    if n == 0:
        return None
    pairs = list(pairs.items() if isinstance(pairs, Mapping) else pairs)
    count = perturb_count(config, n, canonical_description(table, pairs, COUNT_MEASURE))
    out_sums: dict[str, Number | None] = {}
    means: dict[str, Number | None] = {}
    for column, total in (sums or {}).items():
        if total is None or count == 0:
            out_sums[column] = means[column] = None
            continue
        value = perturb_sum(config, total, canonical_description(table, pairs, sum_measure(column)))
        out_sums[column] = value
        means[column] = value / (Decimal(count) if isinstance(value, Decimal) else count)
    return LaplaceOutput(count=count, sums=out_sums, means=means)
