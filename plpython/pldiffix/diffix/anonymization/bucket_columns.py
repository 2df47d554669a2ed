"""Names of the columns of a bucket row: what `diffix.bucket_query` emits and
`diffix.bucket_reader` reads. An aggregate's own columns are named in its module (count.py,
sum.py, count_distinct.py, count_histogram.py); these are the ones every bucket row has.

A per-AID column holds one value per AID of instance k: `a<family><j>_<k>` for value column j
(`a<family><k>` for a family without one); `u<family>...` is its contribution of the rows whose
AID of instance k is NULL (see `AidContributions.unaccounted_for`)."""

from __future__ import annotations

LABEL = "l"  # l<k>: grouping expression k, per input row
LABEL_TEXT = "t"  # t<k>: label k as reported
LABEL_HASH = "h"  # h<k>: label k as hashed into the seeds (`rewrite.canonical_sql`)
AID = "i"  # i<k>: AID instance k, per input row
VALUE = "v"  # v<j>: aggregated value column j, per input row
PER_AID = "a"  # the prefix of every per-AID column
KEY = "k"  # the bucket's key across passes and row ranges
ROWS = "n"  # rows per AID: the family of count(*)
NULL_ROWS = "na"  # na<j>: shipping rows, the AIDs of the rows where value j is NULL


def numbered(prefix: str, index: int) -> str:
    """`<prefix><index>`, e.g. `l0`."""
    return f"{prefix}{index}"


def aids(k: int) -> str:
    """The distinct AIDs of instance k (shipping rows: `a0`, the AID of each row)."""
    return f"{PER_AID}{k}"


def per_aid(family: str, k: int, j: int | None = None) -> str:
    """Per-AID values of `family` (value column `j`) for instance k, aligned with `aids(k)`."""
    return f"{PER_AID}{family}{k}" if j is None else f"{PER_AID}{family}{j}_{k}"


def unaccounted(family: str, k: int, j: int | None = None) -> str:
    """The contribution of `family` from rows whose AID of instance k is NULL."""
    return f"u{family}{k}" if j is None else f"u{family}{j}_{k}"


def per_instance(family: str, j: int, k: int) -> str:
    """A value of `family` for value column j and instance k, e.g. a sum's exact total."""
    return f"{family}{j}_{k}"
