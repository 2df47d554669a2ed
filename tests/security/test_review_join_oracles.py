"""Error oracles through joins: a join condition comparing columns of different types converts
one side, and a conversion that fails on one person's value would tell, by an error, that such a
person exists. At the untrusted and DP levels a join must be refused before any row is read, or
answered whatever the values; never fail on some rows only."""

from __future__ import annotations

import psycopg
import pytest

DATA = """
CREATE TABLE customers (id integer PRIMARY KEY, big numeric, day date, ts timestamp);
INSERT INTO customers SELECT i, i % 3, DATE '2020-01-01' + i % 3,
  TIMESTAMP '2020-01-01' + i % 3 * INTERVAL '1 day' FROM generate_series(1, 300) i;
CREATE TABLE lookup (f float8, r real, i2 smallint, tz timestamptz, t timestamp, label text);
INSERT INTO lookup VALUES (0, 0, 0, '2020-01-01', '2020-01-01', 'a'),
  (1, 1, 1, '2020-01-02', '2020-01-02', 'b'), (2, 2, 2, '2020-01-03', '2020-01-03', 'c');
GRANT SELECT ON lookup TO PUBLIC;
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_public('lookup');
"""

# (the person's value, the join condition)
CASES = [
    ("big = 1e400", "c.big = l.f"),
    ("big = 1e400", "c.big = l.r"),
    ("big = 1e40", "c.big = l.r"),
    ("big = 70000", "c.big = l.i2"),
    ("day = '200000-01-01'", "c.day = l.tz"),
    ("day = '300000-01-01'", "c.day = l.t"),
    ("ts = '200000-01-01'", "c.ts = l.tz"),
]


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(DATA)
    return module_db


def _outcome(conn, call: str, sql: str) -> str:
    try:
        conn.execute(call, (sql,))
    except psycopg.Error as error:
        return f"refused: {error.diag.message_primary}"
    return "answered"


@pytest.mark.parametrize(("value", "condition"), CASES)
@pytest.mark.parametrize("level", ["anonymized_untrusted", "anonymized_dp"])
def test_a_join_answers_alike_whatever_one_person_holds(shop, level, value, condition):
    role = shop.create_role(level)
    if level == "anonymized_dp":
        shop.admin.execute("CALL diffix.set_privacy_budget(%s, 100, 1e-3)", (role,))
        call = "SELECT diffix.dp_query_json(%s, 0.5, 1e-6)"
    else:
        call = "SELECT diffix.query_json(%s)"
    sql = f"SELECT l.label, count(*) FROM customers c JOIN lookup l ON {condition} GROUP BY l.label"
    conn = shop.as_role(role)
    without = _outcome(conn, call, sql)
    shop.admin.execute(f"UPDATE customers SET {value} WHERE id = 7")
    try:
        with_value = _outcome(conn, call, sql)
    finally:
        shop.admin.execute(
            "UPDATE customers SET big = 1, day = '2020-01-02', ts = '2020-01-02' WHERE id = 7"
        )
    assert with_value == without
