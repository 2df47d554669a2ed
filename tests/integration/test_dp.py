"""Differential privacy end to end: metadata, contribution bounding in SQL, levels, queries."""

from __future__ import annotations

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
CALL diffix.mark_personal('visits', 'pid');
CALL diffix.mark_personal('people', 'id');
CALL diffix.mark_public('lookup');
"""


@pytest.fixture(scope="module")
def dpdb(module_db):
    module_db.admin.execute(VISITS)
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
    # Rome: three rows clamped to 0 (bin 1) and person 1's two rows clamped to 100 (last bin)
    assert ("Rome", 1, 3) in rows and ("Rome", planner.QUANTILE_BINS, 2) in rows
    assert sum(n for city, _, n in rows if city == "Rome") == 5


# --- metadata --------------------------------------------------------------------------------


def test_admins_declare_metadata_and_everyone_sees_it(dpdb):
    dpdb.admin.execute(
        "CALL diffix.set_dp_bounds('visits', 'amount', 0, 100);"
        "CALL diffix.set_dp_max_contributions('visits', 2);"
        "CALL diffix.set_dp_domain('visits', 'city', ARRAY['Rome', 'Oslo']);"
        "CALL diffix.set_dp_bounds('people', 'amount', 0, 200);"
    )
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
        # the Diffix engine, called directly, refuses a DP role: its answers spend no budget
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="dp_query_json"):
            conn.execute(
                "SELECT diffix._anonymized_query_json('SELECT count(*) FROM visits', "
                "'anonymized_trusted', ARRAY['public'])"
            )
    labels = dpdb.execute("SELECT label FROM diffix.show_labels() WHERE objname = %s", (analyst,))
    assert labels == [("anonymized_dp",)]
