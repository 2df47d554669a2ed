"""Server side of row-level perturbation: the admin procedures, view (re)creation and the
report. Talks to the database through plpy; every statement is built from identifiers read from
the catalog (quoted) and validated rules. Runs SECURITY DEFINER; every entry point checks that
the caller is an administrator first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pldiffix.core import catalog
from pldiffix.core.errors import (
    UNDEFINED_COLUMN,
    reports_errors,
)
from pldiffix.core.sqltext import identifier
from pldiffix.perturb import expressions, report
from pldiffix.perturb.config import NUMBERS, Column, PerturbationError, Rule, validate

VIEW_OWNER = "diffix_perturb_owner"
READER_GROUP = "diffix_perturbed"
DEFAULT_SCHEMA = "diffix_perturbed"
NOISE_METHODS = frozenset({"uniform", "gaussian", "multiplicative", "round"})


@dataclass(frozen=True)
class MicrodataTable:
    relid: int
    sql_name: str  # quoted and qualified
    tag: str
    row_key: str
    view_sql_name: str  # quoted and qualified
    quasi_identifiers: list[str]
    columns: list[Column]
    rules: dict[str, Rule]


def _columns(plpy: Any, relid: int) -> list[tuple[int, Column]]:
    rows = catalog.query(
        plpy,
        "SELECT a.attnum, a.attname::text AS name, t.typname::text AS type_name,"
        " pg_catalog.format_type(a.atttypid, a.atttypmod) AS declared,"
        " CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4"
        "      THEN (a.atttypmod - 4) & 65535 END AS scale,"
        " CASE WHEN t.typname = 'numeric' AND a.atttypmod >= 4"
        "      THEN ((a.atttypmod - 4) >> 16) & 65535 END AS precision"
        " FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        ("oid",),
        (relid,),
    )
    return [
        (
            r["attnum"],
            Column(r["name"], r["type_name"], r["declared"], r["scale"], r["precision"]),
        )
        for r in rows
    ]


def _sql_name(plpy: Any, relid: int) -> str:
    """The table's name, schema-qualified and quoted where needed (search_path is pinned)."""
    rows = catalog.query(plpy, "SELECT $1::pg_catalog.regclass::text AS name", ("oid",), (relid,))
    return rows[0]["name"]


def load(plpy: Any, relid: int) -> MicrodataTable:
    rows = catalog.query(
        plpy,
        "SELECT m.row_key_attnum, m.table_tag, m.view_schema::text AS vs,"
        " m.view_name::text AS vn, m.quasi_identifiers FROM diffix.microdata_tables m"
        " WHERE m.relid = $1",
        ("oid",),
        (relid,),
    )
    if not rows:
        raise PerturbationError(
            f"table {_sql_name(plpy, relid)} is not marked for row perturbation",
            hint="CALL diffix.mark_perturbed(table, row_key_column) first",
        )
    row = rows[0]
    numbered = _columns(plpy, relid)
    by_attnum = {attnum: column for attnum, column in numbered}
    rules = {}
    for stored in catalog.query(
        plpy,
        "SELECT attnum, method, params::text AS params FROM diffix.microdata_columns"
        " WHERE relid = $1",
        ("oid",),
        (relid,),
    ):
        if stored["attnum"] in by_attnum:
            name = by_attnum[stored["attnum"]].name
            rules[name] = Rule(stored["method"], json.loads(stored["params"]))
    if row["row_key_attnum"] not in by_attnum:
        raise PerturbationError(
            f"the row key column of {_sql_name(plpy, relid)} was dropped",
            hint="CALL diffix.mark_perturbed(table, row_key_column) with another row key",
        )
    return MicrodataTable(
        relid,
        _sql_name(plpy, relid),
        row["table_tag"],
        by_attnum[row["row_key_attnum"]].name,
        f"{identifier(row['vs'])}.{identifier(row['vn'])}",
        list(row["quasi_identifiers"] or []),
        [column for _, column in numbered],
        rules,
    )


def rebuild(plpy: Any, table: MicrodataTable) -> None:
    """(Re-)creates the table's view, owned by the view owner, readable by the perturbed level
    and administrators only. Replaced in place while its columns stay (so views built on it
    stay too, e.g. when an upgrade changes the expressions), else dropped and created."""
    select = expressions.select_sql(
        table.sql_name, table.tag, table.columns, table.rules, table.row_key
    )
    view = table.view_sql_name
    try:
        with plpy.subtransaction():
            plpy.execute(f"CREATE OR REPLACE VIEW {view} AS {select}")
    except plpy.SPIError:
        _drop_view(plpy, view)
        plpy.execute(f"CREATE VIEW {view} AS {select}")
    plpy.execute(f"ALTER VIEW {view} OWNER TO {VIEW_OWNER}")
    plpy.execute(f"REVOKE ALL ON {view} FROM PUBLIC")
    plpy.execute(f"GRANT SELECT ON {view} TO {READER_GROUP}, diffix_admin")


def _drop_view(plpy: Any, view: str) -> None:
    """Drops `view` (quoted, schema-qualified) if it is there: the check comes first so that an
    administrator does not see the server's "view ... does not exist, skipping"."""
    present = catalog.query(
        plpy,
        "SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present",
        ("text",),
        (view,),
    )[0]["present"]
    if present:
        plpy.execute(f"DROP VIEW {view}")


def _find_column(
    table_columns: list[tuple[int, Column]], name: str, table: str
) -> tuple[int, Column]:
    for attnum, column in table_columns:
        if column.name == name:
            return attnum, column
    raise PerturbationError(
        f"column {name!r} does not exist in table {table}", sqlstate=UNDEFINED_COLUMN
    )


@reports_errors
def mark(plpy: Any, relid: int, row_key: str | None, view_schema: str | None) -> str:
    """diffix.mark_perturbed(table, row_key_column[, view_schema])."""
    catalog.require_admin(plpy, "configure perturbation")
    name = _sql_name(plpy, relid)
    facts = catalog.query(
        plpy,
        "SELECT c.relkind::text AS kind, n.nspname::text AS s, c.relname::text AS r"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = $1",
        ("oid",),
        (relid,),
    )[0]
    if facts["kind"] not in ("r", "p", "m"):
        raise PerturbationError(f"{name} is not a table or materialized view", sqlstate="42809")
    if facts["s"] in ("pg_catalog", "information_schema", "diffix") or facts["s"].startswith("pg_"):
        raise PerturbationError(f"{name} is a system table")
    if row_key is None:
        raise PerturbationError("the row key column must not be NULL")
    numbered = _columns(plpy, relid)
    attnum, key_column = _find_column(numbered, row_key, name)
    key_sql = identifier(key_column.name)
    counts = plpy.execute(
        f"SELECT pg_catalog.count(*) AS n, pg_catalog.count({key_sql}) AS present,"
        f" pg_catalog.count(DISTINCT {key_sql}) AS distinct_keys FROM {name}"
    )[0]
    if counts["present"] != counts["n"] or counts["distinct_keys"] != counts["n"]:
        raise PerturbationError(
            f"column {row_key!r} cannot be the row key of {name}: "
            f"{counts['n'] - counts['present']} NULL and "
            f"{counts['present'] - counts['distinct_keys']} repeated value(s)",
            hint="the row key must be unique and not NULL (a primary key is ideal): "
            "each row's noise is drawn from it",
        )
    schema = view_schema or DEFAULT_SCHEMA
    if schema in ("pg_catalog", "information_schema", "diffix") or schema.startswith("pg_"):
        raise PerturbationError(f'schema "{schema}" is a system schema: views cannot go there')
    if not catalog.query(
        plpy, "SELECT 1 AS x FROM pg_catalog.pg_namespace WHERE nspname = $1", ("name",), (schema,)
    ):
        raise PerturbationError(f'schema "{schema}" does not exist', sqlstate="3F000")
    taken = catalog.query(
        plpy,
        "SELECT m.relid::pg_catalog.regclass::text AS t FROM diffix.microdata_tables m"
        " WHERE m.view_schema = $1 AND m.view_name = $2 AND m.relid <> $3",
        ("name", "name", "oid"),
        (schema, facts["r"], relid),
    )
    if taken:
        raise PerturbationError(
            f"view {schema}.{facts['r']} already shows table {taken[0]['t']}",
            hint="pass another view schema as the third argument",
        )
    for old in catalog.query(
        plpy,
        "SELECT view_schema::text AS vs, view_name::text AS vn FROM diffix.microdata_tables"
        " WHERE relid = $1",
        ("oid",),
        (relid,),
    ):
        _drop_view(plpy, f"{identifier(old['vs'])}.{identifier(old['vn'])}")
    catalog.query(
        plpy,
        "INSERT INTO diffix.microdata_tables (relid, row_key_attnum, table_tag, view_schema,"
        " view_name) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (relid) DO UPDATE"
        " SET row_key_attnum = EXCLUDED.row_key_attnum, view_schema = EXCLUDED.view_schema,"
        " view_name = EXCLUDED.view_name",
        ("oid", "int2", "text", "name", "name"),
        (relid, attnum, f"{facts['s']}.{facts['r']}", schema, facts["r"]),
    )
    # a rule the new row key cannot have (anything but drop and pseudonym) goes
    catalog.query(
        plpy,
        "DELETE FROM diffix.microdata_columns WHERE relid = $1 AND attnum = $2"
        " AND method NOT IN ('drop', 'pseudonym')",
        ("oid", "int2"),
        (relid, attnum),
    )
    plpy.execute(f"REVOKE SELECT ON {name} FROM PUBLIC, {READER_GROUP}")
    plpy.execute("SELECT diffix._revoke_exposures()")
    plpy.execute(f"GRANT SELECT ON {name} TO {VIEW_OWNER}")
    table = load(plpy, relid)
    rebuild(plpy, table)
    return f"{name}: perturbed rows in view {table.view_sql_name} (row key {row_key} not shown)"


@reports_errors
def perturb_column(
    plpy: Any, relid: int, column_name: str | None, method: str | None, params_json: str | None
) -> str:
    """diffix.perturb_column(table, column, method, params): validates, stores, rebuilds."""
    catalog.require_admin(plpy, "configure perturbation")
    table = load(plpy, relid)
    numbered = _columns(plpy, relid)
    attnum, column = _find_column(numbered, column_name or "", table.sql_name)
    try:
        params = json.loads(params_json) if params_json is not None else {}
    except json.JSONDecodeError as error:
        raise PerturbationError(f"params are not valid JSON: {error}") from None
    column_sd = None
    if isinstance(params, dict) and "sd_fraction" in params and column.category in NUMBERS:
        column_sd = plpy.execute(
            f"SELECT pg_catalog.stddev_samp({identifier(column.name)}::pg_catalog.float8) AS sd"
            f" FROM {table.sql_name}"
        )[0]["sd"]
    data_scale = None
    if column.type_name == "numeric" and column.scale is None:
        found = plpy.execute(
            f"SELECT pg_catalog.max(pg_catalog.min_scale({identifier(column.name)})) AS s"
            f" FROM {table.sql_name}"
        )[0]["s"]
        data_scale = found or 0
    rule = validate(
        column, method, params, column_sd=column_sd, is_row_key=column.name == table.row_key
    )
    if rule.method == "keep":
        catalog.query(
            plpy,
            "DELETE FROM diffix.microdata_columns WHERE relid = $1 AND attnum = $2",
            ("oid", "int2"),
            (relid, attnum),
        )
    else:
        extra: dict[str, Any] = {}
        if data_scale is not None:
            extra["scale"] = data_scale
        if expressions.SLOTS.get(rule.method):
            extra["slots"] = _slots(plpy, relid, attnum, expressions.SLOTS[rule.method])
        rule = Rule(rule.method, {**rule.params, **extra})
        catalog.query(
            plpy,
            "INSERT INTO diffix.microdata_columns (relid, attnum, method, params)"
            " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (relid, attnum) DO UPDATE"
            " SET method = EXCLUDED.method, params = EXCLUDED.params",
            ("oid", "int2", "text", "text"),
            (relid, attnum, rule.method, json.dumps(rule.params)),
        )
    rebuild(plpy, load(plpy, relid))
    shown = ", ".join(f"{k}={v}" for k, v in rule.params.items() if k not in ("scale", "slots"))
    return f"{table.sql_name}.{identifier(column.name)}: {rule.method}" + (
        f" ({shown})" if shown else ""
    )


def _slots(plpy: Any, relid: int, attnum: int, needed: int) -> list[int]:
    """The column's draw slots: those it already has, then fresh ones (slots are never reused,
    so no two columns share draws and a column's values stay while it keeps its rule)."""
    stored = catalog.query(
        plpy,
        "SELECT params -> 'slots' AS slots FROM diffix.microdata_columns"
        " WHERE relid = $1 AND attnum = $2",
        ("oid", "int2"),
        (relid, attnum),
    )
    slots = json.loads(stored[0]["slots"])[:needed] if stored and stored[0]["slots"] else []
    while len(slots) < needed:
        slots.append(
            catalog.query(
                plpy,
                "UPDATE diffix.microdata_tables SET next_slot = next_slot + 1 WHERE relid = $1"
                " RETURNING next_slot - 1 AS slot",
                ("oid",),
                (relid,),
            )[0]["slot"]
        )
    return slots


@reports_errors
def set_quasi_identifiers(plpy: Any, relid: int, names: list[str] | None) -> str:
    """diffix.set_quasi_identifiers(table, VARIADIC columns): the columns the report's smallest
    group size is taken over."""
    catalog.require_admin(plpy, "configure perturbation")
    table = load(plpy, relid)
    numbered = _columns(plpy, relid)
    chosen = [_find_column(numbered, name, table.sql_name)[1].name for name in names or []]
    catalog.query(
        plpy,
        "UPDATE diffix.microdata_tables SET quasi_identifiers = $2 WHERE relid = $1",
        ("oid", "text[]"),
        (relid, chosen),
    )
    return f"{table.sql_name}: quasi-identifiers " + (", ".join(chosen) or "(none)")


@reports_errors
def unmark(plpy: Any, relid: int) -> str:
    """diffix.unmark_perturbed(table): drops the view and the rules; the table's grants to the
    perturbed level stay revoked."""
    catalog.require_admin(plpy, "configure perturbation")
    table = load(plpy, relid)
    _drop_view(plpy, table.view_sql_name)
    catalog.query(plpy, "DELETE FROM diffix.microdata_tables WHERE relid = $1", ("oid",), (relid,))
    plpy.execute(f"REVOKE SELECT ON {table.sql_name} FROM {VIEW_OWNER}")
    return f"{table.sql_name}: no longer perturbed; view {table.view_sql_name} dropped"


@reports_errors
def rebuild_view(plpy: Any, relid: int) -> str:
    """diffix.rebuild_perturbed_view(table): after a column was added or the view dropped."""
    catalog.require_admin(plpy, "configure perturbation")
    table = load(plpy, relid)
    rebuild(plpy, table)
    return f"{table.sql_name}: view {table.view_sql_name} re-created"


# --- the report ------------------------------------------------------------------------------


def _row(metric: str, column: str | None, other: str | None, before: Any, after: Any) -> dict:
    original = None if before is None else float(before)
    perturbed = None if after is None else float(after)
    return {
        "metric": metric,
        "column_name": column,
        "other_column": other,
        "original": original,
        "perturbed": perturbed,
        "explanation": report.explanation(metric, column, other, original, perturbed),
    }


@reports_errors
def perturbation_report(plpy: Any, relid: int) -> list[dict[str, Any]]:
    """diffix.perturbation_report(table): utility (mean, sd, min, max, correlations before and
    after) and risk (nearest-neighbour linkage share, smallest group size over the
    quasi-identifiers)."""
    catalog.require_admin(plpy, "read perturbation reports")
    table = load(plpy, relid)
    paired = expressions.select_sql(
        table.sql_name, table.tag, table.columns, table.rules, table.row_key, paired=True
    )
    shown = {
        position: column
        for position, column in enumerate(table.columns)
        if column.name != table.row_key
        and table.rules.get(column.name, Rule("keep", {})).method != "drop"
    }
    numeric = [p for p, c in shown.items() if c.category in NUMBERS]
    aggregates = ["pg_catalog.count(*) AS n"]
    for p in numeric:
        for side in ("o", "p"):
            v = f"{side}{p}::pg_catalog.float8"
            aggregates += [
                f"pg_catalog.avg({v}) AS {side}{p}_mean",
                f"pg_catalog.stddev_samp({v}) AS {side}{p}_sd",
                f"pg_catalog.min({v}) AS {side}{p}_min",
                f"pg_catalog.max({v}) AS {side}{p}_max",
            ]
    pairs = [(a, b) for i, a in enumerate(numeric) for b in numeric[i + 1 :]]
    for a, b in pairs:
        for side in ("o", "p"):
            aggregates.append(
                f"pg_catalog.corr({side}{a}::pg_catalog.float8, {side}{b}::pg_catalog.float8)"
                f" AS {side}{a}_{side}{b}_corr"
            )
    stats = plpy.execute(f"SELECT {', '.join(aggregates)} FROM ({paired}) q")[0]
    rows = [_row("rows", None, None, stats["n"], stats["n"])]
    for p in numeric:
        name = table.columns[p].name
        for metric in ("mean", "sd", "min", "max"):
            rows.append(_row(metric, name, None, stats[f"o{p}_{metric}"], stats[f"p{p}_{metric}"]))
    for a, b in pairs:
        rows.append(
            _row(
                "correlation",
                table.columns[a].name,
                table.columns[b].name,
                stats[f"o{a}_o{b}_corr"],
                stats[f"p{a}_p{b}_corr"],
            )
        )
    rows.append(_linkage(plpy, table, paired, numeric))
    rows.extend(_smallest_groups(plpy, table, paired, shown))
    return rows


def _linkage(plpy: Any, table: MicrodataTable, paired: str, numeric: list[int]) -> dict:
    noisy = [
        p
        for p in numeric
        if table.rules.get(table.columns[p].name, Rule("keep", {})).method in NOISE_METHODS
    ]
    if not noisy:
        return _row("linkage_share", None, None, None, None)
    complete = " AND ".join(f"o{p} IS NOT NULL AND p{p} IS NOT NULL" for p in noisy)
    columns = ", ".join(
        f"o{p}::pg_catalog.float8 AS o{p}, p{p}::pg_catalog.float8 AS p{p}" for p in noisy
    )
    sample = plpy.execute(
        f"SELECT {columns} FROM ({paired}) q WHERE {complete}"
        f" ORDER BY pg_catalog.md5(q.row_key::pg_catalog.text) LIMIT {report.LINKAGE_SAMPLE}"
    )
    originals = [[r[f"o{p}"] for p in noisy] for r in sample]
    perturbed = [[r[f"p{p}"] for p in noisy] for r in sample]
    names = ", ".join(table.columns[p].name for p in noisy)
    return _row("linkage_share", names, None, None, report.linkage_share(originals, perturbed))


def _smallest_groups(
    plpy: Any, table: MicrodataTable, paired: str, shown: dict[int, Column]
) -> list[dict]:
    if not table.quasi_identifiers:
        return []
    positions = {column.name: p for p, column in enumerate(table.columns)}
    declared = [q for q in table.quasi_identifiers if q in positions]  # renamed ones drop out
    before = ", ".join(f"o{positions[q]}" for q in declared if positions[q] in shown)
    after = ", ".join(f"p{positions[q]}" for q in declared if positions[q] in shown)
    if not before:
        return [_row("min_group_size", ", ".join(declared), None, None, None)]
    counts = plpy.execute(
        f"WITH q AS MATERIALIZED ({paired}) SELECT"
        f" (SELECT pg_catalog.min(c) FROM (SELECT pg_catalog.count(*) AS c FROM q"
        f" GROUP BY {before}) b) AS before,"
        f" (SELECT pg_catalog.min(c) FROM (SELECT pg_catalog.count(*) AS c FROM q"
        f" GROUP BY {after}) a) AS after"
    )[0]
    return [
        _row(
            "min_group_size",
            ", ".join(declared),
            None,
            counts["before"],
            counts["after"],
        )
    ]
