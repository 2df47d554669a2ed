"""Seed material: how bucket labels and bucket expressions become noise-layer seeds.

A bucket seed is ``sql_seed XOR seed(label hashes + base label hashes)`` where

* ``sql_seed`` is the XOR of the distinct hashes of the *seed material* strings of the GROUP BY
  expressions and of the left-hand sides of the WHERE equalities (see ``SeedMaterial``);
* each label hash is the FNV-1a hash of the label's canonical text (``label_material``);
* base label hashes come from the constants on the right-hand side of the WHERE equalities.

Canonical text of a value: ``NULL`` for NULL; numbers of any numeric type are converted to
float8 and written in shortest round-trip form the way PostgreSQL's ``float8out`` does with
``extra_float_digits = 1``; dates and times use the ISO form of ``to_json`` with time zone UTC;
everything else uses the type's text output (booleans are ``t``/``f``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from pldiffix.core.errors import NAME_TOO_LONG, UserError
from pldiffix.diffix.anonymization.hashing import hash_string, seed_from_hashes

MAX_SEED_MATERIAL_SIZE = 1024


class SeedMaterialTooLong(UserError, ValueError):
    """Raised when a bucket expression's seed material exceeds pg_diffix's fixed buffer."""

    default_sqlstate = NAME_TOO_LONG


def format_float8(value: float) -> str:
    """Shortest round-trip decimal text of a double, formatted like PostgreSQL's ``float8out``.

    Fixed notation is used while the decimal exponent lies in [-4, 15), scientific otherwise with
    a signed, at least two-digit exponent (``1e+15``, ``1.5e-07``).
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0.0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    # repr() gives the shortest digits that round-trip; only the layout differs from PostgreSQL.
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    leading_exponent = int(exponent) + len(digit_tuple) - 1
    prefix = "-" if sign else ""
    if -4 <= leading_exponent < 15:
        if leading_exponent < 0:
            body = "0." + "0" * (-leading_exponent - 1) + digits
        elif len(digits) <= leading_exponent + 1:
            body = digits + "0" * (leading_exponent + 1 - len(digits))
        else:
            body = digits[: leading_exponent + 1] + "." + digits[leading_exponent + 1 :]
        return prefix + body
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp_sign = "+" if leading_exponent >= 0 else "-"
    return f"{prefix}{mantissa}e{exp_sign}{abs(leading_exponent):02d}"


def _format_seconds(hour: int, minute: int, second: int, microsecond: int) -> str:
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    if microsecond:
        text += f".{microsecond:06d}".rstrip("0")
    return text


def _format_offset(offset: dt.timedelta) -> str:
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or seconds:
        text += f":{minutes:02d}"
    if seconds:
        text += f":{seconds:02d}"
    return text


def _format_date(value: dt.date) -> str:
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def format_datetime(value: dt.date | dt.datetime | dt.time) -> str:
    """ISO text as produced by ``to_json`` for date/time types with the session in UTC.

    Naive datetimes are ``timestamp``; aware ones are ``timestamptz`` and are shown in UTC with
    ``+00:00``. Aware ``time`` values are ``timetz`` and keep their own offset.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            utc = value.astimezone(dt.UTC)
            clock = _format_seconds(utc.hour, utc.minute, utc.second, utc.microsecond)
            return f"{_format_date(utc)}T{clock}+00:00"
        clock = _format_seconds(value.hour, value.minute, value.second, value.microsecond)
        return f"{_format_date(value)}T{clock}"
    if isinstance(value, dt.date):
        return _format_date(value)
    clock = _format_seconds(value.hour, value.minute, value.second, value.microsecond)
    offset = value.utcoffset()
    return clock if offset is None else clock + _format_offset(offset)


def label_material(value: Any) -> str:
    """Canonical text of a label or constant value, as pg_diffix hashes it.

    Python types select the PostgreSQL type category: ``None`` → NULL; ``bool`` → boolean;
    ``int``/``float``/``Decimal`` → numeric category; ``date``/``datetime``/``time`` → datetime
    category; ``str`` → already the type's text output (text, varchar, or any other type cast to
    text by the SQL side, including datetime labels already rendered with ``to_json``).
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | float | Decimal):
        return format_float8(float(value))
    if isinstance(value, dt.date | dt.time):
        return format_datetime(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"Cannot derive seed material for a {type(value).__name__} label")


def label_hash(value: Any) -> int:
    return hash_string(label_material(value))


class SeedMaterial:
    """Builds the seed material of one bucket expression by a pre-order walk.

    Call, in the order the expression tree is visited (node before its arguments):
    ``function(name)`` for every function call that is not an allowed cast, ``column(relation,
    column)`` for every column reference and ``constant(value)`` for every constant or bound
    parameter. Pieces are joined by ``,`` except that a column name follows its relation after
    ``.``; e.g. ``floor_by(age, 30)`` on table ``patients`` gives ``floor_by,patients.age,30``.
    """

    def __init__(self) -> None:
        self._text = ""

    def _append(self, piece: str, separator: str) -> None:
        if len(self._text.encode()) + len(piece.encode()) + 2 > MAX_SEED_MATERIAL_SIZE:
            raise SeedMaterialTooLong("Bucket seed material too long!")
        self._text = f"{self._text}{separator}{piece}" if self._text else piece

    def function(self, name: str) -> SeedMaterial:
        self._append("extract" if name == "date_part" else name, ",")
        return self

    def column(self, relation: str | None, column: str) -> SeedMaterial:
        if relation:
            self._append(relation, ",")
        self._append(column, ".")
        return self

    def constant(self, value: Any) -> SeedMaterial:
        self._append(label_material(value), ",")
        return self

    @property
    def text(self) -> str:
        return self._text

    def __str__(self) -> str:
        return self._text


def sql_seed(materials: Iterable[str | SeedMaterial]) -> int:
    """Static part of every bucket seed of a query, from its bucket expressions' materials."""
    return seed_from_hashes(hash_string(str(material)) for material in materials)


def base_label_hashes(constants: Iterable[Any]) -> frozenset[int]:
    """Hashes of the constants of ``WHERE expr = constant`` filters."""
    return frozenset(label_hash(value) for value in constants)


def bucket_seed(
    static_seed: int, label_hashes: Iterable[int], base_hashes: Iterable[int] = ()
) -> int:
    """Seed of one bucket: the static seed XOR the distinct label and base-label hashes."""
    return static_seed ^ seed_from_hashes([*label_hashes, *base_hashes])
