"""`pldiffix tbe-configure`, `tbe-keys` and `laplace-configure`: set up cell-key tables.

The configuration is validated here first (same parser as the server), then sent inline to
diffix.mark_tbe / diffix.mark_laplace, which validate it again against the table and its data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import psycopg
from psycopg import sql

from pldiffix.cellkey import laplace, tbe_config
from pldiffix_installer.install import InstallError, Progress, connect

_FILE_PARAMETERS = (
    "p_filename",
    "s_filename",
    "scope_p_filename",
    "primitive_scope_key_declarations_filename",
)
# Random record keys from gen_random_uuid() (pg_strong_random): its last 15 hex digits are 60
# random bits (the version and variant bits come before), mod bigN: a bias below bigN / 2^60.
_RANDOM_KEY = (
    "(('x' || pg_catalog.substr(pg_catalog.replace(pg_catalog.gen_random_uuid()::text, '-', ''), "
    "18, 15))::bit(60)::bigint % {big_n})"
)


class PerturbError(InstallError):
    """A problem with a perturbation command; the message says what to fix."""


def _db_error(error: psycopg.Error) -> PerturbError:
    message = error.diag.message_primary or str(error)
    if error.diag.message_hint:
        message += f" (hint: {error.diag.message_hint})"
    return PerturbError(message)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PerturbError(f"configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PerturbError(f"cannot read {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise PerturbError(f"{path} is not valid JSON: {error}") from None


def _tbe_parameters(obj: Any) -> Mapping[str, Any]:
    """The tbe_perturb parameters inside whatever wrapping the seed's JSON uses."""
    if not isinstance(obj, Mapping):
        return {}
    for key in ("transform_definitions", tbe_config.TRANSFORM_NAME, "parameters"):
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
    return obj


def load_tbe_config(
    config_path: str | Path, directory: str | Path | None = None
) -> tbe_config.TbeConfig:
    """Reads and validates a TBE configuration and the CSV files it names.

    The files are read from `directory`, else from the configuration's `path` parameter relative
    to the file's directory, else from that directory.
    """
    config_path = Path(config_path)
    obj = _read_json(config_path)
    params = _tbe_parameters(obj)
    if directory is None:
        relative = params.get("path", ".")
        directory = config_path.parent / (relative if isinstance(relative, str) else ".")
    directory = Path(directory)
    if not directory.is_dir():
        raise PerturbError(f"directory {directory} does not exist")
    files: dict[str, str] = {}
    for parameter in _FILE_PARAMETERS:
        name = params.get(parameter)
        if not isinstance(name, str) or not name:
            continue
        path = directory / (name if name.endswith(".csv") else name + ".csv")
        try:
            files[name] = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PerturbError(f"{parameter} {name!r}: file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise PerturbError(f"{parameter} {name!r}: cannot read {path}: {error}") from None
    try:
        return tbe_config.parse_config(obj, files)
    except tbe_config.TbeConfigError as error:
        raise PerturbError(f"invalid TBE configuration in {config_path}: {error}") from None


def load_laplace_config(config_path: str | Path) -> laplace.LaplaceConfig:
    config_path = Path(config_path)
    try:
        return laplace.parse_config(_read_json(config_path))
    except laplace.LaplaceConfigError as error:
        raise PerturbError(f"invalid Laplace configuration in {config_path}: {error}") from None


def _mark(dsn: str, procedure: str, table: str, parameters: Mapping[str, Any], out: TextIO) -> None:
    conn = connect(dsn)
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    try:
        with conn.transaction():
            conn.execute(
                sql.SQL("CALL diffix.{}(%s, %s::jsonb)").format(sql.Identifier(procedure)),
                (table, json.dumps(parameters)),
            )
    except psycopg.Error as error:
        raise _db_error(error) from None
    finally:
        conn.close()
    for notice in notices:
        print(notice, file=out)


def configure_tbe(
    dsn: str,
    table: str,
    config_path: str | Path,
    directory: str | Path | None = None,
    out: TextIO | None = None,
) -> tbe_config.TbeConfig:
    """pldiffix tbe-configure: validate locally, then CALL diffix.mark_tbe with it all inline."""
    out = out or sys.stdout
    config = load_tbe_config(config_path, directory)
    print(
        f"configuration valid: bigN {config.big_n}, {config.small_n}x{config.small_c} matrices, "
        f"scope keys {'on' if config.scoped else 'off'}",
        file=out,
    )
    _mark(dsn, "mark_tbe", table, config.to_parameters(), out)
    print(f"{table} is configured for TBE perturbation", file=out)
    return config


def configure_laplace(
    dsn: str, table: str, config_path: str | Path, out: TextIO | None = None
) -> laplace.LaplaceConfig:
    """pldiffix laplace-configure: validate locally, then CALL diffix.mark_laplace."""
    out = out or sys.stdout
    config = load_laplace_config(config_path)
    _mark(dsn, "mark_laplace", table, {"scale": config.scale, "key": config.key}, out)
    print(f"{table} is configured for Laplace noise (scale {config.scale})", file=out)
    return config


def _stored_big_n(conn: psycopg.Connection, relid: int) -> int | None:
    exists = conn.execute(
        "SELECT pg_catalog.to_regclass('diffix.perturbation_configs') IS NOT NULL"
    ).fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT (config ->> 'bigN')::bigint FROM diffix.perturbation_configs "
        "WHERE relid = %s AND method = 'tbe'",
        (relid,),
    ).fetchone()
    return row[0] if row else None


def add_record_keys(
    conn: psycopg.Connection,
    table: str,
    column: str,
    big_n: int | None = None,
    out: TextIO | None = None,
) -> int:
    """Adds a bigint column of random record keys in [0, bigN) to every row; returns the count.

    Runs in the caller's transaction (one statement per step). bigN comes from the argument, else
    from the table's stored TBE configuration.
    """
    out = out or sys.stdout
    progress = Progress(out, total=4)

    def resolve() -> str:
        row = conn.execute(
            "SELECT c.oid, c.relkind FROM pg_catalog.pg_class c "
            "WHERE c.oid = pg_catalog.to_regclass(%s)",
            (table,),
        ).fetchone()
        if row is None:
            raise PerturbError(f'table "{table}" does not exist')
        if row[1] != "r":
            raise PerturbError(f"{table} is not a plain table; record keys need an UPDATE")
        nonlocal relid
        relid = row[0]
        taken = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attname = %s "
            "AND attnum > 0 AND NOT attisdropped",
            (relid, column),
        ).fetchone()
        if taken:
            raise PerturbError(
                f'column "{column}" already exists in {table}; tbe-keys never replaces keys '
                "(drop the column first, or name another one)"
            )
        return ""

    relid = 0
    progress.step(f"check {table}", resolve)
    if big_n is None:
        big_n = _stored_big_n(conn, relid)
        if big_n is None:
            raise PerturbError(
                f"{table} has no stored TBE configuration to take bigN from; pass --big-n"
            )
    if isinstance(big_n, bool) or not isinstance(big_n, int) or not 0 < big_n < 2**60:
        raise PerturbError(f"bigN must be an integer in [1, 2^60), got {big_n!r}")
    qualified = conn.execute("SELECT %s::regclass::text", (relid,)).fetchone()[0]
    target = sql.SQL(qualified)  # quoted by PostgreSQL
    ident = sql.Identifier(column)
    progress.step(
        f"add column {column} bigint",
        lambda: (
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(target, ident))
            and ""
        ),
    )
    key = sql.SQL(_RANDOM_KEY.format(big_n=int(big_n)))

    def fill() -> str:
        cur = conn.execute(sql.SQL("UPDATE {} SET {} = {}").format(target, ident, key))
        return f"({cur.rowcount} rows, keys in [0, {big_n}))"

    progress.step("draw a random key per row", fill)
    progress.step(
        f"set {column} NOT NULL",
        lambda: (
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(target, ident)
            )
            and ""
        ),
    )
    count = conn.execute(sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(target)).fetchone()
    return count[0]


def tbe_keys(
    dsn: str, table: str, column: str, big_n: int | None = None, out: TextIO | None = None
) -> int:
    """pldiffix tbe-keys: add_record_keys in one transaction of its own."""
    out = out or sys.stdout
    conn = connect(dsn)
    try:
        with conn.transaction():
            count = add_record_keys(conn, table, column, big_n, out)
    except psycopg.Error as error:
        raise _db_error(error) from None
    finally:
        conn.close()
    print(f"added record keys to {count} rows of {table} (column {column})", file=out)
    return count
