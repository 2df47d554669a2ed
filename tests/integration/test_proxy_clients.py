"""Real clients through the front: each runs the analyst guide's queries and must get the rows
diffix.query_json gives. A client is skipped only when its runtime is not installed here (the
reason is printed by pytest's -ra summary); `make deps` installs them all."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
from proxy_fixtures import ANALYST_QUERIES, ProxyWorld, assert_text_rows, normalized_rows

pytestmark = pytest.mark.db

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
PARAMETER_QUERY = "SELECT count(*) AS n FROM customers WHERE city = 'Rome'"
JDBC_JAR = Path("/usr/share/java/postgresql.jar")


@pytest.fixture
def world(proxy_world: ProxyWorld) -> ProxyWorld:
    return proxy_world


def test_asyncpg(world):
    asyncpg = pytest.importorskip("asyncpg")

    async def run() -> tuple[list[list], list]:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=world.front.port, user=world.analyst, database=world.db.name
        )
        try:
            answers = [[list(r) for r in await conn.fetch(sql)] for sql in ANALYST_QUERIES]
            bound = await conn.fetch("SELECT count(*) AS n FROM customers WHERE city = $1", "Rome")
            return answers, [list(r) for r in bound]
        finally:
            await conn.close()

    answers, bound = asyncio.run(run())
    for sql, rows in zip(ANALYST_QUERIES, answers, strict=True):
        assert normalized_rows(rows) == world.expected(sql), sql
    assert normalized_rows(bound) == world.expected(PARAMETER_QUERY)


def test_pg8000(world):
    native = pytest.importorskip("pg8000.native")
    conn = native.Connection(
        world.analyst, host="127.0.0.1", port=world.front.port, database=world.db.name
    )
    try:
        for sql in ANALYST_QUERIES:
            assert normalized_rows(conn.run(sql)) == world.expected(sql), sql
        bound = conn.run("SELECT count(*) AS n FROM customers WHERE city = :city", city="Rome")
        assert normalized_rows(bound) == world.expected(PARAMETER_QUERY)
    finally:
        conn.close()


def test_sqlalchemy_and_pandas_read_sql(world):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pandas = pytest.importorskip("pandas")
    url = sqlalchemy.engine.URL.create(
        "postgresql+psycopg",
        username=world.analyst,
        host="127.0.0.1",
        port=world.front.port,
        database=world.db.name,
    )
    engine = sqlalchemy.create_engine(url)
    try:
        for sql in ANALYST_QUERIES:
            frame = pandas.read_sql(sqlalchemy.text(sql), engine)
            expected = world.expected(sql)
            assert normalized_rows(_frame_rows(frame)) == expected, sql
        frame = pandas.read_sql(
            sqlalchemy.text("SELECT count(*) AS n FROM customers WHERE city = :city"),
            engine,
            params={"city": "Rome"},
        )
        assert normalized_rows(_frame_rows(frame)) == world.expected(PARAMETER_QUERY)
        assert list(frame.columns) == ["n"]
    finally:
        engine.dispose()


def _frame_rows(frame) -> list[list]:
    """A DataFrame's rows as Python values (repeated column names kept)."""
    return [list(row) for row in frame.astype(object).itertuples(index=False, name=None)]


def test_psycopg_pipeline_mode(world):
    """Several statements in one pipeline: the front answers them in order."""
    with psycopg.connect(world.proxy_dsn(world.analyst), autocommit=True) as conn:
        with conn.pipeline():
            cursors = [conn.execute(sql, prepare=True) for sql in ANALYST_QUERIES[:4]]
        for sql, cur in zip(ANALYST_QUERIES[:4], cursors, strict=True):
            assert normalized_rows(cur.fetchall()) == world.expected(sql), sql


def test_node_postgres(world):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node-postgres: Node.js is not installed")
    if not (CLIENTS / "node" / "node_modules" / "pg").is_dir():
        pytest.skip("node-postgres: `npm install` in tests/clients/node did not run")
    spec = {
        "connection": {
            "host": "127.0.0.1",
            "port": world.front.port,
            "user": world.analyst,
            "database": world.db.name,
        },
        "queries": [{"sql": sql} for sql in ANALYST_QUERIES]
        + [{"sql": "SELECT count(*) AS n FROM customers WHERE city = $1", "values": ["Rome"]}],
    }
    _assert_program_answers(world, [node, str(CLIENTS / "node" / "query.js")], json.dumps(spec))


def test_jdbc(world):
    java = shutil.which("java")
    if java is None:
        pytest.skip("JDBC: no Java runtime is installed")
    if not JDBC_JAR.exists():
        pytest.skip(f"JDBC: {JDBC_JAR} (Debian's libpostgresql-jdbc-java) is not installed")
    url = f"jdbc:postgresql://127.0.0.1:{world.front.port}/{world.db.name}"
    statements = [*ANALYST_QUERIES, "?city=Rome SELECT count(*) AS n FROM customers WHERE city = ?"]
    program = CLIENTS / "jdbc" / "ProxyClient.java"
    # six runs each: pgjdbc moves to named statements and binary results after five
    command = [java, "-cp", str(JDBC_JAR), str(program), url, world.analyst, "6", *statements]
    _assert_program_answers(world, command, None)


def _assert_program_answers(world: ProxyWorld, command: list[str], stdin: str | None) -> None:
    """Runs a client program that prints one JSON answer per query (the analyst queries, then
    PARAMETER_QUERY with a bound parameter) and compares each with diffix.query_json."""
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    for sql, answer in zip([*ANALYST_QUERIES, PARAMETER_QUERY], answers, strict=True):
        assert "error" not in answer, (sql, answer)
        assert_text_rows(world.expected(sql), answer["rows"])
