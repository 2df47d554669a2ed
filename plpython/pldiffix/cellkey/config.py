"""Cell-key tables (TBE and keyed Laplace): configuration, validation, SQL helpers.

Server side, talks to the database through plpy. The pure algorithms are in tbe_config.py, tbe.py
and laplace.py, the table's description in table.py; the query path is in plan.py and engine.py.
Every statement is schema-qualified and built only from identifiers read from the catalog (quoted)
and parameters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pldiffix.cellkey import laplace, tbe, tbe_config
from pldiffix.cellkey.table import CellKeyTable, Column
from pldiffix.cellkey.tbe_config import TbeConfig
from pldiffix.core import catalog
from pldiffix.core.errors import UserError, reports_errors
from pldiffix.core.levels import AccessLevel

F = TypeVar("F", bound=Callable[..., Any])

METHODS = ("tbe", "laplace")
_INTEGER_TYPES = ("int2", "int4", "int8")


# --- the catalog -----------------------------------------------------------------------------


_TABLE = """
SELECT c.relkind, n.nspname, c.relname, c.oid::regclass::text AS sql_name,
       EXISTS (SELECT FROM pg_catalog.pg_inherits i
               WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) AS inherits
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1
"""

_COLUMNS = """
SELECT a.attname, a.atttypid::int AS type_oid, t.typname, pg_catalog.format_type(a.atttypid, NULL)
       AS type_sql, t.typcategory = 'N' AS numeric, t.typcollation <> 0 AS collatable
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
"""


def _table_facts(plpy: Any, relid: int) -> Any:
    rows = catalog.query(plpy, _TABLE, ("oid",), (relid,))
    if not rows:
        raise UserError(f"table with OID {relid} does not exist", "42P01")
    return rows[0]


def _columns(plpy: Any, relid: int) -> dict[str, Column]:
    rows = catalog.query(plpy, _COLUMNS, ("oid",), (relid,))
    return {
        r["attname"]: Column(
            r["attname"], r["type_oid"], r["typname"], r["type_sql"], r["numeric"], r["collatable"]
        )
        for r in rows
    }


def _find_column(columns: dict[str, Column], name: str, what: str, table: str) -> Column:
    """A configured name to its column: exact match, else the one case-insensitive match."""
    if name in columns:
        return columns[name]
    matches = [c for c in columns.values() if c.name.casefold() == name.casefold()]
    if len(matches) == 1:
        return matches[0]
    raise UserError(
        f"{what} {name!r} is not a column of table {table}",
        "42703",
        hint="columns: " + ", ".join(columns),
    )


def _parse(method: str, config: Any) -> TbeConfig | laplace.LaplaceConfig:
    if method == "tbe":
        return tbe_config.parse_config(config)
    return laplace.parse_config(config)


def load(plpy: Any, relid: int) -> CellKeyTable:
    """The cell-key table with its parsed configuration (the caller must be able to read it)."""
    rows = catalog.query(
        plpy,
        "SELECT method, config::text AS config FROM diffix.perturbation_configs WHERE relid = $1",
        ("oid",),
        (relid,),
    )
    if not rows:
        raise UserError(
            f"table {_table_facts(plpy, relid)['sql_name']} has no TBE or Laplace configuration",
            hint="an administrator configures it with CALL diffix.mark_tbe(...) or "
            "diffix.mark_laplace(...)",
        )
    facts = _table_facts(plpy, relid)
    method, config = rows[0]["method"], _parse(rows[0]["method"], rows[0]["config"])
    table = CellKeyTable(
        relid=relid,
        sql_name=facts["sql_name"],
        canonical_name=f"{facts['nspname']}.{facts['relname']}",
        columns=_columns(plpy, relid),
        method=method,
    )
    if isinstance(config, TbeConfig):
        table.tbe_config = config
        table.record_key = _find_column(
            table.columns, config.record_key_name, "record_key_name", table.sql_name
        )
        table.tiebreaker = _find_column(
            table.columns, config.value_tiebreaker_name, "value_tiebreaker_name", table.sql_name
        )
        if config.scope_keys is not None:
            for declared in config.scope_keys.fields:
                column = _find_column(table.columns, declared, "declared field", table.sql_name)
                table.field_of[column.name] = declared
    else:
        table.laplace_config = config
        table.record_columns = record_columns(plpy, relid, table.sql_name)
    return table


_SCALAR_COLUMNS = """
SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND t.typtype IN ('b', 'e', 'd')
  AND t.typcategory NOT IN ('A', 'C', 'R')
ORDER BY a.attnum
"""


def _hashable(plpy: Any, columns: list[Column]) -> bool:
    """Whether hash_record_extended accepts a row of these types (probed with NULLs: the
    function looks up every column's extended hash function before looking at the values)."""
    nulls = ", ".join(f"NULL::{c.type_sql}" for c in columns)
    try:
        plpy.execute(f"SELECT pg_catalog.hash_record_extended(ROW({nulls}), 0)")
    except plpy.SPIError:  # type: ignore[attr-defined]
        return False
    return True


def record_columns(plpy: Any, relid: int, table_name: str) -> list[Column]:
    """The columns whose values identify a record for Laplace cell keys: every scalar column
    with an extended hash function (json, xml, point, money and arrays have none and are left
    out). Decided from the catalog only, so whether a query can run never depends on the data."""
    columns = _columns(plpy, relid)
    names = [r["attname"] for r in catalog.query(plpy, _SCALAR_COLUMNS, ("oid",), (relid,))]
    candidates = [columns[n] for n in names]
    chosen = candidates if candidates and _hashable(plpy, candidates) else []
    if not chosen:
        chosen = [c for c in candidates if _hashable(plpy, [c])]
    if not chosen:
        raise UserError(
            f"table {table_name} has no column that can identify its records for Laplace noise",
            "0A000",
            hint="Laplace cell keys hash each record's scalar columns with a hash function; add "
            "a column of a hashable type (e.g. an integer id)",
        )
    return chosen


# --- marking ---------------------------------------------------------------------------------


@reports_errors
def mark(plpy: Any, relid: int, method: str, config_text: str | None) -> str:
    """diffix.mark_tbe / mark_laplace: validate everything, then label, store and move grants."""
    catalog.require_admin(plpy, "label tables")
    if method not in METHODS:
        raise UserError(f"unknown perturbation method {method!r}")
    facts = _table_facts(plpy, relid)
    name = facts["sql_name"]
    if facts["nspname"] in ("pg_catalog", "information_schema", "diffix") or facts[
        "nspname"
    ].startswith("pg_"):
        raise UserError(f"{name} is a system table and cannot be labeled")
    if facts["relkind"] not in ("r", "m"):
        raise UserError(
            f"{name} is not a plain table or materialized view and cannot be perturbed", "42809"
        )
    if facts["inherits"]:
        raise UserError(f"{name} uses table inheritance, which is not supported", "0A000")
    if config_text is None:
        raise UserError("the configuration must not be NULL")
    config = _parse(method, config_text)
    columns = _columns(plpy, relid)
    if isinstance(config, TbeConfig):
        _check_tbe(plpy, name, columns, config)
        parameters = config.to_parameters()
        summary = (
            f"{name}: TBE perturbation, bigN {config.big_n}, "
            f"scope keys {'on' if config.scoped else 'off'}"
        )
    else:
        record_columns(plpy, relid, name)
        parameters = {"scale": config.scale, "key": config.key}
        summary = f"{name}: Laplace noise, scale {config.scale}"

    catalog.query(
        plpy,
        "INSERT INTO diffix.table_labels (relid, label) VALUES ($1, 'cellkey') "
        "ON CONFLICT (relid) DO UPDATE SET label = 'cellkey'",
        ("oid",),
        (relid,),
    )
    catalog.query(plpy, "DELETE FROM diffix.column_labels WHERE relid = $1", ("oid",), (relid,))
    catalog.query(
        plpy,
        "INSERT INTO diffix.perturbation_configs (relid, method, config) VALUES ($1, $2, $3) "
        "ON CONFLICT (relid) DO UPDATE SET method = EXCLUDED.method, config = EXCLUDED.config, "
        "configured_at = pg_catalog.now()",
        ("oid", "text", "jsonb"),
        (relid, method, json.dumps(parameters)),
    )
    # Analysts read cell-key tables only through the engine, as personal ones.
    plpy.execute(
        f"REVOKE SELECT ON {name} FROM PUBLIC, diffix_anonymized_trusted, "
        "diffix_anonymized_untrusted, diffix_anonymized_dp"
    )
    plpy.execute("SELECT diffix._revoke_exposures()")
    plpy.execute(f"GRANT SELECT ON {name} TO diffix_engine")
    return summary


def _check_tbe(plpy: Any, name: str, columns: dict[str, Column], config: TbeConfig) -> None:
    key = _find_column(columns, config.record_key_name, "record_key_name", name)
    if key.type_name not in _INTEGER_TYPES:
        raise UserError(
            f"record key column {key.name!r} has type {key.type_sql}; it must be an integer type",
            "42804",
            hint="pldiffix tbe-keys adds a bigint record key column",
        )
    tiebreaker = _find_column(columns, config.value_tiebreaker_name, "value_tiebreaker_name", name)
    if tiebreaker.name == key.name:
        raise UserError("the record key column cannot also be the value tiebreaker")
    stats = plpy.execute(
        f"SELECT pg_catalog.count(*) FILTER (WHERE {key.sql} IS NULL) AS nulls, "
        f"pg_catalog.min({key.sql}) AS lo, pg_catalog.max({key.sql}) AS hi FROM {name}"
    )[0]
    if stats["nulls"]:
        raise UserError(
            f"record key column {key.name!r} has {stats['nulls']} NULL value(s); every record "
            "needs a key"
        )
    for bound in ("lo", "hi"):
        value = stats[bound]
        if value is not None and not 0 <= value < config.big_n:
            raise UserError(
                f"record key column {key.name!r} holds {value}, outside [0, bigN={config.big_n})",
                hint="record keys must be drawn uniformly from [0, bigN); pldiffix tbe-keys "
                "adds such a column",
            )
    if config.scope_keys is None:
        return
    present: dict[str, list[str | None]] = {}
    for declared in config.scope_keys.fields:
        column = _find_column(columns, declared, "declared field", name)
        if column.name in (key.name, tiebreaker.name):
            raise UserError(
                f"declared field {declared!r} is the record key or the tiebreaker column"
            )
        if column.numeric:
            case = config.scope_keys.range_case_sql(declared, column.sql)  # checks the ranges
            outside = plpy.execute(
                f"SELECT DISTINCT {column.sql} AS v FROM {name} WHERE ({case}) IS NULL "
                "ORDER BY 1 LIMIT 6"
            )
            if outside.nrows():
                shown = ", ".join("NULL" if r["v"] is None else str(r["v"]) for r in outside[:5])
                raise UserError(
                    f"incomplete scope key declarations: field {declared!r}: value(s) {shown}"
                    f"{' and more' if outside.nrows() > 5 else ''} in no declared range",
                    hint="declare a range (or the NULL sentinel, an empty value name) for "
                    "every value in the data",
                )
        else:
            rows = plpy.execute(f"SELECT DISTINCT {column.sql}::pg_catalog.text AS v FROM {name}")
            present[declared] = [r["v"] for r in rows]
            if tbe_config.NULL_LABEL in present[declared]:
                raise UserError(
                    f"field {declared!r}: column {column.name} holds the empty string, which "
                    "cannot be declared: the empty value name declares NULL",
                    hint=f"replace the empty strings of {column.name} (e.g. by NULL or a "
                    "named value) and declare that",
                )
    config.scope_keys.check_complete(present)


# --- SQL functions ---------------------------------------------------------------------------


def _require_direct_or_admin(plpy: Any, action: str) -> None:
    role = catalog.invoking_role(plpy)
    if catalog.role_facts(plpy, role).is_admin:
        return
    if catalog.person_level(plpy) is not AccessLevel.DIRECT:
        raise PermissionError(
            f"only administrators and direct-level roles can {action}; at an anonymized level "
            "query the table through diffix.query_json"
        )


def _tbe_table(plpy: Any, relid: int | str) -> CellKeyTable:
    if isinstance(relid, str):  # a regclass argument arrives as its (schema-qualified) name
        relid = catalog.query(
            plpy, "SELECT $1::pg_catalog.regclass::pg_catalog.oid AS oid", ("text",), (relid,)
        )[0]["oid"]
    table = load(plpy, relid)
    if table.tbe_config is None:
        raise UserError(f"table {table.sql_name} is configured for Laplace noise, not TBE")
    return table


@reports_errors
def perturb_count(
    plpy: Any, n: int | None, key: int | None, relid: int | str | None, scope_key: int | None
) -> int | None:
    """diffix.tbe_perturb(n, key, table[, scope_key]): max(0, n + p); NULL in, NULL out."""
    if n is None or key is None or relid is None:
        return None
    _require_direct_or_admin(plpy, "call diffix.tbe_perturb (it reveals the p-matrix)")
    config = _tbe_table(plpy, relid).tbe_config
    assert config is not None
    if n == 0:
        return 0
    tbe_config.validate_record_key(key, config.big_n)
    if config.scoped:
        sk = 1 if scope_key is None else tbe_config.validate_record_key(scope_key, config.big_n)
    elif scope_key is not None:
        raise UserError("the table has no scope key declarations: pass no scope key")
    else:
        sk = None
    return tbe.perturbed_count(n, tbe.count_perturbation(config, key, n, sk))


@reports_errors
def range_label(
    plpy: Any, value: Any, field_name: str | None, relid: int | str | None
) -> str | None:
    """diffix.tbe_range(value, field, table): the declared range name of a numeric value."""
    if field_name is None or relid is None:
        return None
    config = _tbe_table(plpy, relid).tbe_config
    assert config is not None
    if config.scope_keys is None:
        raise UserError("the table has no scope key declarations, so no declared ranges")
    return config.scope_keys.range_label(field_name, value)
