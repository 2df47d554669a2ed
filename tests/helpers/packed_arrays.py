"""Test support: packed columns as the server ships them (``diffix._array_bytes`` of an
``array_agg``), written out field by field from PostgreSQL's ArrayType layout. It defines no
tests itself."""

from __future__ import annotations

import struct

ELEMENTS = {"int4": ("i", 23), "int8": ("q", 20), "float8": ("d", 701)}


def packed(values: list, fmt: str) -> bytes:
    """A one-dimensional array without NULLs, after its length word: ndim 1, dataoffset 0
    (no NULL bitmap), element type OID, length, lower bound 1, the elements (native order)."""
    code, oid = ELEMENTS[fmt]
    header = struct.pack("=iiIii", 1, 0, oid, len(values), 1)
    return header + struct.pack(f"={len(values)}{code}", *values)
