"""Per-bucket anonymization core: hashing, noise, aggregators, low-count filter, LED, suppress bin.

Pure Python (the states standard library only). SQL groups rows per bucket and AID value; this
package turns those per-bucket summaries into the values pg_diffix would report. See
docs/engine.md. Each aggregate's module also says what its bucket row needs and how its state is
read from it (`agg_funcs.AggFuncs`, found through `registry.find_agg_funcs`).
"""

from pldiffix.diffix.anonymization.base import AidContributions, BucketContext
from pldiffix.diffix.anonymization.buckets import Bucket, OutputRow, QueryContext
from pldiffix.diffix.anonymization.count import CountState
from pldiffix.diffix.anonymization.count_distinct import CountDistinctState, DistinctValueInput
from pldiffix.diffix.anonymization.count_histogram import CountHistogramState, HistogramEntryInput
from pldiffix.diffix.anonymization.hashing import AidKind, fnv1a_64, hash_aid, hash_string
from pldiffix.diffix.anonymization.led import apply_led
from pldiffix.diffix.anonymization.low_count import LowCountState
from pldiffix.diffix.anonymization.params import AnonymizationParams
from pldiffix.diffix.anonymization.pipeline import anonymize_buckets
from pldiffix.diffix.anonymization.seeds import (
    SeedMaterial,
    bucket_seed,
    label_hash,
    label_material,
    sql_seed,
)
from pldiffix.diffix.anonymization.sum import AvgState, SumInput, SummandType, SumState
from pldiffix.diffix.anonymization.suppress_bin import build_suppress_bin

__all__ = [
    "AidContributions",
    "AidKind",
    "AnonymizationParams",
    "AvgState",
    "Bucket",
    "BucketContext",
    "CountDistinctState",
    "CountHistogramState",
    "CountState",
    "DistinctValueInput",
    "HistogramEntryInput",
    "LowCountState",
    "OutputRow",
    "QueryContext",
    "SeedMaterial",
    "SumInput",
    "SumState",
    "SummandType",
    "anonymize_buckets",
    "apply_led",
    "bucket_seed",
    "build_suppress_bin",
    "fnv1a_64",
    "hash_aid",
    "hash_string",
    "label_hash",
    "label_material",
    "sql_seed",
]
