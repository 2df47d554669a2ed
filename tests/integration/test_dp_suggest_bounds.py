"""diffix.dp_suggest_bounds end to end: admins get bounds covering most of the data, charged to
their own budget and audited; analysts are refused; bad input and hostile settings spend
nothing or change nothing."""

from __future__ import annotations

import random

import psycopg
import pytest

from pldiffix.dp import bounds

DATA = """
CREATE TABLE incomes (id integer PRIMARY KEY, income numeric, age integer, score real,
                      name text, big numeric);
INSERT INTO incomes
SELECT i, round((1000 * exp(i % 97 / 20.0))::numeric, 2), 18 + i % 70, (i % 13) - 6.5,
       'n' || i, CASE WHEN i % 3 = 0 THEN 1e400 WHEN i % 3 = 1 THEN -1e-400 ELSE 'NaN' END
FROM generate_series(1, 20000) i;
CALL diffix.mark_personal('incomes', 'id');
-- many rows per person: person 0 has 5000 huge rows, the others 2 each
CREATE TABLE payments (pid integer, amount double precision);
INSERT INTO payments SELECT 0, 1e15 FROM generate_series(1, 5000);
INSERT INTO payments SELECT 1 + i % 5000, 10 + i % 90 FROM generate_series(1, 10000) i;
CALL diffix.mark_personal('payments', 'pid');
CALL diffix.set_dp_max_contributions('payments', 2);
CREATE TABLE open_data (id integer, v integer);
CALL diffix.mark_public('open_data');
"""


@pytest.fixture(scope="module")
def world(module_db):
    module_db.admin.execute(DATA)
    return module_db


def _admin(db) -> str:
    return db.execute("SELECT current_user")[0][0]


def _budget(db, role: str, epsilon: float = 1000) -> None:
    db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (role, epsilon, 0.5))


def _ledger(db) -> list[tuple]:
    return db.execute(
        "SELECT role_name, epsilon::float8, delta::float8, mechanism FROM diffix.budget_ledger "
        "WHERE mechanism = 'dp_bounds' ORDER BY id"
    )


def test_admins_get_bounds_covering_most_data_charged_and_audited(world):
    admin = _admin(world)
    _budget(world, admin)
    before = len(_ledger(world))
    low, high = world.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1)")[0]
    inside = world.execute(
        "SELECT avg((income BETWEEN %s AND %s)::int)::float8 FROM incomes", (low, high)
    )[0][0]
    assert inside >= 0.95
    assert 500 <= low <= 1100 and 100_000 <= high <= 200_000  # data: 1000 .. 1000 e^4.8
    assert _ledger(world)[before:] == [(admin, 1.0, 0.0, "dp_bounds")]
    log = world.execute(
        "SELECT mechanism, accepted, epsilon::float8, level, sql FROM diffix.show_audit() "
        "WHERE mechanism = 'dp_bounds' ORDER BY id DESC LIMIT 1"
    )[0]
    assert log[:4] == ("dp_bounds", True, 1.0, "admin") and "incomes.income" in log[4]
    # what it returns is what set_dp_bounds takes
    world.admin.execute("CALL diffix.set_dp_bounds('incomes', 'income', %s, %s)", (low, high))


def test_integer_real_and_extreme_values(world):
    _budget(world, _admin(world))
    low, high = world.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'age', 1)")[0]
    assert 14 <= low <= 19 and 87 <= high <= 110
    low, high = world.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'score', 1)")[0]
    assert -8 <= low <= -5 and 5 <= high <= 8
    # 1e400, -1e-400 and NaN numerics: no error, clamped to the outer cells and zero
    low, high = world.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'big', 1)")[0]
    assert low < 0 < high and high >= 1e19


def test_contributions_are_bounded_per_unit(world):
    """Person 0's 5000 rows of 1e15 count as 2: the high bound stays near the others' 100."""
    _budget(world, _admin(world))
    low, high = world.execute("SELECT * FROM diffix.dp_suggest_bounds('payments', 'amount', 1)")[0]
    assert 8 <= low <= 12 and 90 <= high <= 130


def test_the_sql_cells_match_the_python_cells(world):
    rng = random.Random(1)
    values = [0.0, 1e-300, -1e-300, 2.0**-20, 1.0, -1.0, 1e19, -1e19, 1e308, -1e308, 2.0**64]
    values += [rng.choice([-1, 1]) * 10 ** rng.uniform(-7, 20) for _ in range(300)]
    values = [v for v in values if not _near_an_edge(v)]
    sql = bounds.cell_sql("v", "float8")
    found = world.execute(f"SELECT {sql} FROM unnest(%s::float8[]) AS t(v)", (values,))
    assert [row[0] for row in found] == [bounds.cell_of(v) for v in values]
    numeric = bounds.cell_sql("v", "numeric")
    extremes = world.execute(
        f"SELECT {numeric} FROM unnest(ARRAY[1e400, -1e400, 'NaN', 1e-400, 0, 12.5]::numeric[]) "
        "AS t(v)"
    )
    assert [row[0] for row in extremes] == [
        bounds.CELLS - 1,
        0,
        bounds.CELLS - 1,
        bounds.ZERO,
        bounds.ZERO,
        bounds.cell_of(12.5),
    ]


def _near_an_edge(value: float) -> bool:
    """Within rounding of a cell edge, SQL's and Python's logarithms may disagree."""
    if value == 0.0 or abs(value) < 2.0**-20 or abs(value) > 2.0**64:
        return False
    import math

    position = math.log2(abs(value)) * bounds.STEPS_PER_OCTAVE
    return abs(position - round(position)) < 1e-9


def test_analysts_are_refused_and_nothing_is_spent(world):
    before = _ledger(world)
    for level in ("anonymized_dp", "anonymized_trusted", "direct"):
        analyst = world.create_role(level)
        _budget(world, analyst)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only superusers"):
            world.as_role(analyst).execute(
                "SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1)"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            world.as_role(analyst).execute(
                "SELECT * FROM diffix._dp_suggest_bounds('incomes'::regclass, 'income', 1)"
            )
    assert _ledger(world) == before


def test_set_role_to_an_analyst_is_refused(world):
    analyst = world.create_role("anonymized_dp")
    _budget(world, analyst)
    before = _ledger(world)
    conn = world.connect()
    conn.execute(f'SET ROLE "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1)")
    assert _ledger(world) == before


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("SELECT * FROM diffix.dp_suggest_bounds('nowhere', 'income', 1)", "does not exist"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'nothing', 1)", "nothing"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'name', 1)", "not numeric"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'id', 1)", "AID"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', NULL, 1)", "NULL"),
        ("SELECT * FROM diffix.dp_suggest_bounds(NULL, 'income', 1)", "NULL"),
        ("SELECT * FROM diffix.dp_suggest_bounds('open_data', 'v', 1)", "not personal"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 0)", "positive"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', -1)", "positive"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 'NaN')", "positive"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', NULL)", "positive"),
        ("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1e6)", "dp_max_epsilon"),
    ],
)
def test_bad_input_is_refused_before_any_charge(world, statement, message):
    _budget(world, _admin(world))
    before = _ledger(world)
    with pytest.raises(psycopg.Error, match=message):
        world.admin.execute(statement)
    assert _ledger(world) == before


def test_an_admin_without_enough_budget_is_refused(world):
    admin = _admin(world)
    spent = world.execute(
        "SELECT COALESCE(sum(epsilon), 0)::float8 FROM diffix.budget_ledger WHERE role_name = %s",
        (admin,),
    )[0][0]
    _budget(world, admin, epsilon=spent + 0.5)
    before = _ledger(world)
    with pytest.raises(psycopg.Error, match="budget"):
        world.admin.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1)")
    assert _ledger(world) == before
    _budget(world, admin)


def test_hostile_session_settings_change_nothing(world):
    """Shadowing functions and operators in public and pg_temp, odd settings: the suggestion
    runs with its pinned search path and gives the same kind of answer."""
    _budget(world, _admin(world))
    conn = world.connect()
    conn.execute(
        "CREATE FUNCTION public.ln(double precision) RETURNS double precision LANGUAGE sql "
        "AS 'SELECT 0::float8'; "
        "CREATE FUNCTION pg_temp.abs(double precision) RETURNS double precision LANGUAGE sql "
        "AS 'SELECT 0::float8'; "
        "CREATE FUNCTION public.bad_lt(numeric, numeric) RETURNS boolean LANGUAGE sql "
        "AS 'SELECT true'; "
        "CREATE OPERATOR public.< (LEFTARG = numeric, RIGHTARG = numeric, "
        "FUNCTION = public.bad_lt); "
        "SET search_path = pg_temp, public, pg_catalog; "
        "SET extra_float_digits = -15; SET standard_conforming_strings = off; "
        "SET work_mem = '64kB'"
    )
    low, high = conn.execute(
        "SELECT * FROM diffix.dp_suggest_bounds('incomes', 'income', 1)"
    ).fetchone()
    assert 500 <= low <= 1100 and 100_000 <= high <= 200_000
    conn.execute(
        "DROP OPERATOR public.< (numeric, numeric); DROP FUNCTION public.bad_lt, public.ln"
    )


def test_a_suggestion_failing_after_the_charge_has_paid_and_is_logged(world):
    admin = _admin(world)
    _budget(world, admin)
    before = len(_ledger(world))
    locker = world.connect()
    locker.autocommit = False
    locker.execute("LOCK TABLE incomes IN ACCESS EXCLUSIVE MODE")
    try:
        conn = world.connect()
        conn.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("SELECT * FROM diffix.dp_suggest_bounds('incomes', 'age', 0.25)")
    finally:
        locker.rollback()
    assert _ledger(world)[before:] == [(admin, 0.25, 0.0, "dp_bounds")]
    last = world.execute(
        "SELECT accepted, reason FROM diffix.show_audit() WHERE mechanism = 'dp_bounds' "
        "ORDER BY id DESC LIMIT 1"
    )[0]
    assert last[0] is False and "lock timeout" in last[1]
