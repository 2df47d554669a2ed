"""Attacks on the name resolver (core/reads.py) through the gate: statements that try to make a
personal table look like a common table expression, a function's result or a table of another
schema, so that its rows would come back without anonymization. Each is refused, or answered
anonymized; no person's secret ever comes back."""

from __future__ import annotations

import psycopg
import pytest

DATA = """
CREATE TABLE customers (id integer, city text, secret text);
INSERT INTO customers SELECT i, (ARRAY['Berlin', 'Rome'])[1 + i % 2], 'sec-' || i
  FROM generate_series(1, 60) i;
CALL diffix.mark_personal('customers', 'id');
CREATE SCHEMA other;
CREATE TABLE other.customers (id integer, city text, secret text);
INSERT INTO other.customers SELECT i, 'Oslo', 'other-' || i FROM generate_series(1, 60) i;
CALL diffix.mark_personal('other.customers', 'id');
CREATE TABLE cities (name text);
INSERT INTO cities VALUES ('Berlin'), ('Rome');
GRANT SELECT ON cities TO PUBLIC;
GRANT USAGE ON SCHEMA other TO PUBLIC;
CALL diffix.mark_public('cities');
"""

STATEMENTS = [
    "WITH customers AS (SELECT city, secret FROM customers) SELECT secret FROM customers",
    "WITH a AS (SELECT secret FROM customers), customers AS (SELECT 'x' AS secret) "
    "SELECT secret FROM a",
    "WITH customers AS (SELECT 1 AS secret) SELECT secret FROM other.customers",
    'WITH "Customers" AS (SELECT 1 AS secret) SELECT secret FROM customers',
    "WITH customers AS (SELECT 1 AS secret) SELECT c.secret FROM customers x, public.customers c",
    "SELECT c.secret FROM (VALUES (1)) v(x), LATERAL (SELECT secret FROM customers) c",
    "SELECT secret FROM customers UNION SELECT 'x'",
    "SELECT 'x' AS secret UNION ALL SELECT secret FROM customers",
    "WITH RECURSIVE r(n) AS (SELECT secret FROM customers UNION SELECT n FROM r WHERE false) "
    "SELECT n FROM r",
    "SELECT (SELECT min(secret) FROM customers) AS secret",
    "SELECT secret FROM cities, customers",
    "SELECT g, secret FROM generate_series(1, 2) g, customers",
    "SELECT secret FROM customers JOIN cities ON city = name",
    "SELECT secret FROM cities JOIN LATERAL (SELECT secret FROM customers) c ON true",
    "SELECT s FROM unnest(ARRAY(SELECT secret FROM customers)) s",
    "SELECT secret FROM customers AS cities",
    "SELECT secret FROM ONLY customers",
    "SELECT x.secret FROM (SELECT * FROM customers) AS x",
    'SELECT secret FROM "public"."customers"',
    "SELECT secret FROM customers WHERE secret IN (SELECT secret FROM customers)",
    "SELECT array_agg(secret) FROM customers",
    "SELECT string_agg(secret, ',') FROM customers",
    "SELECT json_agg(c) FROM customers c",
    "SELECT city, secret FROM customers GROUP BY city, secret",
    "SELECT secret FROM customers TABLESAMPLE SYSTEM (100)",
    "TABLE customers",
]

RAW = ("sec-", "other-")


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(DATA)
    return module_db


@pytest.fixture(scope="module")
def analyst(shop):
    return shop.create_role("anonymized_untrusted")


def _raw_values(answer: dict) -> int:
    """How many released values hold a person's secret."""
    return sum(
        str(value).count(prefix) for row in answer["rows"] for value in row for prefix in RAW
    )


@pytest.mark.parametrize("statement", STATEMENTS)
def test_no_raw_identifier_comes_back(shop, analyst, statement):
    conn = shop.as_role(analyst)
    for setting in ("", "SET search_path = other, public", "SET search_path = pg_temp, public"):
        if setting:
            conn.execute(setting)
        try:
            answer = conn.execute("SELECT diffix.query_json(%s)", (statement,)).fetchone()[0]
        except psycopg.Error:
            continue  # refused
        assert _raw_values(answer) == 0, (statement, setting, answer)
    rows = shop.execute(
        "SELECT count(*) FROM diffix.show_audit(%s) WHERE sql = %s", (analyst, statement)
    )
    assert rows[0][0] >= 3  # every call logged, answered or refused


@pytest.mark.parametrize(
    ("statement", "mechanism"),
    [
        # PostgreSQL folds only unquoted names: "Customers" does not hide customers
        ('WITH "Customers" AS (SELECT 1 AS secret) SELECT secret FROM customers', "diffix"),
        ("WITH Customers AS (SELECT 'x' AS secret) SELECT secret FROM customers", "public"),
        (
            'WITH "Customers" AS (SELECT 1 AS id) SELECT q.* FROM (SELECT city, count(*) '
            "FROM other.customers GROUP BY city) q, customers c",
            "diffix",
        ),
    ],
)
def test_cte_names_fold_as_postgresql_reads_them(shop, statement, mechanism):
    """The gate decides what a statement reads as PostgreSQL does: a personal table is never
    taken for a CTE of another spelling (and answered or logged as a public statement)."""
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    try:
        answer = conn.execute("SELECT diffix.query_json(%s)", (statement,)).fetchone()[0]
        assert _raw_values(answer) == 0
    except psycopg.errors.InsufficientPrivilege:
        pytest.fail("the statement reached the personal table with the analyst's privileges")
    except psycopg.Error:
        pass  # refused by the anonymizer's rules
    logged = shop.execute(
        "SELECT mechanism FROM diffix.show_audit(%s) WHERE sql = %s", (analyst, statement)
    )
    assert logged == [(mechanism,)]
