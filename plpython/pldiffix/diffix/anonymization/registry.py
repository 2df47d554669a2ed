"""The registry of anonymizing aggregates, after pg_diffix's `find_agg_funcs`: every aggregate kind
of `validation.aggregates.AggregateKind` maps to the `AggFuncs` of its module. The order of
`AGGREGATES` is the order in which their own columns appear in a bucket query; that of `TRACKERS`
(the per-AID statistics of value columns aggregates share) the order of theirs."""

from __future__ import annotations

from pldiffix.diffix.anonymization.agg_funcs import AggFuncs, ValueTracker
from pldiffix.diffix.anonymization.count import COUNT, COUNT_STAR, COUNTED_VALUES
from pldiffix.diffix.anonymization.count_distinct import COUNT_DISTINCT
from pldiffix.diffix.anonymization.count_histogram import COUNT_HISTOGRAM
from pldiffix.diffix.anonymization.sum import AVG, SUM, SUMMED_VALUES
from pldiffix.diffix.anonymization.suppress_bin import IS_SUPPRESS_BIN

AGGREGATES: tuple[AggFuncs, ...] = (
    COUNT_STAR,
    COUNT,
    SUM,
    AVG,
    COUNT_DISTINCT,
    COUNT_HISTOGRAM,
    IS_SUPPRESS_BIN,
)

TRACKERS: tuple[ValueTracker, ...] = (COUNTED_VALUES, SUMMED_VALUES)

_BY_KIND = {kind: funcs for funcs in AGGREGATES for kind in funcs.kinds}


def find_agg_funcs(kind: str) -> AggFuncs:
    """The aggregate implementing `kind`; LookupError for a kind no module implements."""
    funcs = _BY_KIND.get(kind)
    if funcs is None:
        raise LookupError(f"unknown aggregate {kind}")
    return funcs
