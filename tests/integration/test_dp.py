"""Differential privacy end to end: metadata, contribution bounding in SQL, levels, queries."""

from __future__ import annotations

import re

import psycopg
import pytest

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import planner
from pldiffix.dp.query import parse

VISITS = """
CREATE TABLE visits (pid integer, city text, amount numeric, note text);
-- person 1: ten rows in Rome, each far above the bounds; persons 2..7: one row each
INSERT INTO visits SELECT 1, 'Rome', 5000, 'x' FROM generate_series(1, 10);
INSERT INTO visits SELECT i, CASE WHEN i % 2 = 0 THEN 'Rome' ELSE 'Oslo' END, -50 + i, NULL
  FROM generate_series(2, 7) i;
INSERT INTO visits VALUES (NULL, 'Rome', 1, 'no unit');
CREATE TABLE people (id integer PRIMARY KEY, city text, amount numeric);
INSERT INTO people SELECT i, CASE WHEN i % 2 = 0 THEN 'Rome' ELSE 'Oslo' END, i * 10
  FROM generate_series(1, 20) i;
CREATE TABLE lookup (name text);
GRANT SELECT ON lookup TO PUBLIC;
CALL diffix.mark_personal('visits', 'pid');
CALL diffix.mark_personal('people', 'id');
CALL diffix.mark_public('lookup');
CREATE TABLE towns (id integer PRIMARY KEY, town text, age integer);
INSERT INTO towns SELECT i, CASE WHEN i <= 300 THEN 'Rome' WHEN i <= 600 THEN 'Oslo'
                                 ELSE 'Lonely' END, 20 + i % 50
  FROM generate_series(1, 601) i;
CALL diffix.mark_personal('towns', 'id');
"""
METADATA = """
CALL diffix.set_dp_bounds('visits', 'amount', 0, 100);
CALL diffix.set_dp_max_contributions('visits', 2);
CALL diffix.set_dp_domain('visits', 'city', ARRAY['Rome', 'Oslo']);
CALL diffix.set_dp_bounds('people', 'amount', 0, 200);
CALL diffix.set_dp_bounds('towns', 'age', 0, 100);
"""


@pytest.fixture(scope="module")
def dpdb(module_db):
    module_db.admin.execute(VISITS)
    module_db.admin.execute(METADATA)
    return module_db


def _catalog() -> StaticCatalog:
    visits = RelationInfo(
        "public",
        "visits",
        RelationKind.PERSONAL,
        (
            ColumnInfo("pid", "integer", is_aid=True),
            ColumnInfo("city", "text"),
            ColumnInfo("amount", "numeric"),
            ColumnInfo("note", "text"),
        ),
    )
    return StaticCatalog({("public", "visits"): visits})


def _groups(db, sql: str) -> dict:
    with db.admin.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(sql)
        return {row["g0"]: row for row in cur.fetchall()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_contribution_bounding_and_clamping_on_hand_built_data(dpdb, seed):
    query = parse(
        "SELECT city, count(*), count(DISTINCT pid), count(note), sum(amount), avg(amount) "
        "FROM visits GROUP BY city",
        _catalog(),
    )
    metadata = planner.TableMetadata(2, False, {"amount": planner.Bounds(0.0, 100.0)})
    plan = planner.plan(query, metadata, seed)
    groups = _groups(dpdb, plan.sql)
    rome, oslo = groups["Rome"], groups["Oslo"]
    # Rome: person 1 keeps 2 of its 10 rows, persons 2, 4, 6 one each; the NULL unit is dropped
    assert rome["units"] == 4 and rome["a0_n"] == 5 and rome["a1_n"] == 4
    assert rome["a2_n"] == 2  # count(note): person 1's two rows
    # amounts clamped to [0, 100] on a grid of 0.01: 2 * 100 + 0 + 0 + 0 (-48, -46, -44 -> 0)
    assert plan.aggregates[3].step == 0.01
    assert rome["a3_s"] == 2 * 100 / 0.01
    # avg is centred on 50: (2 * 50 + 3 * -50) / 0.01
    assert rome["a4_n"] == 5 and rome["a4_s"] == (2 * 50 - 3 * 50) / 0.01
    assert oslo["units"] == 3 and oslo["a0_n"] == 3


def test_the_quantile_histogram_counts_bounded_clamped_rows(dpdb):
    query = parse("SELECT city, median(amount) FROM visits GROUP BY city", _catalog())
    metadata = planner.TableMetadata(2, False, {"amount": planner.Bounds(0.0, 100.0)})
    plan = planner.plan(query, metadata, 7)
    with dpdb.admin.cursor() as cur:
        cur.execute(plan.histogram_sql(query, metadata, 0))
        rows = sorted(cur.fetchall())
    # grid points -5000..5000 (step 0.01 around 50): Rome's three rows clamped to 0 at -5000,
    # person 1's two rows (of 10) clamped to 100 at 5000
    assert ("Rome", -5000, 3) in rows and ("Rome", 5000, 2) in rows
    assert sum(n for city, _, n in rows if city == "Rome") == 5


# --- metadata --------------------------------------------------------------------------------


def test_admins_declare_metadata_and_everyone_sees_it(dpdb):
    dpdb.admin.execute(METADATA)  # again: the procedures are idempotent
    rows = dpdb.execute("SELECT * FROM diffix.show_dp_metadata() WHERE objname LIKE '%visits%'")
    assert rows == [
        ("table", "public.visits", "max_contributions", "2"),
        ("column", "public.visits.amount", "bounds", "[0, 100]"),
        ("column", "public.visits.city", "domain", "{Rome,Oslo}"),
    ]
    analyst = dpdb.create_role("anonymized_dp")
    with dpdb.as_role(analyst) as conn:
        seen = conn.execute("SELECT count(*) FROM diffix.show_dp_metadata()").fetchone()[0]
    assert seen == len(dpdb.execute("SELECT * FROM diffix.show_dp_metadata()"))


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        ("CALL diffix.set_dp_bounds('visits', 'amount', 5, 5)", "InvalidParameterValue", "lower <"),
        (
            "CALL diffix.set_dp_bounds('visits', 'amount', 0, 'Infinity')",
            "InvalidParameterValue",
            "not finite",
        ),
        ("CALL diffix.set_dp_bounds('visits', 'amount', 0, NULL)", "InvalidParameterValue", "both"),
        ("CALL diffix.set_dp_bounds('visits', 'city', 0, 1)", "DatatypeMismatch", "not numeric"),
        ("CALL diffix.set_dp_bounds('visits', 'pid', 0, 1)", "InvalidParameterValue", "AID"),
        ("CALL diffix.set_dp_bounds('visits', 'nosuch', 0, 1)", "UndefinedColumn", "nosuch"),
        ("CALL diffix.set_dp_bounds('lookup', 'name', 0, 1)", "InvalidParameterValue", "personal"),
        ("CALL diffix.set_dp_bounds('nosuch', 'x', 0, 1)", "UndefinedTable", "nosuch"),
        (
            "CALL diffix.set_dp_max_contributions('visits', 0)",
            "InvalidParameterValue",
            "between 1",
        ),
        (
            "CALL diffix.set_dp_domain('visits', 'city', ARRAY['a', 'a'])",
            "InvalidParameterValue",
            "twice",
        ),
        (
            "CALL diffix.set_dp_domain('visits', 'city', ARRAY['a', NULL])",
            "NullValueNotAllowed",
            "NULL",
        ),
        (
            "CALL diffix.set_dp_domain('people', 'amount', ARRAY['1', 'x'])",
            "InvalidTextRepresentation",
            "numeric",
        ),
    ],
)
def test_bad_metadata_is_refused_and_changes_nothing(dpdb, call, error, message):
    before = dpdb.execute("SELECT * FROM diffix.show_dp_metadata()")
    with pytest.raises(getattr(psycopg.errors, error), match=message):
        dpdb.admin.execute(call)
    assert dpdb.execute("SELECT * FROM diffix.show_dp_metadata()") == before


def test_analysts_cannot_change_metadata(dpdb):
    before = dpdb.execute("SELECT * FROM diffix.show_dp_metadata()")
    for level in ("anonymized_dp", "anonymized_trusted", "direct"):
        role = dpdb.create_role(level)
        with dpdb.as_role(role) as conn:
            for call in (
                "CALL diffix.set_dp_bounds('visits', 'amount', -1e9, 1e9)",
                "CALL diffix.set_dp_max_contributions('visits', 1)",
                "CALL diffix.set_dp_domain('visits', 'city', ARRAY['Rome'])",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(call)
            for table in ("dp_tables", "dp_columns"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(f"DELETE FROM diffix.{table}")
    assert dpdb.execute("SELECT * FROM diffix.show_dp_metadata()") == before


# --- the level -------------------------------------------------------------------------------


def test_the_dp_level_reads_nothing_raw_and_cannot_be_left(dpdb):
    analyst = dpdb.create_role("anonymized_dp")
    with dpdb.as_role(analyst) as conn:
        assert conn.execute("SELECT diffix.access_level()").fetchone()[0] == "anonymized_dp"
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM visits")
        for lower in ("anonymized_untrusted", "anonymized_trusted", "direct"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot raise"):
                conn.execute("SELECT diffix.set('session_access_level', %s)", (lower,))
        # the gate, called directly, takes the level from the catalog: a DP answer or none (this
        # role has no budget), never a Diffix one, which would spend nothing
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="budget"):
            conn.execute(
                "SELECT diffix._answer('SELECT count(*) FROM visits', NULL, NULL, "
                "ARRAY['public'], false)"
            )
    labels = dpdb.execute("SELECT label FROM diffix.show_labels() WHERE objname = %s", (analyst,))
    assert labels == [("anonymized_dp",)]


# --- queries and their cost ------------------------------------------------------------------


def _analyst(db, epsilon: float | None = 10.0, delta: float = 1e-3) -> str:
    role = db.create_role("anonymized_dp")
    if epsilon is not None:
        db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (role, epsilon, delta))
    return role


def _spent(db, role: str) -> tuple[float, float]:
    row = db.execute(
        "SELECT epsilon_spent, delta_spent FROM diffix.privacy_budget() WHERE role = %s", (role,)
    )
    return float(row[0][0]), float(row[0][1])


def _dp(conn, sql: str, epsilon: float, delta: float = 0.0) -> dict:
    return conn.execute(
        "SELECT diffix.dp_query_json(%s, %s, %s)", (sql, epsilon, delta)
    ).fetchone()[0]


def test_dp_answers_end_to_end(dpdb):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        doc = _dp(
            conn, "SELECT count(*), sum(amount), avg(amount), median(amount) FROM people", 1.0
        )
        assert doc["columns"] == ["count", "sum", "avg", "median"]
        (count, total, average, median) = doc["rows"][0]
        assert (
            isinstance(count, int)
            and isinstance(total, float)
            and 0 <= average <= 200
            and 0 <= median <= 200
        )
        report = doc["dp"]
        assert report["epsilon"] == 1.0 and report["delta"] == 0.0
        assert report["remaining"]["epsilon"] == pytest.approx(9.0)
        assert [a["epsilon"] for a in report["aggregates"]] == [0.25] * 4
        assert report["aggregates"][0]["noise_scale"] == {"n": 4.0}
        value = report["rows"][0][0]
        assert (
            value["value"] == count and value["interval_95"][0] <= count <= value["interval_95"][1]
        )
        # declared domain: both keys, no partition selection, no delta
        doc = _dp(conn, "SELECT city, count(*) FROM visits GROUP BY city", 0.5)
        assert sorted(row[0] for row in doc["rows"]) == ["Oslo", "Rome"]
        assert doc["dp"]["partition_selection"] is None and doc["dp"]["max_contributions"] == 2
        # post-processing around the DP subquery runs over the released rows
        doc = _dp(
            conn,
            "SELECT upper(city) AS c, n * 0 AS zero FROM "
            "(SELECT city, count(*) AS n FROM visits GROUP BY city) t ORDER BY 1",
            0.5,
        )
        assert doc["rows"] == [["OSLO", 0], ["ROME", 0]]
    assert _spent(dpdb, role) == (pytest.approx(2.0), 0.0)


def test_the_bounding_memory_limit_ends_with_the_query(dpdb):
    """The engine caps work_mem and hash_mem_multiplier for its own statements (docs/dp.md,
    "Speed"), transaction-locally inside the gate: the caller's values are back when the query
    returns, in its transaction too, and the answer is the same."""
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        conn.autocommit = False
        conn.execute("SET work_mem = '1MB'")
        conn.execute("SET hash_mem_multiplier = 4")
        conn.commit()
        doc = _dp(conn, "SELECT city, count(*), sum(amount) FROM visits GROUP BY city", 1.0)
        assert sorted(row[0] for row in doc["rows"]) == ["Oslo", "Rome"]
        inside = conn.execute(
            "SELECT current_setting('work_mem'), current_setting('hash_mem_multiplier')"
        ).fetchone()
        conn.commit()
        after = conn.execute(
            "SELECT current_setting('work_mem'), current_setting('hash_mem_multiplier')"
        ).fetchone()
        assert inside == after == ("1MB", "4")


def test_query_json_routes_a_dp_role_and_spends_its_session_epsilon(dpdb):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        conn.execute("SELECT diffix.set('dp_epsilon', '0.25')")
        doc = conn.execute("SELECT diffix.query_json('SELECT count(*) FROM people')").fetchone()[0]
        assert doc["dp"]["epsilon"] == 0.25
        rows = conn.execute(
            "SELECT * FROM diffix.query('SELECT count(*) AS n FROM people') AS t(n bigint)"
        ).fetchall()
        assert len(rows) == 1
        conn.execute("SELECT diffix.set('dp_epsilon', '5')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="dp_max_epsilon"):
            conn.execute("SELECT diffix.query_json('SELECT count(*) FROM people')")
        # public tables read as at the untrusted level, for free
        assert conn.execute("SELECT diffix.query_json('SELECT * FROM lookup')").fetchone()[0]
    assert _spent(dpdb, role) == (pytest.approx(0.5), 0.0)


def test_partition_selection_never_releases_a_single_person_key(dpdb):
    role = _analyst(dpdb, epsilon=100.0, delta=0.01)
    with dpdb.as_role(role) as conn:
        for i in range(20):  # distinct queries: an identical one would replay its answer
            doc = _dp(conn, f"SELECT town, count(*) AS n{i} FROM towns GROUP BY town", 1.0, 1e-6)
            towns = {row[0] for row in doc["rows"]}
            assert "Lonely" not in towns and towns == {"Rome", "Oslo"}
            selection = doc["dp"]["partition_selection"]
            # thresholded on the released count, which takes all of epsilon
            assert selection["delta"] == 1e-6 and selection["epsilon"] == 1.0
            assert selection["count"] == "count_star"
    assert _spent(dpdb, role) == (pytest.approx(20.0), pytest.approx(20e-6))


@pytest.mark.parametrize(
    ("sql", "epsilon", "delta", "error", "message"),
    [
        ("SELECT max(amount) FROM people", 0.5, 0, "FeatureNotSupported", "not supported"),
        ("SELECT sum(id) FROM people", 0.5, 0, "FeatureNotSupported", "needs clamping bounds"),
        (
            "SELECT town, count(*) FROM towns GROUP BY town",
            0.5,
            0,
            "InvalidParameterValue",
            "delta",
        ),
        ("SELECT count(*) FROM people", 2.0, 0, "InvalidParameterValue", "dp_max_epsilon"),
        ("SELECT count(*) FROM people", 0.5, 0.1, "InvalidParameterValue", "dp_max_delta"),
        ("SELECT count(*) FROM people", -1, 0, "InvalidParameterValue", "positive"),
        ("SELECT count(*) FROM people WHERE age > 1", 0.5, 0, "UndefinedColumn", "age"),
        ("SELECT count(*) FROM people WHERE amount > 1", 0.5, 0, "FeatureNotSupported", "equality"),
        ("SELECT count(*) FROM people", 20.0, 0, "InvalidParameterValue", "dp_max_epsilon"),
        ("DELETE FROM people", 0.5, 0, "FeatureNotSupported", "SELECT"),
    ],
)
def test_refused_queries_spend_nothing(dpdb, sql, epsilon, delta, error, message):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn, pytest.raises(getattr(psycopg.errors, error), match=message):
        _dp(conn, sql, epsilon, delta)
    assert _spent(dpdb, role) == (0.0, 0.0)


def test_a_dp_role_without_budget_gets_a_clear_error(dpdb):
    role = _analyst(dpdb, epsilon=None)
    with dpdb.as_role(role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget") as e:
            _dp(conn, "SELECT count(*) FROM people", 0.5)
        assert "set_privacy_budget" in (e.value.diag.message_hint or "")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
            conn.execute("SELECT diffix.query_json('SELECT count(*) FROM people')")


def test_the_budget_runs_out_and_a_refusal_returns_nothing(dpdb):
    role = _analyst(dpdb, epsilon=1.0, delta=0.0)
    with dpdb.as_role(role) as conn:
        for i in range(2):
            _dp(conn, f"SELECT count(*) AS n{i} FROM people", 0.5)
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="does not cover"):
            _dp(conn, "SELECT count(*) AS n2 FROM people", 0.5)
    assert _spent(dpdb, role) == (pytest.approx(1.0), 0.0)


def test_the_rollback_attack_still_spends(dpdb):
    role = _analyst(dpdb)
    conn = dpdb.as_role(role)
    conn.autocommit = False
    with conn.cursor() as cur:
        cur.execute("SELECT diffix.dp_query_json('SELECT count(*) FROM people', 0.5)")
        assert cur.fetchone()[0]["rows"]
    conn.rollback()
    with conn.cursor() as cur:  # and a savepoint rolled back inside a transaction
        cur.execute("SAVEPOINT s")
        cur.execute("SELECT diffix.dp_query_json('SELECT count(*) AS n FROM people', 0.5)")
        cur.execute("ROLLBACK TO SAVEPOINT s")
    conn.rollback()
    assert _spent(dpdb, role) == (pytest.approx(1.0), 0.0)


def test_calling_the_engine_directly_is_charged_too(dpdb):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        doc = conn.execute(
            "SELECT diffix._answer('SELECT count(*) FROM people', 0.5, 0, ARRAY['public'], true)"
        ).fetchone()[0]
        assert doc["mechanism"] == "dp" and "query" in doc
    assert _spent(dpdb, role) == (pytest.approx(0.5), 0.0)


def test_reruns_replay_and_rephrasings_each_pay(dpdb):
    """50 reruns of one query spend once and replay its answer, never fresh noise (docs/dp.md,
    "Free replays"); the 4 rephrasings that differ from it after normalization each pay."""
    role = _analyst(dpdb, epsilon=1.0, delta=0.0)
    rephrasings = [
        "SELECT count(*) FROM people",
        "select COUNT(*) from public.people",
        "SELECT count(*) AS n FROM people p",
        "SELECT * FROM (SELECT count(*) FROM people) t",
        "SELECT count(id) FROM people",
    ]
    answers = []
    with dpdb.as_role(role) as conn:
        for _ in range(50):
            answers.append(_dp(conn, rephrasings[0], 0.01)["rows"][0][0])
        for sql in rephrasings:
            _dp(conn, sql, 0.01)
    assert len(set(answers)) == 1  # the first answer replayed: averaging reruns gains nothing
    assert _spent(dpdb, role) == (pytest.approx(0.05), 0.0)


def test_concurrent_sessions_get_exactly_what_the_budget_admits(dpdb):
    import threading

    role = _analyst(dpdb, epsilon=1.5, delta=0.0)
    answered, refused, failed = [], [], []

    def ask(i: int) -> None:
        try:
            with dpdb.as_role(role) as conn:  # distinct queries: none replays another's answer
                answered.append(_dp(conn, f"SELECT count(*) AS n{i} FROM people", 0.5))
        except psycopg.errors.ProgramLimitExceeded:
            refused.append(1)
        except psycopg.Error as error:  # anything else is a failure of the test, shown below
            failed.append(error)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed
    assert len(answered) == 3 and len(refused) == 5
    assert _spent(dpdb, role) == (pytest.approx(1.5), 0.0)


def test_dp_queries_are_audited_with_their_cost(dpdb):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        _dp(conn, "SELECT count(*) FROM people", 0.5)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            _dp(conn, "SELECT max(amount) FROM people", 0.5)
    rows = dpdb.execute(
        "SELECT mechanism, accepted, epsilon::float8, rows_returned FROM diffix.audit_log "
        "WHERE session_role = %s ORDER BY 1, 2",
        (role,),
    )
    assert rows == [("dp", False, None, None), ("dp", True, 0.5, 1)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "SELECT city, n * 0 FROM (SELECT city, count(*) AS n FROM visits GROUP BY city "
            "UNION ALL SELECT 'x', 1) AS t ORDER BY 1",
            [["Oslo", 0], ["Rome", 0], ["x", 0]],
        ),
        ("WITH t AS (SELECT count(*) AS n FROM people) SELECT n >= 0 FROM t", [[True]]),
        ("SELECT (SELECT count(*) FROM people) >= 0 AS ok", [[True]]),
    ],
)
def test_the_dp_subquery_anywhere_in_the_statement(dpdb, sql, expected):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        assert _dp(conn, sql, 0.5)["rows"] == expected


def test_personal_reads_outside_the_dp_subquery_are_refused_for_free(dpdb):
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn, pytest.raises(psycopg.errors.FeatureNotSupported):
        _dp(
            conn,
            "SELECT (SELECT count(*) FROM people), (SELECT name FROM lookup "
            "WHERE name IN (SELECT city FROM people))",
            0.5,
        )
    assert _spent(dpdb, role) == (0.0, 0.0)


def test_a_unique_aid_means_one_row_per_unit_whatever_max_contributions_says(dpdb):
    dpdb.admin.execute("CALL diffix.set_dp_max_contributions('people', 5)")
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        doc = _dp(conn, "SELECT count(*) FROM people", 0.5)
        assert doc["dp"]["max_contributions"] == 1  # people.id is its primary key
        assert doc["dp"]["aggregates"][0]["noise_scale"] == {"n": 2.0}
        doc = _dp(conn, "SELECT count(*) FROM visits", 0.5)
        assert doc["dp"]["max_contributions"] == 2
        assert doc["dp"]["aggregates"][0]["noise_scale"] == {"n": 4.0}


def test_a_dp_role_reads_no_perturbed_table(dpdb):
    dpdb.admin.execute(
        "CREATE TABLE noisy (id int, pet text); INSERT INTO noisy VALUES (1, 'cat');"
        "GRANT SELECT ON noisy TO PUBLIC;"
        """CALL diffix.mark_laplace('noisy', '{"scale": 2, "key": "k"}'::jsonb)"""
    )
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="perturbed"):
            conn.execute("SELECT diffix.query_json('SELECT count(*) FROM noisy')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="perturbed"):
            conn.execute(
                "SELECT diffix._answer('SELECT count(*) FROM noisy', NULL, NULL, "
                "ARRAY['public'], false)"
            )
    assert _spent(dpdb, role) == (0.0, 0.0)


def test_quantiles_land_near_the_true_value(dpdb):
    """601 ages spread evenly over 20..69 (12 rows a year): each quantile gets epsilon 0.5, so
    its rank error is below 40 with probability 95%; 8 years (~96 ranks) off has probability
    below 1e-7."""
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        doc = _dp(
            conn,
            "SELECT median(age), percentile_cont(0.9) WITHIN GROUP (ORDER BY age) FROM towns",
            1.0,
        )
    median, p90 = doc["rows"][0]
    assert abs(median - 44) < 8 and abs(p90 - 64) < 8
    report = doc["dp"]["aggregates"][0]
    assert report["mechanism"] == "exponential" and report["rank_error_95"] < 41


def test_grouped_quantiles_with_partition_selection(dpdb):
    """towns: Rome and Oslo with 300 ages over 20..69 each, and one Lonely person. The median
    by town: Lonely is never released (thresholded on the count), the others land near 44.5
    (epsilon 0.5 each: 12 years, 72 ranks, off has probability below 101 e^-18 = 2e-6)."""
    role = _analyst(dpdb)
    with dpdb.as_role(role) as conn:
        doc = _dp(conn, "SELECT town, count(*), median(age) FROM towns GROUP BY town", 1.0, 1e-6)
    rows = {row[0]: row for row in doc["rows"]}
    assert set(rows) == {"Oslo", "Rome"}
    assert all(abs(row[2] - 44.5) < 12 for row in rows.values())
    assert doc["dp"]["aggregates"][1]["grid_points"] == 101  # [0, 100], step 1


def test_metadata_follows_its_table(db):
    db.admin.execute(
        "CREATE TABLE t (id int, v numeric, w numeric); CALL diffix.mark_personal('t', 'id');"
        "CALL diffix.set_dp_bounds('t', 'v', 0, 1); CALL diffix.set_dp_bounds('t', 'w', 0, 1);"
        "ALTER TABLE t DROP COLUMN w"
    )
    shown = db.execute("SELECT objname, setting FROM diffix.show_dp_metadata()")
    assert shown == [("public.t", "max_contributions"), ("public.t.v", "bounds")]
    # no longer personal: no DP metadata
    db.admin.execute("CALL diffix.mark_public('t', force => true)")
    assert db.execute("SELECT count(*) FROM diffix.dp_columns")[0][0] == 0
    db.admin.execute(
        "CALL diffix.mark_personal('t', 'id'); CALL diffix.set_dp_bounds('t', 'v', 0, 1)"
    )
    db.admin.execute("DROP TABLE t")
    assert db.execute("SELECT count(*) FROM diffix.dp_columns")[0][0] == 0


# --- exact and total statistics --------------------------------------------------------------

EXTREMES = """
CREATE TABLE extremes (pid integer, n numeric, f double precision, i bigint);
INSERT INTO extremes VALUES
  (1, '1e-400', 1e-300, 9007199254740991), (2, '1e400', 'NaN', 9007199254740991),
  (3, 'NaN', '-Infinity', 9007199254740991), (4, '-Infinity', 5e-324, NULL),
  (5, NULL, 1e300, 1);
CALL diffix.mark_personal('extremes', 'pid');
"""


def _extremes_catalog() -> StaticCatalog:
    columns = (
        ColumnInfo("pid", "integer", is_aid=True),
        ColumnInfo("n", "numeric"),
        ColumnInfo("f", "double precision"),
        ColumnInfo("i", "bigint"),
    )
    relation = RelationInfo("public", "extremes", RelationKind.PERSONAL, columns)
    return StaticCatalog({("public", "extremes"): relation})


@pytest.fixture(scope="module")
def extremes(dpdb):
    dpdb.admin.execute(EXTREMES)
    return dpdb


def _statistics(db, sql: str, bounds: dict, unique: bool) -> tuple[dict, list]:
    query = parse(sql, _extremes_catalog())
    metadata = planner.TableMetadata(2, unique, bounds)
    plan = planner.plan(query, metadata, 3)
    (row,) = _groups(db, f"SELECT NULL AS g0, * FROM ({plan.sql}) AS p").values()
    quantiles = [index for index, a in enumerate(plan.aggregates) if a.aggregate.kind == "quantile"]
    with db.admin.cursor() as cur:
        histograms = [
            cur.execute(plan.histogram_sql(query, metadata, i)).fetchall() for i in quantiles
        ]
    return row, histograms


@pytest.mark.parametrize("unique", [False, True])
def test_grid_sums_are_exact_beyond_double_precision(extremes, unique):
    """Three rows of 2^53 - 1 grid units and one clamped to the lower bound: the sum is odd and
    above 2^55, which no double holds."""
    bounds = {"i": planner.Bounds(9007199254730000.0, 9007199254740992.0)}
    row, _ = _statistics(extremes, "SELECT sum(i) FROM extremes", bounds, unique)
    assert row["a0_s"] == 3 * (2**53 - 1) + 9007199254730000


@pytest.mark.parametrize("unique", [False, True])
def test_no_value_of_a_row_makes_the_statistics_fail(extremes, unique):
    """Numerics beyond the range of a double or below its smallest, NaN, infinities, and
    products that underflow (a subnormal times 1 / step) are clamped or counted as 0; none
    raises. Bounds [-1e150, 1e150] and [-1e300, 1e300] have steps of 1e146 and 1e296: a bound
    is 10^4 steps from 0, the small values 0 steps."""
    wide = {"n": planner.Bounds(-1e150, 1e150), "f": planner.Bounds(-1e300, 1e300)}
    row, histograms = _statistics(
        extremes,
        "SELECT sum(n), avg(n), variance(n), median(n), sum(f), avg(f), median(f) FROM extremes",
        wide,
        unique,
    )
    # n: 0, 1e150 (1e400), 1e150 (NaN), -1e150 (-Infinity), NULL; f: 0, 1e300 (NaN),
    # -1e300, 0 (5e-324), 1e300
    assert (row["a0_s"], row["a1_n"], row["a1_s"], row["a2_q"]) == (10**4, 4, 10**4, 3 * 10**8)
    assert (row["a4_s"], row["a5_n"], row["a5_s"]) == (10**4, 5, 10**4)
    n_bins, f_bins = (sorted(h) for h in histograms)  # (grid point, rows): -10^4, 0, 10^4
    assert n_bins == [(-(10**4), 1), (0, 1), (10**4, 2)]
    assert f_bins == [(-(10**4), 1), (0, 2), (10**4, 2)]
    # narrow bounds away from 0: the numeric 1e-400 counts as 0 and is clamped to 0.5
    narrow = {"n": planner.Bounds(0.5, 3.0), "f": planner.Bounds(1e20, 1e20 + 1e8)}
    row, _ = _statistics(
        extremes, "SELECT sum(n), avg(f), variance(f) FROM extremes", narrow, unique
    )
    assert row["a0_s"] == (0.5 + 3 + 3 + 0.5) * 10**4  # step 1e-4
    # f centred on 1e20 + 5e7 in steps of 1e4: three rows at -5000, two at +5000
    assert (row["a1_n"], row["a1_s"], row["a2_q"]) == (5, -5000, 5 * 5000**2)
    # grid values beyond 2^62 (1e20 steps of 1e10) are numerics of 15 significant digits
    far = {"f": planner.Bounds(1e30, 1e30 + 1e14)}
    row, _ = _statistics(extremes, "SELECT sum(f) FROM extremes", far, unique)
    assert row["a0_s"] == 5 * 10**20


def test_an_analyst_gets_answers_over_extreme_values(extremes):
    extremes.admin.execute(
        "CALL diffix.set_dp_bounds('extremes', 'n', -1e300, 1e300);"
        "CALL diffix.set_dp_bounds('extremes', 'f', 0, 1e-300)"
    )
    role = _analyst(extremes)
    with extremes.as_role(role) as conn:
        doc = _dp(
            conn,
            "SELECT sum(n), avg(n), median(n), avg(f), median(f), stddev(f) FROM extremes",
            1.0,
        )
        assert len(doc["rows"]) == 1 and all(value is not None for value in doc["rows"][0])
        # a variance within [-1e300, 1e300] could be 1e600: refused before anything is read
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="too wide for a variance"):
            _dp(conn, "SELECT variance(n) FROM extremes", 1.0)
    assert _spent(extremes, role) == (pytest.approx(1.0), 0.0)


# --- the order of released rows --------------------------------------------------------------


def test_a_key_never_released_leaves_the_order_of_the_released_rows_alone(dpdb):
    """D: 40 shops of 300 customers; D': D plus one customer of a fresh shop (10 different
    ones in turn). The fresh shop is never released (delta 1e-6), and the executor's hash table
    holding it must not show: the rows come in the same order, sorted by shop, every time."""
    dpdb.admin.execute(
        "CREATE TABLE shops (id integer PRIMARY KEY, shop text);"
        "INSERT INTO shops SELECT i, 'shop ' || (i % 40) FROM generate_series(1, 12000) i;"
        "CALL diffix.mark_personal('shops', 'id')"
    )
    role = _analyst(dpdb, epsilon=100.0, delta=0.01)
    sql = "SELECT shop, count(*) FROM shops GROUP BY shop"
    expected = sorted(f"shop {i}" for i in range(40))
    with dpdb.as_role(role) as conn:
        on_d = _dp(conn, sql, 1.0, 1e-6)
        assert [row[0] for row in on_d["rows"]] == expected
        assert [row[0] for row in on_d["dp"]["rows"]] == expected
        for fresh in range(10):
            dpdb.admin.execute("INSERT INTO shops VALUES (20000, %s)", (f"new shop {fresh}",))
            on_d_prime = _dp(conn, sql, 1.0, 1e-6)
            dpdb.admin.execute("DELETE FROM shops WHERE id = 20000")
            assert [row[0] for row in on_d_prime["rows"]] == expected


# --- DP from plain SQL: post-processing, hints per entry point, accuracy columns ---------------


def _query_json(conn, sql: str) -> dict:
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]


def test_order_by_limit_and_offset_apply_to_the_released_rows(dpdb):
    role = _analyst(dpdb)
    grouped = "SELECT city, count(*) AS n FROM visits GROUP BY city"
    with dpdb.as_role(role) as conn:
        conn.execute("SELECT diffix.set('dp_epsilon', '0.5')")
        for order in ("city DESC", "1 DESC", "visits.city DESC", "v.city DESC"):
            sql = grouped.replace("visits", "visits v") if "v." in order else grouped
            rows = _query_json(conn, f"{sql} ORDER BY {order}")["rows"]
            assert [row[0] for row in rows] == ["Rome", "Oslo"]
        doc = _query_json(conn, f"{grouped} ORDER BY city LIMIT 1 OFFSET 1")
        assert [row[0] for row in doc["rows"]] == ["Rome"]
        assert len(doc["dp"]["rows"]) == 2  # both released, the LIMIT came after
        for order in ("n DESC", "count(*) DESC", "2 DESC"):
            counts = [row[1] for row in _query_json(conn, f"{grouped} ORDER BY {order}")["rows"]]
            assert counts == sorted(counts, reverse=True)
        rows = _query_json(conn, f"{grouped} ORDER BY city FETCH FIRST 1 ROWS ONLY")["rows"]
        assert [row[0] for row in rows] == ["Oslo"]
        # inside a subquery too, and under an outer query's own ORDER BY
        rows = _query_json(
            conn, f"SELECT city FROM ({grouped} ORDER BY city LIMIT 1) AS t ORDER BY 1 DESC"
        )["rows"]
        assert rows == [["Oslo"]]
        # an outer query filters and computes over released values
        rows = _query_json(
            conn, f"SELECT upper(city) FROM ({grouped}) AS t WHERE n > -1000 ORDER BY 1"
        )["rows"]
        assert rows == [["OSLO"], ["ROME"]]
        # LIMIT is no part of the aggregation: 601 rows counted at epsilon 0.5 (scale 2)
        (count,) = _query_json(conn, "SELECT count(*) FROM towns LIMIT 1")["rows"][0]
        assert abs(count - 601) < 60
    assert _spent(dpdb, role) == (pytest.approx(0.5 * 12), 0.0)


@pytest.mark.parametrize(
    ("clause", "message"),
    [
        ("ORDER BY amount", "ORDER BY amount names no columns"),
        ("ORDER BY sum(amount)", "ORDER BY SUM(amount) names no columns"),
        ("ORDER BY 4", "ORDER BY 4 names no columns"),
        ("ORDER BY n", "ORDER BY n names several columns"),
        ("LIMIT pid", "LIMIT of a DP query takes a constant"),
        ("LIMIT (SELECT 1)", "subqueries"),
        ("OFFSET (SELECT count(*) FROM visits)", "exactly one SELECT"),
        ("HAVING count(*) > 1", "HAVING is not supported"),
    ],
)
def test_post_processing_clauses_that_name_no_released_column_are_refused_for_free(
    dpdb, clause, message
):
    role = _analyst(dpdb)
    sql = f"SELECT city, count(*) AS n, count(pid) AS n FROM visits GROUP BY city {clause}"
    with (
        dpdb.as_role(role) as conn,
        pytest.raises(psycopg.errors.FeatureNotSupported, match=re.escape(message)),
    ):
        _dp(conn, sql, 0.5)
    assert _spent(dpdb, role) == (0.0, 0.0)


_MORE = "ask an administrator for more budget; SELECT * FROM diffix.privacy_budget() shows it"
_DOMAIN = (
    "ask an administrator to declare the keys' domain: "
    "CALL diffix.set_dp_domain(table, column, ARRAY[...])"
)


@pytest.mark.parametrize(
    ("case", "explicit", "hint"),
    [
        (
            "max_epsilon",
            True,
            "ask for at most 1, e.g. diffix.dp_query_json(sql, 1); "
            "administrators set dp_max_epsilon with diffix.configure",
        ),
        (
            "max_epsilon",
            False,
            "ask for at most 1, e.g. SELECT diffix.set('dp_epsilon', '1'); "
            "administrators set dp_max_epsilon with diffix.configure",
        ),
        (
            "max_delta",
            True,
            "ask for at most 1e-05, e.g. diffix.dp_query_json(sql, epsilon, "
            "1e-05); administrators set dp_max_delta with diffix.configure",
        ),
        (
            "max_delta",
            False,
            "ask for at most 1e-05, e.g. SELECT diffix.set('dp_delta', "
            "'1e-05'); administrators set dp_max_delta with diffix.configure",
        ),
        (
            "partition_delta",
            True,
            f"allow a delta, e.g. diffix.dp_query_json(sql, epsilon, 1e-06), or {_DOMAIN}",
        ),
        (
            "partition_delta",
            False,
            f"allow a delta, e.g. SELECT diffix.set('dp_delta', '1e-06'), or {_DOMAIN}",
        ),
        (
            "over_budget",
            True,
            f"ask for at most 0.3, e.g. diffix.dp_query_json(sql, 0.3), or {_MORE}",
        ),
        (
            "over_budget",
            False,
            f"ask for at most 0.3, e.g. SELECT diffix.set('dp_epsilon', '0.3'), or {_MORE}",
        ),
        ("no_delta_left", True, f"no delta is left in this period; {_MORE}"),
        ("no_delta_left", False, f"no delta is left in this period; {_MORE}"),
        ("positive_epsilon", True, "e.g. diffix.dp_query_json(sql, 0.5)"),
    ],
)
def test_each_hint_names_what_the_entry_point_can_change(dpdb, case, explicit, hint):
    """dp_query_json takes epsilon and delta as arguments; query_json, query and the proxy
    spend the session's dp_epsilon and dp_delta (the proxy's hints are query_json's)."""
    budget = {"over_budget": (0.3, 1e-3), "no_delta_left": (1.0, 0.0)}.get(case, (10.0, 1e-3))
    role = _analyst(dpdb, *budget)
    epsilon, delta, sql = 0.5, 0.0, "SELECT count(*) FROM people"
    if case == "max_epsilon":
        epsilon = 2.0
    elif case == "max_delta":
        delta = 0.1
    elif case == "positive_epsilon":
        epsilon = -1.0
    elif case in ("partition_delta", "no_delta_left"):
        sql = "SELECT town, count(*) FROM towns GROUP BY town"
        delta = 1e-6 if case == "no_delta_left" else 0.0
    with dpdb.as_role(role) as conn, pytest.raises(psycopg.Error) as refused:
        if explicit:
            _dp(conn, sql, epsilon, delta)
        else:
            conn.execute("SELECT diffix.set('dp_epsilon', %s)", (str(epsilon),))
            conn.execute("SELECT diffix.set('dp_delta', %s)", (str(delta),))
            _query_json(conn, sql)
    assert refused.value.diag.message_hint == hint
    assert _spent(dpdb, role) == (0.0, 0.0)


def test_hints_no_session_setting_can_reach_are_written_for_it_too():
    """dp_epsilon cannot be set to 0 or less, nor dp_delta outside [0, 0.5]: the engine's
    hints for those values are checked without a database."""
    from pldiffix.core.ledger import Remaining
    from pldiffix.dp.engine import Hints

    session = Hints(explicit=False)
    assert session.positive_epsilon() == "e.g. SELECT diffix.set('dp_epsilon', '0.5')"
    assert session.over_budget(Remaining(1.0, 2.5e-7), 0.5) == (
        f"ask for at most 2.5e-07, e.g. SELECT diffix.set('dp_delta', '2.5e-07'), or {_MORE}"
    )
    assert Hints(explicit=True).over_budget(Remaining(0.0, 0.0), 0.5) == (
        f"no epsilon is left in this period; {_MORE}"
    )


def test_interval_and_budget_columns_in_the_select_list(dpdb):
    role = _analyst(dpdb, epsilon=5.0)
    with dpdb.as_role(role) as conn:
        conn.execute("SELECT diffix.set('dp_epsilon', '0.5')")
        doc = _query_json(
            conn,
            "SELECT city, avg(amount) AS mean, diffix.dp_ci_low(avg(amount)) AS lo, "
            "diffix.dp_ci_high(avg(amount)) AS hi, diffix.dp_ci_high(count(*)), "
            "diffix.dp_budget_remaining() AS budget FROM visits GROUP BY city ORDER BY lo",
        )
        assert doc["columns"] == ["city", "mean", "lo", "hi", "dp_ci_high", "budget"]
        # the markers show the intervals of the report: avg's own, and count(*)'s, which
        # the select list does not show but which is released (and paid) all the same
        assert [a["aggregate"] for a in doc["dp"]["aggregates"]] == ["avg", "count_star"]
        assert [a["epsilon"] for a in doc["dp"]["aggregates"]] == [0.25, 0.25]
        released = {row[0]: row[1:] for row in doc["dp"]["rows"]}
        for city, mean, low, high, count_high, budget in doc["rows"]:
            average, count = released[city]
            assert mean == average["value"] and [low, high] == average["interval_95"]
            assert low <= mean <= high and count_high == count["interval_95"][1]
            assert budget == pytest.approx(4.5)
        assert [row[2] for row in doc["rows"]] == sorted(row[2] for row in doc["rows"])
        # a marker over an aggregate of the list adds no aggregate: one share, one interval
        doc = _query_json(
            conn,
            "SELECT count(*), diffix.dp_ci_low(count(*)), diffix.dp_ci_high(count(*)) FROM people",
        )
        assert len(doc["dp"]["aggregates"]) == 1
        (count, low, high) = doc["rows"][0]
        assert [low, high] == doc["dp"]["rows"][0][0]["interval_95"] and low <= count <= high
        # typed double precision for clients that see columns only
        types = conn.execute(
            "SELECT pg_typeof(lo), pg_typeof(budget) FROM diffix.query('SELECT count(*), "
            "diffix.dp_ci_low(count(*)) AS lo, diffix.dp_budget_remaining() AS budget "
            "FROM people') AS t(n bigint, lo float8, budget float8)"
        ).fetchone()
        assert types == ("double precision", "double precision")
        # outside a DP query: the budget is a plain function, the intervals refuse
        assert conn.execute("SELECT diffix.dp_budget_remaining()").fetchone() == (
            pytest.approx(3.5),
        )
        # quantiles have no interval (see their rank error)
        doc = _query_json(conn, "SELECT median(age), diffix.dp_ci_low(median(age)) FROM towns")
        assert doc["rows"][0][1] is None and doc["rows"][0][0] is not None
    assert _spent(dpdb, role) == (pytest.approx(2.0), 0.0)
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="only works in the select list"):
        dpdb.execute("SELECT diffix.dp_ci_low(count(*)) FROM people")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="only works in the select list"):
        dpdb.execute("SELECT diffix.dp_ci_high(1.5)")
    assert dpdb.execute("SELECT diffix.dp_budget_remaining()") == [(None,)]  # no budget


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("diffix.dp_ci_low(amount)", "not supported"),
        ("diffix.dp_ci_low(count(*), 1)", "takes one aggregate"),
        ("diffix.dp_ci_high()", "takes one aggregate"),
        ("diffix.dp_budget_remaining(1)", "takes no arguments"),
        ("diffix.dp_ci_low(diffix.dp_ci_high(count(*)))", "not supported"),
        ("diffix.dp_ci_low(max(amount))", "not supported"),
        ("diffix.dp_ci_low(count(*)) + 1", "grouping expression or an aggregate"),
        ("diffix.dp_budget_remaining()", "at least one aggregate"),
    ],
)
def test_markers_out_of_place_are_refused_for_free(dpdb, select, message):
    role = _analyst(dpdb)
    with (
        dpdb.as_role(role) as conn,
        pytest.raises(psycopg.errors.FeatureNotSupported, match=re.escape(message)),
    ):
        _dp(conn, f"SELECT {select} FROM people", 0.5)
    assert _spent(dpdb, role) == (0.0, 0.0)


# --- per-partition contribution bounds -------------------------------------------------------

SHOPPING = """
CREATE TABLE shopping (pid integer, shop text, amount numeric, note text);
-- person 1: 40 rows spread over 8 shops, amounts far above the bounds; persons 2..31: one to
-- three rows in one or two shops; a shop name that needs quoting and a NULL shop
INSERT INTO shopping SELECT 1, 'shop ' || (j % 8), 1000, 'x' FROM generate_series(1, 40) j;
INSERT INTO shopping SELECT i, CASE WHEN r = 1 THEN 'shop ' || (i % 3) ELSE 'O''Brien' END,
  i + r, CASE WHEN r = 2 THEN NULL ELSE 'y' END
  FROM generate_series(2, 31) i, generate_series(1, 1 + i % 3) r;
INSERT INTO shopping VALUES (2, NULL, 5, NULL);
CALL diffix.mark_personal('shopping', 'pid');
CALL diffix.set_dp_bounds('shopping', 'amount', 0, 50);
"""


def _shopping_catalog() -> StaticCatalog:
    columns = (
        ColumnInfo("pid", "integer", is_aid=True),
        ColumnInfo("shop", "text"),
        ColumnInfo("amount", "numeric"),
        ColumnInfo("note", "text"),
    )
    relation = RelationInfo("public", "shopping", RelationKind.PERSONAL, columns)
    return StaticCatalog({("public", "shopping"): relation})


@pytest.fixture(scope="module")
def shopping(dpdb):
    dpdb.admin.execute(SHOPPING)
    return dpdb


SHOPPING_SQL = (
    "SELECT shop, count(*), count(DISTINCT pid), count(note), sum(amount), avg(amount), "
    "variance(amount) FROM shopping GROUP BY shop"
)
BOUNDINGS = [
    pytest.param(planner.TableMetadata(5, False, {}), id="total k=5"),
    pytest.param(
        planner.TableMetadata(1, False, {}, max_groups_per_unit=3, max_rows_per_group=2),
        id="L0=3 Linf=2",
    ),
]


@pytest.mark.parametrize("metadata", BOUNDINGS)
@pytest.mark.parametrize("seed", [11, 12])
def test_one_unit_moves_every_statistic_by_at_most_its_sensitivity(shopping, metadata, seed):
    """The statistics of every group with and without person 1 (40 rows in 8 shops, values
    above the bounds), and without person 4 (2 rows in 2 shops): the L1 distance over all groups
    of each statistic is at most its sensitivity, and person 1 reaches it for the counts (it has
    more rows and groups than the bounds keep; its count of units too with per-partition
    bounds, while total bounds keep its first group whole)."""
    metadata = planner.TableMetadata(
        metadata.max_contributions,
        False,
        {"amount": planner.Bounds(0.0, 50.0)},
        max_groups_per_unit=metadata.max_groups_per_unit,
        max_rows_per_group=metadata.max_rows_per_group,
    )
    plan = planner.plan(parse(SHOPPING_SQL, _shopping_catalog()), metadata, seed)
    names = ["units", *(s.name for a in plan.aggregates for s in a.statistics)]
    sensitivity = {s.name: s.sensitivity for a in plan.aggregates for s in a.statistics}
    sensitivity["units"] = metadata.max_partitions

    def statistics(without: int | None) -> dict:
        sql = (
            plan.sql
            if without is None
            else plan.sql.replace(
                '"shopping"."pid" IS NOT NULL', f'"shopping"."pid" IS DISTINCT FROM {without}'
            )
        )
        assert without is None or sql != plan.sql
        return _groups(shopping, sql)

    full = statistics(None)
    for person in (1, 4):
        smaller = statistics(person)
        for name in names:
            moved = sum(
                abs(int(full[g][name]) - int(smaller.get(g, {}).get(name, 0))) for g in full
            )
            assert moved <= sensitivity[name], (person, name, moved)
            if person == 1 and name == "a0_n":
                assert moved == sensitivity[name]
            if person == 1 and name == "units" and metadata.per_partition:
                assert moved == sensitivity[name]  # L1 keeps whole groups: 1 of 5 rows
    # person 1 is in at most L0 (or k) groups after bounding
    without_1 = statistics(1)
    changed = [g for g in full if full[g]["units"] != without_1.get(g, {}).get("units", 0)]
    assert 1 <= len(changed) <= metadata.max_partitions


def test_per_partition_quantile_rows_keep_the_bounds(shopping):
    """The quantile's bounded rows: person 1 keeps at most Linf = 2 rows in at most L0 = 3
    shops (6 values at the upper bound: grid point 25000, step 0.001 around 25)."""
    query = parse("SELECT shop, median(amount) FROM shopping GROUP BY shop", _shopping_catalog())
    metadata = planner.TableMetadata(
        1, False, {"amount": planner.Bounds(0.0, 50.0)}, max_groups_per_unit=3, max_rows_per_group=2
    )
    for seed in (1, 2, 3):
        plan = planner.plan(query, metadata, seed)
        with shopping.admin.cursor() as cur:
            rows = cur.execute(plan.histogram_sql(query, metadata, 0)).fetchall()
        top = [(shop, n) for shop, point, n in rows if point == 25000]
        assert sum(n for _, n in top) == 6 and len(top) == 3 and all(n == 2 for _, n in top)


def test_admins_set_per_partition_bounds_and_analysts_get_them(shopping):
    shopping.admin.execute("CALL diffix.set_dp_bounds_per_partition('shopping', 3, 2)")
    rows = shopping.execute(
        "SELECT setting, value FROM diffix.show_dp_metadata() WHERE objname = 'public.shopping' "
        "AND objtype = 'table'"
    )
    assert ("max_groups_per_unit", "3") in rows and ("max_rows_per_group", "2") in rows
    role = _analyst(shopping, epsilon=100.0, delta=0.01)
    with shopping.as_role(role) as conn:
        doc = _dp(conn, "SELECT shop, count(*), median(amount) FROM shopping GROUP BY 1", 1, 1e-6)
        report = doc["dp"]
        assert (report["max_groups_per_unit"], report["max_rows_per_group"]) == (3, 2)
        assert report["max_contributions"] == 6
        assert report["partition_selection"]["count"] == "count_star"
        # 30 people over 5 shops: no shop reaches a threshold of 2 + ~83 (scale 6, delta 1e-6 / 3)
        assert doc["rows"] == []
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CALL diffix.set_dp_bounds_per_partition('shopping', 100, 100)")
    # the L1 shorthand replaces them
    shopping.admin.execute("CALL diffix.set_dp_max_contributions('shopping', 4)")
    rows = shopping.execute(
        "SELECT setting FROM diffix.show_dp_metadata() WHERE objname = 'public.shopping' "
        "AND objtype = 'table'"
    )
    assert rows == [("max_contributions",)]


@pytest.mark.parametrize(
    ("groups", "rows", "message"),
    [
        ("3", "NULL", "give both"),
        ("0", "2", "between 1 and 100000"),
        ("3", "100001", "between 1 and 100000"),
        ("-1", "-1", "between 1 and 100000"),
    ],
)
def test_bad_per_partition_bounds_are_refused(shopping, groups, rows, message):
    before = shopping.execute("SELECT * FROM diffix.dp_tables ORDER BY relid")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        shopping.admin.execute(
            f"CALL diffix.set_dp_bounds_per_partition('shopping', {groups}, {rows})"
        )
    assert shopping.execute("SELECT * FROM diffix.dp_tables ORDER BY relid") == before
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not personal"):
        shopping.admin.execute("CALL diffix.set_dp_bounds_per_partition('lookup', 1, 1)")


def test_a_query_showing_the_remaining_budget_is_never_replayed(dpdb):
    """dp_budget_remaining() changes with every spend: the same query pays again and shows the
    budget as it is now, not a stored answer's."""
    role = _analyst(dpdb, epsilon=1.0, delta=0.0)
    sql = "SELECT count(*), diffix.dp_budget_remaining() FROM people"
    with dpdb.as_role(role) as conn:
        first = _dp(conn, sql, 0.25)
        second = _dp(conn, sql, 0.25)
    assert first["rows"][0][1] == pytest.approx(0.75)
    assert second["rows"][0][1] == pytest.approx(0.5)
    assert _spent(dpdb, role) == (pytest.approx(0.5), 0.0)
