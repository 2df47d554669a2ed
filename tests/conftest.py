"""Test servers: an embedded throwaway cluster by default, an existing server when
PLDIFFIX_TEST_DSN is set, or a container when PLDIFFIX_TEST_DOCKER=1 and Docker is available.

Each database test gets its own database cloned from a template with pldiffix installed, and its
own roles, all dropped afterwards.
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.cluster import EmbeddedCluster

# Helper modules shared by the test directories (tests/helpers: bucket_replay, packed_arrays,
# tbe_helpers), importable by name from any of them.
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))


def _container_dsn() -> Iterator[str]:
    from testcontainers.core.image import DockerImage
    from testcontainers.postgres import PostgresContainer

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with (
        DockerImage(path=root, tag="pldiffix-test:latest") as image,
        PostgresContainer(
            str(image), username="postgres", password="postgres", dbname="postgres"
        ) as container,
    ):
        yield make_conninfo(
            host=container.get_container_host_ip(),
            port=container.get_exposed_port(5432),
            user="postgres",
            password="postgres",
            dbname="postgres",
        )


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    existing = os.environ.get("PLDIFFIX_TEST_DSN")
    if existing:
        yield existing
    elif os.environ.get("PLDIFFIX_TEST_DOCKER") == "1":
        yield from _container_dsn()
    else:
        with EmbeddedCluster() as cluster:
            yield cluster.dsn


def _admin(server_dsn: str, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(make_conninfo(server_dsn, dbname=dbname), autocommit=True)


def _drop_database(conn: psycopg.Connection, name: str) -> None:
    """Drops the database and the ledger's loopback login role an install in it created (roles
    are cluster-wide, and a server given by PLDIFFIX_TEST_DSN outlives the tests)."""
    row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if row:
        login = sql.Identifier(f"diffix_ledger_{row[0]}")
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(login))


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> Iterator[str]:
    name = f"pldiffix_template_{uuid.uuid4().hex[:8]}"
    with _admin(server_dsn) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    install.install(make_conninfo(server_dsn, dbname=name), out=io.StringIO())
    yield name
    with _admin(server_dsn) as conn:
        _drop_database(conn, name)


class Database:
    """One test database, its superuser connection, and roles made for the test."""

    def __init__(self, server_dsn: str, name: str):
        self.server_dsn = server_dsn
        self.name = name
        self.roles: list[str] = []
        self._connections: list[psycopg.Connection] = []
        self.admin = self.connect()

    def dsn(self, user: str | None = None) -> str:
        extra = {"user": user} if user else {}
        return make_conninfo(self.server_dsn, dbname=self.name, **extra)

    def connect(self, user: str | None = None) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn(user), autocommit=True)
        self._connections.append(conn)
        return conn

    def execute(self, query: str, params: Any = None) -> list[tuple]:
        with self.admin.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def create_role(
        self, level: str | None = None, *, login: bool = True, prefix: str = "r"
    ) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.admin.execute(
            sql.SQL("CREATE ROLE {} " + ("LOGIN" if login else "NOLOGIN")).format(
                sql.Identifier(name)
            )
        )
        self.roles.append(name)
        if level:
            self.admin.execute("CALL diffix.mark_role(%s, %s)", (name, level))
        return name

    def as_role(self, role: str) -> psycopg.Connection:
        return self.connect(role)

    def close(self) -> None:
        for conn in self._connections:
            conn.close()
        with _admin(self.server_dsn) as conn:
            _drop_database(conn, self.name)
            for role in self.roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _cloned_database(server_dsn: str, template_db: str) -> Iterator[Database]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    with _admin(server_dsn) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    database = Database(server_dsn, name)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def db(server_dsn: str, template_db: str) -> Iterator[Database]:
    yield from _cloned_database(server_dsn, template_db)


@pytest.fixture(scope="module")
def module_db(server_dsn: str, template_db: str) -> Iterator[Database]:
    """One database for a module whose tests share a large table and each set every setting
    they rely on."""
    yield from _cloned_database(server_dsn, template_db)


@pytest.fixture
def empty_db(server_dsn: str) -> Iterator[Database]:
    """A database without pldiffix, for installer tests."""
    name = f"bare_{uuid.uuid4().hex[:12]}"
    with _admin(server_dsn) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    database = Database(server_dsn, name)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def bank(db: Database) -> Database:
    """A small labeled data set: personal customers, a public lookup table, an unlabeled table."""
    db.admin.execute(
        """
        CREATE TABLE customers (id integer, city text, age integer, joined date);
        INSERT INTO customers
          SELECT i, (ARRAY['Berlin', 'Rome', 'Oslo'])[1 + i % 3], 20 + i % 40,
                 DATE '2020-01-01' + i
          FROM generate_series(1, 60) i;
        CREATE TABLE cities (name text, country text);
        INSERT INTO cities VALUES ('Berlin', 'DE'), ('Rome', 'IT'), ('Oslo', 'NO');
        CREATE TABLE notes (body text);
        INSERT INTO notes VALUES ('unlabeled');
        GRANT SELECT ON customers, cities, notes TO PUBLIC;
        CALL diffix.mark_personal('customers', 'id');
        CALL diffix.mark_public('cities');
        """
    )
    return db
