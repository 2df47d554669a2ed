"""The aggregate registry: every aggregate kind the validator produces has its module's AggFuncs,
each kind once, with its result type and reported value."""

from __future__ import annotations

import typing

import pytest

from pldiffix.diffix.anonymization import OutputRow, SummandType
from pldiffix.diffix.anonymization.agg_funcs import AggregateInput
from pldiffix.diffix.anonymization.registry import AGGREGATES, find_agg_funcs
from pldiffix.diffix.validation.aggregates import AggregateKind


def test_every_aggregate_kind_has_one_implementation() -> None:
    kinds = [kind for funcs in AGGREGATES for kind in funcs.kinds]
    assert len(kinds) == len(set(kinds))
    assert set(kinds) == set(typing.get_args(AggregateKind))
    for kind in kinds:
        assert kind in find_agg_funcs(kind).kinds


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(LookupError, match="unknown aggregate median"):
        find_agg_funcs("median")


@pytest.mark.parametrize(
    ("kind", "summand", "expected"),
    [
        ("count_star", None, "bigint"),
        ("count_noise_star", None, "double precision"),
        ("count", None, "bigint"),
        ("count_distinct", None, "bigint"),
        ("count_distinct_noise", None, "double precision"),
        ("sum", SummandType.INT4, "bigint"),
        ("sum", SummandType.INT8, "numeric"),
        ("sum", SummandType.FLOAT4, "real"),
        ("sum", SummandType.FLOAT8, "double precision"),
        ("sum_noise", SummandType.INT4, "double precision"),
        ("avg", SummandType.INT4, "numeric"),
        ("avg", SummandType.NUMERIC, "numeric"),
        ("avg", SummandType.FLOAT4, "double precision"),
        ("avg_noise", SummandType.INT4, "double precision"),
        ("count_histogram", None, "bigint[]"),
        ("is_suppress_bin", None, "boolean"),
    ],
)
def test_result_types_follow_postgresql(kind: str, summand: SummandType | None, expected: str):
    assert find_agg_funcs(kind).result_type(AggregateInput(kind, summand=summand)) == expected


def test_only_the_suppress_bin_flag_reports_the_row_rather_than_its_value() -> None:
    star = OutputRow(labels=(None,), values=(False, 7), is_suppress_bin=True)
    assert find_agg_funcs("is_suppress_bin").reported(False, star) is True
    assert find_agg_funcs("count_star").reported(7, star) == 7
