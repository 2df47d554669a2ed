"""What a new analyst's tools send first, through diffix.query_json and through the proxy.

A BI tool's first look at a personal table reads every column (DBeaver's "view data", pandas'
read_sql_table); it gets the anonymized answer over the non-AID columns with the AID columns as
NULL and a NOTICE saying so. Browsing the catalog works as docs/proxy.md says.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pldiffix_proxy.listener import running_in_thread

PANEL = """
CREATE TABLE panel (person_id integer, city text, age_band integer, score numeric(6, 2));
INSERT INTO panel
  SELECT i, (ARRAY['Berlin', 'Rome', 'Oslo'])[1 + i % 3], 20 + 10 * (i % 4), 1.5
  FROM generate_series(1, 1200) i;
CALL diffix.mark_personal('panel', 'person_id');
"""
PSQL = "/usr/lib/postgresql/15/bin/psql"


@dataclass
class World:
    db: Any
    port: int
    roles: dict[str, str]

    def dsn(self, level: str, *, proxy: bool = True) -> str:
        dsn = self.db.dsn(self.roles[level])
        return make_conninfo(dsn, host="127.0.0.1", port=self.port) if proxy else dsn


@pytest.fixture(scope="module")
def world(module_db) -> Iterator[World]:
    module_db.admin.execute(PANEL)
    levels = ("anonymized_trusted", "anonymized_untrusted", "anonymized_dp")
    roles = {level: module_db.create_role(level, prefix="bi") for level in levels}
    with running_in_thread(module_db.dsn(), startup_timeout=2.0, max_message=1 << 20) as front:
        yield World(module_db, front.port, roles)


def _connect(dsn: str, notices: list[str]) -> psycopg.Connection:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    return conn


def _assert_anonymized_rows(rows: list[tuple], aid_position: int = 0) -> None:
    assert 1000 <= len(rows) <= 1400  # every person's row, counted with noise per bucket
    assert all(row[aid_position] is None for row in rows)
    assert {row[1] for row in rows} <= {"Berlin", "Rome", "Oslo", "*"}


VIEW_DATA = "SELECT * FROM public.panel LIMIT 200"


@pytest.mark.parametrize("level", ["anonymized_trusted", "anonymized_untrusted"])
def test_query_json_answers_a_read_of_every_column(world, level):
    notices: list[str] = []
    with _connect(world.dsn(level, proxy=False), notices) as conn:
        document = conn.execute("SELECT diffix.query_json('SELECT * FROM panel')").fetchone()[0]
    assert document["columns"] == ["person_id", "city", "age_band", "score"]
    rows = [tuple(r) for r in document["rows"]]
    _assert_anonymized_rows(rows)
    assert len(notices) == 1
    assert (
        "person_id" in notices[0]
        and "SELECT city, age_band, score FROM public.panel" in (notices[0])
    )


@pytest.mark.parametrize("level", ["anonymized_trusted", "anonymized_untrusted"])
@pytest.mark.parametrize("prepare", [False, True])
def test_view_data_through_the_proxy(world, level, prepare):
    notices: list[str] = []
    with _connect(world.dsn(level), notices) as conn:
        cur = conn.execute(VIEW_DATA, prepare=prepare)
        rows = cur.fetchall()
        described = [(c.name, c.type_code) for c in cur.description]
    assert described == [("person_id", 23), ("city", 25), ("age_band", 23), ("score", 1700)]
    assert len(rows) == 200 and all(row[0] is None for row in rows)
    assert any("AID column(s) person_id come back as NULL" in n for n in notices)


def test_the_dp_level_refuses_with_a_pointer_to_aggregates(world):
    with (
        psycopg.connect(world.dsn("anonymized_dp"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
    ):
        conn.execute(VIEW_DATA)
    assert "not available at the anonymized_dp level" in refused.value.diag.message_primary
    assert "GROUP BY" in (refused.value.diag.message_hint or "")


def test_an_analysts_own_query_with_the_aid_column_is_still_refused(world):
    with (
        psycopg.connect(world.dsn("anonymized_trusted"), autocommit=True) as conn,
        pytest.raises(psycopg.Error, match="AID column person_id"),
    ):
        conn.execute("SELECT person_id, city FROM panel")


@pytest.mark.parametrize("level", ["anonymized_trusted", "anonymized_untrusted"])
def test_sqlalchemy_inspect_and_pandas_read_sql_table(world, level):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pandas = pytest.importorskip("pandas")
    sent: list[str] = []
    engine = sqlalchemy.create_engine(
        "postgresql+psycopg://", creator=lambda: psycopg.connect(world.dsn(level))
    )
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    try:
        inspector = sqlalchemy.inspect(engine)
        assert "panel" in inspector.get_table_names()
        columns = inspector.get_columns("panel")
        assert [c["name"] for c in columns] == ["person_id", "city", "age_band", "score"]
        frame = pandas.read_sql_table("panel", engine)
        qualified = pandas.read_sql_table("panel", engine, schema="public")
    finally:
        engine.dispose()
    assert list(frame.columns) == ["person_id", "city", "age_band", "score"]
    rows = [tuple(r) for r in frame.astype(object).itertuples(index=False, name=None)]
    assert 1000 <= len(rows) <= 1400 and frame["person_id"].isna().all()
    assert set(frame["city"]) <= {"Berlin", "Rome", "Oslo", "*"}
    # what read_sql_table sends for the data: every column, qualified by the table's name
    assert any(s.startswith("SELECT panel.person_id, panel.city") for s in sent), sent
    assert any(s.startswith("SELECT public.panel.person_id") for s in sent), sent
    assert list(qualified.columns) == list(frame.columns)
    assert 1000 <= len(qualified) <= 1400 and qualified["person_id"].isna().all()


def _psql(world: World, level: str, command: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which(PSQL):
        pytest.skip(f"{PSQL} is not installed")
    return subprocess.run(
        [PSQL, "-X", "-v", "ON_ERROR_STOP=1", "-d", world.dsn(level), "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_psql_lists_and_describes_personal_tables(world):
    listed = _psql(world, "anonymized_untrusted", r"\dt")
    assert listed.returncode == 0, listed.stderr
    assert "panel" in listed.stdout
    described = _psql(world, "anonymized_untrusted", r"\d panel")
    assert described.returncode == 0, described.stderr
    for column in ("person_id", "city", "age_band", "score"):
        assert column in described.stdout
    shown = _psql(world, "anonymized_untrusted", "SELECT * FROM panel LIMIT 3")
    assert shown.returncode == 0, shown.stderr
    assert "(3 rows)" in shown.stdout
    assert "come back as NULL" in shown.stderr


BROWSING = {
    "pg_class": "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
    " ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
    "pg_attribute": "SELECT a.attname FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid = 'public.panel'::regclass AND a.attnum > 0 ORDER BY a.attnum",
    "pg_tables": "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
    "diffix.show_labels": "SELECT objname FROM diffix.show_labels() WHERE objtype = 'table'",
}


@pytest.mark.parametrize("query", sorted(BROWSING))
def test_catalog_browsing_that_lists_personal_tables(world, query):
    with psycopg.connect(world.dsn("anonymized_untrusted"), autocommit=True) as conn:
        names = {row[0] for row in conn.execute(BROWSING[query]).fetchall()}
    assert {"panel", "public.panel", "person_id"} & names, names


def test_information_schema_hides_tables_the_role_cannot_select(world):
    """information_schema lists only what the role holds a privilege on: documented."""
    with psycopg.connect(world.dsn("anonymized_untrusted"), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'panel'"
        ).fetchall()
    assert ("panel",) not in tables and columns == []


JDBC_JAR = "/usr/share/java/postgresql.jar"
JDBC_CLIENT = Path(__file__).parents[1] / "clients" / "jdbc" / "ProxyClient.java"


def test_pgjdbc_view_data(world):
    """DBeaver's own statement through pgjdbc, six times: pgjdbc moves to named server-side
    statements and binary results after five."""
    java = shutil.which("java")
    if java is None or not Path(JDBC_JAR).exists():
        pytest.skip("pgjdbc: no Java runtime or no /usr/share/java/postgresql.jar")
    url = f"jdbc:postgresql://127.0.0.1:{world.port}/{world.db.name}"
    role = world.roles["anonymized_untrusted"]
    command = [java, "-cp", JDBC_JAR, str(JDBC_CLIENT), url, role, "6", VIEW_DATA]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    (answer,) = json.loads(result.stdout)
    assert answer["columns"] == ["person_id", "city", "age_band", "score"], answer
    assert len(answer["rows"]) == 200 and all(row[0] is None for row in answer["rows"])


def test_hostile_names_and_settings_change_nothing(world):
    """Column names with quotes and backslashes, a session with standard_conforming_strings off
    and a search_path it controls: the rewrite quotes every name and the answer is the same."""
    world.db.admin.execute(
        """
        CREATE TABLE odd ("per'son\\" integer, "c'i\\ty" text, "x"")--" integer);
        INSERT INTO odd SELECT i, 'Rome', i % 2 FROM generate_series(1, 400) i;
        CALL diffix.mark_personal('odd', 'per''son\\');
        """
    )
    role = world.roles["anonymized_untrusted"]
    world.db.admin.execute(f'CREATE SCHEMA IF NOT EXISTS "{role}" AUTHORIZATION "{role}"')
    with psycopg.connect(world.dsn("anonymized_untrusted", proxy=False), autocommit=True) as conn:
        plain = conn.execute("SELECT diffix.query_json('SELECT * FROM odd')").fetchone()[0]
        conn.execute("SET standard_conforming_strings = off")
        conn.execute(f'SET search_path = "{role}", public')
        hostile = conn.execute("SELECT diffix.query_json(%s)", ("SELECT * FROM odd",)).fetchone()
    assert plain["columns"] == ["per'son\\", "c'i\\ty", 'x")--']
    assert hostile[0] == plain
    assert 300 <= len(plain["rows"]) <= 500
    assert {tuple(row) for row in plain["rows"]} <= {(None, "Rome", 0), (None, "Rome", 1)}


def test_a_hostile_limit_is_not_rewritten(world):
    with (
        psycopg.connect(world.dsn("anonymized_untrusted"), autocommit=True) as conn,
        pytest.raises(psycopg.Error, match="subqueries are not allowed"),
    ):
        conn.execute("SELECT * FROM panel LIMIT (SELECT max(person_id) FROM panel)")
