"""Test support: a tiny in-memory stand-in for the per-(bucket, AID) SQL grouping.

It turns plain rows into the per-bucket input shapes documented in docs/engine.md, so tests can
replay pg_diffix's regression data. It defines no tests itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pldiffix.diffix.anonymization import (
    AidContributions,
    AidKind,
    AnonymizationParams,
    AvgState,
    Bucket,
    CountDistinctState,
    CountHistogramState,
    CountState,
    DistinctValueInput,
    HistogramEntryInput,
    LowCountState,
    QueryContext,
    SumInput,
    SummandType,
    SumState,
    anonymize_buckets,
    sql_seed,
)
from pldiffix.diffix.anonymization.base import AnonymizingAggregate, BucketContext
from pldiffix.diffix.anonymization.seeds import base_label_hashes

Row = dict[str, Any]
Aids = Sequence[tuple[str, AidKind]]  # (column, kind) per AID instance

REGRESSION_SALT = "diffix"

# pg_diffix test/sql/_setup.sql
CUSTOMERS: list[Row] = [
    {"id": i, "city": c, "discount": d, "planet": p}
    for i, c, d, p in [
        (0, None, None, None), (1, "Berlin", 1.0, "Earth"), (2, "Berlin", 1.0, "Earth"),
        (3, "Rome", 0.5, "Earth"), (4, "London", 2.0, "Earth"), (5, "Berlin", 2.0, "Earth"),
        (6, "Rome", 1.0, "Earth"), (7, "Rome", 0.5, "Earth"), (8, "Berlin", 0.0, "Earth"),
        (9, "Rome", 1.0, "Earth"), (10, "Berlin", 2.0, "Earth"), (11, "Rome", 1.5, "Earth"),
        (12, "Rome", 0.5, "Earth"), (13, "Rome", 0.5, "Earth"), (14, "Berlin", 1.5, "Earth"),
        (15, "Berlin", 1.0, "Earth"), (16, "Berlin", 1.0, "Earth"), (17, "Madrid", 2.0, "Earth"),
    ]
]  # fmt: skip
PURCHASES: list[Row] = [
    {"cid": c, "pid": p}
    for c, p in [
        (0, 0), (0, 1), (0, 3), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 2),
        (9, 1), (10, 2), (11, 1), (12, 1), (13, 2), (1, 2), (2, 2), (3, 2), (4, 2), (5, 2),
        (6, 2), (7, 1), (8, 1), (9, 2), (1, 2), (1, 2), (2, 1), (3, 0), (None, None), (4, 3),
        (5, 3), (6, 4), (7, -1), (7, 4), (8, -2), (9, -3), (10, -4),
    ]
]  # fmt: skip
PATIENTS: list[Row] = [
    {"id": i, "name": n, "city": c, "age": a}
    for i, n, c, a in [
        (0, None, "Berlin", 37), (1, "John", "Berlin", 37), (2, "Alice", "Berlin", 37),
        (3, "Bob", "Berlin", 37), (4, "Emma", "Berlin", 64), (5, "John", "Berlin", 57),
        (6, "Bob", "Berlin", 19), (7, "Alice", "Rome", 37), (8, "Dan", "Rome", 37),
        (9, "Anna", "Rome", 64), (10, "Mike", "London", 64), (11, "Mike", "London", 57),
        (12, "Mike", "London", 16), (13, "Mike", "London", 17),
    ]
]  # fmt: skip

CUSTOMER_AIDS: Aids = [("id", AidKind.INT4)]
PURCHASE_AIDS: Aids = [("cid", AidKind.INT4)]
PATIENT_AIDS: Aids = [("id", AidKind.INT4), ("name", AidKind.TEXT)]

NOISY = AnonymizationParams(
    salt=REGRESSION_SALT, noise_layer_sd=7.0, low_count_layer_sd=2.0, low_count_min_threshold=2
)


def _live(rows: Sequence[Row], aids: Aids) -> list[Row]:
    """Rows with at least one non-NULL AID (pg_diffix ignores the others)."""
    return [r for r in rows if any(r[col] is not None for col, _ in aids)]


def count_inputs(
    rows: Sequence[Row], aids: Aids, column: str | None = None
) -> list[AidContributions]:
    """``count(*)`` (column None) or ``count(column)`` contributions per AID instance."""
    result = []
    for col, _ in aids:
        per_aid: dict[Any, int] = {}
        unaccounted = 0
        for row in _live(rows, aids):
            counted = 1 if column is None or row[column] is not None else 0
            if row[col] is None:
                unaccounted += counted
            else:
                per_aid[row[col]] = per_aid.get(row[col], 0) + counted
        result.append(AidContributions(list(per_aid), list(per_aid.values()), unaccounted))
    return result


def sum_inputs(rows: Sequence[Row], aids: Aids, column: str) -> list[SumInput]:
    result = []
    for col, _ in aids:
        pos: dict[Any, Any] = {}
        neg: dict[Any, Any] = {}
        present: list[Any] = []
        unaccounted_pos: Any = 0
        unaccounted_neg: Any = 0
        total_pos: Any = 0  # accumulated row by row, as the SQL side should
        total_neg: Any = 0
        for row in _live(rows, aids):
            value = row[column]
            if value is None:
                continue
            aid = row[col]
            if aid is None:
                if value > 0:
                    unaccounted_pos += value
                if value < 0:
                    unaccounted_neg += -value
                continue
            if aid not in present:
                present.append(aid)
            if value >= 0:
                pos[aid] = pos.get(aid, 0) + value
                total_pos += value
            if value <= 0:
                neg[aid] = neg.get(aid, 0) - value
                total_neg += -value
        result.append(
            SumInput(
                AidContributions(
                    present, [pos.get(a) for a in present], unaccounted_pos, total_pos
                ),
                AidContributions(
                    present, [neg.get(a) for a in present], unaccounted_neg, total_neg
                ),
            )
        )
    return result


def distinct_inputs(rows: Sequence[Row], aids: Aids, column: str) -> list[DistinctValueInput]:
    per_value: dict[Any, list[list[Any]]] = {}
    for row in rows:
        value = row[column]
        if value is None:
            continue
        sets = per_value.setdefault(value, [[] for _ in aids])
        for k, (col, _) in enumerate(aids):
            if row[col] is not None and row[col] not in sets[k]:
                sets[k].append(row[col])
    return [DistinctValueInput(key, sets) for key, sets in per_value.items()]


def low_count_state(rows: Sequence[Row], aids: Aids) -> LowCountState:
    lists = [sorted({r[col] for r in rows if r[col] is not None}, key=str) for col, _ in aids]
    return LowCountState.from_inputs([k for _, k in aids], lists)


AggBuilder = Callable[[Sequence[Row]], AnonymizingAggregate]


def count_star(aids: Aids, noise: bool = False) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: CountState.from_inputs(kinds, count_inputs(rows, aids), noise=noise)


def count_col(aids: Aids, column: str, noise: bool = False) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: CountState.from_inputs(kinds, count_inputs(rows, aids, column), noise=noise)


def count_distinct(aids: Aids, column: str, noise: bool = False) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: CountDistinctState.from_inputs(
        kinds, distinct_inputs(rows, aids, column), noise=noise
    )


def sum_col(aids: Aids, column: str, summand: SummandType, noise: bool = False) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: SumState.from_inputs(
        summand, kinds, sum_inputs(rows, aids, column), noise=noise
    )


def avg_col(aids: Aids, column: str, summand: SummandType, noise: bool = False) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: AvgState(
        SumState.from_inputs(summand, kinds, sum_inputs(rows, aids, column), noise=noise),
        CountState.from_inputs(kinds, count_inputs(rows, aids, column)),
        noise=noise,
    )


def histogram_inputs(rows: Sequence[Row], aids: Aids, counted: int) -> list[HistogramEntryInput]:
    counted_col = aids[counted][0]
    per_aid: dict[Any, tuple[list[int], list[list[Any]]]] = {}
    for row in rows:
        if row[counted_col] is None:
            continue
        count, sets = per_aid.setdefault(row[counted_col], ([0], [[] for _ in aids]))
        count[0] += 1
        for k, (col, _) in enumerate(aids):
            if row[col] is not None and row[col] not in sets[k]:
                sets[k].append(row[col])
    return [HistogramEntryInput(aid, c[0], sets) for aid, (c, sets) in per_aid.items()]


def count_histogram(aids: Aids, counted: int, bin_size: int = 1) -> AggBuilder:
    kinds = [k for _, k in aids]
    return lambda rows: CountHistogramState.from_inputs(
        kinds, counted, bin_size, histogram_inputs(rows, aids, counted)
    )


def run_query(
    rows: Sequence[Row],
    aids: Aids,
    aggregates: Sequence[AggBuilder],
    *,
    params: AnonymizationParams,
    labels: Sequence[Callable[[Row], Any]] = (),
    text_labels: Sequence[bool] = (),
    materials: Sequence[str] = (),
    where: Sequence[tuple[str, Any]] = (),
) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """Evaluates ``SELECT labels..., aggregates... FROM rows WHERE col = const ... GROUP BY``.

    ``materials`` are the seed materials of the grouping expressions; WHERE equalities add
    ``table.column``-style materials passed the same way plus their constants as base labels.
    """
    filtered = [r for r in rows if all(r[col] == value for col, value in where)]
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in filtered:
        groups.setdefault(tuple(f(row) for f in labels), []).append(row)
    if not labels:
        groups = {(): filtered}
    grouped = bool(labels)
    query = QueryContext(
        sql_seed=sql_seed(materials),
        text_labels=tuple(text_labels) if text_labels else tuple(True for _ in labels),
        base_label_hashes=base_label_hashes(value for _, value in where),
        low_count_filter=grouped,
    )
    buckets = [
        Bucket(
            labels=key,
            aggregates=[build(members) for build in aggregates],
            low_count_state=low_count_state(members, aids) if grouped else None,
        )
        for key, members in groups.items()
    ]
    return [(row.labels, row.values) for row in anonymize_buckets(buckets, query, params)]


def finalize_global(agg: AnonymizingAggregate, params: AnonymizationParams, seed: int = 0) -> Any:
    return agg.finalize(BucketContext(params, seed, is_global=True))
