"""Anonymizing queries over personal tables: validate, check, rewrite, execute, anonymize.

`run` executes inside `diffix._anonymized_query_json` (SECURITY DEFINER, owner diffix_engine).
It trusts nothing from its caller: it validates the SQL again at the invoking role's level and
with the caller's search path restricted to schemas that role may use, checks every object the
engine will execute on the role's behalf, runs only SQL generated from the validated model, and
returns the *post-processing query*: the analyst's statement in which every anonymizing SELECT is
replaced by a SELECT over its anonymized rows (typed literals), and every other read of a personal
table by an empty relation. The invoker-rights entry point runs that query with the analyst's own
privileges, so anything around the anonymizing parts (the analyst's functions, views, public
tables) never runs as the engine.

Longer than our ~800-line aim on purpose: this is everything that executes as diffix_engine on an
analyst's behalf, and a security review reads it as one unit. The pure parts it drives live in
rewrite.py and anonymization/.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlglot import exp

from pldiffix.core import catalog, sqltext
from pldiffix.core.errors import UserError
from pldiffix.core.levels import AccessLevel
from pldiffix.core.relations import RelationKind
from pldiffix.core.sqltext import identifier
from pldiffix.core.statements import QueryError
from pldiffix.diffix import rewrite, shards
from pldiffix.diffix.anonymization import (
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
    SummandType,
    SumState,
    anonymize_buckets,
    bulk,
    label_material,
    partitions,
    sql_seed,
)
from pldiffix.diffix.anonymization.bucket_rows import KeptRows, RowGatherer
from pldiffix.diffix.anonymization.contributions import ContributionTracker, SummarizedTracker
from pldiffix.diffix.anonymization.count_distinct import DistinctAidsState
from pldiffix.diffix.anonymization.hashing import hash_aids, hash_string
from pldiffix.diffix.anonymization.led import MAX_LABELS_WITHOUT_LED
from pldiffix.diffix.anonymization.low_count import LowCountSummary
from pldiffix.diffix.query_model import AnonymizingQuery, ColumnRef, RangeEntry, ValidatedQuery
from pldiffix.diffix.rewrite import SqlType
from pldiffix.diffix.validation import validate
from pldiffix.diffix.validation.pgtypes import normalize_type

FETCH_SIZE = 500  # bucket rows per fetch, at most
GROUPED = "grouped"  # a per-AID column the reader derived from rows
# Packed rows of one relation the rows form may ship when the query cannot be split into passes.
# Unless read in row ranges, the backend's hash aggregate holds all of them until it ends and one
# packed column must stay under PostgreSQL's 1 GB datum limit (one column packs at most 8 bytes
# per row); either way Python ends up with all of them (numpy's working copies add ~2x). The
# per-AID form it falls back to holds one hash entry (~100 bytes) per bucket and AID instead.
ROW_MODE_BYTES = 512 << 20
MAX_AIDS_PER_FETCH = 1 << 18  # per-AID values held at once, unless a single row has more
MAX_PASSES = 1024  # a pass scans the whole relation; beyond this the budget gives way
# A row range collects at most this share of the pass budget: the backend holds a range's packed
# rows about four times over (aggregate state, result, fetched tuple, Python's copy).
RANGE_SHARE = 64
# Rows of earlier ranges Python keeps, decoded, before it spills them to disk (`RowSpill`), as a
# share of the pass budget; a query that cannot spill keeps them all (`KeptRows`).
KEEP_SHARE = 32
MAX_RANGES = 4096  # a range is one statement (a few ms); beyond this ranges grow instead
ENGINE_SCHEMAS = frozenset({"pg_catalog", "diffix"})
# Volatile functions that cannot observe or change anything an analyst could abuse.
HARMLESS_VOLATILE = frozenset({"random", "clock_timestamp", "timeofday"})


def run(
    plpy: Any, sql: str, level: AccessLevel, search_path: Sequence[str] | None
) -> tuple[str, int]:
    """The post-processing query (see the module docstring) as SQL text, and how many
    anonymized rows it carries."""
    role = catalog.invoking_role(plpy)
    schemas = catalog.usable_schemas(
        plpy, role, search_path if search_path is not None else ["public"]
    )
    values = catalog.effective_settings(plpy, include_salt=True)
    live = catalog.LiveCatalog(plpy, schemas)
    validated = validate(
        sql,
        live,
        level,
        treat_unmarked_tables_as_public=bool(values["treat_unmarked_tables_as_public"]),
    )
    params = AnonymizationParams.from_mapping(values)
    checks = SecurityChecks(plpy, role, live)
    nonce = secrets.token_hex(8)
    replacements: dict[str, str] = {}
    for model in validated.anonymizing:
        checks.check(model)
    released = 0
    for index, model in enumerate(validated.anonymizing):
        placeholder = f"__pldiffix_rows_{index}_{nonce}"
        replacements[identifier(placeholder)], count = _anonymize(
            plpy, model, params, placeholder, live, int(values["max_pass_mb"]) << 20
        )
        released += count
    _empty_personal_reads(validated, live)
    text = validated.ast.sql(dialect=sqltext.POSTGRES)
    for placeholder, relation in replacements.items():
        if text.count(placeholder) != 1:
            raise QueryError("internal error: the anonymized rows could not be placed")
        text = text.replace(placeholder, relation)
    return text, released


# --- security ------------------------------------------------------------------------------------


@dataclass
class SecurityChecks:
    """What must hold before the engine executes an anonymizing query with its own privileges."""

    plpy: Any
    role: str
    catalog: catalog.LiveCatalog

    def check(self, model: AnonymizingQuery) -> None:
        for entry in model.relations:
            relation = entry.relation
            details = self.catalog.details.get((relation.schema, relation.name))
            if details is None:
                raise PermissionError(f"relation {relation.qualified_name} is not known")
            self._check_relation(relation.schema, relation.name, relation.kind, details, model)
        for expression in rewrite.emitted_expressions(model):
            self._check_expression(expression)

    def _check_relation(
        self, schema: str, name: str, kind: RelationKind, details: Any, model: AnonymizingQuery
    ) -> None:
        shown = f"{schema}.{name}"
        if details.relkind not in ("r", "p", "m"):
            raise PermissionError(
                f"{shown} is a view or foreign table; queries over personal tables can only join "
                "plain tables"
            )
        row = catalog.query(
            self.plpy,
            "SELECT pg_catalog.has_schema_privilege($1, n.oid, 'USAGE') AS usage, "
            "pg_catalog.has_table_privilege($1, $2::oid, 'SELECT') AS can_select "
            "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = $2::oid",
            ("name", "oid"),
            (self.role, details.oid),
        )[0]
        if not row["usage"]:
            raise PermissionError(f"permission denied for schema {schema}")
        if details.relkind == "p":  # hook: sharded personal tables (issue 32, diffix/shards.py)
            shards.check_tree(self.plpy, details.oid, shown)
        if kind is RelationKind.PERSONAL:
            return
        if details.row_security:
            raise PermissionError(
                f"{shown} has row-level security and cannot be joined in a query over personal "
                "tables"
            )
        if row["can_select"]:
            return
        used = sorted(
            {
                c.name
                for expression in rewrite.emitted_expressions(model)
                for c in expression.find_all(exp.Column)
                if c.table in {e.alias for e in model.relations if e.relation.name == name}
            }
        )
        allowed = catalog.query(
            self.plpy,
            "SELECT pg_catalog.bool_and(pg_catalog.has_column_privilege($1, $2::oid, c, 'SELECT')) "
            "AS ok FROM pg_catalog.unnest($3::text[]) AS c",
            ("name", "oid", "text[]"),
            (self.role, details.oid, used),
        )[0]["ok"]
        if not used or not allowed:
            raise PermissionError(f"permission denied for table {name}")

    def _check_expression(self, expression: exp.Expression) -> None:
        for node in expression.walk():
            if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
                raise PermissionError(
                    f"type {node.sql(dialect='postgres')} is not allowed in queries over "
                    "personal tables; only built-in types are"
                )
            if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
                schema = node.this.name if isinstance(node.this, exp.Identifier) else ""
                if schema not in ENGINE_SCHEMAS:
                    raise PermissionError(
                        f"function {node.sql(dialect='postgres')} is not allowed in queries over "
                        "personal tables; only built-in and diffix functions are"
                    )
                self._check_volatility(schema, node.expression.name)
            elif isinstance(node, exp.Anonymous) and not isinstance(node.parent, exp.Dot):
                self._check_volatility("pg_catalog", node.name)

    def _check_volatility(self, schema: str, name: str) -> None:
        rows = catalog.query(
            self.plpy,
            "SELECT pg_catalog.bool_or(p.provolatile = 'v') AS volatile FROM pg_catalog.pg_proc p "
            "JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = $1 AND p.proname = $2",
            ("name", "name"),
            (schema, name.lower()),
        )
        if rows and rows[0]["volatile"] and name.lower() not in HARMLESS_VOLATILE:
            raise PermissionError(f"volatile function {name} is not allowed")


# --- one anonymizing query -----------------------------------------------------------------------


def _types_of(plpy: Any, result: Any) -> list[SqlType]:
    oids, typmods = list(result.coltypes()), list(result.coltypmods())
    if not oids:
        return []
    rows = catalog.query(
        plpy,
        "SELECT pg_catalog.format_type(t.oid, m.typmod) AS sql_type, t.typname, t.typcategory "
        "FROM ROWS FROM (pg_catalog.unnest($1::oid[]), pg_catalog.unnest($2::int4[])) "
        "WITH ORDINALITY AS m(oid, typmod, i) "
        "JOIN pg_catalog.pg_type t ON t.oid = m.oid ORDER BY m.i",
        ("oid[]", "int4[]"),
        (oids, typmods),
    )
    return [
        SqlType(oid, row["sql_type"], normalize_type(row["typname"]), row["typcategory"])
        for oid, row in zip(oids, rows, strict=True)
    ]


def _column_type(live: catalog.LiveCatalog, column: ColumnRef) -> str:
    if column.type:
        return normalize_type(column.type)
    relation = live.get_relation(column.relation.schema, column.relation.name)
    info = relation.column(column.name) if relation else None
    return normalize_type(info.type) if info else "text"


def _qualified_column_type(model: AnonymizingQuery, live: catalog.LiveCatalog) -> Any:
    by_alias = {e.alias: e for e in model.relations}

    def type_of(column: exp.Column) -> str | None:
        entry = by_alias.get(column.table)
        if entry is None:
            return None
        relation = live.get_relation(entry.relation.schema, entry.relation.name)
        info = relation.column(column.name) if relation else None
        return normalize_type(info.type) if info else None

    return type_of


def _constant_texts(plpy: Any, constants: list[tuple[exp.Expression, str]]) -> dict[int, str]:
    """pg_diffix's canonical text of each constant, rendered by PostgreSQL."""
    if not constants:
        return {}
    selects, hows = [], []
    for index, (node, typ) in enumerate(constants):
        literal = node.sql(dialect=sqltext.POSTGRES)
        if not isinstance(node, exp.Cast):
            literal = f"CAST({literal} AS {typ})" if typ != "numeric" else literal
        expression, how = rewrite.canonical_sql(literal, typ)
        selects.append(f"{expression} AS c{index}")
        hows.append(how)
    row = plpy.execute("SELECT " + ", ".join(selects))[0]
    return {
        id(node): label_material(rewrite.canonical_value(row[f"c{index}"], hows[index]))
        for index, (node, _) in enumerate(constants)
    }


@dataclass
class _SuppressBinFlag:
    """is_suppress_bin(*): false in every bucket; the suppress bin row sets it."""

    def merge(self, other: _SuppressBinFlag) -> None:
        return None

    def empty(self) -> _SuppressBinFlag:
        return _SuppressBinFlag()

    def finalize(self, ctx: Any) -> bool:
        return False


def _result_type(kind: str, summand: SummandType | None) -> str:
    if kind in ("count_star", "count", "count_distinct"):
        return "bigint"
    if "_noise" in kind:
        return "double precision"
    if kind == "count_histogram":
        return "bigint[]"
    if kind == "is_suppress_bin":
        return "boolean"
    assert summand is not None
    if kind == "sum":
        return {
            "int8": "bigint",
            "numeric": "numeric",
            "float4": "real",
            "float8": "double precision",
        }[summand.result_type]
    # avg
    if summand in (SummandType.FLOAT4, SummandType.FLOAT8):
        return "double precision"
    return "numeric"


def _anonymize(
    plpy: Any,
    model: AnonymizingQuery,
    params: AnonymizationParams,
    placeholder: str,
    live: catalog.LiveCatalog,
    pass_budget: int,
) -> tuple[str, int]:
    """The anonymized rows of `model` as a relation (SQL text) and their number; `pass_budget`
    bounds the bytes one pass collects (`_pass_count`)."""
    labels = _types_of(plpy, plpy.execute(rewrite.label_types_sql(model))) if model.groups else []
    aid_types = [_column_type(live, aid) for aid in model.aid_columns]
    kinds = [AidKind.from_type_name(t) for t in aid_types]
    estimated_rows = _estimated_rows(model, live)
    if estimated_rows is None:  # hook: partitioned tables (issue 32, diffix/shards.py)
        estimated_rows = shards.estimated_rows(plpy, model, live)
    splittable = _splittable(labels, kinds)
    make_query = functools.partial(
        rewrite.bucket_query,
        model,
        labels,
        aid_types,
        lambda c: _column_type(live, c),
        model.implicit_grouping,
        distinct_aid_shortcut=params.low_count_min_threshold >= 2,
        max_row_bytes=_max_row_bytes(model, splittable, estimated_rows),
    )
    query = make_query()

    plan = rewrite.seed_plan(model, _qualified_column_type(model, live))
    constants = _constant_texts(plpy, plan.constants())
    materials = [rewrite.join_material(m, constants) for m in plan.materials]
    context = QueryContext(
        sql_seed=sql_seed(materials),
        text_labels=tuple(t.is_text for t in labels),
        base_label_hashes=frozenset(
            hash_string(constants[id(node)]) for node, _ in plan.base_labels
        ),
        low_count_filter=model.low_count_filter,
    )

    reader = _BucketReader(
        query,
        kinds,
        labels,
        params,
        summarize=not model.low_count_filter or len(labels) <= MAX_LABELS_WITHOUT_LED,
    )
    ranges = _row_ranges(query, labels, live, model, estimated_rows, pass_budget)
    # A query read in ranges needs no passes: its rows spill to disk instead (`RowSpill`).
    passes = 1 if ranges else _pass_count(query, splittable, estimated_rows, pass_budget)
    spill = (
        _Spill(pass_budget // KEEP_SHARE, (estimated_rows or 0.0) * query.bytes_per_row)
        if ranges and splittable and query.partitionable
        else None
    )
    buckets: list[Bucket] | None = None
    # hook: a table partitioned on its AID is read per partition (issue 32, diffix/shards.py)
    leaves = shards.aid_partitions(plpy, model, live) if splittable and query.partitionable else []
    if leaves and not ranges and isinstance(model.from_tree, RangeEntry):
        try:
            buckets = shards.read_partitions(
                plpy, reader, make_query, model.from_tree, leaves, passes, _read
            )
        except partitions.PartsDisagree as error:
            plpy.debug(f"pldiffix: reading the query again at once: {error}")
            reader.query, buckets = query, None
    elif passes > 1 or ranges:
        plpy.debug(
            f"pldiffix: reading the query in {passes} passes of {len(ranges) or 1} row ranges"
        )
        try:
            buckets = _read_in_parts(plpy, reader, make_query, passes, ranges, spill)
        except partitions.PartsDisagree as error:
            plpy.debug(f"pldiffix: reading the query again at once: {error}")
            reader.query, buckets = query, None
    if buckets is None:
        buckets = [bucket for bucket, _ in _read(plpy, reader, query.sql)]

    output = anonymize_buckets(buckets, context, params)

    label_names = [f"__pldiffix_l{k}" for k in range(len(labels))]
    aggregate_names = [f"__pldiffix_a{j}" for j in range(len(query.inputs))]
    names = ["__i", *label_names, *aggregate_names]
    types = ["integer", *(t.sql_type for t in labels)] + [
        _result_type(item.kind, item.summand) for item in query.inputs
    ]
    rows: list[list[str | None]] = []
    for index, out in enumerate(output):
        values = list(out.values)
        for position, item in enumerate(query.inputs):
            if item.kind == "is_suppress_bin":
                values[position] = out.is_suppress_bin
        rows.append([str(index), *out.labels, *(rewrite.value_text(v) for v in values)])
    repeat = aggregate_names[-1] if model.implicit_grouping else None
    relation = rewrite.rows_relation(names, types, rows, repeat)
    rewrite.replace_by_rows(model, placeholder, label_names, aggregate_names)
    return relation, len(rows)


def _estimated_rows(model: AnonymizingQuery, live: catalog.LiveCatalog) -> float | None:
    """The planner's row estimate of the relation holding the first AID (None: unknown)."""
    if not model.aid_columns:
        return None
    relation = model.aid_columns[0].relation
    details = live.details.get((relation.schema, relation.name))
    return None if details is None else details.estimated_rows


def _splittable(labels: list[SqlType], kinds: list[AidKind]) -> bool:
    """Whether a query with these labels and AIDs may be read in passes (docs/engine.md,
    "Passes"): one int4 AID instance, labels a bucket key can hash."""
    return kinds == [AidKind.INT4] and _keyable(labels)


def _keyable(labels: list[SqlType]) -> bool:
    """Whether buckets with these labels get a key across reads (`rewrite._key_select`)."""
    return all(t.name in rewrite.KEYABLE_LABEL_TYPES for t in labels)


def _max_row_bytes(
    model: AnonymizingQuery, splittable: bool, estimated_rows: float | None
) -> float:
    """How many bytes per row a bucket may carry to Python (`rewrite._row_query`): grouping
    rows per AID in Python beats PostgreSQL's hash aggregate only when vectorized. A query that
    can be split into passes may always; otherwise a bucket holds at most all rows of its
    relation, which must fit `ROW_MODE_BYTES`."""
    if bulk.KERNEL.name != "numpy" or len(model.relations) != 1 or estimated_rows is None:
        return 0.0
    if splittable:
        return math.inf
    return ROW_MODE_BYTES / max(estimated_rows, 1.0)


def _pass_count(
    query: rewrite.BucketQuery, splittable: bool, estimated_rows: float | None, budget: int
) -> int:
    """Passes needed to keep what one pass collects under `budget` bytes (at most MAX_PASSES)."""
    if not (splittable and query.partitionable) or estimated_rows is None:
        return 1
    return max(1, min(math.ceil(estimated_rows * query.bytes_per_row / budget), MAX_PASSES))


def _row_ranges(
    query: rewrite.BucketQuery,
    labels: list[SqlType],
    live: catalog.LiveCatalog,
    model: AnonymizingQuery,
    estimated_rows: float | None,
    pass_budget: int,
) -> list[rewrite.RowRange]:
    """The row ranges a query reads (docs/engine.md, "Row ranges"), so that the rows one range
    collects stay under `pass_budget / RANGE_SHARE` bytes; none when one range would do or the
    query cannot be read in ranges: it must ship rows of a plain table, and its buckets need a
    key (`rewrite._key_select`)."""
    if not query.rows or estimated_rows is None or not isinstance(model.from_tree, RangeEntry):
        return []
    if not _keyable(labels):
        return []
    relation = model.from_tree.relation
    details = live.details.get((relation.schema, relation.name))
    if details is None or not details.blocks:
        return []
    count = min(
        math.ceil(estimated_rows * query.bytes_per_row * RANGE_SHARE / pass_budget), MAX_RANGES
    )
    return rewrite.row_ranges(details.blocks, count) if count > 1 else []


class _Fetcher:
    """A cursor over `sql` fetching about `MAX_AIDS_PER_FETCH` AIDs (or packed rows) at a time:
    the caller reports what each batch carried (`carried`)."""

    def __init__(self, plpy: Any, sql: str) -> None:
        self._cursor = plpy.cursor(sql)
        self._batch_size = 1

    def batches(self) -> Iterator[list[Any]]:
        while batch := self._cursor.fetch(self._batch_size):
            yield batch
        self._cursor.close()  # frees the executor's memory (the aggregate's states) at once

    def carried(self, rows: int, values: int) -> None:
        per_row = max(values // max(rows, 1), 1)
        self._batch_size = max(1, min(FETCH_SIZE, MAX_AIDS_PER_FETCH // per_row))


def _read(plpy: Any, reader: _BucketReader, sql: str) -> Iterator[tuple[Bucket, int]]:
    """The buckets of one bucket query with their keys (`k`, 0 without one)."""
    fetcher = _Fetcher(plpy, sql)
    for batch in fetcher.batches():
        carried = 0
        for row in batch:
            bucket, values = reader.bucket(row)
            carried += values
            yield bucket, row.get("k", 0)
        fetcher.carried(len(batch), carried)


@dataclass(frozen=True)
class _Spill:
    """How a query read in row ranges spills its rows (`anonymization.spill`): the bytes it
    keeps in memory, and its estimate of all rows' bytes."""

    budget: int
    expected_bytes: float


def _gatherer(kernel: Any, summed: bool, spill: _Spill | None) -> RowGatherer:
    """What keeps a query's rows over its row ranges: memory, or `RowSpill` given `spill`."""
    if spill is None:
        return KeptRows(kernel, summed)
    from pldiffix.diffix.anonymization.spill import RowSpill  # numpy only, as are row ranges

    return RowSpill(kernel, summed, spill.budget, spill.expected_bytes)


def _read_ranges(
    plpy: Any,
    reader: _BucketReader,
    make_query: Any,
    ranges: list[rewrite.RowRange],
    spill: _Spill | None,
) -> list[Bucket]:
    """The buckets of a query read range by range: each bucket's rows are gathered over the
    ranges (in memory, or spilled by AID partition given `spill`) and grouped per AID once the
    last range is read; the parts of a spilled bucket are combined (`partitions.combine`).
    Buckets come in the order they were first seen. Raises `PartsDisagree` if two ranges show
    one bucket key with different labels (a key collision), or parts cannot be combined."""
    summed = any(name.startswith("rv") for name in reader.query.packed)
    try:
        return _gather_ranges(
            plpy, reader, make_query, ranges, _gatherer(reader.kernel, summed, spill)
        )
    except OSError as error:  # only the spill's files do I/O here
        raise spill_failure(error) from error


def spill_failure(error: OSError) -> UserError:
    """What an analyst is told when a query's rows could not be spilled to disk."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return UserError(
        f"the query's rows could not be spilled to disk: {error.strerror or error}",
        sqlstate="53100" if full else "58030",  # disk_full, io_error
        hint="free space in the server's temporary directory (TMPDIR, else /tmp), or ask an "
        "admin to raise max_pass_mb so that more rows stay in memory",
    )


def _gather_ranges(
    plpy: Any,
    reader: _BucketReader,
    make_query: Any,
    ranges: list[rewrite.RowRange],
    gathered: RowGatherer,
) -> list[Bucket]:
    """`_read_ranges`, the rows kept by `gathered`."""
    with contextlib.closing(gathered):  # a spill's files, even if reading fails
        slots: dict[int, int] = {}  # bucket key -> slot, in first-seen order
        shown: list[dict[str, Any]] = []  # per slot, the labels as the first range shows them
        labels = reader.labels
        for index, row_range in enumerate(ranges):
            reader.query = make_query(row_range=row_range)
            fetcher = _Fetcher(plpy, reader.query.sql)
            for batch in fetcher.batches():
                carried = 0
                for row in batch:
                    key = row["k"]
                    slot = slots.get(key)
                    if slot is None:
                        slot = slots[key] = len(shown)
                        shown.append({name: row[name] for name in row if name[0] in "th"})
                    elif any(row[f"h{i}"] != shown[slot][f"h{i}"] for i in range(len(labels))):
                        raise partitions.PartsDisagree("two buckets share a key")
                    aids, nulls, values = reader.decoded_rows(row)
                    gathered.add(slot, aids, nulls, values)
                    carried += len(aids)
                fetcher.carried(len(batch), carried)
            gathered.range_read((index + 1) / len(ranges))
        buckets: dict[int, Bucket] = {}
        capacity = reader.params.top_capacity
        for part in gathered.parts():
            for slot in list(part):
                bucket = reader.bucket(shown[slot], part.pop(slot).per_aid())[0]
                if slot in buckets:
                    partitions.combine(buckets[slot], bucket, capacity)
                else:
                    buckets[slot] = bucket
        if spilled := gathered.spilled_partitions:
            plpy.debug(
                f"pldiffix: spilled the rows to disk in {spilled} AID partitions "
                f"({gathered.partitioning})"
            )
    return [buckets[slot] for slot in sorted(buckets)]


def _read_in_parts(
    plpy: Any,
    reader: _BucketReader,
    make_query: Any,
    passes: int,
    ranges: list[rewrite.RowRange],
    spill: _Spill | None,
) -> list[Bucket]:
    """The buckets of a query read in `ranges` (spilling given `spill`), or else in `passes`
    passes over disjoint AID partitions, each bucket's parts from different passes combined
    (`anonymization.partitions`). Raises `PartsDisagree` when they cannot be.

    The engine's function is STABLE, so every pass and range reads the calling statement's
    snapshot: the parts are those of one state of the data even while other sessions write."""
    if ranges:
        return _read_ranges(plpy, reader, make_query, ranges, spill)
    buckets: dict[int, Bucket] = {}
    capacity = reader.params.top_capacity
    for index in range(passes):
        reader.query = make_query(partition=rewrite.Partition(index, passes))
        for bucket, key in _read(plpy, reader, reader.query.sql):
            if key in buckets:
                partitions.combine(buckets[key], bucket, capacity)
            else:
                buckets[key] = bucket
    return list(buckets.values())


def _json(value: Any) -> list[Any]:
    """A jsonb array (PL/Python passes jsonb as text)."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


def _numbers(values: list[Any], integer: bool) -> list[Any]:
    """Per-AID contributions as Python numbers (only numeric arrays arrive as Decimal)."""
    first = next((v for v in values if v is not None), None)
    if not isinstance(first, Decimal):
        return values
    return [_number(v, integer) for v in values]


def _tracker(
    hashes: list[int], values: list[Any], unaccounted: Any, total: Any
) -> ContributionTracker:
    """A contribution tracker from aligned arrays of distinct AIDs (None: not a contributor)."""
    if len(hashes) != len(values):
        raise QueryError("internal error: AID and contribution arrays differ in length")
    if None in values:
        contributions = {h: v for h, v in zip(hashes, values, strict=True) if v is not None}
    else:
        contributions = dict(zip(hashes, values, strict=True))
    tracker = ContributionTracker(contributions, unaccounted)
    tracker.total = sum(contributions.values()) if total is None else total
    return tracker


def _number(value: Any, integer: bool) -> Any:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return int(value) if integer else float(value)
    return value


Tracker = ContributionTracker | SummarizedTracker


@dataclass
class _BucketReader:
    """Turns rows of `query.sql` into Buckets.

    With `summarize` (the query has no LED), a bucket in which every AID instance has at least
    `certainly_high_count` AIDs can never be merged into another one; its per-AID columns are
    reduced to summaries (`bulk.ContributionSummary`) as the row arrives, so Python keeps a few
    numbers per bucket instead of every AID. Other buckets keep per-AID dictionaries.
    """

    query: rewrite.BucketQuery
    kinds: list[AidKind]
    labels: list[SqlType]
    params: AnonymizationParams
    summarize: bool
    kernel: Any = bulk.KERNEL

    def per_aid(self, row: Any, name: str, packed: dict[str, str]) -> Any:
        """A per-AID column: decoded if packed, as grouped if derived from rows (`grouped`),
        else the array as PL/Python gives it."""
        fmt = packed.get(name)
        if fmt is None:
            return list(row[name] or [])
        if fmt == GROUPED:
            return row[name]
        return self.kernel.decode(row[name], fmt)

    def decoded_rows(self, row: Any) -> tuple[Any, dict[int, Any], dict[int, Any]]:
        """A row of `rewrite._row_query` (the bucket's rows) decoded: the AIDs of its rows, and
        per aggregated column the AIDs of its NULL rows and, if summed, its values."""
        kernel, packed = self.kernel, self.query.packed
        aids = kernel.decode(row["a0"], packed["a0"])
        columns = sorted(int(name[2:]) for name in packed if name.startswith("na"))
        nulls = {j: kernel.decode(row[f"na{j}"], packed[f"na{j}"]) for j in columns}
        values = {
            j: kernel.decode(row[f"rv{j}"], packed[f"rv{j}"]) for j in columns if f"rv{j}" in packed
        }
        return aids, nulls, values

    @staticmethod
    def grouped(row: Any, per_aid: bulk.PerAid) -> dict[str, Any]:
        """A bucket's rows grouped per AID as the per-AID columns of the per-AID form."""
        out = {name: row[name] for name in row if name[0] in "th"}
        out.update(a0=per_aid.aids, an0=per_aid.rows, un0=0)
        for j, non_null in per_aid.non_null.items():
            out[f"ac{j}_0"], out[f"uc{j}_0"] = non_null, 0
            if j in per_aid.positive:
                out[f"asp{j}_0"], out[f"usp{j}_0"] = per_aid.positive[j], 0
                out[f"asn{j}_0"], out[f"usn{j}_0"] = per_aid.negative[j], 0
                out[f"tp{j}_0"], out[f"tn{j}_0"] = per_aid.totals.get(j, (0.0, 0.0))
        return out

    def bucket(self, row: Any, per_aid: bulk.PerAid | None = None) -> tuple[Bucket, int]:
        """The bucket of one row, and how many AID values (or rows) the row carried. A query
        that ships rows has them grouped per AID here, unless `per_aid` gives them grouped
        (gathered over row ranges; then `row` only gives the labels)."""
        kernel, params = self.kernel, self.params
        carried = None
        packed = self.query.packed
        if self.query.rows:
            if per_aid is None:
                aids, nulls, values = self.decoded_rows(row)
                per_aid, carried = kernel.group_rows(aids, nulls, values), len(aids)
            row = self.grouped(row, per_aid)
            packed = {name: GROUPED for name in row if name[0] == "a"}
        n = len(self.kinds)
        label_hashes = []
        for k, typ in enumerate(self.labels):
            how = rewrite.canonical_sql("", typ)[1]
            value = rewrite.canonical_value(row[f"h{k}"], how)
            label_hashes.append(hash_string(label_material(value)))
        hashes: list[Any] = []
        for k, kind in enumerate(self.kinds):
            aids = self.per_aid(row, f"a{k}", packed)
            if f"a{k}" in packed:
                hashes.append(kernel.hash_ints(aids, kind))
            else:
                hashes.append(kernel.from_hashes(hash_aids(aids, kind)))
        sizes = [len(h) for h in hashes]
        compact = self.summarize and all(size >= params.certainly_high_count() for size in sizes)
        # (distinct AIDs, XOR seed) per instance; None if two AIDs share a hash (then the
        # per-AID dictionaries merge them, as pg_diffix's hash tables do). Packed int4 AIDs are
        # distinct values, and FNV-1a is injective on int4, so their hashes are not checked.
        counted = [
            kernel.aid_set(h, distinct=kind is AidKind.INT4 and f"a{k}" in packed)
            for k, (h, kind) in enumerate(zip(hashes, self.kinds, strict=True))
        ] if compact else []  # fmt: skip
        compact = compact and all(c is not None for c in counted)
        hash_lists: dict[int, list[int]] = {}

        def hash_list(k: int) -> list[int]:
            if k not in hash_lists:
                hash_lists[k] = kernel.tolist(hashes[k])
            return hash_lists[k]

        def tracker(k: int, name: str, unaccounted: Any, total: Any, integer: bool) -> Tracker:
            values = self.per_aid(row, name, packed)
            present = kernel.non_negative(values) if name in packed else None
            if compact and name in packed:
                summary = kernel.summarize(
                    hashes[k], values, present, params.top_capacity, total, distinct=True
                )
                if summary is not None:
                    return SummarizedTracker(summary, unaccounted)
            listed = kernel.tolist(values) if name in packed else values
            if present is not None:
                listed = [v if keep else None for v, keep in zip(listed, present, strict=True)]
            return _tracker(hash_list(k), _numbers(listed, integer), unaccounted, total)

        def trackers(
            prefix: str, j: int | None, integer: bool = True, total: str | None = None
        ) -> list[Tracker]:
            out = []
            for k in range(n):
                if prefix == "n":
                    name, unaccounted = f"an{k}", row[f"un{k}"]
                else:
                    name, unaccounted = f"a{prefix}{j}_{k}", row[f"u{prefix}{j}_{k}"]
                exact_total = _number(row[f"{total}{j}_{k}"], False) or 0.0 if total else None
                out.append(
                    tracker(k, name, _number(unaccounted, integer) or 0, exact_total, integer)
                )
            return out

        def sum_state(j: int, summand: SummandType, noise: bool) -> SumState:
            exact = j in self.query.float_sums
            integer = summand.is_integer
            return SumState(
                summand,
                trackers("sp", j, integer, "tp" if exact else None),
                trackers("sn", j, integer, "tn" if exact else None),
                noise,
            )

        aggregates: list[Any] = []
        for item in self.query.inputs:
            kind = item.kind
            noise = "_noise" in kind
            if kind in ("count_star", "count_noise_star"):
                aggregates.append(CountState(trackers("n", None), noise))
            elif kind in ("count", "count_noise"):
                aggregates.append(CountState(trackers("c", item.value), noise))
            elif kind in ("sum", "sum_noise", "avg", "avg_noise"):
                assert item.summand is not None and item.value is not None
                summand = item.summand
                if kind.startswith("avg") and summand is SummandType.NUMERIC:
                    summand = SummandType.FLOAT8  # summed as float8 anyway; pg_diffix refuses it
                state = sum_state(item.value, summand, noise)
                if kind.startswith("avg"):
                    count = CountState(trackers("c", item.value))
                    aggregates.append(AvgState(state, count, noise=noise))
                else:
                    aggregates.append(state)
            elif kind in ("count_distinct", "count_distinct_noise") and item.distinct_aids:
                summary = (
                    kernel.summarize(hashes[0], None, None, params.top_capacity, distinct=True)
                    if compact
                    else None
                )
                if summary is not None:
                    aggregates.append(DistinctAidsState(noise=noise, summary=summary))
                else:
                    aggregates.append(DistinctAidsState(set(hash_list(0)), noise=noise))
            elif kind in ("count_distinct", "count_distinct_noise"):
                entries = _json(row[f"dv{item.distinct}"])
                inputs = [DistinctValueInput(e[0], [list(a or []) for a in e[1:]]) for e in entries]
                aggregates.append(CountDistinctState.from_inputs(self.kinds, inputs, noise=noise))
            elif kind == "count_histogram":
                entries = _json(row[f"hv{item.histogram}"])
                histogram = [
                    HistogramEntryInput(e[0], int(e[1]), [list(a or []) for a in e[2:]])
                    for e in entries
                ]
                assert item.counted_instance is not None
                aggregates.append(
                    CountHistogramState.from_inputs(
                        self.kinds, item.counted_instance, item.bin_size, histogram
                    )
                )
            elif kind == "is_suppress_bin":
                aggregates.append(_SuppressBinFlag())
            else:
                raise QueryError(f"internal error: unknown aggregate {kind}")

        low_count: LowCountState | LowCountSummary
        if compact:
            low_count = LowCountSummary([c for c in counted if c is not None])
        else:
            low_count = LowCountState([set(hash_list(k)) for k in range(n)])
        bucket = Bucket(
            labels=tuple(row[f"t{k}"] for k in range(len(self.labels))),
            aggregates=aggregates,
            low_count_state=low_count,
            label_hashes=tuple(label_hashes),
        )
        return bucket, sum(sizes) if carried is None else carried


# --- other reads of personal tables --------------------------------------------------------------


def _empty_personal_reads(validated: ValidatedQuery, live: catalog.LiveCatalog) -> None:
    """Replaces personal tables outside anonymizing queries (e.g. under WHERE FALSE) by empty
    relations with the same columns, so the query never reads them."""
    ctes = {cte.alias_or_name for cte in validated.ast.find_all(exp.CTE)}
    path = list(live.search_path)
    path = path if "pg_catalog" in path else ["pg_catalog", *path]
    for table in list(validated.ast.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier):
            continue
        name = table.name
        if table.db:
            candidates = [table.db]
        elif name in ctes:
            continue
        else:
            candidates = path
        info = None
        for schema in candidates:
            info = live.get_relation(schema, name)
            if info is not None:
                break
        if info is None or info.kind is not RelationKind.PERSONAL:
            continue
        columns = ", ".join(f"CAST(NULL AS {c.type}) AS {identifier(c.name)}" for c in info.columns)
        empty = exp.maybe_parse(f"(SELECT {columns} WHERE FALSE)", dialect="postgres")
        alias = table.alias or name
        subquery = exp.Subquery(
            this=empty.this if isinstance(empty, exp.Subquery) else empty,
            alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
        )
        table.replace(subquery)
