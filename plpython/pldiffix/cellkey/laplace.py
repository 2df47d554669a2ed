"""Keyed Laplace noise: the same cell gets the same noise in every query.

A cell's noise is a Laplace(0, scale) draw whose uniform comes from HMAC-SHA256(key, the cell's
canonical description), which names the table, the measure and the cell key: the sum of the cell's
record keys (keyed hashes of the records, computed in SQL). Pure Python, standard library only.
The description's exact bytes are specified in docs/tbe.md ("Laplace noise"); changing them
changes every published value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pldiffix.cellkey.tbe import round_half_away_from_zero
from pldiffix.cellkey.tbe_config import TbeConfigError, transform_parameters
from pldiffix.core.errors import UserError

Number = int | float | Decimal

TRANSFORM_NAME = "laplace_perturb"
PARAMETER_NAMES = frozenset({"scale", "key"})
DESCRIPTION_VERSION = "pldiffix-laplace-v2"
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
    try:  # the same shapes as a TBE transform's (tbe_config.transform_parameters)
        obj = transform_parameters(obj, TRANSFORM_NAME)
    except TbeConfigError as exc:
        raise LaplaceConfigError(exc.message) from None
    unknown = sorted(set(obj) - PARAMETER_NAMES)
    if unknown:
        raise LaplaceConfigError(f"{TRANSFORM_NAME}: unknown parameter(s): {', '.join(unknown)}")
    for name in ("scale", "key"):
        if name not in obj:
            raise LaplaceConfigError(f"{TRANSFORM_NAME}: missing parameter {name!r}")
    return LaplaceConfig(scale=obj["scale"], key=obj["key"])


# --------------------------------------------------------------------------------------------
# Record keys and the canonical cell description
# --------------------------------------------------------------------------------------------

CELL_KEY_MODULUS = 2**64
_RECORD_SEED_LABEL = b"pldiffix-laplace-record-seed-v2"


def record_seed(config: LaplaceConfig) -> int:
    """The signed 64-bit seed of the per-record hashes, derived from the secret key.

    SQL computes each record's key as hash_record_extended(ROW(columns), seed); a cell's key is
    the sum of its records' keys mod 2**64 (cell_key_from_sum)."""
    digest = hmac.new(config.key.encode("utf-8"), _RECORD_SEED_LABEL, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def cell_key_from_sum(record_key_sum: int | Decimal) -> int:
    """The cell key: the sum of the cell's record keys (signed 64-bit hashes) mod 2**64."""
    if isinstance(record_key_sum, bool) or not isinstance(record_key_sum, int | Decimal):
        raise LaplaceInputError(f"record key sum must be an integer, got {record_key_sum!r}")
    if isinstance(record_key_sum, Decimal) and (
        not record_key_sum.is_finite() or record_key_sum != record_key_sum.to_integral_value()
    ):
        raise LaplaceInputError(f"record key sum must be an integer, got {record_key_sum!r}")
    return int(record_key_sum) % CELL_KEY_MODULUS


def canonical_description(table: str, cell_key: int, measure: str = COUNT_MEASURE) -> bytes:
    """The bytes HMAC'd for a cell: ASCII JSON of
    ["pldiffix-laplace-v2", table, measure, cell key in decimal].

    The cell is described by its records (the cell key), not by the query's conditions, so
    spellings of one set of records (padded IN lists, redundant conditions) share one noise.
    """
    if not isinstance(table, str) or not table:
        raise LaplaceInputError("table must be a non-empty string")
    if not isinstance(measure, str) or not measure:
        raise LaplaceInputError("measure must be a non-empty string")
    if (
        isinstance(cell_key, bool)
        or not isinstance(cell_key, int)
        or not 0 <= cell_key < CELL_KEY_MODULUS
    ):
        raise LaplaceInputError(f"cell key must be an integer in [0, 2**64), got {cell_key!r}")
    document = [DESCRIPTION_VERSION, table, measure, str(cell_key)]
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
    cell_key: int,
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
    count = perturb_count(config, n, canonical_description(table, cell_key, COUNT_MEASURE))
    out_sums: dict[str, Number | None] = {}
    means: dict[str, Number | None] = {}
    for column, total in (sums or {}).items():
        if total is None or count == 0:
            out_sums[column] = means[column] = None
            continue
        description = canonical_description(table, cell_key, sum_measure(column))
        value = perturb_sum(config, total, description)
        out_sums[column] = value
        means[column] = value / (Decimal(count) if isinstance(value, Decimal) else count)
    return LaplaceOutput(count=count, sums=out_sums, means=means)
