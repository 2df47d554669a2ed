"""The audit log, attacked: every analyst query is logged durably, accepted or refused, under the
session's own identity; analysts can neither read, change nor forge it."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import psycopg
import pytest
from psycopg import sql

from pldiffix_installer import cli

COLUMNS = "session_role, effective_role, level, mechanism, sql, accepted, reason, rows_returned"


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(
        """
        CREATE TABLE customers (id integer, city text);
        INSERT INTO customers SELECT i, (ARRAY['Berlin', 'Rome'])[1 + i % 2]
          FROM generate_series(1, 60) i;
        CREATE TABLE cities (name text);
        INSERT INTO cities VALUES ('Berlin'), ('Rome'), ('Oslo');
        CREATE TABLE noisy (pet text, amount numeric);
        INSERT INTO noisy SELECT (ARRAY['cat', 'dog'])[1 + i % 2], i FROM generate_series(1, 40) i;
        GRANT SELECT ON customers, cities, noisy TO PUBLIC;
        CALL diffix.mark_personal('customers', 'id');
        CALL diffix.mark_public('cities');
        CALL diffix.mark_laplace('noisy', '{"scale": 2, "key": "k"}');
        """
    )
    return module_db


def _log(db, role: str) -> list[tuple]:
    return db.execute(f"SELECT {COLUMNS} FROM diffix.show_audit(%s)", (role,))


def test_every_entry_point_and_mechanism_logs_accepted_queries(shop):
    analyst = shop.create_role("anonymized_untrusted")
    direct = shop.create_role("direct")
    conn = shop.as_role(analyst)
    # rows_returned: what the mechanism released; NULL for statements the caller runs with its
    # own privileges (the gate never runs them)
    queries = [
        ("SELECT name FROM cities", "public", None),
        (
            "SELECT name AS \"Städte\", 'it''s \\ ok' FROM cities WHERE name = 'Zürich'",
            "public",
            None,
        ),
        ("SELECT city, count(*) FROM customers GROUP BY city", "diffix", 2),
        ("SELECT pet, count(*) FROM noisy GROUP BY pet", "laplace", 2),
    ]
    for query, _, _ in queries:
        conn.execute("SELECT diffix.query_json(%s)", (query,))
    conn.execute("SELECT * FROM diffix.query('SELECT name FROM cities') AS t(name text)")
    shop.admin.execute(sql.SQL("GRANT SELECT ON customers TO {}").format(sql.Identifier(direct)))
    shop.as_role(direct).execute("SELECT diffix.query_json('SELECT id FROM customers')")
    level = "anonymized_untrusted"
    assert _log(shop, analyst) == [
        (analyst, analyst, level, mechanism, query, True, None, rows)
        for query, mechanism, rows in queries
    ] + [(analyst, analyst, level, "public", "SELECT name FROM cities", True, None, None)]
    assert _log(shop, direct) == [
        (direct, direct, "direct", "direct", "SELECT id FROM customers", True, None, None)
    ]


@pytest.mark.parametrize(
    ("query", "mechanism", "error"),
    [
        ("SELECT id FROM customers", "diffix", psycopg.errors.FeatureNotSupported),
        ("DELETE FROM cities", "diffix", psycopg.errors.FeatureNotSupported),
        ("SELECT amount FROM noisy", "cellkey", psycopg.errors.FeatureNotSupported),
    ],
)
def test_refusals_are_logged_with_their_reason_and_raised_unchanged(shop, query, mechanism, error):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    with pytest.raises(error) as refused:
        conn.execute("SELECT diffix.query_json(%s)", (query,))
    message = refused.value.diag.message_primary
    assert not message.startswith(("plpy.", "spiexceptions."))
    assert _log(shop, analyst) == [
        (analyst, analyst, "anonymized_untrusted", mechanism, query, False, message, None)
    ]


def test_a_rollback_does_not_erase_the_entry(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    conn.execute("BEGIN")
    conn.execute("SELECT diffix.query_json('SELECT city, count(*) FROM customers GROUP BY city')")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        conn.execute("SELECT diffix.query_json('SELECT id FROM customers')")
    conn.execute("ROLLBACK")
    assert [(r[4], r[5]) for r in _log(shop, analyst)] == [
        ("SELECT city, count(*) FROM customers GROUP BY city", True),
        ("SELECT id FROM customers", False),
    ]


def test_set_role_is_logged_as_the_effective_role_of_the_login(shop):
    team = shop.create_role("anonymized_untrusted", login=False)
    member = shop.create_role("direct")
    grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(team), sql.Identifier(member))
    shop.admin.execute(grant)
    conn = shop.as_role(member)
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(team)))
    conn.execute("SELECT diffix.query_json('SELECT name FROM cities')")
    assert [r[:3] for r in _log(shop, team)] == [(member, team, "anonymized_untrusted")]


def test_administrators_queries_are_not_logged(shop):
    admin = shop.create_role()
    shop.admin.execute(sql.SQL("GRANT diffix_admin TO {}").format(sql.Identifier(admin)))
    shop.as_role(admin).execute("SELECT diffix.query_json('SELECT name FROM cities')")
    shop.execute("SELECT diffix.query_json('SELECT name FROM cities')")
    assert _log(shop, admin) == []
    assert _log(shop, "postgres") == []


def test_analysts_cannot_read_change_or_forge_the_log(shop):
    analyst = shop.create_role("anonymized_untrusted")
    victim = shop.create_role("anonymized_untrusted")
    shop.as_role(victim).execute("SELECT diffix.query_json('SELECT name FROM cities')")
    conn = shop.as_role(analyst)
    for attack in [
        "SELECT * FROM diffix.audit_log",
        "SELECT * FROM diffix.show_audit()",
        "UPDATE diffix.audit_log SET accepted = false",
        "DELETE FROM diffix.audit_log",
        "TRUNCATE diffix.audit_log",
        f"INSERT INTO diffix.audit_log (session_role, effective_role, mechanism, accepted) "
        f"VALUES ('{victim}', '{victim}', 'diffix', true)",
        f"SELECT diffix._audit_append('{victim}', '{victim}', 'direct', 'direct', 'forged', "
        "true, NULL, 1, NULL, NULL)",
        # only the gate writes rows: not even rows about oneself
        "SELECT diffix._audit_record('direct', 'direct', 'claimed to be the victim', true)",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)
    assert [r[4] for r in _log(shop, victim)] == ["SELECT name FROM cities"]
    assert _log(shop, analyst) == []


def test_the_cli_shows_the_log_by_role_and_time(shop):
    analyst = shop.create_role("anonymized_untrusted")
    shop.as_role(analyst).execute("SELECT diffix.query_json('SELECT name\n  FROM cities')")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["audit", "--dsn", shop.dsn(), "--role", analyst]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "logged_at",
        "|",
        "session_role",
        "|",
        "effective_role",
        "|",
        "level",
        "|",
        "mechanism",
        "|",
        "accepted",
        "|",
        "rows_returned",
        "|",
        "epsilon",
        "|",
        "delta",
        "|",
        "reason",
        "|",
        "sql",
    ]
    assert len(lines) == 3 and analyst in lines[2] and "SELECT name FROM cities" in lines[2]
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["audit", "--dsn", shop.dsn(), "--since", "2999-01-01"]) == 0
    assert out.getvalue().strip() == "(no audited queries)"


def test_an_analyst_cannot_run_the_cli(shop):
    analyst = shop.create_role("anonymized_untrusted")
    assert cli.main(["audit", "--dsn", shop.dsn(analyst)]) == 2
