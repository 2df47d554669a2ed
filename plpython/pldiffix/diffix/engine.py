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

What executes as diffix_engine on an analyst's behalf is this module (what to run and how to
read it), the checks of core/security_checks.py, and the readers it drives: reading.py (the
statements) and bucket_reader.py (their rows). The SQL comes from rewrite.py, bucket_query.py and
seed_material.py; the anonymization from anonymization/.
"""

from __future__ import annotations

import functools
import math
import secrets
from collections.abc import Sequence
from typing import Any

from sqlglot import exp

from pldiffix.core import catalog, reads, sqltext
from pldiffix.core.emitted_sql import rows_relation
from pldiffix.core.levels import AccessLevel
from pldiffix.core.query_model import AnonymizingQuery, ColumnRef, RangeEntry, ValidatedQuery
from pldiffix.core.relations import RelationKind
from pldiffix.core.security_checks import SecurityChecks
from pldiffix.core.sqltext import identifier
from pldiffix.core.statements import QueryError
from pldiffix.core.validation.pgtypes import normalize_type
from pldiffix.diffix import bucket_query, reading, rewrite, seed_material, shards
from pldiffix.diffix.anonymization import (
    AidKind,
    AnonymizationParams,
    Bucket,
    QueryContext,
    anonymize_buckets,
    bulk,
    label_material,
    partitions,
    sql_seed,
)
from pldiffix.diffix.anonymization.hashing import hash_string
from pldiffix.diffix.anonymization.led import MAX_LABELS_WITHOUT_LED
from pldiffix.diffix.anonymization.registry import find_agg_funcs
from pldiffix.diffix.bucket_reader import BucketReader
from pldiffix.diffix.rewrite import SqlType
from pldiffix.diffix.validation import validate

# Packed rows of one relation the rows form may ship when the query cannot be split into passes.
# Unless read in row ranges, the backend's hash aggregate holds all of them until it ends and one
# packed column must stay under PostgreSQL's 1 GB datum limit (one column packs at most 8 bytes
# per row); either way Python ends up with all of them (numpy's working copies add ~2x). The
# per-AID form it falls back to holds one hash entry (~100 bytes) per bucket and AID instead.
ROW_MODE_BYTES = 512 << 20
MAX_PASSES = 1024  # a pass scans the whole relation; beyond this the budget gives way
# A row range collects at most this share of the pass budget: the backend holds a range's packed
# rows about four times over (aggregate state, result, fetched tuple, Python's copy).
RANGE_SHARE = 64
# Rows of earlier ranges Python keeps, decoded, before it spills them to disk (`RowSpill`), as a
# share of the pass budget; a query that cannot spill keeps them all (`KeptRows`).
KEEP_SHARE = 32
MAX_RANGES = 4096  # a range is one statement (a few ms); beyond this ranges grow instead


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
        checks.check(model.relation_reads(), model.emitted_expressions())
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
    if estimated_rows is None:  # partitioned tables (diffix/shards.py)
        estimated_rows = shards.estimated_rows(plpy, model, live)
    splittable = _splittable(labels, kinds)
    make_query = functools.partial(
        bucket_query.bucket_query,
        model,
        labels,
        aid_types,
        lambda c: _column_type(live, c),
        model.implicit_grouping,
        distinct_aid_shortcut=params.low_count_min_threshold >= 2,
        max_row_bytes=_max_row_bytes(model, splittable, estimated_rows),
    )
    query = make_query()

    plan = seed_material.seed_plan(model, _qualified_column_type(model, live))
    constants = _constant_texts(plpy, plan.constants())
    materials = [seed_material.join_material(m, constants) for m in plan.materials]
    context = QueryContext(
        sql_seed=sql_seed(materials),
        text_labels=tuple(t.is_text for t in labels),
        base_label_hashes=frozenset(
            hash_string(constants[id(node)]) for node, _ in plan.base_labels
        ),
        low_count_filter=model.low_count_filter,
    )

    reader = BucketReader(
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
        reading.Spill(pass_budget // KEEP_SHARE, (estimated_rows or 0.0) * query.bytes_per_row)
        if ranges and splittable and query.partitionable
        else None
    )
    buckets: list[Bucket] | None = None
    # a table partitioned on its AID is read per partition (diffix/shards.py)
    leaves = shards.aid_partitions(plpy, model, live) if splittable and query.partitionable else []
    if leaves and not ranges and isinstance(model.from_tree, RangeEntry):
        try:
            buckets = shards.read_partitions(
                plpy, reader, make_query, model.from_tree, leaves, passes, reading.read
            )
        except partitions.PartsDisagree as error:
            plpy.debug(f"pldiffix: reading the query again at once: {error}")
            reader.query, buckets = query, None
    elif passes > 1 or ranges:
        plpy.debug(
            f"pldiffix: reading the query in {passes} passes of {len(ranges) or 1} row ranges"
        )
        try:
            buckets = reading.read_in_parts(plpy, reader, make_query, passes, ranges, spill)
        except partitions.PartsDisagree as error:
            plpy.debug(f"pldiffix: reading the query again at once: {error}")
            reader.query, buckets = query, None
    if buckets is None:
        buckets = [bucket for bucket, _ in reading.read(plpy, reader, query.sql)]

    output = anonymize_buckets(buckets, context, params)

    label_names = [f"__pldiffix_l{k}" for k in range(len(labels))]
    aggregate_names = [f"__pldiffix_a{j}" for j in range(len(query.inputs))]
    names = ["__i", *label_names, *aggregate_names]
    funcs = [find_agg_funcs(item.kind) for item in query.inputs]
    types = ["integer", *(t.sql_type for t in labels)] + [
        f.result_type(item) for f, item in zip(funcs, query.inputs, strict=True)
    ]
    rows: list[list[str | None]] = []
    for index, out in enumerate(output):
        values = [f.reported(v, out) for f, v in zip(funcs, out.values, strict=True)]
        rows.append([str(index), *out.labels, *(rewrite.value_text(v) for v in values)])
    repeat = aggregate_names[-1] if model.implicit_grouping else None
    relation = rows_relation(names, types, rows, repeat)
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
    """Whether buckets with these labels get a key across reads (`bucket_query._key_select`)."""
    return all(t.name in bucket_query.KEYABLE_LABEL_TYPES for t in labels)


def _max_row_bytes(
    model: AnonymizingQuery, splittable: bool, estimated_rows: float | None
) -> float:
    """How many bytes per row a bucket may carry to Python (`bucket_query._row_query`): grouping
    rows per AID in Python beats PostgreSQL's hash aggregate only when vectorized. A query that
    can be split into passes may always; otherwise a bucket holds at most all rows of its
    relation, which must fit `ROW_MODE_BYTES`."""
    if bulk.KERNEL.name != "numpy" or len(model.relations) != 1 or estimated_rows is None:
        return 0.0
    if splittable:
        return math.inf
    return ROW_MODE_BYTES / max(estimated_rows, 1.0)


def _pass_count(
    query: bucket_query.BucketQuery, splittable: bool, estimated_rows: float | None, budget: int
) -> int:
    """Passes needed to keep what one pass collects under `budget` bytes (at most MAX_PASSES)."""
    if not (splittable and query.partitionable) or estimated_rows is None:
        return 1
    return max(1, min(math.ceil(estimated_rows * query.bytes_per_row / budget), MAX_PASSES))


def _row_ranges(
    query: bucket_query.BucketQuery,
    labels: list[SqlType],
    live: catalog.LiveCatalog,
    model: AnonymizingQuery,
    estimated_rows: float | None,
    pass_budget: int,
) -> list[bucket_query.RowRange]:
    """The row ranges a query reads (docs/engine.md, "Row ranges"), so that the rows one range
    collects stay under `pass_budget / RANGE_SHARE` bytes; none when one range would do or the
    query cannot be read in ranges: it must ship rows of a plain table, and its buckets need a
    key (`bucket_query._key_select`)."""
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
    return bucket_query.row_ranges(details.blocks, count) if count > 1 else []


# --- other reads of personal tables --------------------------------------------------------------


def _empty_personal_reads(validated: ValidatedQuery, live: catalog.LiveCatalog) -> None:
    """Replaces personal tables outside anonymizing queries (e.g. under WHERE FALSE) by empty
    relations with the same columns, so the query never reads them."""
    for read in reads.tables_read(validated.ast):
        info = reads.resolve(read, live)
        if info is None or info.kind is not RelationKind.PERSONAL:
            continue
        columns = ", ".join(f"CAST(NULL AS {c.type}) AS {identifier(c.name)}" for c in info.columns)
        empty = exp.maybe_parse(f"(SELECT {columns} WHERE FALSE)", dialect="postgres")
        given = read.node.args.get("alias")  # folded as PostgreSQL folds it
        alias = sqltext.ident_name(given.this) if given is not None and given.this else read.name
        subquery = exp.Subquery(
            this=empty.this if isinstance(empty, exp.Subquery) else empty,
            alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)),
        )
        read.node.replace(subquery)
