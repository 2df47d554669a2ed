"""The anonymizing engine behind diffix.query_json for anonymized roles."""

from __future__ import annotations

import psycopg
import pytest


@pytest.fixture
def analyst(bank):
    return bank.create_role("anonymized_trusted")


def _doc(conn: psycopg.Connection, sql: str) -> dict:
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]


def test_counts_are_anonymized_and_small_buckets_suppressed(bank, analyst):
    conn = bank.as_role(analyst)
    raw = dict(bank.execute("SELECT age, count(*) FROM customers GROUP BY age"))
    assert max(raw.values()) <= 2  # every age bucket is tiny
    doc = _doc(conn, "SELECT age, count(*) FROM customers GROUP BY age")
    assert doc["columns"] == ["age", "count"]
    # every bucket is low-count: only the suppress bin remains, with a NULL (non-text) label
    assert len(doc["rows"]) == 1
    age, count = doc["rows"][0]
    assert age is None and abs(count - 60) <= 10


def test_grouped_counts_are_noisy_but_close(bank, analyst):
    doc = _doc(bank.as_role(analyst), "SELECT city, count(*) FROM customers GROUP BY city")
    counts = dict(doc["rows"])
    assert set(counts) == {"Berlin", "Rome", "Oslo"}
    assert all(abs(n - 20) <= 6 for n in counts.values())


def test_text_labels_of_the_suppress_bin_and_settings(bank, analyst):
    # 15 one-person cities: each is suppressed, together they pass the threshold for any salt
    bank.admin.execute(
        "INSERT INTO customers SELECT 100 + i, 'Town ' || i, 30, '2020-01-01' "
        "FROM generate_series(1, 15) i"
    )
    conn = bank.as_role(analyst)
    rows = _doc(conn, "SELECT city, count(*) FROM customers GROUP BY city")["rows"]
    assert rows[0][0] == "*"
    assert {r[0] for r in rows[1:]} == {"Berlin", "Rome", "Oslo"}
    conn.execute("SELECT diffix.set('text_label_for_suppress_bin', '(other)')")
    assert _doc(conn, "SELECT city, count(*) FROM customers GROUP BY city")["rows"][0][0] == (
        "(other)"
    )
    conn.execute("SELECT diffix.set('compute_suppress_bin', 'false')")
    rows = _doc(conn, "SELECT city, count(*) FROM customers GROUP BY city")["rows"]
    assert {r[0] for r in rows} == {"Berlin", "Rome", "Oslo"}


def test_answers_are_deterministic_for_a_salt_and_change_with_it(bank, analyst):
    sql = "SELECT city, count(*), sum(age), avg(age) FROM customers GROUP BY city ORDER BY city"
    conn = bank.as_role(analyst)
    first = _doc(conn, sql)
    assert _doc(bank.as_role(analyst), sql) == first
    answers = []
    for salt in ("a", "b", "c", "d"):
        bank.admin.execute("CALL diffix.configure('salt', %s)", (salt,))
        answers.append(_doc(bank.as_role(analyst), sql)["rows"])
    assert len({repr(a) for a in answers}) > 1


def test_result_types_follow_postgresql(bank, analyst):
    conn = bank.as_role(analyst)
    row = conn.execute(
        "SELECT * FROM diffix.query($$SELECT count(*), sum(age), avg(age), diffix.count_noise(*), "
        "count(DISTINCT city) FROM customers$$) "
        "AS t(n bigint, s bigint, a numeric, noise float8, cities bigint)"
    ).fetchone()
    assert isinstance(row[0], int) and isinstance(row[1], int) and isinstance(row[4], int)
    assert row[4] == 3
    types = _doc(
        conn,
        "SELECT pg_typeof(n)::text, pg_typeof(s)::text, pg_typeof(a)::text, pg_typeof(x)::text "
        "FROM (SELECT count(*) AS n, sum(age) AS s, avg(age) AS a, diffix.count_noise(*) AS x "
        "FROM customers) q",
    )["rows"]
    assert types == [["bigint", "bigint", "numeric", "double precision"]]


def test_implicit_grouping_repeats_rows_and_post_processing_runs_on_anonymized_rows(bank, analyst):
    conn = bank.as_role(analyst)
    rows = _doc(conn, "SELECT city FROM customers")["rows"]
    assert {r[0] for r in rows} == {"Berlin", "Rome", "Oslo"}
    assert abs(len(rows) - 60) <= 15
    doc = _doc(
        conn,
        "SELECT x.city, x.n, c.country FROM (SELECT city, count(*) AS n FROM customers "
        "GROUP BY city) x JOIN cities c ON c.name = x.city ORDER BY x.city",
    )
    assert [r[0] for r in doc["rows"]] == ["Berlin", "Oslo", "Rome"]
    assert [r[2] for r in doc["rows"]] == ["DE", "NO", "IT"]


def test_session_datestyle_governs_casts_and_output_is_iso(bank, analyst):
    conn = bank.as_role(analyst)
    conn.execute("SET DateStyle = 'SQL, DMY'")
    conn.execute("SET TimeZone = 'UTC'")
    doc = _doc(
        conn,
        "SELECT y, y::text AS shown FROM (SELECT date_trunc('year', joined) AS y, count(*) "
        "FROM customers GROUP BY 1) x",
    )
    assert doc["rows"] == [["2020-01-01T00:00:00+00:00", "01/01/2020 00:00:00 UTC"]]


def test_rejected_queries_are_refused_with_a_hint(bank, analyst):
    conn = bank.as_role(analyst)
    with pytest.raises(psycopg.Error) as error:
        _doc(conn, "SELECT id FROM customers")
    assert error.value.diag.message_hint


# --- security ------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(bank, analyst):
    """A schema the analyst owns, with a function that records who ran it."""
    bank.admin.execute(f'CREATE SCHEMA sandbox AUTHORIZATION "{analyst}"')
    conn = bank.as_role(analyst)
    conn.execute("CREATE TABLE sandbox.audit (who text, what text)")
    conn.execute("GRANT ALL ON sandbox.audit TO PUBLIC")
    conn.execute("GRANT USAGE ON SCHEMA sandbox TO PUBLIC")
    conn.execute(
        "CREATE FUNCTION sandbox.spy(x text) RETURNS text LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO sandbox.audit VALUES (current_user, x); RETURN x; END $$"
    )
    conn.execute(
        "CREATE FUNCTION sandbox.peek(x text) RETURNS text LANGUAGE sql STABLE "
        "AS $$ SELECT current_user || ':' || x $$"
    )
    return conn


def _audit(bank) -> list[tuple]:
    return bank.execute("SELECT who, what FROM sandbox.audit")


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT sandbox.spy(city), count(*) FROM customers GROUP BY 1",
        "SELECT sandbox.peek(city), count(*) FROM customers GROUP BY 1",
        "SELECT count(*) FROM customers WHERE sandbox.peek(city) = 'x'",
        "SELECT city, count(*) FROM customers GROUP BY city HAVING sandbox.spy(city) IS NULL",
        "SELECT count(*) FROM customers WHERE city::sandbox.t = 'Rome'",
    ],
)
def test_analyst_functions_and_types_never_run_inside_the_engine(bank, sandbox, attack):
    sandbox.execute("CREATE DOMAIN sandbox.t AS text CHECK (sandbox.spy(VALUE) IS NOT NULL)")
    try:
        doc = _doc(sandbox, attack)
    except psycopg.Error:
        doc = None
    # Whatever happened, nothing ran as the engine, and no raw row reached the analyst.
    assert all(who != "diffix_engine" for who, _ in _audit(bank))
    if doc is not None:
        assert all(who == sandbox.info.user for who, _ in _audit(bank))
        assert len(doc["rows"]) <= 4


def test_post_processing_runs_with_the_analysts_privileges(bank, sandbox):
    doc = _doc(
        sandbox,
        "SELECT sandbox.spy(city) AS c, n FROM (SELECT city, count(*) AS n FROM customers "
        "GROUP BY city) x ORDER BY 1",
    )
    assert [r[0] for r in doc["rows"]] == ["Berlin", "Oslo", "Rome"]
    assert {who for who, _ in _audit(bank)} == {sandbox.info.user}


def test_analyst_views_cannot_be_joined_into_the_engine(bank, sandbox):
    bank.admin.execute("CALL diffix.configure('treat_unmarked_tables_as_public', 'true')")
    sandbox.execute("CREATE VIEW sandbox.v AS SELECT name, sandbox.spy(name) AS s FROM cities")
    bank.admin.execute("GRANT SELECT ON sandbox.v TO diffix_engine")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="view"):
        _doc(
            sandbox,
            "SELECT c.city, count(*) FROM customers c JOIN sandbox.v v ON v.name = c.city "
            "GROUP BY c.city",
        )
    assert _audit(bank) == []


def test_public_tables_need_the_analysts_privilege_and_no_row_security(bank, analyst):
    conn = bank.as_role(analyst)
    query = (
        "SELECT c.city, count(*) FROM customers c JOIN cities t ON t.name = c.city GROUP BY c.city"
    )
    assert len(_doc(conn, query)["rows"]) == 3
    bank.admin.execute("REVOKE SELECT ON cities FROM PUBLIC")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cities"):
        _doc(conn, query)
    bank.admin.execute(f'GRANT SELECT ON cities TO "{analyst}"')
    bank.admin.execute("ALTER TABLE cities ENABLE ROW LEVEL SECURITY")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        _doc(conn, query)


def test_the_engine_ignores_schemas_the_caller_cannot_use(bank, analyst):
    bank.admin.execute("CREATE SCHEMA hidden")
    bank.admin.execute("CREATE TABLE hidden.customers (id int, city text)")
    bank.admin.execute(
        "INSERT INTO hidden.customers SELECT i, 'Secret' FROM generate_series(1, 50) i"
    )
    bank.admin.execute("CALL diffix.mark_personal('hidden.customers', 'id')")
    conn = bank.as_role(analyst)
    doc = conn.execute(
        "SELECT diffix._answer("
        "'SELECT city, count(*) FROM customers GROUP BY city', NULL, NULL, "
        "ARRAY['hidden', 'public'], false)"
    ).fetchone()[0]
    assert "Secret" not in doc["query"]
    assert "Berlin" in doc["query"]


def test_the_gate_returns_only_anonymized_rows_when_called_directly(bank, analyst):
    conn = bank.as_role(analyst)
    doc = conn.execute(
        "SELECT diffix._answer('SELECT age, count(*) FROM customers GROUP BY age', "
        "NULL, NULL, ARRAY['public'], false)"
    ).fetchone()[0]
    assert set(doc) == {"query", "mechanism"}
    rows = conn.execute(doc["query"]).fetchall()
    assert len(rows) == 1 and rows[0][0] is None  # only the suppress bin


def test_rejected_queries_write_nothing(bank, sandbox):
    for attack in [
        "SELECT count(*) FROM customers WHERE sandbox.spy(city) = 'Rome'",
        "SELECT sandbox.spy(city) FROM customers",
    ]:
        with pytest.raises(psycopg.Error):
            _doc(sandbox, attack)
    assert _audit(bank) == []


def test_upgrading_in_place_drops_the_engines_the_gate_replaced(db):
    """Versions before the gate had one definer per mechanism, each taking a level or an OID
    from its caller; an upgrade must not keep any of them."""
    import io

    from pldiffix_installer import install

    db.execute(
        "CREATE FUNCTION diffix._anonymized_query_json(sql text, requested_level text) "
        "RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$"
    )
    install.install(db.dsn(), out=io.StringIO())
    rows = db.execute(
        "SELECT proname FROM pg_catalog.pg_proc WHERE proname IN "
        "('_anonymized_query_json', '_dp_answer', '_perturbed_query_json')"
    )
    assert rows == []
