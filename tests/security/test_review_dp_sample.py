"""Attacks on diffix.dp_sample(table, k, epsilon [, delta]), the charged sample: values that
could make the engine's reading fail on one row (an error oracle after the charge), two
sessions racing one budget, and the internal function pointed at tables that are not personal."""

from __future__ import annotations

import threading

import psycopg
import pytest
import sqlglot

ODD = """
CREATE TABLE odd (id integer PRIMARY KEY, f double precision, r real, n numeric, d date,
                  ts timestamp, tz timestamptz, b boolean, t text);
INSERT INTO odd SELECT i, i, i, i, DATE '2000-01-01' + i,
  TIMESTAMP '2000-01-01' + i * INTERVAL '1 h',
  TIMESTAMPTZ '2000-01-01 00:00+00' + i * INTERVAL '1 h', i % 2 = 0, 'v' || i % 3
  FROM generate_series(1, 200) i;
CALL diffix.mark_personal('odd', 'id');
CALL diffix.set_dp_bounds('odd', 'f', 0, 100);
CALL diffix.set_dp_bounds('odd', 'r', 0, 100);
CALL diffix.set_dp_bounds('odd', 'n', 0, 100);
CALL diffix.set_dp_domain('odd', 'b', ARRAY['true', 'false']);
CALL diffix.set_dp_domain('odd', 't', ARRAY['v0', 'v1']);
"""

# One person each: values at the edges of every type the sample bins or categorizes.
EDGES = [
    "f = 'NaN'",
    "f = 'Infinity'",
    "f = '-Infinity'",
    "f = 1e308",
    "r = 'NaN'",
    "r = '-Infinity'",
    "n = 'NaN'",
    "n = 1e300",
    "n = -1e300",
    "t = 'x\\'",
    "t = repeat('x', 100000)",
]


@pytest.fixture(scope="module")
def odd(module_db):
    module_db.admin.execute(ODD)
    return module_db


def _analyst(db, epsilon: float = 10.0) -> str:
    role = db.create_role("anonymized_dp")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, 1e-4)", (role, epsilon))
    return role


def _spent(db, role: str) -> list[float]:
    rows = db.execute(
        "SELECT epsilon::float8 FROM diffix.budget_ledger WHERE role_name = %s ORDER BY id",
        (role,),
    )
    return [row[0] for row in rows]


def _accepted(db, role: str) -> list[bool]:
    rows = db.execute(
        "SELECT accepted FROM diffix.show_audit(%s) WHERE mechanism = 'synthetic' ORDER BY id",
        (role,),
    )
    return [row[0] for row in rows]


@pytest.mark.parametrize("edge", EDGES)
def test_no_single_value_makes_a_sample_fail(odd, edge):
    """Whether one person holds an extreme value must not show as an error after the charge."""
    odd.admin.execute(f"UPDATE odd SET {edge} WHERE id = 7")
    try:
        analyst = _analyst(odd)
        rows = odd.as_role(analyst).execute("SELECT * FROM diffix.dp_sample('odd', 20, 0.5)")
        assert len(rows.fetchall()) == 20
    finally:
        odd.admin.execute("UPDATE odd SET f = 7, r = 7, n = 7, t = 'v1' WHERE id = 7")


def test_dates_and_timestamps_at_infinity_do_not_make_a_sample_fail(odd):
    """Dates and timestamps are modeled by their declared domains (their text)."""
    odd.admin.execute(
        "CALL diffix.set_dp_domain('odd', 'd', ARRAY['2000-01-02', 'infinity']); "
        "CALL diffix.set_dp_domain('odd', 'ts', ARRAY['2000-01-01 01:00:00', '-infinity']); "
        "CALL diffix.set_dp_domain('odd', 'tz', ARRAY['infinity']); "
        "UPDATE odd SET d = 'infinity', ts = '-infinity', tz = 'infinity' WHERE id = 9"
    )
    analyst = _analyst(odd)
    with odd.as_role(analyst) as conn:
        conn.execute("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Pacific/Chatham'")
        rows = conn.execute("SELECT * FROM diffix.dp_sample('odd', 5, 0.5)").fetchall()
    assert len(rows) == 5


def test_two_sessions_racing_one_budget_spend_it_once(odd):
    """Budget 1, each sample 0.6: whatever the interleaving, one is paid and one refused."""
    analyst = _analyst(odd, epsilon=1.0)
    conns = [odd.as_role(analyst) for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def sample(conn: psycopg.Connection) -> None:
        start.wait()
        try:
            conn.execute("SELECT * FROM diffix.dp_sample('odd', 50, 0.6)").fetchall()
            outcomes.append("answered")
        except psycopg.Error as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=sample, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["ProgramLimitExceeded", "answered"]
    assert _spent(odd, analyst) == [0.6]
    assert sorted(_accepted(odd, analyst)) == [False, True]


@pytest.mark.parametrize(
    "target",
    [
        "diffix.table_labels",
        "diffix.budget_ledger",
        "diffix.python_modules",
        "pg_catalog.pg_authid",
    ],
)
def test_the_internal_function_samples_personal_tables_only(odd, target):
    analyst = _analyst(odd)
    relid = odd.execute("SELECT %s::regclass::oid::int8", (target,))[0][0]
    with pytest.raises(psycopg.Error, match=r"only personal tables|no USAGE"):
        odd.as_role(analyst).execute(
            "SELECT * FROM diffix._dp_sample(%s::oid, 5, 0.5, 1e-6)", (relid,)
        )
    assert _spent(odd, analyst) == []


def test_bogus_oids_are_refused_for_free(odd):
    analyst = _analyst(odd)
    with pytest.raises(psycopg.Error, match=r"only personal tables|no USAGE"):
        odd.as_role(analyst).execute("SELECT * FROM diffix._dp_sample(0, 5, 0.5, 1e-6)")
    with pytest.raises(psycopg.Error, match=r"only personal tables|no USAGE"):
        odd.as_role(analyst).execute(
            "SELECT * FROM diffix._dp_sample(4294967295::oid, 5, 0.5, 1e-6)"
        )
    assert _spent(odd, analyst) == []


def test_the_logged_statement_of_a_hostile_table_name_reads_back_as_that_call(odd):
    """The ledger and audit keep a runnable-looking statement: with a table named to close its
    quote, it must still name the table, not carry a second statement."""
    odd.admin.execute(
        """
        CREATE TABLE "o'); DROP TABLE odd; --" (id integer PRIMARY KEY, f double precision);
        INSERT INTO "o'); DROP TABLE odd; --" SELECT i, i FROM generate_series(1, 50) i;
        CALL diffix.mark_personal('"o''); DROP TABLE odd; --"', 'id');
        CALL diffix.set_dp_bounds('"o''); DROP TABLE odd; --"', 'f', 0, 100);
        """
    )
    analyst = _analyst(odd)
    conn = odd.as_role(analyst)
    conn.execute(
        "SELECT * FROM diffix.dp_sample(%s, 5, 0.5)", ('"o\'); DROP TABLE odd; --"',)
    ).fetchall()
    (logged,) = odd.execute(
        "SELECT sql FROM diffix.budget_ledger WHERE role_name = %s", (analyst,)
    )[0]
    assert logged == (
        "SELECT * FROM diffix.dp_sample('\"public\".\"o''); DROP TABLE odd; --\"', 5, 0.5, 1e-06)"
    )
    assert len(sqlglot.parse(logged, read="postgres")) == 1  # one statement, as written
