"""The entry points this release added, first called from a hostile session (shadowing operators
and functions first in search_path, temporary domains named like catalog types, odd parsing
settings): diffix.dp_sample, DP joins on the privacy unit, diffix.set_dp_unit_path and its
internal definer. The analyst's spy must never run as anyone but the analyst, and the answers
must still be paid and logged."""

from __future__ import annotations

import psycopg
import pytest
from test_hostile_session import SPY, _plant

DATA = """
CREATE TABLE customers (id integer PRIMARY KEY, segment text, age integer);
INSERT INTO customers SELECT i, CASE WHEN i % 2 = 0 THEN 'gold' ELSE 'basic' END, 20 + i % 50
  FROM generate_series(1, 300) i;
CREATE TABLE transactions (cid integer, amount numeric);
INSERT INTO transactions SELECT 1 + i % 300, i % 90 FROM generate_series(1, 900) i;
CALL diffix.mark_personal('customers', 'id');
CALL diffix.mark_personal('transactions', 'cid');
CALL diffix.set_dp_unit_path('transactions', 'cid', 'customers', 'id');
CALL diffix.set_dp_domain('customers', 'segment', ARRAY['gold', 'basic']);
CALL diffix.set_dp_bounds('customers', 'age', 0, 100);
CALL diffix.set_dp_bounds('transactions', 'amount', 0, 100);
"""
JOIN = (
    "SELECT c.segment, count(*), sum(t.amount) FROM transactions t JOIN customers c "
    "ON t.cid = c.id GROUP BY c.segment"
)


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(DATA)
    return module_db


def _attacker(db) -> tuple[str, str]:
    role = db.create_role("anonymized_dp")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 20, 1e-3)", (role,))
    schema = f"{role}_own"
    db.admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    with db.as_role(role) as conn:
        conn.execute(SPY.format(schema=schema))
    return role, schema


def _contained(db, role: str, schema: str) -> None:
    seen = {row[0] for row in db.execute(f'SELECT DISTINCT who FROM "{schema}".seen')}
    assert seen <= {role}
    assert db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)) == [(False,)]


def _ledger(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT epsilon::float8, mechanism FROM diffix.budget_ledger WHERE role_name = %s "
        "ORDER BY id",
        (role,),
    )


def test_a_sample_first_called_from_a_hostile_session(shop):
    role, schema = _attacker(shop)
    conn = shop.as_role(role)
    _plant(conn, schema)
    rows = conn.execute("SELECT * FROM diffix.dp_sample('customers', 20, 0.5)").fetchall()
    assert len(rows) == 20
    assert {row[0]["segment"] for row in rows} <= {"gold", "basic", None}
    assert _ledger(shop, role) == [(0.5, "synthetic")]
    _contained(shop, role, schema)


def test_a_dp_join_first_called_from_a_hostile_session(shop):
    role, schema = _attacker(shop)
    conn = shop.as_role(role)
    _plant(conn, schema)
    answer = conn.execute("SELECT diffix.dp_query_json(%s, 1, 0)", (JOIN,)).fetchone()[0]
    assert sorted(row[0] for row in answer["rows"]) == ["basic", "gold"]
    assert _ledger(shop, role) == [(1.0, "dp")]
    _contained(shop, role, schema)


@pytest.mark.parametrize(
    "call",
    [
        "CALL diffix.set_dp_unit_path('customers', 'id', 'transactions', 'cid')",
        "SELECT diffix._set_dp_unit_path('customers'::regclass, 'id', "
        "'transactions'::regclass, 'cid')",
        "SELECT diffix._set_dp_unit_path('transactions'::regclass, 'cid', NULL, NULL)",
    ],
)
def test_unit_paths_stay_closed_from_a_hostile_session(shop, call):
    role, schema = _attacker(shop)
    conn = shop.as_role(role)
    _plant(conn, schema)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="set DP unit paths"):
        conn.execute(call)
    assert shop.execute(
        "SELECT relid::regclass::text, target_relid::regclass::text FROM diffix.dp_unit_paths"
    ) == [("transactions", "customers")]
    _contained(shop, role, schema)


def test_internal_unit_path_helpers_are_closed(shop):
    role, _ = _attacker(shop)
    conn = shop.as_role(role)
    for call in (
        "SELECT diffix._dp_unit_column('customers'::regclass, 'id')",
        "SELECT diffix._forget_on_relabel()",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(call)


@pytest.mark.parametrize(
    "call",
    [
        "CALL diffix.declare_dp_unique_units('transactions')",
        "SELECT diffix._declare_dp_unique_units('transactions'::regclass, true)",
    ],
)
def test_unique_unit_declarations_stay_closed_from_a_hostile_session(shop, call):
    role, schema = _attacker(shop)
    conn = shop.as_role(role)
    _plant(conn, schema)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="declare unique privacy units"):
        conn.execute(call)
    assert shop.execute("SELECT relid::regclass::text FROM diffix.dp_unique_units") == []
    _contained(shop, role, schema)


def test_the_proxys_protected_tables_from_a_hostile_session(shop):
    """diffix.proxy_plan tells statements over protected tables (diffix.protected_tables, the one
    list of protected labels) from others with the caller's rights: shadowing operators and
    objects named like the registry, first in search_path, do not make it pass one through."""
    role, schema = _attacker(shop)
    conn = shop.as_role(role)
    _plant(conn, schema)
    conn.execute(
        f'CREATE VIEW "{schema}".protected_tables AS SELECT 0::oid AS relid, NULL::text AS label;'
        f'CREATE VIEW "{schema}".registered_labels AS SELECT NULL::text AS label, false AS p'
    )
    [(route,)] = conn.execute(
        "SELECT route FROM diffix.proxy_plan('SELECT count(*) FROM customers', false)"
    ).fetchall()
    assert route != "pass"
    _contained(shop, role, schema)


def test_relabeling_from_a_hostile_admin_session_forgets_the_metadata(shop):
    """The one relabel trigger (diffix._forget_on_relabel) runs under the definer's pinned
    settings, whatever the administrator's session shadows."""
    admin = shop.create_role()
    shop.admin.execute(f'GRANT diffix_admin TO "{admin}"')
    schema = f"{admin}_own"
    shop.admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{admin}"')
    with shop.as_role(admin) as conn:
        conn.execute(SPY.format(schema=schema))
    shop.admin.execute(
        "CREATE TABLE visits (vid integer, n integer);"
        "CALL diffix.mark_personal('visits', 'vid');"
        "CALL diffix.set_dp_bounds('visits', 'n', 0, 10);"
        "CALL diffix.declare_dp_unique_units('visits')"
    )
    conn = shop.as_role(admin)
    _plant(conn, schema)
    conn.execute("CALL diffix.mark_public('visits', force => true)")
    assert shop.execute(
        "SELECT (SELECT count(*) FROM diffix.dp_columns WHERE relid = 'visits'::regclass),"
        " (SELECT count(*) FROM diffix.dp_unique_units WHERE relid = 'visits'::regclass)"
    ) == [(0, 0)]
    _contained(shop, admin, schema)
