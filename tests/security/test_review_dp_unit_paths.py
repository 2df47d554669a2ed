"""Attacks on DP joins on the privacy unit (diffix.set_dp_unit_path, dp/joins.py): a declared
path must keep meaning what the administrator declared, joins must stay on the unit, and names
an analyst chooses change nothing."""

from __future__ import annotations

import psycopg
import pytest

DATA = """
CREATE TABLE customers (id integer PRIMARY KEY, segment text);
INSERT INTO customers SELECT i, CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END
  FROM generate_series(1, 40) i;
CREATE TABLE transactions (cid integer, merchant integer, amount numeric);
INSERT INTO transactions SELECT i, 1 + i % 5, 10 FROM generate_series(1, 40) i;
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_personal('transactions', 'cid');
CALL diffix.set_dp_unit_path('transactions', 'cid', 'customers', 'id');
CALL diffix.set_dp_domain('customers', 'segment', ARRAY['gold', 'basic']);
"""
JOIN = (
    "SELECT c.segment, count(*) FROM transactions t JOIN customers c ON t.{col} = c.id "
    "GROUP BY c.segment"
)


@pytest.fixture
def shop(db):
    db.admin.execute(DATA)
    return db


def _analyst(db) -> str:
    role = db.create_role("anonymized_dp")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 1e-3)", (role,))
    return role


def _spent(db, role: str) -> float:
    return float(
        db.execute("SELECT epsilon_spent FROM diffix.privacy_budget() WHERE role = %s", (role,))[0][
            0
        ]
    )


def _dp(conn, sql: str):
    return conn.execute("SELECT diffix.dp_query_json(%s, 1, 0)", (sql,)).fetchone()[0]


def test_a_path_declared_for_one_aid_column_does_not_carry_over_to_another(shop):
    """The administrator declared transactions.cid to be a customer's id; re-marking the table
    with another AID (a merchant's) must not make merchants customers for a join."""
    role = _analyst(shop)
    with shop.as_role(role) as conn:
        assert _dp(conn, JOIN.format(col="cid"))  # the declared path joins
        shop.admin.execute("CALL diffix.mark_personal('transactions', 'merchant')")
        spent = _spent(shop, role)
        with pytest.raises(psycopg.Error, match="no declared path to the same privacy unit"):
            _dp(conn, JOIN.format(col="merchant"))
        assert _spent(shop, role) == spent  # refused for free
        # declared again for the new AID column, the join is the administrator's choice again
        shop.admin.execute(
            "CALL diffix.set_dp_unit_path('transactions', 'merchant', 'customers', 'id')"
        )
        assert _dp(conn, JOIN.format(col="merchant"))


def test_a_path_whose_target_changed_its_aid_is_not_followed(shop):
    shop.admin.execute(
        "ALTER TABLE customers ADD COLUMN other integer; UPDATE customers SET other = id;"
        "CALL diffix.mark_personal('customers', 'other')"
    )
    role = _analyst(shop)
    sql = (
        "SELECT c.segment, count(*) FROM transactions t JOIN customers c ON t.cid = c.other "
        "GROUP BY c.segment"
    )
    with (
        shop.as_role(role) as conn,
        pytest.raises(psycopg.Error, match="no declared path to the same privacy unit"),
    ):
        _dp(conn, sql)
    assert _spent(shop, role) == 0.0


@pytest.mark.parametrize(
    "condition",
    [
        "t.cid = c.id OR t.amount > 0",
        "t.cid = c.id + 0",
        "t.merchant = c.id",
        "t.cid <> c.id",
        "true",
    ],
)
def test_joins_not_on_the_unit_are_refused_for_free(shop, condition):
    role = _analyst(shop)
    sql = (
        "SELECT c.segment, count(*) FROM transactions t JOIN customers c ON "
        f"{condition} GROUP BY c.segment"
    )
    with shop.as_role(role) as conn, pytest.raises(psycopg.Error):
        _dp(conn, sql)
    assert _spent(shop, role) == 0.0


def test_hostile_table_names_declare_and_join(shop):
    """Quotes, backslashes and non-ASCII letters in the names a path links."""
    shop.admin.execute(
        """
        CREATE SCHEMA "sch""ema\\";
        CREATE TABLE "sch""ema\\"."trans'ä""x" ("c'id\\" integer, amount numeric);
        INSERT INTO "sch""ema\\"."trans'ä""x" SELECT i, 1 FROM generate_series(1, 40) i;
        GRANT USAGE ON SCHEMA "sch""ema\\" TO PUBLIC;
        CALL diffix.mark_personal('"sch""ema\\"."trans''ä""x"', 'c''id\\');
        CALL diffix.set_dp_unit_path('"sch""ema\\"."trans''ä""x"', 'c''id\\', 'customers', 'id');
        """
    )
    assert shop.execute(
        "SELECT target_relid::regclass::text FROM diffix.dp_unit_paths "
        'WHERE relid = \'"sch""ema\\"."trans\'\'ä""x"\'::regclass'
    ) == [("customers",)]
    role = _analyst(shop)
    with shop.as_role(role) as conn:
        conn.execute("SET standard_conforming_strings = off")
        answer = _dp(
            conn,
            'SELECT c.segment, count(*) FROM "sch""ema\\"."trans\'ä""x" t JOIN customers c '
            'ON t."c\'id\\" = c.id GROUP BY c.segment',
        )
    assert answer
    assert _spent(shop, role) > 0
