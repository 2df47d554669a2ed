"""Deterministic noise: salted seeds, uniform and Gaussian draws, layers, the noisy threshold.

Every draw is a pure function of (salt, seed, step name). The seed is salted with SHA-256 over the
salt bytes followed by the 8 little-endian seed bytes; the first 8 digest bytes, read as a
little-endian integer, are XORed with the FNV-1a hash of the step name. Uniform integers use the
XOR of both 32-bit halves modulo the range size; Gaussian values use Box-Muller on the low half
(radius) and the high half (angle), each scaled by 1/(2^32-1).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from functools import lru_cache

from pldiffix.core.money import money_round
from pldiffix.diffix.anonymization._cnum import UINT32_MASK, UINT64_MASK, c_max
from pldiffix.diffix.anonymization.hashing import hash_string
from pldiffix.diffix.anonymization.params import AnonymizationParams

_MAX_UINT32 = 4294967295.0


def _salt_bytes(salt: str) -> bytes:
    data = salt.encode("utf-8")
    nul = data.find(b"\x00")
    return data if nul < 0 else data[:nul]


@lru_cache(maxsize=1 << 14)
def salted_seed(salt: str, seed: int) -> int:
    digest = hashlib.sha256(_salt_bytes(salt) + (seed & UINT64_MASK).to_bytes(8, "little")).digest()
    return int.from_bytes(digest[:8], "little")


def prepare_seed(salt: str, seed: int, step_name: str) -> int:
    """Mixes a layer seed with the salt and the name of the step that consumes it."""
    return salted_seed(salt, seed) ^ hash_string(step_name)


def uniform_int(salt: str, seed: int, step_name: str, low: int, high: int) -> int:
    """A uniform integer in ``[low, high]`` (both non-negative) for the seed and step."""
    if high < low or low < 0:
        raise ValueError(f"Invalid uniform range [{low}, {high}]")
    mixed = prepare_seed(salt, seed, step_name)
    folded = ((mixed >> 32) ^ mixed) & UINT32_MASK
    return low + folded % ((high - low + 1) & UINT32_MASK)


def normal(salt: str, seed: int, step_name: str, sd: float) -> float:
    """A zero-mean Gaussian value with standard deviation ``sd``."""
    mixed = prepare_seed(salt, seed, step_name)
    u1 = (mixed & UINT32_MASK) / _MAX_UINT32
    u2 = (mixed >> 32) / _MAX_UINT32
    # C's log(0) is -inf; keep IEEE semantics instead of raising.
    log_u1 = math.log(u1) if u1 > 0.0 else -math.inf
    return sd * (math.sqrt(-2.0 * log_u1) * math.sin(2.0 * math.pi * u2))


def layered_noise(salt: str, seeds: Sequence[int], step_name: str, layer_sd: float) -> float:
    """Sum of one Gaussian draw per layer seed, all with the same step name and deviation."""
    total = 0.0
    for seed in seeds:
        total += normal(salt, seed, step_name, layer_sd)
    return total


def low_count_threshold(params: AnonymizationParams, aid_seed: int) -> float:
    """The noisy low-count threshold for a set of AIDs, seeded by that set only."""
    noise = layered_noise(params.salt, [aid_seed], "suppress", params.low_count_layer_sd)
    noisy = params.low_count_threshold_mean + noise
    return c_max(noisy, float(params.low_count_min_threshold))


def is_low_count(params: AnonymizationParams, aid_count: int, aid_seed: int) -> bool:
    return aid_count < low_count_threshold(params, aid_seed)


def round_reported_noise_sd(noise_sd: float) -> float:
    """Coarsens a noise standard deviation before it is reported to the analyst."""
    if noise_sd == 0.0:
        return 0.0
    resolution = money_round(0.05 * noise_sd)
    if resolution == 0.0:
        return math.nan  # what 0 * ceil(x / 0) yields in C
    return resolution * math.ceil(noise_sd / resolution)
