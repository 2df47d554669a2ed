"""Properties of anonymized answers over random small tables and random valid queries.

Examples are derandomized, so a run is reproducible and CI cannot flake: the same examples are
drawn every time.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

CITIES = ["Berlin", "Rome", "Oslo", "Lisbon"]
GROUPINGS = [
    ("city", "city"),
    ("age", "age"),
    ("diffix.floor_by(age, 10)", "diffix.floor_by(age, 10)"),
    ("substring(city, 1, 1)", "substring(city, 1, 1)"),
]
AGGREGATES = [
    "count(*)",
    "count(amount)",
    "count(DISTINCT city)",
    "sum(amount)",
    "avg(amount)",
    "diffix.count_noise(*)",
]
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 40),  # person id (AID); repeated ids are several rows of one person
        st.sampled_from(CITIES),
        st.integers(18, 80),
        st.one_of(st.none(), st.integers(0, 500)),
    ),
    min_size=0,
    max_size=120,
)
query_strategy = st.tuples(
    st.lists(st.sampled_from(GROUPINGS), unique=True, max_size=2),
    st.lists(st.sampled_from(AGGREGATES), unique=True, min_size=1, max_size=3),
)


@pytest.fixture
def lab(db):
    analyst = db.create_role("anonymized_trusted")
    return db, db.as_role(analyst)


def _load(db, rows) -> str:
    table = f"people_{uuid.uuid4().hex[:8]}"
    db.admin.execute(
        sql.SQL("CREATE TABLE {} (id int, city text, age int, amount int)").format(
            sql.Identifier(table)
        )
    )
    with db.admin.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(sql.Identifier(table)), rows
        )
    db.admin.execute("CALL diffix.mark_personal(%s, 'id')", (table,))
    return table


def _query(table: str, groups, aggregates) -> str:
    columns = [expression for expression, _ in groups] + list(aggregates)
    text = f"SELECT {', '.join(columns)} FROM {table}"
    if groups:
        text += " GROUP BY " + ", ".join(str(i + 1) for i in range(len(groups)))
    return text


def _answer(conn, query: str) -> dict:
    return conn.execute("SELECT diffix.query_json(%s)", (query,)).fetchone()[0]


@PROPERTY_SETTINGS
@given(rows=rows_strategy, query=query_strategy)
def test_accepted_queries_answer_deterministically_and_never_fail(lab, rows, query):
    db, analyst = lab
    table = _load(db, rows)
    text = _query(table, *query)
    first = _answer(analyst, text)
    assert _answer(analyst, text) == first
    assert len(first["columns"]) == len(query[0]) + len(query[1])


@PROPERTY_SETTINGS
@given(
    rows=rows_strategy,
    groups=st.lists(st.sampled_from(GROUPINGS), unique=True, min_size=1, max_size=2),
)
def test_no_bin_has_fewer_distinct_people_than_the_minimum_threshold(lab, rows, groups):
    db, analyst = lab
    table = _load(db, rows)
    text = _query(table, groups, ["count(*)"])
    answer = _answer(analyst, text)
    minimum = 3
    for row in answer["rows"]:
        labels = row[: len(groups)]
        if all(label in (None, "*") for label in labels):
            continue  # the suppress bin merges suppressed bins; it has its own threshold
        conditions = sql.SQL(" AND ").join(
            sql.SQL("({})::text IS NOT DISTINCT FROM {}").format(
                sql.SQL(expression), sql.Literal(None if label is None else str(label))
            )
            for (expression, _), label in zip(groups, labels, strict=True)
        )
        people = db.execute(
            sql.SQL("SELECT count(DISTINCT id) FROM {} WHERE {}").format(
                sql.Identifier(table), conditions
            )
        )[0][0]
        assert people >= minimum, (text, row)


def test_answers_change_with_the_salt(db):
    analyst = db.as_role(db.create_role("anonymized_untrusted"))
    rows = [(i, CITIES[i % 4], 20 + i % 50, i % 300) for i in range(1, 401)]
    table = _load(db, rows)
    text = f"SELECT city, count(*), sum(amount) FROM {table} GROUP BY city"
    db.admin.execute("CALL diffix.configure('salt', 'first salt')")
    first = _answer(analyst, text)
    db.admin.execute("CALL diffix.configure('salt', 'second salt')")
    second = _answer(analyst, text)
    assert sorted(map(str, first["rows"])) != sorted(map(str, second["rows"]))
    db.admin.execute("CALL diffix.configure('salt', 'first salt')")
    assert _answer(analyst, text) == first


def test_rejected_queries_write_nothing(db):
    analyst = db.as_role(db.create_role("anonymized_untrusted"))
    table = _load(db, [(i, "Rome", 30, 1) for i in range(1, 20)])
    for text in [f"SELECT id FROM {table}", f"SELECT * FROM {table} WHERE age > 3"]:
        with pytest.raises(psycopg.Error):
            _answer(analyst, text)
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))) == [(19,)]
