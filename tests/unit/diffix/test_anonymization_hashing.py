"""Hashing of AIDs, strings and hash sets."""

from __future__ import annotations

import pytest

from pldiffix.diffix.anonymization.hashing import (
    AidKind,
    fnv1a_64,
    hash_aid,
    hash_string,
    seed_from_hashes,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Published FNV-1a 64-bit test vectors.
        (b"", 0xCBF29CE484222325),
        (b"a", 0xAF63DC4C8601EC8C),
        (b"foobar", 0x85944171F73967E8),
    ],
)
def test_fnv1a_64_matches_reference_vectors(data: bytes, expected: int) -> None:
    assert fnv1a_64(data) == expected


def test_hash_string_uses_utf8_and_stops_at_nul() -> None:
    assert hash_string("a") == 0xAF63DC4C8601EC8C
    assert hash_string("é") == fnv1a_64(b"\xc3\xa9")
    assert hash_string("foo\x00bar") == hash_string("foo")


def test_integer_aids_hash_their_8_byte_little_endian_form() -> None:
    assert hash_aid(1, AidKind.INT8) == fnv1a_64(b"\x01" + b"\x00" * 7)
    # Non-negative int4 and int8 values hash alike ...
    assert hash_aid(123456, AidKind.INT4) == hash_aid(123456, AidKind.INT8)
    # ... but a negative int4 is zero-extended from its 32-bit pattern.
    assert hash_aid(-1, AidKind.INT4) == fnv1a_64(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    assert hash_aid(-1, AidKind.INT8) == fnv1a_64(b"\xff" * 8)
    assert hash_aid(-1, AidKind.INT4) == hash_aid(0xFFFFFFFF, AidKind.INT8)


def test_text_aids_hash_their_bytes() -> None:
    assert hash_aid("user1", AidKind.TEXT) == hash_string("user1")


def test_integer_kinds_reject_text() -> None:
    with pytest.raises(TypeError):
        hash_aid("1", AidKind.INT4)


def test_aid_kind_from_type_names() -> None:
    assert AidKind.from_type_name("integer") is AidKind.INT4
    assert AidKind.from_type_name("BIGINT") is AidKind.INT8
    assert AidKind.from_type_name("character varying") is AidKind.TEXT
    with pytest.raises(ValueError):
        AidKind.from_type_name("uuid")


def test_seed_from_hashes_xors_distinct_hashes_once() -> None:
    assert seed_from_hashes([]) == 0
    assert seed_from_hashes([0b1100, 0b1010]) == 0b0110
    # A duplicate does not cancel itself out.
    assert seed_from_hashes([0b1100, 0b1100, 0b1010]) == 0b0110
