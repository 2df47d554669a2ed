# ruff: noqa: E501  (the exact texts of messages read better unwrapped)
"""Validator messages as a new analyst meets them, through diffix.query_json on a real table.

The health panel of the issue that reported them: CASE in GROUP BY, NOT in WHERE and a comma join
on the AID are refused with message, detail and hint exact per level (trusted, untrusted, DP), and
the rewrite each hint suggests is answered at that level.
"""

from __future__ import annotations

import re

import psycopg
import pytest

PANEL = """
CREATE TABLE panel (person_id integer, year integer, age integer, female integer, hhninc float8);
INSERT INTO panel SELECT p, y, 20 + p % 60, p % 2, 1000 + (p * 37) % 4000
  FROM generate_series(1, 400) p, generate_series(2000, 2001) y;
CALL diffix.mark_personal('panel', 'person_id');
CALL diffix.set_dp_bounds('panel', 'age', 0, 100);
"""
LEVELS = ("trusted", "untrusted", "dp")
OUTER_SUM = "The outer sum adds up the noise of its buckets and leaves out the rows of buckets too small to be released, so it is less accurate than a count over one bucket."


@pytest.fixture(scope="module")
def analysts(module_db) -> dict[str, psycopg.Connection]:
    module_db.admin.execute(PANEL)
    connections = {}
    for level in LEVELS:
        role = module_db.create_role(f"anonymized_{level}")
        if level == "dp":
            module_db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (role, 1e6, 0.5))
        conn = module_db.as_role(role)
        conn.autocommit = True
        connections[level] = conn
    return connections


def _call(conn: psycopg.Connection, level: str, sql: str) -> object:
    if level == "dp":
        return conn.execute("SELECT diffix.dp_query_json(%s, 1.0, 1e-6)", (sql,)).fetchone()
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()


def refusal(conn: psycopg.Connection, level: str, sql: str) -> tuple[str | None, ...]:
    with pytest.raises(psycopg.Error) as caught:
        _call(conn, level, sql)
    diag = caught.value.diag
    return diag.sqlstate, diag.message_primary, diag.message_detail, diag.message_hint


CASE_SQL = "SELECT CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END AS age_group, count(*) FROM panel GROUP BY 1"


@pytest.mark.parametrize(
    ("level", "size", "alias"),
    [("trusted", 40, " AS age_group"), ("untrusted", 20, " AS age_group"), ("dp", 40, "")],
)
def test_case_in_group_by(analysts, level: str, size: int, alias: str) -> None:
    hint = (
        f"Group by diffix.floor_by(age, {size}), whose buckets do not straddle the bounds of the CASE, and apply the CASE "
        f"to the anonymized buckets in an outer query: SELECT CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END{alias}, "
        f"sum(n) FROM (SELECT diffix.floor_by(age, {size}) AS age, count(*) AS n FROM panel GROUP BY 1) t GROUP BY 1. "
        + OUTER_SUM
    )
    assert refusal(analysts[level], level, CASE_SQL) == (
        "0A000",
        "CASE cannot be used as a grouping expression of a query that reads personal tables",
        "offending expression: CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END",
        hint,
    )
    rewrite = re.search(r"in an outer query: (SELECT .*GROUP BY 1)\. ", hint)
    assert rewrite is not None
    (answer,) = _call(analysts[level], level, rewrite.group(1))
    assert sorted(row[0] for row in answer["rows"]) == ["40+", "under 40"]


NOT_SQL = "SELECT count(*) FROM panel WHERE NOT female = 1"
NOT_HINT = (
    "Negations (NOT, <>) are not allowed in this WHERE clause. Write female = 0 if female holds only the values 0 and 1, "
    "or count per value and drop female = 1 in an outer query, where any condition works: "
    "SELECT female, n FROM (SELECT female, count(*) AS n FROM panel GROUP BY female) t WHERE female <> 1."
)


@pytest.mark.parametrize("level", LEVELS)
def test_not_in_where(analysts, level: str) -> None:
    assert refusal(analysts[level], level, NOT_SQL) == (
        "0A000",
        "NOT cannot be used in the WHERE clause of a query that reads personal tables: only equality conditions joined by AND are allowed",
        "offending expression: NOT female = 1",
        NOT_HINT,
    )
    _call(analysts[level], level, "SELECT count(*) FROM panel WHERE female = 0")
    _call(analysts[level], level, NOT_HINT.split("works: ")[1].rstrip("."))


COMMA_JOIN = "SELECT count(*) FROM panel p1, panel p2 WHERE p1.person_id = p2.person_id"


@pytest.mark.parametrize("level", ["trusted", "untrusted"])
def test_comma_join_on_the_aid(analysts, level: str) -> None:
    assert refusal(analysts[level], level, COMMA_JOIN) == (
        "0A000",
        "a join condition in WHERE (an implicit join of a comma-separated FROM list) is not allowed in queries that read personal tables",
        "offending expression: p1.person_id = p2.person_id",
        "Join with JOIN ... ON instead: FROM panel p1 JOIN panel p2 ON p1.person_id = p2.person_id.",
    )
    _call(
        analysts[level],
        level,
        "SELECT count(*) FROM panel p1 JOIN panel p2 ON p1.person_id = p2.person_id",
    )


def test_comma_join_at_the_dp_level_is_refused_as_at_the_others(analysts) -> None:
    """DP joins on the privacy unit (docs/dp.md) with JOIN ... ON only: a comma join gets the
    validator's refusal and hint, as at the other levels."""
    assert refusal(analysts["dp"], "dp", COMMA_JOIN) == (
        "0A000",
        "a join condition in WHERE (an implicit join of a comma-separated FROM list) is not allowed in queries that read personal tables",
        "offending expression: p1.person_id = p2.person_id",
        "Join with JOIN ... ON instead: FROM panel p1 JOIN panel p2 ON p1.person_id = p2.person_id.",
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT abs(age), count(*) FROM panel GROUP BY 1",
        "SELECT width_bucket(age + 1, 0, 100, 10), count(*) FROM panel GROUP BY 1",
        "SELECT CASE WHEN age < 40 AND female = 1 THEN 1 END, count(*) FROM panel GROUP BY 1",
        "SELECT (hhninc * 2)::integer, count(*) FROM panel GROUP BY 1",
    ],
)
def test_untrusted_hints_offer_only_untrusted_generalizations(analysts, sql: str) -> None:
    hint = refusal(analysts["untrusted"], "untrusted", sql)[3]
    assert hint is not None
    for refused in ("width_bucket", "round_by", "ceil_by", "date_trunc", "CAST(", "AS integer"):
        assert refused not in hint, hint
