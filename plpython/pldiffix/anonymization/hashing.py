"""FNV-1a hashing of AID values and of seed material, and hash sets turned into seeds.

pg_diffix identifies each AID value by its 64-bit FNV-1a hash and combines sets of hashes into a
seed by XOR. Integers are hashed as their 8-byte little-endian representation (x86_64 memory
order); ``int4`` values are zero-extended from their unsigned 32-bit pattern first, so ``-1::int4``
and ``-1::int8`` hash differently. Text is hashed as its UTF-8 bytes without a terminator.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from functools import lru_cache

from pldiffix.anonymization._cnum import UINT32_MASK, UINT64_MASK

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3

AidValue = int | str


def fnv1a_64(data: bytes) -> int:
    """64-bit FNV-1a over ``data``."""
    h = FNV_OFFSET_BASIS
    for octet in data:
        h = ((h ^ octet) * FNV_PRIME) & UINT64_MASK
    return h


def hash_string(text: str) -> int:
    """Hash of a C string: its UTF-8 bytes, stopping at the first NUL like ``strlen`` would."""
    data = text.encode("utf-8")
    nul = data.find(b"\x00")
    return fnv1a_64(data if nul < 0 else data[:nul])


class AidKind(enum.Enum):
    """The column types pg_diffix accepts as AIDs."""

    INT4 = "int4"
    INT8 = "int8"
    TEXT = "text"  # also varchar

    @classmethod
    def from_type_name(cls, name: str) -> AidKind:
        key = name.strip().lower()
        aliases = {
            "int4": cls.INT4, "integer": cls.INT4, "int": cls.INT4, "serial": cls.INT4,
            "int8": cls.INT8, "bigint": cls.INT8, "bigserial": cls.INT8,
            "text": cls.TEXT, "varchar": cls.TEXT, "character varying": cls.TEXT,
        }  # fmt: skip
        if key not in aliases:
            raise ValueError(f"Unsupported AID type {name!r}")
        return aliases[key]


@lru_cache(maxsize=1 << 16)
def hash_aid(value: AidValue, kind: AidKind) -> int:
    """The 64-bit identity pg_diffix assigns to a non-NULL AID value."""
    if kind is AidKind.TEXT:
        return hash_string(str(value))
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"AID of kind {kind.value} must be an int, got {type(value).__name__}")
    word = value & (UINT32_MASK if kind is AidKind.INT4 else UINT64_MASK)
    return fnv1a_64(word.to_bytes(8, "little"))


def hash_aids(values: Iterable[AidValue], kind: AidKind) -> list[int]:
    return [hash_aid(value, kind) for value in values]


def seed_from_hashes(hashes: Iterable[int]) -> int:
    """XOR of the *distinct* hashes; duplicates are counted once, as in pg_diffix hash sets."""
    seed = 0
    for h in set(hashes):
        seed ^= h
    return seed
