"""The bucket query: one anonymizing query as SQL that does the per-row work in PostgreSQL.

For one `AnonymizingQuery` the engine runs `BucketQuery.sql`: it groups the rows per bucket and,
for every AID instance, per AID value (GROUPING SETS), then once more per bucket, and returns one
row per bucket holding the compact arrays of docs/engine.md ("Input shapes"). Python then only
sees one row per bucket (`bucket_reader`).

What each aggregate needs comes from its module (`anonymization.registry`): the value columns,
counts and sums it requests, and columns of its own. Column names are the constants of
`anonymization.bucket_columns` and of the aggregates' modules. As everywhere in the rewriter,
everything emitted comes from the validated model, never from the analyst's text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from pldiffix.core import sqltext
from pldiffix.core.emitted_sql import from_sql
from pldiffix.core.query_model import Aggregate, AnonymizingQuery, ColumnRef, RangeEntry
from pldiffix.core.sqltext import identifier
from pldiffix.core.validation.pgtypes import normalize_type
from pldiffix.diffix.anonymization import bucket_columns as cols
from pldiffix.diffix.anonymization.agg_funcs import (
    AggFuncs,
    AggregateInput,
    PerAidArray,
    ValueTracker,
)
from pldiffix.diffix.anonymization.bucket_columns import (
    AID,
    KEY,
    LABEL,
    LABEL_HASH,
    LABEL_TEXT,
    NULL_ROWS,
    ROWS,
    VALUE,
    numbered,
)
from pldiffix.diffix.anonymization.registry import AGGREGATES, TRACKERS, find_agg_funcs
from pldiffix.diffix.anonymization.summands import SummandType, summand_type
from pldiffix.diffix.rewrite import SqlType, canonical_sql, sql, where_sql


@dataclass
class BucketQuery:
    sql: str
    labels: list[SqlType]
    aid_types: list[str]
    inputs: list[AggregateInput]
    float_sums: list[int]  # float value columns whose sums get per-instance totals over rows
    packed: dict[str, str] = field(default_factory=dict)  # per-AID column -> binary format
    rows: bool = False  # packed columns hold rows, not AIDs (`_row_query`)
    # What the query collects per input row at most: packed rows, or one per-AID entry each.
    bytes_per_row: int = 0
    # One AID instance and only aggregates whose parts combine (`anonymization.partitions`): the
    # query can be read in passes over disjoint AID partitions (`Partition`).
    partitionable: bool = False
    # Packed columns are sent values (send functions' results, concatenated), not arrays
    # (`_per_aid_array`, `bulk`).
    sent: bool = False


@dataclass(frozen=True)
class Partition:
    """Pass `index` of `count` over disjoint AID partitions: the rows whose int4 AID hashes
    (`hashint4`, PostgreSQL's own) to `index` modulo `count`. Rows without an AID count toward no
    aggregate (one AID instance) but still make their bucket exist; they go to pass 0."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 2 or not 0 <= self.index < self.count:
            raise ValueError(f"invalid partition {self.index} of {self.count}")

    def predicate(self, aid: str) -> str:
        hashed = f"(pg_catalog.hashint4({aid}) & 2147483647)"
        chosen = f"{hashed} OPERATOR(pg_catalog.%) {self.count} = {self.index}"
        return f"({aid} IS NULL OR {chosen})" if self.index == 0 else chosen


@dataclass(frozen=True)
class RowRange:
    """The rows of the only relation that lie in heap blocks `first` up to `end` (exclusive;
    None: to the last block). Consecutive ranges read one after the other see the rows in the
    order of a sequential scan, each exactly once: all statements of the engine's (STABLE)
    function share one snapshot, under which no visible row moves."""

    first: int
    end: int | None

    def __post_init__(self) -> None:
        if self.first < 0 or (self.end is not None and self.end <= self.first):
            raise ValueError(f"invalid row range {self.first}..{self.end}")

    def predicate(self, alias: str) -> str:
        ctid = f"{identifier(alias)}.ctid"
        bounds = [f"{ctid} >= '({self.first},0)'::pg_catalog.tid"] if self.first else []
        if self.end is not None:
            bounds.append(f"{ctid} < '({self.end},0)'::pg_catalog.tid")
        return " AND ".join(bounds) or "TRUE"


def row_ranges(blocks: int, count: int) -> list[RowRange]:
    """`count` ranges of about equal numbers of `blocks` covering the whole relation; the last is
    open-ended, so blocks added since `blocks` was measured are read too."""
    count = max(1, min(count, blocks))
    bounds = [blocks * index // count for index in range(count)]
    return [
        RowRange(first, bounds[index + 1] if index + 1 < count else None)
        for index, first in enumerate(bounds)
    ]


def _label_select(index: int, typ: SqlType) -> list[str]:
    """Output literal text and hash value of label `index`."""
    column = identifier(numbered(LABEL, index))
    if typ.is_datetime:
        literal = f"pg_catalog.to_json({column}) #>> '{{}}'"
    else:
        literal = f"({column})::pg_catalog.text"
    hashed, _ = canonical_sql(column, typ)
    return [
        f"{literal} AS {identifier(numbered(LABEL_TEXT, index))}",
        f"{hashed} AS {identifier(numbered(LABEL_HASH, index))}",
    ]


# Label types a bucket key (`_key_select`) can hash: built-in types with hash support.
KEYABLE_LABEL_TYPES = frozenset(
    {"int2", "int4", "int8", "float4", "float8", "numeric", "text", "varchar", "bpchar", "bool",
     "date", "time", "timestamp", "timestamptz", "interval"}
)  # fmt: skip


def _key_select(model: AnonymizingQuery) -> str:
    """`k`: a bucket's identity across passes. Labels that group together hash alike even when
    their texts differ (0 and -0, 1.0 and 1.00); the engine checks that the parts of a bucket
    agree on the label texts it reports. A record hashes NULL like a float 0, hence the flags."""
    labels = [identifier(numbered(LABEL, k)) for k in range(len(model.groups))]
    fields = [f"{label}, {label} IS NULL" for label in labels]
    if not fields:
        return f"0::pg_catalog.int8 AS {KEY}"
    return f"pg_catalog.hash_record_extended(ROW({', '.join(fields)}), 0) AS {KEY}"


class _Plan:
    """The value columns and per-AID contributions the aggregates of one query request
    (`agg_funcs.BucketPlan`)."""

    def __init__(self, aids: Sequence[ColumnRef], column_type: Any, shortcut: bool) -> None:
        self.aids = aids
        self.distinct_aid_shortcut = shortcut
        self._column_type = column_type
        self.values: list[exp.Expression] = []
        self.value_types: list[str] = []
        self._value_index: dict[str, int] = {}
        self.tracked: dict[ValueTracker, set[int]] = {}
        self._slots: dict[AggFuncs, int] = {}

    def argument(self, call: Aggregate) -> exp.Expression | None:
        return _argument(call.node)

    def value(self, call: Aggregate) -> int:
        """The aggregated expression: the column, or a cast of it as the analyst wrote."""
        column, argument = call.column, _argument(call.node)
        assert column is not None
        expression: exp.Expression = column.to_sql()
        typ = self._column_type(column)
        if isinstance(argument, exp.Cast) and argument.find(exp.Column) is not None:
            expression = argument
            typ = normalize_type(argument.args["to"].sql(dialect=sqltext.POSTGRES))
        key = sql(expression)
        if key not in self._value_index:
            self._value_index[key] = len(self.values)
            self.values.append(expression)
            self.value_types.append(typ)
        return self._value_index[key]

    def summand(self, j: int) -> SummandType:
        return summand_type(self.value_types[j])

    def track(self, tracker: ValueTracker, j: int) -> None:
        self.tracked.setdefault(tracker, set()).add(j)

    def slot(self, funcs: AggFuncs) -> int:
        slot = self._slots.get(funcs, 0)
        self._slots[funcs] = slot + 1
        return slot


@dataclass
class _Sql:
    """What an aggregate writing its own columns sees of the query (`agg_funcs.BucketSql`)."""

    n_aids: int
    labels_cols: list[str]
    values: list[str] = field(default_factory=list)  # SQL of each value column
    grouping_cols: list[str] = field(default_factory=list)  # of the per-AID grouping

    def value_sql(self, j: int) -> str:
        return self.values[j]

    def labels_mask(self) -> int:
        return (1 << len(self.grouping_cols)) - 1

    def mask_at(self, position: int) -> int:
        """`gs` of the grouping set of the labels and grouping column `position`."""
        width = len(self.grouping_cols)
        return ((1 << width) - 1) ^ (1 << (width - 1 - position))

    def mask(self, column: str) -> int:
        return self.mask_at(self.grouping_cols.index(column))

    def distinct_aids(self, k: int, name: str) -> str:
        i = identifier(numbered(AID, k))
        return (
            f"pg_catalog.array_agg(DISTINCT {i}) FILTER (WHERE {i} IS NOT NULL) "
            f"AS {identifier(name)}"
        )

    def entries(self, parts: Sequence[str], column: str, name: str) -> str:
        return (
            f"pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array({', '.join(parts)})) "
            f"FILTER (WHERE gs = {self.mask(column)} AND {column} IS NOT NULL) AS {name}"
        )


def bucket_query(
    model: AnonymizingQuery,
    labels: list[SqlType],
    aid_types: list[str],
    column_type: Any,
    hidden_count: bool,
    distinct_aid_shortcut: bool = False,
    max_row_bytes: float = 0.0,
    partition: Partition | None = None,
    row_range: RowRange | None = None,
    keyed: bool = False,
    sent: bool = False,
) -> BucketQuery:
    """The SQL that returns one row per bucket (see the module docstring).

    `column_type(ColumnRef)` gives the normalized type of an aggregated column; `hidden_count`
    adds a count(*) that implicit grouping needs to repeat rows. With `distinct_aid_shortcut`
    (the caller checked that a single AID is always a low-count set), `count(DISTINCT aid)` over
    the only AID instance ships nothing of its own: its values are the bucket's AIDs (`a0`).
    Queries that allow it ship rows instead of per-AID values (`_row_query`) when a row packs
    into at most `max_row_bytes` (the caller's memory budget divided by the relation's rows).
    With `partition`, only that pass's rows are read (`BucketQuery.partitionable` must hold);
    with `row_range`, only the rows in that range (the query must ship rows). Either adds the
    bucket key `k` (`_key_select`), as does `keyed` (per-partition statements, diffix/shards.py).
    With `sent`, the rows form's packed columns are built from built-in functions only, which
    postgres_fdw ships to a shard (`_per_aid_array`); the per-AID form's outer aggregation never
    ships (it aggregates an aggregation), so it packs arrays as always.
    """
    aids = model.aid_columns
    n_aids = len(aids)
    plan = _Plan(aids, column_type, distinct_aid_shortcut)
    values, value_types = plan.values, plan.value_types
    calls: list[tuple[str, Aggregate | None]] = [(a.kind, a) for a in model.aggregates]
    if hidden_count:
        calls.append(("count_star", None))
    inputs: list[AggregateInput] = []
    for kind, call in calls:
        item = AggregateInput(kind)
        find_agg_funcs(kind).plan(item, call, plan)
        inputs.append(item)
    # per aggregate with inputs, in registry order: where its own columns go
    own = [
        (funcs, [i for i in inputs if i.kind in funcs.kinds])
        for funcs in AGGREGATES
        if any(i.kind in funcs.kinds for i in inputs)
    ]
    combining = all(find_agg_funcs(i.kind).combines(i) for i in inputs)
    sql_parts = _Sql(n_aids, [identifier(numbered(LABEL, k)) for k in range(len(model.groups))])
    sql_parts.values = [sql(v) for v in values]

    # per value tracker with requests, in registry order: the value columns it tracks
    tracked = [(t, sorted(plan.tracked[t])) for t in TRACKERS if t in plan.tracked]
    all_tracked = sorted({j for _, js in tracked for j in js})
    # Several AID instances: their exact ties decide whose noise is reported, so each instance's
    # float total is added over its rows (one instance: over its contributions, exactly, in
    # `bucket_reader`, whatever order parts and passes come in; `anonymization.exact_sum`).
    totals = sorted({j for t, js in tracked for j in js if n_aids > 1 and t.totals(value_types[j])})

    # base: one row per input row
    base: list[str] = []
    for k, group in enumerate(model.groups):
        base.append(f"{sql(group.emitted)} AS {identifier(numbered(LABEL, k))}")
    for k, aid in enumerate(aids):
        base.append(f"{sql(aid.to_sql())} AS {identifier(numbered(AID, k))}")
    for j, value in enumerate(values):
        expression = sql(value)
        for tracker, js in tracked:
            if j in js:
                expression = tracker.row_value(expression, value_types[j])
        base.append(f"{expression} AS {identifier(numbered(VALUE, j))}")
    for funcs, items in own:
        base.extend(funcs.base_columns(items, sql_parts))
    live = " OR ".join(f"{identifier(numbered(AID, k))} IS NOT NULL" for k in range(n_aids))
    # Passes split int4 AIDs only: FNV-1a never gives two of them one hash (see
    # `anonymization.partitions`), so no AID is counted twice across passes.
    partitionable = n_aids == 1 and normalize_type(aid_types[0]) == "int4" and combining
    where = where_sql(model)
    if partition is not None:
        if not partitionable:
            raise ValueError("this query cannot be read in passes")
        where = f"({where}) AND {partition.predicate(sql(aids[0].to_sql()))}"
    if row_range is not None:
        if not isinstance(model.from_tree, RangeEntry):
            raise ValueError("only a query over one relation can be read in row ranges")
        where = f"({where}) AND {row_range.predicate(model.from_tree.alias)}"
    base_sql = f"SELECT {', '.join(base)} FROM {from_sql(model.from_tree)} WHERE {where}"
    if any(
        value_types[j] == "numeric" or not isinstance(values[j], exp.Column)
        for tracker, js in tracked
        if tracker.references_often
        for j in js
    ):
        # Each summand is referenced several times above (its NULL test, both legs, totals), and
        # PostgreSQL inlines a flattened subquery's expressions into every reference: a numeric
        # cast (numeric_out + strtod) would run that many times per row. OFFSET 0 keeps the
        # subquery, which computes each value once; the scan order, hence float sums, is the same.
        base_sql += " OFFSET 0"
    keyed = keyed or partition is not None or row_range is not None
    keys = [_key_select(model)] if keyed else []

    def finish(
        bucket_sql: str, packed: dict[str, str], bytes_per_row: int, rows: bool = False
    ) -> BucketQuery:
        return BucketQuery(
            bucket_sql, labels, aid_types, inputs, totals, packed, rows, bytes_per_row,
            partitionable, sent and rows,
        )  # fmt: skip

    aid_format = normalize_type(aid_types[0]) if len(aid_types) == 1 else None
    # at most: its AID, once more per column it is NULL in, and what the trackers ship
    row_bytes = (4 if aid_format == "int4" else 8) * (1 + len(all_tracked)) + sum(
        t.row_bytes * len(js) for t, js in tracked
    )
    if (
        row_bytes <= max_row_bytes
        and n_aids == 1
        and isinstance(model.from_tree, RangeEntry)
        and aid_format in ("int4", "int8")
        and combining
        and all(t.ships_rows(value_types[j]) for t, js in tracked for j in js)
    ):
        bucket_sql, packed = _row_query(
            model, labels, base_sql, aid_format, tracked, value_types, keys, sent
        )
        return finish(bucket_sql, packed, row_bytes, rows=True)
    if row_range is not None:
        raise ValueError("only a query that ships rows can be read in row ranges")

    labels_cols = sql_parts.labels_cols
    grouping_cols = [identifier(numbered(AID, k)) for k in range(n_aids)]
    for funcs, items in own:
        grouping_cols.extend(funcs.grouping_columns(items, sql_parts))
    sql_parts.grouping_cols = grouping_cols
    mask = sql_parts.mask_at

    sets = [[*labels_cols, identifier(numbered(AID, k))] for k in range(n_aids)]
    if totals:
        sets.append(list(labels_cols))  # exact per-instance totals
    for funcs, items in own:
        sets.extend(funcs.grouping_sets(items, sql_parts))

    # A single grouping set is a plain GROUP BY (cheaper: no grouping-sets machinery), gs = 0.
    single_set = len(sets) == 1
    per_aid: list[str] = [*labels_cols, *grouping_cols]
    per_aid.append("0 AS gs" if single_set else f"GROUPING({', '.join(grouping_cols)}) AS gs")
    per_aid.append(f"pg_catalog.count(*) FILTER (WHERE live) AS {ROWS}")
    for tracker, js in tracked:
        per_aid.extend(tracker.per_aid_columns(js, value_types, sql_parts))
    for funcs, items in own:
        per_aid.extend(funcs.per_aid_columns(items, sql_parts))
    if single_set:
        group_by_sql = ", ".join(sets[0])
    else:
        group_by_sql = "GROUPING SETS (" + ", ".join("(" + ", ".join(s) + ")" for s in sets) + ")"
    per_aid_sql = (
        f"SELECT {', '.join(per_aid)} FROM (SELECT *, ({live}) AS live FROM ({base_sql}) base) "
        f"rows GROUP BY {group_by_sql}"
    )

    # The arrays of one instance are aligned without ORDER BY: the aggregates of one Agg node see
    # the same input rows in the same order, and they share the same FILTER. Integer AIDs and
    # int8/float8 contributions are packed (see `_per_aid_array`).
    outer: list[str] = list(keys)
    packed: dict[str, str] = {}

    def per_aid(name: str, column: str, fmt: str | None, condition: str, nullable: bool) -> None:
        outer.append(f"{_per_aid_array(column, fmt, condition, nullable)} AS {name}")
        if fmt is not None:
            packed[name] = fmt

    for k, typ in enumerate(labels):
        outer.extend(_label_select(k, typ))
    for k in range(n_aids):
        i = identifier(numbered(AID, k))
        present = f"gs = {mask(k)} AND {i} IS NOT NULL"
        absent = f"gs = {mask(k)} AND {i} IS NULL"
        aid_format = normalize_type(aid_types[k]) if k < len(aid_types) else None
        aid_packing = aid_format if aid_format in ("int4", "int8") else None
        per_aid(cols.aids(k), i, aid_packing, present, False)
        per_aid(cols.per_aid(ROWS, k), ROWS, "int8", present, False)
        outer.append(
            f"pg_catalog.sum({ROWS}) FILTER (WHERE {absent}) AS {cols.unaccounted(ROWS, k)}"
        )
        for tracker, js in tracked:
            for column in tracker.instance_columns(js, k, absent, value_types, sql_parts):
                if isinstance(column, PerAidArray):
                    per_aid(column.name, column.column, column.fmt, present, column.nullable)
                else:
                    outer.append(column)
    for funcs, items in own:
        outer.extend(funcs.bucket_columns(items, sql_parts))
    group_by = f" GROUP BY {', '.join(labels_cols)}" if labels_cols else ""
    bucket_sql = f"SELECT {', '.join(outer)} FROM ({per_aid_sql}) per_aid{group_by}"
    # Per input row at most one per-AID entry per instance: the AID and 8 bytes per value.
    entry_bytes = (
        8
        + sum(t.entry_bytes * len(js) for t, js in tracked)
        + sum(4 if normalize_type(t) == "int4" else 8 for t in aid_types)
    )
    return finish(bucket_sql, packed, entry_bytes)


def _per_aid_array(
    column: str, fmt: str | None, condition: str, nullable: bool, sent: bool = False
) -> str:
    """One value per AID of the bucket: an array, or with `fmt` the array's flat bytes
    (`diffix._array_bytes`), which Python reads in one piece (`anonymization.bulk`).

    Packed columns have no NULL: a nullable one (a sum leg, a magnitude, never below zero) packs
    NULL as -1, which `bulk` reads back as "not a contributor".

    With `sent` (the rows form, whose columns are never nullable), packed values are the
    concatenated results of their send function (`int4send`: network byte order), built-in
    functions and aggregates that postgres_fdw ships to a shard; its bytea output (hex) costs
    the shard and the coordinator less than an array's text, whose every element is printed and
    parsed (docs/scale-out.md)."""
    if fmt is None:
        return f"pg_catalog.array_agg({column}) FILTER (WHERE {condition})"
    value = f"({column})::pg_catalog.{fmt}"
    if nullable:
        value = f"COALESCE({value}, -1)"
    if sent:
        return (
            f"pg_catalog.string_agg(pg_catalog.{fmt}send({value}), "
            f"''::pg_catalog.bytea) FILTER (WHERE {condition})"
        )
    return f"diffix._array_bytes(pg_catalog.array_agg({value}) FILTER (WHERE {condition}))"


def _row_query(
    model: AnonymizingQuery,
    labels: list[SqlType],
    base_sql: str,
    aid_format: str,
    tracked: list[tuple[ValueTracker, list[int]]],
    value_types: list[str],
    keys: list[str],
    sent: bool,
) -> tuple[str, dict[str, str]]:
    """SQL returning one row per bucket carrying its *rows*, packed, and the packed formats:
    the AID of each row with a non-NULL AID (`a0`), and per aggregated column the AIDs of its
    NULL rows (`na<j>`, usually none: cheaper than a flag per row) and, for sums, its value
    (`rv<j>`, 0 where NULL). Python groups them per AID (`bulk` kernels'
    `group`), which replaces PostgreSQL's `GROUP BY bucket, aid` hash aggregate, the costliest
    step of the per-AID form. `keys`: the bucket key (`_key_select`) when read in passes.

    Only for one AID instance over one relation with integer AIDs, and counts and sums whose
    per-AID values Python computes exactly as PostgreSQL would (`sums`: column -> format).
    """
    outer: list[str] = list(keys)
    for k, typ in enumerate(labels):
        outer.extend(_label_select(k, typ))
    aid = identifier(numbered(AID, 0))
    present = f"{aid} IS NOT NULL"
    outer.append(f"{_per_aid_array(aid, aid_format, present, False, sent)} AS {cols.aids(0)}")
    packed = {cols.aids(0): aid_format}
    for j in sorted({j for _, js in tracked for j in js}):
        v = identifier(numbered(VALUE, j))
        null_rows, name = f"{present} AND {v} IS NULL", numbered(NULL_ROWS, j)
        outer.append(f"{_per_aid_array(aid, aid_format, null_rows, False, sent)} AS {name}")
        packed[name] = aid_format
        for tracker, js in tracked:
            if j not in js:
                continue
            for column in tracker.row_columns(j, v, value_types[j]):
                array = _per_aid_array(column.column, column.fmt, present, column.nullable, sent)
                outer.append(f"{array} AS {column.name}")
                if column.fmt is not None:
                    packed[column.name] = column.fmt
    labels_cols = [identifier(numbered(LABEL, k)) for k in range(len(model.groups))]
    group_by = f" GROUP BY {', '.join(labels_cols)}" if labels_cols else ""
    bucket_sql = f"SELECT {', '.join(outer)} FROM ({base_sql}) base{group_by}"
    return bucket_sql, packed


def _argument(node: exp.Expression) -> exp.Expression | None:
    """The argument of an aggregate call (`count(DISTINCT x)` gives x)."""
    inner = node.expression if isinstance(node, exp.Dot) else node
    argument = (
        inner.this
        if not isinstance(inner, exp.Anonymous)
        else (inner.expressions[0] if inner.expressions else None)
    )
    if isinstance(argument, exp.Distinct):
        argument = argument.expressions[0] if argument.expressions else None
    while isinstance(argument, exp.Paren):
        argument = argument.this
    return argument if isinstance(argument, exp.Expression) else None
