"""A personal table partitioned over a local leaf and a postgres_fdw leaf on a shard database,
and the same rows in a plain table (tests/integration/test_shards*.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROWS = """
SELECT i AS aid, (ARRAY['card', 'cash', 'wire'])[1 + i % 3] AS kind,
       ((i % 17) * 1.25 + i / 7.0)::float8 AS amount
FROM generate_series(1, 120) i, generate_series(1, 1 + i % 3) r
"""
SPLIT = 60  # leaf p0 holds aid < SPLIT (local), p1 the rest (on the shard)


@dataclass
class Shard:
    dsn: str  # the shard database, as a superuser
    server_options: dict[str, str]  # host, port, dbname for CREATE SERVER
    reader: str  # the shard's login role the engine's user mapping uses
    password: str


@contextmanager
def shard_database(server_dsn: str, rows_sql: str, where: str) -> Iterator[Shard]:
    """A database on the same cluster standing in for a shard, holding `rows_sql` WHERE `where`
    as tx_remote, readable by a password login role."""
    name = f"shard_{uuid.uuid4().hex[:10]}"
    reader = f"shard_reader_{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    admin = psycopg.connect(make_conninfo(server_dsn, dbname="postgres"), autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(
            "DO $$ BEGIN CREATE ROLE pldiffix_password_users NOLOGIN;"
            " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pldiffix_password_users").format(
                sql.Identifier(reader), sql.Literal(password)
            )
        )
        dsn = make_conninfo(server_dsn, dbname=name)
        with psycopg.connect(dsn, autocommit=True) as shard:
            shard.execute(f"CREATE TABLE tx_remote AS SELECT * FROM ({rows_sql}) r WHERE {where}")
            shard.execute(sql.SQL("GRANT SELECT ON tx_remote TO {}").format(sql.Identifier(reader)))
            shard.execute("ANALYZE tx_remote")
        parts = conninfo_to_dict(server_dsn)
        options = {"host": str(parts["host"]), "port": str(parts.get("port", 5432)), "dbname": name}
        yield Shard(dsn, options, reader, password)
    finally:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(reader)))
        admin.close()


def create_server(admin: psycopg.Connection, server: str, shard: Shard) -> None:
    """The foreign server of `shard` and diffix_engine's user mapping for it."""
    admin.execute("CREATE EXTENSION IF NOT EXISTS postgres_fdw")
    options = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(key), sql.Literal(value))
        for key, value in shard.server_options.items()
    )
    admin.execute(
        sql.SQL("CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw OPTIONS ({})").format(
            sql.Identifier(server), options
        )
    )
    admin.execute(
        sql.SQL(
            "CREATE USER MAPPING FOR diffix_engine SERVER {} OPTIONS (user {}, password {})"
        ).format(sql.Identifier(server), sql.Literal(shard.reader), sql.Literal(shard.password))
    )


def create_sharded_tx(
    admin: psycopg.Connection, shard: Shard, *, mark: bool = True, rows: str = ROWS
) -> None:
    """tx partitioned by range of aid: tx_p0 local, tx_p1 on the shard; local_copy.tx the same
    rows in one plain table (bucket seeds name the table, not its schema). Both readable by
    PUBLIC before they are marked personal."""
    create_server(admin, "shard1", shard)
    admin.execute(
        f"""
        CREATE TABLE tx (aid integer, kind text, amount float8) PARTITION BY RANGE (aid);
        CREATE TABLE tx_p0 PARTITION OF tx FOR VALUES FROM (MINVALUE) TO ({SPLIT});
        INSERT INTO tx_p0 SELECT * FROM ({rows}) r WHERE aid < {SPLIT};
        CREATE FOREIGN TABLE tx_p1 PARTITION OF tx FOR VALUES FROM ({SPLIT}) TO (MAXVALUE)
          SERVER shard1 OPTIONS (table_name 'tx_remote', use_remote_estimate 'true');
        CREATE SCHEMA local_copy;
        GRANT USAGE ON SCHEMA local_copy TO PUBLIC;
        CREATE TABLE local_copy.tx AS SELECT * FROM ({rows}) r;
        GRANT SELECT ON tx, tx_p0, tx_p1, local_copy.tx TO PUBLIC;
        ANALYZE tx_p0, local_copy.tx;
        """
    )
    if mark:
        admin.execute(
            "CALL diffix.mark_personal('tx', 'aid');"
            "CALL diffix.mark_personal('local_copy.tx', 'aid')"
        )
