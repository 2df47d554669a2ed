"""Fast paths give exactly what the general code gives."""

from __future__ import annotations

import random

import pytest

from pldiffix.diffix.anonymization import (
    AidKind,
    AnonymizationParams,
    BucketContext,
    CountDistinctState,
    DistinctValueInput,
    fnv1a_64,
)
from pldiffix.diffix.anonymization.count_distinct import DistinctAidsState
from pldiffix.diffix.anonymization.hashing import hash_aid, hash_aids

EDGE_INTS = [0, 1, -1, 2, 255, 256, 65535, 65536, 1 << 24, (1 << 31) - 1, -(1 << 31), 12345678]


def _reference(value: int, kind: AidKind) -> int:
    word = value & (0xFFFFFFFF if kind is AidKind.INT4 else 0xFFFFFFFFFFFFFFFF)
    return fnv1a_64(word.to_bytes(8, "little"))


@pytest.mark.parametrize("kind", [AidKind.INT4, AidKind.INT8])
def test_hash_aids_matches_fnv(kind: AidKind) -> None:
    rng = random.Random(4)
    values = EDGE_INTS + [rng.randrange(-(1 << 31), 1 << 31) for _ in range(5000)]
    if kind is AidKind.INT8:
        values += [1 << 32, (1 << 32) - 1, (1 << 63) - 1, -(1 << 63), -5]
        values += [rng.randrange(-(1 << 63), 1 << 63) for _ in range(500)]
    assert hash_aids(values, kind) == [_reference(v, kind) for v in values]
    assert hash_aids(values, kind) == [hash_aid(v, kind) for v in values]


def test_hash_aids_int4_and_int8_differ_for_negatives() -> None:
    assert hash_aids([-1], AidKind.INT4) != hash_aids([-1], AidKind.INT8)
    assert hash_aids([7], AidKind.INT4) == hash_aids([7], AidKind.INT8)


def test_hash_aids_text() -> None:
    values = ["", "a", "ü€", "x" * 100]
    assert hash_aids(values, AidKind.TEXT) == [fnv1a_64(v.encode()) for v in values]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("noise", [False, True])
def test_distinct_aids_state_matches_count_distinct(seed: int, noise: bool) -> None:
    rng = random.Random(seed)
    params = AnonymizationParams(salt=f"s{seed}", low_count_min_threshold=rng.choice([2, 3, 5]))
    ctx = BucketContext(params, bucket_seed=rng.getrandbits(64), is_global=rng.random() < 0.3)
    kinds = [AidKind.INT4]

    def pair(aids: list[int]) -> tuple[CountDistinctState, DistinctAidsState]:
        general = CountDistinctState.from_inputs(
            kinds, [DistinctValueInput(a, [[a]]) for a in aids], noise=noise
        )
        fast = DistinctAidsState(set(hash_aids(aids, AidKind.INT4)), noise=noise)
        return general, fast

    size = rng.choice([0, 1, 3, 5, 8, 40, 300])
    general, fast = pair(rng.sample(range(-1000, 1000), size))
    other_general, other_fast = pair(rng.sample(range(-1000, 1000), rng.choice([0, 4, 30])))
    assert general.finalize(ctx) == fast.finalize(ctx)
    merged_general, merged_fast = general.empty(), fast.empty()
    for g, f in ((general, fast), (other_general, other_fast)):
        merged_general.merge(g)
        merged_fast.merge(f)
    assert merged_general.finalize(ctx) == merged_fast.finalize(ctx)
