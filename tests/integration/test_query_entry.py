"""diffix.query_json / diffix.query: the document format, and what is not a query."""

from __future__ import annotations

import psycopg
import pytest


def test_query_json_returns_columns_and_typed_values(bank):
    direct = bank.create_role("direct")
    bank.admin.execute(f'GRANT SELECT ON customers TO "{direct}"')
    doc = (
        bank.as_role(direct)
        .execute(
            "SELECT diffix.query_json($$SELECT id, city, joined, NULL::int AS nothing, "
            "1.50::numeric AS price, "
            "ARRAY[[1,2],[3,4]] AS grid, TIMESTAMPTZ '2020-01-02 03:04:05+01' AS at, true AS yes "
            "FROM customers WHERE id = 1$$)"
        )
        .fetchone()[0]
    )
    assert doc == {
        "columns": ["id", "city", "joined", "nothing", "price", "grid", "at", "yes"],
        "rows": [
            [
                1,
                "Rome",
                "2020-01-02",
                None,
                1.50,
                [[1, 2], [3, 4]],
                "2020-01-02T02:04:05+00:00",
                True,
            ]
        ],
    }


def test_query_json_keeps_repeated_column_names(bank):
    doc = bank.admin.execute(
        "SELECT diffix.query_json('SELECT city, count(*), count(*) FROM customers "
        "GROUP BY city ORDER BY city')"
    ).fetchone()[0]
    assert doc == {
        "columns": ["city", "count", "count"],
        "rows": [["Berlin", 20, 20], ["Oslo", 20, 20], ["Rome", 20, 20]],
    }


@pytest.mark.parametrize("level", ["direct", "anonymized_trusted"])
def test_an_output_column_may_be_named_like_the_engines_own_alias(bank, level):
    role = bank.create_role(level)
    if level == "direct":
        bank.admin.execute(f'GRANT SELECT ON customers TO "{role}"')
    doc = (
        bank.as_role(role)
        .execute(
            "SELECT diffix.query_json('SELECT city AS q, count(*) AS row FROM customers "
            "GROUP BY city ORDER BY city')"
        )
        .fetchone()[0]
    )
    assert doc["columns"] == ["q", "row"]
    assert [row[0] for row in doc["rows"]] == ["Berlin", "Oslo", "Rome"]


def test_query_json_keeps_exact_decimals(bank):
    number = bank.admin.execute(
        "SELECT diffix.query_json('SELECT 12345678901234567890.123456789::numeric AS n')"
        " -> 'rows' -> 0 ->> 0"
    ).fetchone()[0]
    assert number == "12345678901234567890.123456789"


def test_query_returns_rows_typed_by_the_column_definition_list(bank):
    rows = bank.admin.execute(
        "SELECT * FROM diffix.query('SELECT name, country FROM cities ORDER BY 1') "
        "AS t(name text, country text)"
    ).fetchall()
    assert rows == [("Berlin", "DE"), ("Oslo", "NO"), ("Rome", "IT")]


def test_query_returns_the_engine_types_of_anonymized_rows(bank):
    analyst = bank.as_role(bank.create_role("anonymized_untrusted"))
    rows = analyst.execute(
        "SELECT * FROM diffix.query('SELECT city, count(*), avg(age) FROM customers "
        "GROUP BY city ORDER BY city') AS t(city text, n bigint, mean numeric)"
    ).fetchall()
    assert [row[0] for row in rows] == ["Berlin", "Oslo", "Rome"]
    assert all(isinstance(row[1], int) and row[1] > 0 for row in rows)


def test_query_errors_read_like_postgresql_errors(bank):
    analyst = bank.as_role(bank.create_role("anonymized_untrusted"))
    with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
        analyst.execute(
            "SELECT * FROM diffix.query('SELECT age, count(*) FROM customers "
            "WHERE age > 30 GROUP BY age') AS t(age int, n bigint)"
        )
    diag = error.value.diag
    assert not diag.message_primary.startswith(("plpy", "spiexceptions", ":"))
    assert diag.message_hint


def test_query_with_the_wrong_column_types_says_which_to_declare(bank):
    with pytest.raises(psycopg.errors.DatatypeMismatch) as error:
        bank.admin.execute(
            "SELECT * FROM diffix.query('SELECT name, count(*) FROM cities GROUP BY name') "
            "AS t(name text, n integer)"
        )
    diag = error.value.diag
    assert diag.message_detail == (
        "Returned type bigint does not match expected type integer in column 2."
    )
    assert diag.message_hint == "declare the columns with the types the query returns: text, bigint"


def test_rows_kept_for_one_role_are_not_handed_to_another(bank):
    direct = bank.create_role("direct")
    other = bank.create_role()  # no grant on customers
    bank.admin.execute(f'GRANT SELECT ON customers TO "{direct}"; GRANT "{other}" TO "{direct}"')
    conn = bank.as_role(direct)
    columns = conn.execute("SELECT diffix._query_prepare('SELECT id, age FROM customers')")
    assert columns.fetchone() == ("c1 integer, c2 integer",)
    conn.execute(f'SET ROLE "{other}"')
    leaked = conn.execute("SELECT * FROM diffix._query_stashed() AS t(id int, age int)")
    assert leaked.fetchall() == []
    conn.execute("RESET ROLE")
    again = conn.execute("SELECT * FROM diffix._query_stashed() AS t(id int, age int)")
    assert again.fetchall() == []


def test_direct_users_run_with_their_own_privileges(bank):
    direct = bank.create_role("direct")
    bank.admin.execute("REVOKE SELECT ON cities FROM PUBLIC")
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="permission denied for table cities"
    ):
        bank.as_role(direct).execute("SELECT diffix.query_json('SELECT * FROM cities')")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("DELETE FROM cities", "only SELECT statements are allowed, not DELETE"),
        ("INSERT INTO cities VALUES ('x', 'y')", "only SELECT statements are allowed, not INSERT"),
        ("UPDATE cities SET name = 'x'", "only SELECT statements are allowed, not UPDATE"),
        ("DROP TABLE cities", "only SELECT statements are allowed"),
        ("CREATE TABLE x (a int)", "only SELECT statements are allowed"),
        ("SELECT 1; DELETE FROM cities", "expected exactly one statement, got 2"),
        ("SELECT * INTO copy FROM cities", "SELECT INTO creates a table"),
        ("SELECT * FROM cities FOR UPDATE", "locking clauses"),
        (
            "WITH gone AS (DELETE FROM cities RETURNING *) SELECT * FROM gone",
            "data-modifying statements are not allowed",
        ),
        ("", "the query is empty"),
        ("SELEC name FROM cities", "could not parse the query"),
    ],
)
def test_non_select_statements_are_rejected_and_write_nothing(bank, query, message):
    direct = bank.create_role("direct")
    bank.admin.execute(f'GRANT ALL ON cities TO "{direct}"')
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=message):
        bank.as_role(direct).execute("SELECT diffix.query_json(%s)", (query,))
    assert bank.execute("SELECT count(*) FROM cities") == [(3,)]
    assert bank.execute("SELECT to_regclass('copy')") == [(None,)]


def test_null_query_is_rejected(bank):
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="the query is empty"):
        bank.admin.execute("SELECT diffix.query_json(NULL)")


def test_errors_carry_a_hint_and_no_python_noise(bank):
    with pytest.raises(psycopg.errors.FeatureNotSupported) as error:
        bank.admin.execute("SELECT diffix.query_json('TRUNCATE cities')")
    diag = error.value.diag
    assert not diag.message_primary.startswith("plpy")
    assert diag.message_hint == "diffix.query_json runs read-only SELECT queries"
