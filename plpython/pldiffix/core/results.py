"""Turns query results into the jsonb document returned by diffix.query_json.

The document is built as JSON text so that numeric values keep their exact decimal digits when
PostgreSQL parses it into jsonb. Rows rendered by row_to_json already carry ISO 8601 dates;
date/time values passed as PostgreSQL text in ISO DateStyle are rewritten to ISO 8601 here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# type OIDs of date/time types and their array types
_TIMESTAMP_TYPES = {1114, 1184, 1115, 1185}  # timestamp, timestamptz and their arrays
_TIME_ZONE_TYPES = {1184, 1185, 1266, 1270}  # timestamptz, timetz and their arrays
_JSON_TYPES = {114, 3802}  # json, jsonb (values arrive as text)


def _iso_datetime(text: str, *, is_timestamp: bool, has_zone: bool) -> str:
    if text in ("infinity", "-infinity"):
        return text
    if is_timestamp:
        text = text.replace(" ", "T", 1)
    if has_zone:
        # "+01" -> "+01:00", "-03:30" stays
        for index in range(len(text) - 1, max(len(text) - 7, 0), -1):
            if text[index] in "+-" and text[index - 1].isdigit():
                zone = text[index:]
                if len(zone) == 3:
                    text = text + ":00"
                break
    return text


def encode_value(value: Any, type_oid: int = 0) -> str:
    """Encodes one value (possibly a nested list) as JSON text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return json.dumps(
            "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        )
    if isinstance(value, Decimal):
        if value.is_finite():
            return str(value)
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode_value(item, type_oid) for item in value) + "]"
    if isinstance(value, dict):
        members = (
            json.dumps(str(k), ensure_ascii=False) + ":" + encode_value(v) for k, v in value.items()
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, str):
        if type_oid in _JSON_TYPES:
            return value
        if type_oid in _TIMESTAMP_TYPES or type_oid in _TIME_ZONE_TYPES:
            value = _iso_datetime(
                value,
                is_timestamp=type_oid in _TIMESTAMP_TYPES,
                has_zone=type_oid in _TIME_ZONE_TYPES,
            )
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)


def encode_document(
    columns: Sequence[str],
    type_oids: Sequence[int],
    rows: Sequence[Sequence[Any]],
    *,
    column_types: Sequence[str] | None = None,
) -> str:
    """{"columns": [...], "rows": [[...], ...]} as JSON text; with column_types (SQL type names)
    also "types": [...], which the engine passes back to diffix.query but analysts never see."""
    encoded_rows = (
        "[" + ",".join(encode_value(v, oid) for v, oid in zip(row, type_oids, strict=True)) + "]"
        for row in rows
    )
    types = (
        ""
        if column_types is None
        else ',"types":' + json.dumps(list(column_types), separators=(",", ":"))
    )
    return (
        '{"columns":'
        + json.dumps(list(columns), ensure_ascii=False, separators=(",", ":"))
        + types
        + ',"rows":['
        + ",".join(encoded_rows)
        + "]}"
    )


@dataclass(frozen=True)
class Answer:
    """A query's result: the document diffix.query_json returns and each column's SQL type
    (format_type), from which diffix.query builds its column definition list."""

    document: str
    column_types: list[str]
    rows: int | None = None  # how many rows the document holds, when known
    mechanism: str = ""  # what produced it, for the audit log (core/audit.py MECHANISMS)


class _Pairs(list):
    """A JSON object decoded as its ordered (key, value) pairs, duplicates kept."""


def decode_row_json(text: str) -> list[Any]:
    """Values of a row_to_json() object in column order, even where column names repeat."""
    pairs = json.loads(text, parse_float=Decimal, object_pairs_hook=_Pairs)
    return [_objects_as_dicts(value) for _, value in pairs]


def _objects_as_dicts(value: Any) -> Any:
    if isinstance(value, _Pairs):
        return {key: _objects_as_dicts(item) for key, item in value}
    if isinstance(value, list):
        return [_objects_as_dicts(item) for item in value]
    return value
