"""Every analyst entry point under a hostile session: same answers as a clean session, or a
refusal, and never code of the analyst's running with the engine's or an admin's rights.

The analyst plants what a session can plant without any privilege beyond a default login and
CREATE on a schema of its own: temporary domains named like catalog types whose CHECK calls a
function of theirs, operators and functions shadowing pg_catalog's in a schema put first in
search_path, and parsing and formatting settings that change how SQL text reads. The spy
function records current_user each time it runs; the analyst never becomes superuser, and the
spy never runs as anyone but the analyst.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

# The analyst's own objects: a spy that records who runs it and tries to become superuser.
SPY = """
CREATE TABLE {schema}.seen (who name, at text);
GRANT INSERT, SELECT ON {schema}.seen TO PUBLIC;
CREATE FUNCTION {schema}.spy(at text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {schema}.seen VALUES (current_user, at);
  BEGIN
    EXECUTE format('ALTER ROLE %I SUPERUSER', session_user);
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END $$;
CREATE FUNCTION {schema}.spy_eq(a name, b name) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT {schema}.spy('name =') AND a::text OPERATOR(pg_catalog.=) b::text $f$;
CREATE OPERATOR {schema}.= (LEFTARG = name, RIGHTARG = name, FUNCTION = {schema}.spy_eq);
CREATE FUNCTION {schema}.spy_teq(a text, b text) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT {schema}.spy('text =') AND a OPERATOR(pg_catalog.=) b $f$;
CREATE OPERATOR {schema}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {schema}.spy_teq);
CREATE FUNCTION {schema}.spy_oeq(a oid, b oid) RETURNS boolean LANGUAGE sql
  AS $f$ SELECT {schema}.spy('oid =') AND a OPERATOR(pg_catalog.=) b $f$;
CREATE OPERATOR {schema}.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = {schema}.spy_oeq);
CREATE FUNCTION {schema}.current_setting(text) RETURNS text LANGUAGE sql
  AS $f$ SELECT CASE WHEN {schema}.spy('current_setting') THEN 'none' END $f$;
CREATE FUNCTION {schema}.format_type(oid, integer) RETURNS text LANGUAGE sql
  AS $f$ SELECT CASE WHEN {schema}.spy('format_type') THEN 'text' END $f$;
"""

# Planted per session: temporary domains shadowing the catalog's type names.
TEMP_TYPES = ["name", "text", "oid", "int8", "float8", "bool", "int4", "numeric", "jsonb"]

SETTINGS = [
    "SET standard_conforming_strings = off",
    "SET backslash_quote = on",
    "SET DateStyle = 'SQL, DMY'",
    "SET IntervalStyle = 'sql_standard'",
    "SET TimeZone = 'Pacific/Chatham'",
    "SET extra_float_digits = -15",
    "SET bytea_output = 'escape'",
    "SET array_nulls = off",
    "SET quote_all_identifiers = on",
]

QUERIES = [
    "SELECT city, count(*) FROM customers GROUP BY city",
    "SELECT city, count(*), diffix.count_noise(*) FROM customers GROUP BY city",
    "SELECT count(*) FROM customers WHERE city = 'Rome'",
    "SELECT diffix.floor_by(age, 10), count(*) FROM customers GROUP BY 1",
    "SELECT count(DISTINCT id), sum(age) FROM customers",
    "SELECT joined, count(*) FROM customers GROUP BY joined",
    "SELECT name FROM cities WHERE name = 'Rome'",
    "SELECT pet, count(*) FROM noisy GROUP BY pet",
]


@pytest.fixture(scope="module")
def world(module_db):
    module_db.admin.execute(
        """
        CREATE TABLE customers (id integer, city text, age integer, joined date);
        INSERT INTO customers
          SELECT i, (ARRAY['Berlin', 'Rome', 'Oslo', 'a\\'])[1 + i % 4], 20 + i % 40,
                 DATE '2020-01-01' + i % 3
          FROM generate_series(1, 200) i;
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


def _attacker(db, level: str = "anonymized_untrusted") -> tuple[str, str]:
    """A new analyst owning schema <role>_own with the spy and its shadowing operators."""
    role = db.create_role(level)
    schema = f"{role}_own"
    db.admin.execute(
        sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
    )
    with db.as_role(role) as conn:
        conn.execute(SPY.format(schema=schema))
    return role, schema


def _plant(conn: psycopg.Connection, schema: str) -> None:
    """Hostile session state: temp domains, shadowing schema first, odd settings."""
    for type_name in TEMP_TYPES:
        conn.execute(
            f"CREATE DOMAIN pg_temp.{type_name} AS pg_catalog.{type_name} "
            f"CHECK ({schema}.spy('domain {type_name}'))"
        )
    conn.execute(f"SET search_path = {schema}, pg_temp, public, pg_catalog")
    for setting in SETTINGS:
        conn.execute(setting)


def _seen(db, schema: str) -> set[str]:
    return {row[0] for row in db.execute(f"SELECT DISTINCT who FROM {schema}.seen")}


def _answers(conn: psycopg.Connection, queries: list[str]) -> list:
    out = []
    for query in queries:
        try:
            out.append(conn.execute("SELECT diffix.query_json(%s)", (query,)).fetchone()[0])
        except psycopg.Error as error:
            out.append(("refused", error.sqlstate))
    return out


def _assert_contained(db, role: str, schema: str) -> None:
    superuser = db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
    assert superuser == [(False,)]
    assert _seen(db, schema) <= {role}


def test_the_same_answers_and_noise_under_a_hostile_session(world):
    role, schema = _attacker(world)
    clean = _answers(world.as_role(role), QUERIES)
    assert all(not isinstance(a, tuple) for a in clean), clean
    hostile_conn = world.as_role(role)
    _plant(hostile_conn, schema)
    hostile = _answers(hostile_conn, QUERIES)
    assert hostile == clean
    _assert_contained(world, role, schema)


def test_every_entry_point_first_called_from_a_hostile_session(world):
    """The first call of a backend comes from the hostile session (the plan cache attack):
    access_level, show_settings and set first, then every answering entry point."""
    role, schema = _attacker(world)
    conn = world.as_role(role)
    _plant(conn, schema)
    conn.execute("SELECT diffix.access_level()")
    conn.execute("SELECT * FROM diffix.show_settings()")
    conn.execute("SELECT diffix.set('compute_suppress_bin', 'false')")
    conn.execute("SELECT diffix.query_json('SELECT city, count(*) FROM customers GROUP BY city')")
    conn.execute(
        "SELECT * FROM diffix.query('SELECT city, count(*) FROM customers GROUP BY city') "
        "AS t(city text, n bigint)"
    )
    conn.execute("SELECT * FROM diffix.privacy_budget()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT diffix.dp_query_json('SELECT count(*) FROM customers', 0.1)")
    # then the definers owned by the installing superuser, with the plans the session warmed
    for call in [
        "SELECT diffix._configure('noise_layer_sd', '0')",
        "SELECT diffix._mark_personal('cities'::regclass, ARRAY['name'])",
        "SELECT diffix._mark_cellkey('cities'::regclass, 'laplace', '{}'::jsonb)",
        "SELECT diffix._perturb_admin('mark', 'cities'::regclass, '{}'::jsonb)",
        "SELECT diffix._perturbation_report('cities'::regclass)",
        "SELECT * FROM diffix.show_audit()",
        "CALL diffix.set_privacy_budget(current_user, 100, 0)",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call)
    _assert_contained(world, role, schema)


def test_a_backslash_constant_cannot_inject_sql(world):
    """With standard_conforming_strings off, 'a\\' used to close early in the engine's SQL."""
    role, schema = _attacker(world)
    conn = world.as_role(role)
    conn.execute("SET standard_conforming_strings = off")
    payload = (
        "SELECT count(*) FROM customers WHERE city = 'a\\' "
        f"AND city = ' OR {schema}.spy(''injected'') --'"
    )
    doc = conn.execute("SELECT diffix.query_json(%s)", (payload,)).fetchone()[0]
    assert doc["columns"] == ["count"]
    _assert_contained(world, role, schema)
    assert world.execute(f"SELECT count(*) FROM {schema}.seen WHERE at = 'injected'") == [(0,)]
    # the backslash value is read as pldiffix reads SQL text (standard_conforming_strings on)
    clean = world.as_role(role)
    same = clean.execute("SELECT diffix.query_json(%s)", (payload,)).fetchone()[0]
    assert same == doc
    logged = world.execute(
        "SELECT accepted FROM diffix.audit_log WHERE session_role = %s AND sql = %s",
        (role, payload),
    )
    assert logged == [(True,), (True,)]


def test_admin_settings_stay_closed_under_a_shadowed_equality(world):
    role, schema = _attacker(world)
    conn = world.as_role(role)
    _plant(conn, schema)
    for name, value in [
        ("noise_layer_sd", "0"),
        ("low_count_min_threshold", "1"),
        ("salt", "x"),
        ("default_access_level", "direct"),
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute("SELECT diffix.set(%s, %s)", (name, value))
        # the re-raiser reads its pattern with standard_conforming_strings pinned on
        assert refused.value.diag.message_primary.startswith("only administrators")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CALL diffix.configure('noise_layer_sd', '0')")
    _assert_contained(world, role, schema)


def test_calling_the_gate_directly_is_audited_and_takes_no_level_argument(world):
    role, _schema = _attacker(world)
    conn = world.as_role(role)
    reply = conn.execute(
        "SELECT diffix._answer('SELECT city, count(*) FROM customers GROUP BY city', "
        "NULL, NULL, ARRAY['public'], false)"
    ).fetchone()[0]
    assert reply["mechanism"] == "diffix"
    assert world.execute("SELECT level, accepted FROM diffix.show_audit(%s)", (role,)) == [
        ("anonymized_untrusted", True)
    ]


def test_set_role_to_a_role_without_a_level_keeps_the_logins_level(world):
    """A DP analyst who is a member of a monitoring role (no level: default direct). Budgets
    are per acting role, so under SET ROLE the monitoring role's budget would pay: it has none,
    so nothing is answered, and nothing is ever answered outside DP."""
    role = world.create_role("anonymized_dp")
    world.admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(role)))
    world.admin.execute("CALL diffix.set_privacy_budget(%s, 1.0, 1e-6)", (role,))
    conn = world.as_role(role)
    conn.execute("SET ROLE pg_read_all_stats")
    assert conn.execute("SELECT diffix.access_level()").fetchone()[0] == "anonymized_dp"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
        conn.execute("SELECT diffix.query_json('SELECT count(*) FROM customers')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot raise"):
        conn.execute("SELECT diffix.set('session_access_level', 'anonymized_trusted')")
    logged = world.execute(
        "SELECT effective_role, level, mechanism, accepted FROM diffix.show_audit(%s)", (role,)
    )
    assert logged == [("pg_read_all_stats", "anonymized_dp", "dp", False)]
    conn.execute("RESET ROLE")
    conn.execute("SELECT diffix.set('dp_epsilon', '0.25')")
    doc = conn.execute("SELECT diffix.query_json('SELECT count(*) FROM customers')").fetchone()[0]
    assert doc["dp"]["epsilon"] == 0.25
    # a weaker level reached through membership does not weaken it either
    team = world.create_role("anonymized_trusted", login=False)
    world.admin.execute(
        sql.SQL("GRANT {} TO {}").format(sql.Identifier(team), sql.Identifier(role))
    )
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(team)))
    assert conn.execute("SELECT diffix.access_level()").fetchone()[0] == "anonymized_dp"


def test_no_internal_definer_answers_without_the_gate(world):
    """The engines that took a level or an OID from their caller are gone; what is left to
    PUBLIC re-derives everything (see test_entry_points.py)."""
    rows = world.execute(
        "SELECT proname FROM pg_proc WHERE proname IN "
        "('_anonymized_query_json', '_dp_answer', '_perturbed_query_json')"
    )
    assert rows == []


def test_through_the_proxy_a_hostile_session_gets_the_same_answers(world):
    """Plain SQL through pldiffix proxy, the session made hostile with SET statements sent
    through the proxy itself."""
    from psycopg.conninfo import make_conninfo

    from pldiffix_proxy.listener import running_in_thread

    role, schema = _attacker(world, "anonymized_trusted")
    query = "SELECT city, count(*) FROM customers GROUP BY city ORDER BY city"
    with running_in_thread(world.dsn(), startup_timeout=2.0) as front:
        dsn = make_conninfo(world.dsn(role), host="127.0.0.1", port=front.port)
        with psycopg.connect(dsn, autocommit=True) as clean:
            expected = clean.execute(query).fetchall()
        with psycopg.connect(dsn, autocommit=True) as hostile:
            _plant(hostile, schema)
            assert hostile.execute(query).fetchall() == expected
    assert "a\\" in {row[0] for row in expected}
    _assert_contained(world, role, schema)


def test_unquoted_upper_case_names_route_like_postgresql_reads_them(world):
    """FROM CUSTOMERS is customers: the gate must see the personal and the cell-key table."""
    role = world.create_role("anonymized_dp")
    world.admin.execute("CALL diffix.set_privacy_budget(%s, 1.0, 1e-6)", (role,))
    conn = world.as_role(role)
    conn.execute("SELECT diffix.set('dp_epsilon', '0.1')")
    doc = conn.execute("SELECT diffix.query_json('SELECT count(*) FROM CUSTOMERS')").fetchone()[0]
    assert doc["dp"]["epsilon"] == 0.1
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cell-key"):
        conn.execute("SELECT diffix.query_json('SELECT count(*) FROM Noisy')")
    analyst = world.create_role("anonymized_trusted")
    laplace = (
        world.as_role(analyst)
        .execute("SELECT diffix.query_json('SELECT PET, count(*) FROM NOISY GROUP BY PET')")
        .fetchone()[0]
    )
    assert laplace["columns"] == ["pet", "count"]


def test_a_dp_query_grouped_by_a_numeric_key_is_answered_after_its_charge(world):
    """The report's keys are numerics (Decimal in Python): the reply must encode them."""
    world.admin.execute("CALL diffix.set_dp_bounds('customers', 'age', 0, 100)")
    role = world.create_role("anonymized_dp")
    world.admin.execute("CALL diffix.set_privacy_budget(%s, 1.0, 1e-3)", (role,))
    conn = world.as_role(role)
    doc = conn.execute(
        "SELECT diffix.dp_query_json('SELECT diffix.floor_by(age::numeric, 10.0) AS decade, "
        "count(*) FROM customers GROUP BY 1', 0.5, 1e-6)"
    ).fetchone()[0]
    assert doc["columns"] == ["decade", "count"]
    assert doc["dp"]["epsilon"] == 0.5
