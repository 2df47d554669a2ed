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

from pldiffix.diffix.anonymization._cnum import UINT32_MASK, UINT64_MASK

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


# --- fast hashing of 32-bit AIDs ------------------------------------------------------------------
#
# An int4 AID (or an int8 in [0, 2^32)) is hashed as bytes b1 b2 b3 b4 0 0 0 0. XOR with a zero byte
# changes nothing, so the last four steps multiply by P^4. Write S2 for the state after b1 b2 and
# l = S2 & 255. Then S2 ^ b3 = S2 + D1 with D1 = (l ^ b3) - l; the next state's low byte is
# m = ((l ^ b3) * P) & 255 and, likewise, S3 ^ b4 = S3 + D2 with D2 = (m ^ b4) - m. Expanding,
#     hash = S2 * P^6 + D1 * P^6 + D2 * P^5   (mod 2^64),
# where S2 * P^6 and l depend only on b1 b2, and D1 * P^6, m only on (l, b3), D2 * P^5 only on
# (m, b4): three tables of 65,536 entries turn the eight multiplications into three lookups.

_TABLES: tuple[list[int], list[int], list[int], list[int], list[int]] | None = None


def _int32_tables() -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    global _TABLES
    if _TABLES is None:
        p5 = pow(FNV_PRIME, 5, 1 << 64)
        p6 = pow(FNV_PRIME, 6, 1 << 64)
        first = [((FNV_OFFSET_BASIS ^ b) * FNV_PRIME) & UINT64_MASK for b in range(256)]
        r: list[int] = []
        low: list[int] = []
        for index in range(1 << 16):
            s2 = ((first[index & 255] ^ (index >> 8)) * FNV_PRIME) & UINT64_MASK
            r.append((s2 * p6) & UINT64_MASK)
            low.append(s2 & 255)
        a: list[int] = []
        m: list[int] = []
        b: list[int] = []
        for index in range(1 << 16):
            l_byte, octet = index >> 8, index & 255
            x = l_byte ^ octet
            a.append(((x - l_byte) * p6) & UINT64_MASK)
            m.append((x * FNV_PRIME) & 255)
            b.append(((x - l_byte) * p5) & UINT64_MASK)  # same shape: (m ^ b4) - m, times P^5
        _TABLES = (r, low, a, m, b)
    return _TABLES


def hash_aids(values: Iterable[AidValue], kind: AidKind) -> list[int]:
    """``hash_aid`` of every value, in order; integer AIDs take the table-driven path."""
    if kind is AidKind.TEXT:
        return [hash_aid(value, kind) for value in values]
    r, low, a, m, b = _int32_tables()
    out: list[int] = []
    append = out.append
    int4 = kind is AidKind.INT4
    for value in values:
        if type(value) is not int:
            append(hash_aid(value, kind))
            continue
        if int4:
            word = value & UINT32_MASK
        elif 0 <= value <= UINT32_MASK:
            word = value
        else:
            append(hash_aid(value, kind))
            continue
        i = word & 0xFFFF
        j = (low[i] << 8) | ((word >> 16) & 255)
        append((r[i] + a[j] + b[(m[j] << 8) | (word >> 24)]) & UINT64_MASK)
    return out


def seed_from_hashes(hashes: Iterable[int]) -> int:
    """XOR of the *distinct* hashes; duplicates are counted once, as in pg_diffix hash sets."""
    seed = 0
    for h in set(hashes):
        seed ^= h
    return seed
