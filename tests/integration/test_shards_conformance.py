"""pg_diffix's conformance cases over sharded tables: a coordinator (the test server) and two
shard clusters on loopback. test_customers, test_purchases and test_patients are hash-partitioned
on their AID over postgres_fdw partitions, one on each shard, in schema `sharded`; the same rows
stay in `public`. Every applicable case must answer the same over both, run after run, and match
pg_diffix's answer (docs/scale-out.md)."""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conformance import compare, schema
from conformance.cases import CASES, Case
from conformance.test_conformance import ROLES, XFAIL, Suite, mapped
from psycopg import sql

from pldiffix_tools.cluster import EmbeddedCluster

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("PLDIFFIX_TEST_DSN") or os.environ.get("PLDIFFIX_TEST_DOCKER")),
    reason="the shard clusters run on this host beside an embedded coordinator",
)

SHARDS = 2
# table -> (column list without constraints, partition key: its first AID column)
SHARDED = {
    table.name: (table.columns.replace(" PRIMARY KEY", ""), aids[0])
    for table in (schema.TEST_CUSTOMERS, schema.TEST_PURCHASES, schema.TEST_PATIENTS)
    for name, aids in schema.PERSONAL
    if name.removeprefix("public.") == table.name
}
_OTHER_PERSONAL = {name.removeprefix("public.") for name, _ in schema.PERSONAL} - SHARDED.keys()


def _names(text: str) -> set[str]:
    return set(re.findall(r"[a-z_][a-z0-9_]*", text.lower()))


def applicable(case: Case) -> bool:
    """Queries at an anonymized level answered in the suite that read sharded tables only
    (public tables besides) and do not name a schema."""
    if case.kind != "query" or case.rejected or not case.has_answer or case.id in XFAIL:
        return False
    if case.level == schema.DIRECT or case.superuser:
        return False
    text = case.sql_inlined if case.prepare else case.sql
    names = _names(text)
    return bool(names & SHARDED.keys()) and not names & _OTHER_PERSONAL and "public." not in text


CASES_OVER_SHARDS = [pytest.param(case, id=case.id) for case in CASES if applicable(case)]


def _shard(cluster: EmbeddedCluster, reader: str, password: str) -> None:
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE pldiffix_password_users NOLOGIN")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pldiffix_password_users").format(
                sql.Identifier(reader), sql.Literal(password)
            )
        )
        for name, (columns, _) in SHARDED.items():
            conn.execute(f"CREATE TABLE {name} ({columns})")
            conn.execute(
                sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(
                    sql.Identifier(name), sql.Identifier(reader)
                )
            )


def _coordinator(conn: psycopg.Connection, clusters: list[EmbeddedCluster], reader: str,
                 password: str) -> None:  # fmt: skip
    conn.execute("CREATE EXTENSION postgres_fdw")
    for index, cluster in enumerate(clusters):
        server = sql.Identifier(f"shard{index}")
        conn.execute(
            sql.SQL(
                "CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw "
                "OPTIONS (host {}, port {}, dbname 'postgres', async_capable 'true')"
            ).format(server, sql.Literal(str(cluster.root)), sql.Literal(str(cluster.port)))
        )
        for role in ("diffix_engine", "CURRENT_USER"):  # CURRENT_USER only to load the rows
            conn.execute(
                sql.SQL(
                    "CREATE USER MAPPING FOR {} SERVER {} OPTIONS (user {}, password {})"
                ).format(sql.SQL(role), server, sql.Literal(reader), sql.Literal(password))
            )
    conn.execute("CREATE SCHEMA sharded")
    for name, (columns, key) in SHARDED.items():
        conn.execute(f"CREATE TABLE sharded.{name} ({columns}) PARTITION BY HASH ({key})")
        for index in range(len(clusters)):
            conn.execute(
                f"CREATE FOREIGN TABLE sharded.{name}_p{index} PARTITION OF sharded.{name} "
                f"FOR VALUES WITH (MODULUS {len(clusters)}, REMAINDER {index}) "
                f"SERVER shard{index} OPTIONS (schema_name 'public', table_name '{name}')"
            )
        conn.execute(f"INSERT INTO sharded.{name} SELECT * FROM public.{name}")
        aids = dict((n.removeprefix("public."), a) for n, a in schema.PERSONAL)[name]
        conn.execute("CALL diffix.mark_personal(%s, VARIADIC %s)", (f"sharded.{name}", list(aids)))
    for index in range(len(clusters)):
        conn.execute(f"DROP USER MAPPING FOR CURRENT_USER SERVER shard{index}")
    for role in (*ROLES.values(), "diffix_engine"):
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA sharded TO {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def sharded_suite(
    server_dsn: str, template_db: str
) -> Iterator[tuple[Suite, list[EmbeddedCluster]]]:
    name = f"shards_{uuid.uuid4().hex[:10]}"
    reader, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    clusters = [EmbeddedCluster() for _ in range(SHARDS)]
    instance = Suite(server_dsn, name)
    try:
        for cluster in clusters:
            cluster.start()
            _shard(cluster, reader, password)
        with instance.connect() as conn:
            for statement in schema.setup_statements():
                conn.execute(mapped(statement))
            _coordinator(conn, clusters, reader, password)
        yield instance, clusters
    finally:
        instance.close()
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            for role in ROLES.values():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        for cluster in clusters:
            cluster.stop()


def _answer(conn: psycopg.Connection, case: Case, search_path: str) -> Any:
    conn.execute(sql.SQL("SET search_path = {}").format(sql.SQL(search_path)))
    statement = case.sql_inlined if case.prepare else case.sql
    try:
        return conn.execute("SELECT diffix.query_json(%s)", (statement,)).fetchone()[0]
    finally:
        conn.execute("RESET search_path")


def _canonical(case: Case, document: dict[str, Any]) -> dict[str, Any]:
    """The answer with its rows sorted when their order is not part of the case (the suppress
    bin stays first)."""
    if case.ordered:
        return document
    rows, first = document["rows"], case.suppress_bin_rows
    return document | {"rows": rows[:first] + sorted(rows[first:], key=repr)}


def test_rows_are_on_the_shards(sharded_suite: tuple[Suite, list[EmbeddedCluster]]) -> None:
    suite, clusters = sharded_suite
    with suite.connect() as conn:
        for name in SHARDED:
            total = conn.execute(f"SELECT count(*) FROM public.{name}").fetchone()[0]
            per_shard = []
            for cluster in clusters:
                with psycopg.connect(cluster.dsn) as shard:
                    per_shard.append(shard.execute(f"SELECT count(*) FROM {name}").fetchone()[0])
            assert all(n > 0 for n in per_shard) and sum(per_shard) == total


def test_there_are_cases_to_run() -> None:
    assert len(CASES_OVER_SHARDS) >= 20


@pytest.mark.parametrize("case", CASES_OVER_SHARDS)
def test_case_over_shards(sharded_suite: tuple[Suite, list[EmbeddedCluster]], case: Case) -> None:
    conn = sharded_suite[0].session(case)
    if case.rows is not None:
        case = dataclasses.replace(case, rows=mapped(case.rows))
    local = _answer(conn, case, "public")
    sharded = _answer(conn, case, "sharded, public")
    assert _canonical(case, sharded) == _canonical(case, local)
    assert _answer(conn, case, "sharded, public") == sharded
    problems = compare.mismatches(case, sharded)
    assert not problems, "\n".join(problems)
