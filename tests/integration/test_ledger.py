"""Privacy budgets and the ledger, attacked: rollback, races, refusals, forged and reset charges.

Charges go through diffix._charge_budget, the SQL function the DP path calls (via
pldiffix.core.ledger.charge); it charges the role the session acts as.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from pldiffix_installer import install, uninstall

# Only the gate (owner diffix_engine) may charge; the tests charge as it does, through a
# definer of the same owner.
CHARGE = "SELECT * FROM public.charge_as_engine(%s, %s, %s)"


def _create_charger(database) -> None:
    database.admin.execute(
        """
        CREATE FUNCTION public.charge_as_engine(e double precision, d double precision, s text)
        RETURNS TABLE (epsilon_remaining double precision, delta_remaining double precision)
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
          SELECT c.epsilon_remaining, c.delta_remaining FROM diffix._charge_budget(e, d, s, 'dp') c
        $$;
        ALTER FUNCTION public.charge_as_engine(double precision, double precision, text)
          OWNER TO diffix_engine;
        """
    )


@pytest.fixture(autouse=True)
def charge_as_engine(request):
    if "db" in request.fixturenames:
        _create_charger(request.getfixturevalue("db"))


def test_analysts_cannot_charge_directly(db, analyst):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute("SELECT * FROM diffix._charge_budget(1, 0, 'x', 'dp')")


def _budget(db, role: str) -> tuple:
    rows = db.execute(
        "SELECT epsilon_total, delta_total, epsilon_spent, delta_spent, epsilon_remaining, "
        "delta_remaining, renews_at FROM diffix.privacy_budget() WHERE role = %s",
        (role,),
    )
    return rows[0] if rows else None


def _ledger(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT epsilon, delta, mechanism, sql, session_role FROM diffix.budget_ledger "
        "WHERE role_name = %s ORDER BY id",
        (role,),
    )


@pytest.fixture
def analyst(db):
    role = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 3, 0.001)", (role,))
    return role


def test_a_charge_survives_the_callers_rollback(db, analyst):
    conn = db.as_role(analyst)
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        assert conn.execute(CHARGE, (1.0, 0.0001, "SELECT 1")).fetchone() == (2.0, 0.0009)
        conn.execute("SELECT 1 / 0")
    conn.execute("BEGIN")
    conn.execute(CHARGE, (0.5, 0, "SELECT 2"))
    conn.execute("ROLLBACK")
    assert _budget(db, analyst)[2:6] == (
        Decimal("1.5"),
        Decimal("0.0001"),
        Decimal("1.5"),
        Decimal("0.0009"),
    )
    assert _ledger(db, analyst) == [
        (Decimal("1"), Decimal("0.0001"), "dp", "SELECT 1", analyst),
        (Decimal("0.5"), Decimal("0"), "dp", "SELECT 2", analyst),
    ]


def test_racing_sessions_get_exactly_the_charges_the_budget_admits(db, analyst):
    sessions = [db.as_role(analyst) for _ in range(8)]
    barrier = threading.Barrier(len(sessions))
    outcomes: list[str] = []

    def race(conn: psycopg.Connection) -> None:
        barrier.wait()
        try:
            conn.execute(CHARGE, (1.0, 0.0, "SELECT count(*) FROM t"))
            outcomes.append("charged")
        except psycopg.errors.ProgramLimitExceeded:
            outcomes.append("refused")

    threads = [threading.Thread(target=race, args=(conn,)) for conn in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["charged"] * 3 + ["refused"] * 5
    assert db.execute(
        "SELECT sum(epsilon), count(*) FROM diffix.budget_ledger WHERE role_name = %s", (analyst,)
    ) == [(Decimal("3"), 3)]
    assert _budget(db, analyst)[2] == Decimal("3")
    assert _budget(db, analyst)[4] == Decimal("0")


def test_a_refused_charge_spends_nothing_and_says_what_is_left(db, analyst):
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (2.5, 0, "SELECT 1"))
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
        conn.execute(CHARGE, (1.0, 0, "SELECT 2"))
    assert "epsilon 0.5, delta 0.001 left" in error.value.diag.message_primary
    assert error.value.diag.message_detail == "nothing was spent"
    assert "smaller epsilon" in error.value.diag.message_hint
    with pytest.raises(psycopg.errors.ProgramLimitExceeded):
        conn.execute(CHARGE, (0.1, 0.002, "SELECT 3"))  # delta alone is too much
    assert _budget(db, analyst)[2:4] == (Decimal("2.5"), Decimal("0"))
    assert len(_ledger(db, analyst)) == 1


@pytest.mark.parametrize(
    ("epsilon", "delta"),
    [(-1.0, 0.0), (0.0, 0.0), (float("nan"), 0.0), (float("inf"), 0.0), (1.0, -0.1), (1.0, 1.0)],
)
def test_a_negative_or_invalid_cost_cannot_refund_or_reset(db, analyst, epsilon, delta):
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (2.0, 0, "SELECT 1"))
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(CHARGE, (epsilon, delta, "refund"))
    assert _budget(db, analyst)[2] == Decimal("2")


def test_a_role_without_a_budget_gets_a_clear_error(db):
    role = db.create_role("anonymized_untrusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as error:
        db.as_role(role).execute(CHARGE, (0.1, 0, "SELECT 1"))
    assert error.value.diag.message_primary == f'role "{role}" has no privacy budget'
    assert "diffix.set_privacy_budget" in error.value.diag.message_hint


def test_the_budget_charged_is_the_role_the_session_acts_as(db, analyst):
    """A login role that SETs ROLE to a group pays from the group's budget, never another's."""
    team = db.create_role("anonymized_untrusted", login=False)
    member = db.create_role("anonymized_untrusted")
    db.admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(team), sql.Identifier(member)))
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0)", (team,))
    conn = db.as_role(member)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(CHARGE, (0.5, 0, "mine"))
    conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(team)))
    conn.execute(CHARGE, (0.5, 0, "the team's"))
    assert _ledger(db, team) == [(Decimal("0.5"), Decimal("0"), "dp", "the team's", member)]
    assert _budget(db, analyst)[2] == Decimal("0")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(analyst)))


def test_analysts_see_their_own_budget_and_admins_see_all(db, analyst):
    other = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 7, 0)", (other,))
    rows = db.as_role(analyst).execute("SELECT * FROM diffix.privacy_budget()").fetchall()
    assert rows == [
        (analyst, 3, Decimal("0.001"), 0, 0, 3, Decimal("0.001"), None, "eps_delta")
        + (None,) * 4
        + (0, 0, 0, None, None, None)
    ]
    assert {r[0] for r in db.execute("SELECT * FROM diffix.privacy_budget()")} >= {analyst, other}


def test_status_lists_the_budgets(db, analyst, capsys):
    db.as_role(analyst).execute(CHARGE, (1.0, 0, "SELECT 1"))
    assert install.status(db.dsn()) == 0
    out = capsys.readouterr().out
    budgets = out[out.index("Privacy budgets:") : out.index("Audit log:")]
    assert [line.split() for line in budgets.splitlines()[3:] if line.strip()] == [
        [analyst, "|", "3", "|", "0.001", "|", "1", "|", "0", "|", "NULL"]
    ]


def test_set_privacy_budget_changes_totals_and_keeps_what_was_spent(db, analyst):
    db.as_role(analyst).execute(CHARGE, (1.0, 0, "SELECT 1"))
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 0.01)", (analyst,))
    assert _budget(db, analyst)[:6] == (10, Decimal("0.01"), 1, 0, 9, Decimal("0.01"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("{role}", -1, 0), "invalid epsilon"),
        (("{role}", float("nan"), 0), "invalid epsilon"),
        (("{role}", float("inf"), 0), "invalid epsilon"),
        (("{role}", 1, 1), "invalid delta"),
        (("{role}", 1, -0.5), "invalid delta"),
        (("{role}", 1, None), "invalid delta"),
        (("nosuchrole", 1, 0), 'role "nosuchrole" does not exist'),
    ],
)
def test_set_privacy_budget_refuses_bad_input_and_changes_nothing(db, analyst, arguments, message):
    role, epsilon, delta = arguments
    with pytest.raises(psycopg.Error) as error:
        db.admin.execute(
            "CALL diffix.set_privacy_budget(%s, %s, %s)",
            (role.format(role=analyst), epsilon, delta),
        )
    assert message in error.value.diag.message_primary
    assert _budget(db, analyst)[:2] == (3, Decimal("0.001"))


def test_set_privacy_budget_refuses_a_period_that_is_not_positive(db, analyst):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0, interval '-1 day')", (analyst,))
    assert _budget(db, analyst)[6] is None


def test_a_renewing_budget_resets_when_its_period_has_passed(db, analyst):
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0, interval '1 day')", (analyst,))
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (1.0, 0, "day one"))
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
        conn.execute(CHARGE, (1.0, 0, "too soon"))
    assert "wait until the budget renews at" in error.value.diag.message_hint
    renews_at = _budget(db, analyst)[6]
    # Three and a half days later: the current period is the fourth, which ends 12 hours sooner.
    db.execute(
        "UPDATE diffix.privacy_budgets "
        "SET period_start = period_start - interval '3 days 12 hours' WHERE roleid = %s::regrole",
        (analyst,),
    )
    assert _budget(db, analyst)[2] == 0
    assert _budget(db, analyst)[6] == renews_at - timedelta(hours=12)
    conn.execute(CHARGE, (1.0, 0, "day four"))
    assert _budget(db, analyst)[2:5] == (1, 0, 0)


def test_budget_periods_are_whole_multiples_of_the_renewal(module_db):
    rows = module_db.execute(
        "SELECT diffix._budget_period('2026-01-01', '1 day', '2026-01-01 23:59'),"
        "       diffix._budget_period('2026-01-01', '1 day', '2026-01-11 00:00'),"
        "       diffix._budget_period('2026-01-31', '1 month', '2026-05-02'),"
        "       diffix._budget_period('2026-01-01', '1 second', '2027-01-01 00:00:00.5'),"
        "       diffix._budget_period('2026-01-01', NULL, '2030-01-01')"
    )
    days = [value.isoformat() for value in rows[0]]
    assert days == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-11T00:00:00+00:00",
        "2026-04-30T00:00:00+00:00",
        "2027-01-01T00:00:00+00:00",
        "2026-01-01T00:00:00+00:00",
    ]


def test_analysts_cannot_read_or_change_budgets_or_the_ledger(db, analyst):
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (1.0, 0, "SELECT 1"))
    victim = db.create_role("anonymized_untrusted")
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 3, 0)", (victim,))
    attacks = [
        "SELECT * FROM diffix.privacy_budgets",
        "SELECT * FROM diffix.budget_ledger",
        "SELECT * FROM diffix.ledger_link",
        "UPDATE diffix.privacy_budgets SET epsilon_spent = 0",
        "DELETE FROM diffix.budget_ledger",
        "INSERT INTO diffix.privacy_budgets (roleid, epsilon_total, delta_total) "
        "VALUES (1, 100, 0)",
        f"CALL diffix.set_privacy_budget('{analyst}', 100, 0)",
        # the internal writers: reset, refund or charge someone else
        f"SELECT diffix._ledger_spend('{victim}'::regrole::oid, '{victim}', '{victim}', 3, 0, "
        "NULL, 'dp', 'x', 1, NULL)",
        f"SELECT diffix._ledger_spend('{analyst}'::regrole::oid, '{analyst}', '{analyst}', -1, "
        "0, NULL, 'dp', 'x', 1, NULL)",
        "SELECT diffix._loopback('UPDATE diffix.privacy_budgets SET epsilon_spent = 0')",
        "SELECT diffix._ledger_connstr()",
        "SELECT diffix._ledger_probe('host=/tmp')",
        "SELECT diffix._ledger_choose_link()",
        # dblink itself, and the backend's open loopback connection
        "SELECT diffix_dblink.dblink_get_connections()",
        "SELECT * FROM diffix_dblink.dblink('pldiffix_ledger', "
        "'UPDATE diffix.privacy_budgets SET epsilon_spent = 0') AS t(x text)",
        "SELECT diffix_dblink.dblink_exec('pldiffix_ledger', 'DELETE FROM diffix.budget_ledger')",
    ]
    for attack in attacks:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)
    assert _budget(db, analyst)[2] == 1
    assert _budget(db, victim)[2] == 0
    assert len(_ledger(db, analyst)) == 1


def test_the_loopback_reconnects_when_its_backend_dies(db, analyst):
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (1.0, 0, "first"))
    killed = db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'pldiffix_ledger' AND datname = current_database()"
    )
    assert killed and all(ok for (ok,) in killed)
    conn.execute(CHARGE, (1.0, 0, "second"))
    assert [row[3] for row in _ledger(db, analyst)] == ["first", "second"]


def test_check_security_reports_whoever_could_use_the_loopback(db):
    assert not [f for f in db.execute("SELECT * FROM diffix.check_security()") if "ledger" in f[2]]
    intruder = db.create_role("direct")
    db.admin.execute(
        "GRANT EXECUTE ON FUNCTION diffix_dblink.dblink_exec(text, text) TO PUBLIC;"
        f'GRANT diffix_ledger TO "{intruder}"'
    )
    leftover = "diffix_ledger_4000000000"  # the login role of a database dropped without uninstall
    db.admin.execute(f"CREATE ROLE {leftover} LOGIN; GRANT diffix_ledger TO {leftover}")
    db.roles.append(leftover)
    findings = {(f[0], f[1], f[3]) for f in db.execute("SELECT * FROM diffix.check_security()")}
    assert (
        "critical",
        "diffix_dblink.dblink_exec(text,text)",
        "REVOKE EXECUTE ON FUNCTION diffix_dblink.dblink_exec(text,text) FROM PUBLIC",
    ) in findings
    assert ("critical", intruder, f"REVOKE diffix_ledger FROM {intruder}") in findings
    assert ("warning", leftover, f"DROP ROLE {leftover}") in findings


def test_the_python_contract_in_the_server(db):
    """core/ledger.py as the DP path calls it, inside PL/Python (as the superuser, whose own
    budget it spends): remaining, charge, and a refusal raised as a clean user error."""
    db.admin.execute("CALL diffix.set_privacy_budget('postgres', 1, 0.5)")
    body = """
plpy.execute("SELECT diffix._load_python()")
from pldiffix.core import ledger
from pldiffix.core.errors import reports_errors

before = ledger.remaining(plpy)
after = ledger.charge(plpy, epsilon=0.75, delta=0.25, sql="SELECT 1", mechanism="dp")
plpy.notice(f"{before.epsilon} {before.delta} {after.epsilon} {after.delta}")

@reports_errors
def overspend(plpy):
    ledger.charge(plpy, epsilon=0.5, delta=0.0, sql="SELECT 2", mechanism="dp")

overspend(plpy)
"""
    notices: list[str] = []
    db.admin.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
        db.admin.execute(sql.SQL("DO {} LANGUAGE plpython3u").format(sql.Literal(body)))
    assert notices == ["1.0 0.5 0.25 0.25"]
    # a DO block adds PL/Python's prefix; entry points' PL/pgSQL wrappers strip it (_reraise)
    assert error.value.diag.message_primary == (
        "plpy.Error: privacy budget exceeded: this query costs epsilon 0.5, delta 0; "
        'role "postgres" has epsilon 0.25, delta 0.25 left'
    )
    assert error.value.diag.message_detail == "nothing was spent"
    assert error.value.diag.message_hint.startswith("ask for a smaller epsilon")
    spent = (Decimal("0.75"), Decimal("0.25"), "dp", "SELECT 1", "postgres")
    assert _ledger(db, "postgres") == [spent]


def test_a_dblink_the_database_had_is_used_and_closed_to_analysts(empty_db):
    empty_db.admin.execute("CREATE EXTENSION dblink")  # in public, executable by PUBLIC
    install.install(empty_db.dsn(), out=io.StringIO())
    analyst = empty_db.create_role("anonymized_untrusted")
    empty_db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0)", (analyst,))
    _create_charger(empty_db)
    conn = empty_db.as_role(analyst)
    conn.execute(CHARGE, (1.0, 0, "SELECT 1"))
    for attack in [  # moved to diffix_dblink by the install (test_ledger_link.py)
        "SELECT diffix_dblink.dblink_get_connections()",
        "SELECT diffix_dblink.dblink_exec('pldiffix_ledger', 'DELETE FROM diffix.budget_ledger')",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)
    assert _budget(empty_db, analyst)[2] == 1
    login = empty_db.execute("SELECT login_role FROM diffix.ledger_link")[0][0]
    out = io.StringIO()
    uninstall.uninstall(empty_db.dsn(), out=out)
    assert f"dropped role {login}" in out.getvalue()
    assert empty_db.execute("SELECT to_regrole(%s)", (login,)) == [(None,)]
    assert empty_db.execute(
        "SELECT count(*) FROM aclexplode((SELECT proacl FROM pg_proc "
        "WHERE oid = 'public.dblink_exec(text, text)'::regprocedure)) a "
        "WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = 'diffix_ledger')"
    ) == [(0,)]
    # uninstall dropped the cluster-wide group roles no other database uses: later tests need them
    install.install(empty_db.dsn(), out=io.StringIO())


def test_a_definer_function_charges_and_logs_its_caller_not_its_owner(db, analyst):
    """The DP path charges from inside diffix_engine's SECURITY DEFINER function: the budget and
    the log row must be the analyst's, never the definer's."""
    db.admin.execute(
        """
        CREATE FUNCTION public.pay_as_engine() RETURNS double precision
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
          SELECT diffix._audit_record('anonymized_untrusted', 'dp', 'as engine', true);
          SELECT epsilon_remaining FROM diffix._charge_budget(1, 0, 'as engine', 'dp')
        $$;
        ALTER FUNCTION public.pay_as_engine() OWNER TO diffix_engine;
        """
    )
    db.admin.execute("CALL diffix.set_privacy_budget('diffix_engine', 100, 0)")
    assert db.as_role(analyst).execute("SELECT public.pay_as_engine()").fetchone() == (2.0,)
    assert _ledger(db, analyst) == [(Decimal("1"), Decimal("0"), "dp", "as engine", analyst)]
    assert _budget(db, "diffix_engine")[2] == 0
    assert db.execute(
        "SELECT session_role, effective_role FROM diffix.show_audit() WHERE sql = 'as engine'"
    ) == [(analyst, analyst)]


def test_the_ledger_keeps_a_statement_up_to_the_cap_with_its_length_and_sha256(db, analyst):
    statement = "SELECT " + "ü" * (1 << 19)  # 1 MiB and 7 bytes
    db.as_role(analyst).execute(CHARGE, (1.0, 0, statement))
    kept, length, sha256 = db.execute(
        "SELECT sql, sql_bytes, sql_sha256 FROM diffix.budget_ledger WHERE role_name = %s",
        (analyst,),
    )[0]
    assert length == len(statement.encode()) == (1 << 20) + 7
    assert sha256 == hashlib.sha256(statement.encode()).hexdigest()
    assert statement.startswith(kept) and len(kept.encode()) == 8191  # whole characters


# --- zCDP budgets, Gaussian charges, lifetime accounting ------------------------------------------

# A Gaussian answer is charged rho only (no epsilon), as the gate does for dp_noise = gaussian.
CHARGE_RHO = "SELECT * FROM public.charge_rho_as_engine(%s, %s, %s)"


@pytest.fixture
def rho_charger(db):
    db.admin.execute(
        """
        CREATE FUNCTION public.charge_rho_as_engine(r double precision, d double precision, s text)
        RETURNS TABLE (rho_remaining double precision, delta_remaining double precision)
        LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
          SELECT c.rho_remaining, c.delta_remaining
          FROM diffix._charge_budget(NULL, d, s, 'dp', r) c
        $$;
        ALTER FUNCTION public.charge_rho_as_engine(double precision, double precision, text)
          OWNER TO diffix_engine;
        """
    )


def _zcdp_epsilon(rho: float, delta: float) -> float:
    """(epsilon, delta)-DP of rho-zCDP (Bun and Steinke 2016): rho + 2 sqrt(rho ln(1/delta))."""
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def _row(db, role: str) -> dict:
    with db.admin.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM diffix.privacy_budget() WHERE role = %s", (role,))
        return cur.fetchone()


def test_a_zcdp_budget_charges_rho_and_states_its_epsilon_delta(db, analyst, rho_charger):
    db.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 1.0, delta => 1e-4)", (analyst,))
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (0.5, 0, "laplace"))  # epsilon-DP: epsilon^2 / 2 = 0.125
    assert conn.execute(CHARGE_RHO, (0.25, 1e-5, "gaussian")).fetchone() == (0.625, 9e-5)
    row = _row(db, analyst)
    assert row["unit"] == "rho" and row["rho_spent"] == Decimal("0.375")
    assert row["rho_remaining"] == Decimal("0.625") and row["epsilon_remaining"] is None
    assert float(row["epsilon_spent"]) == pytest.approx(_zcdp_epsilon(0.375, 1e-6), rel=1e-12)
    assert float(row["epsilon_total"]) == pytest.approx(_zcdp_epsilon(1.0, 1e-6), rel=1e-12)
    assert row["conversion_delta"] == Decimal("0.000001")
    assert db.execute(
        "SELECT unit, epsilon, rho, delta FROM diffix.budget_ledger WHERE role_name = %s "
        "ORDER BY id",
        (analyst,),
    ) == [
        ("rho", Decimal("0.5"), Decimal("0.125"), 0),
        ("rho", None, Decimal("0.25"), Decimal("0.00001")),
    ]
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
        conn.execute(CHARGE_RHO, (0.7, 0, "too much"))
    assert "costs rho 0.7" in error.value.diag.message_primary
    assert "rho 0.625" in error.value.diag.message_primary
    assert _row(db, analyst)["rho_spent"] == Decimal("0.375")


def test_an_epsilon_delta_budget_refuses_a_gaussian_charge(db, analyst, rho_charger):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as error:
        db.as_role(analyst).execute(CHARGE_RHO, (0.1, 0, "gaussian"))
    assert "zCDP" in error.value.diag.message_primary
    assert "set_privacy_budget_zcdp" in error.value.diag.message_hint
    assert _budget(db, analyst)[2] == 0 and _ledger(db, analyst) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("CALL diffix.set_privacy_budget_zcdp(%s, -1)", "invalid rho"),
        ("CALL diffix.set_privacy_budget_zcdp(%s, 'NaN')", "invalid rho"),
        ("CALL diffix.set_privacy_budget_zcdp(%s, 1, conversion_delta => 0)", "conversion_delta"),
        ("CALL diffix.set_privacy_budget_zcdp(%s, 1, conversion_delta => 1)", "conversion_delta"),
        ("CALL diffix.set_privacy_budget_zcdp(%s, 1, delta => 1)", "invalid delta"),
        ("CALL diffix.set_privacy_budget_zcdp(%s, 1, lifetime_rho => -1)", "lifetime_rho"),
        ("CALL diffix.set_privacy_budget(%s, 1, 0, lifetime_epsilon => 'Infinity')", "lifetime"),
        ("CALL diffix.set_privacy_budget(%s, 1, 0, lifetime_delta => 1)", "lifetime_delta"),
    ],
)
def test_bad_zcdp_and_lifetime_settings_are_refused(db, analyst, call, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as error:
        db.admin.execute(call, (analyst,))
    assert message in error.value.diag.message_primary
    assert _row(db, analyst)["unit"] == "eps_delta" and _budget(db, analyst)[:2] == (
        3,
        Decimal("0.001"),
    )


def test_analysts_cannot_set_a_zcdp_budget(db, analyst):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute("CALL diffix.set_privacy_budget_zcdp(current_user, 100)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(analyst).execute(
            "SELECT diffix._write_budget(current_user, 'rho', 100, 0, NULL, 1e-6, NULL, NULL)"
        )
    assert _row(db, analyst)["unit"] == "eps_delta"


def _renew(db, role: str) -> None:
    """Moves the budget's start one and a half renewals into the past: the current period is
    then a new one, which began half a renewal ago."""
    db.execute(
        "UPDATE diffix.privacy_budgets SET period_start = period_start - renew_every * 1.5 "
        "WHERE roleid = %s::regrole",
        (role,),
    )


def test_lifetime_loss_adds_up_across_renewals_and_its_cap_holds(db, analyst):
    db.admin.execute(
        "CALL diffix.set_privacy_budget(%s, 1, 0.001, interval '1 day', lifetime_epsilon => 2.5)",
        (analyst,),
    )
    conn = db.as_role(analyst)
    for day in range(2):
        conn.execute(CHARGE, (1.0, 0.0001, f"day {day}"))
        _renew(db, analyst)
    row = _row(db, analyst)
    assert row["epsilon_spent"] == 0 and row["epsilon_remaining"] == Decimal("0.5")
    assert row["epsilon_lifetime"] == 2 and row["delta_lifetime"] == Decimal("0.0002")
    with pytest.raises(psycopg.errors.ProgramLimitExceeded) as error:
        conn.execute(CHARGE, (1.0, 0, "day 3"))
    assert error.value.diag.message_primary.startswith("lifetime privacy budget exceeded")
    assert "renewal does not restore" in error.value.diag.message_hint
    conn.execute(CHARGE, (0.5, 0, "the rest"))
    assert _row(db, analyst)["epsilon_lifetime"] == Decimal("2.5")
    # without a cap the lifetime loss still shows, and grows with every period
    db.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0.001, interval '1 day')", (analyst,))
    _renew(db, analyst)
    conn.execute(CHARGE, (1.0, 0, "uncapped"))
    assert _row(db, analyst)["epsilon_lifetime"] == Decimal("3.5")


def test_a_zcdp_lifetime_cap_and_a_delta_cap(db, analyst, rho_charger):
    db.admin.execute(
        "CALL diffix.set_privacy_budget_zcdp(%s, 1, interval '1 hour', delta => 1e-3, "
        "lifetime_rho => 1.5, lifetime_delta => 1.5e-3)",
        (analyst,),
    )
    conn = db.as_role(analyst)
    conn.execute(CHARGE_RHO, (1.0, 1e-3, "first hour"))
    _renew(db, analyst)
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="lifetime"):
        conn.execute(CHARGE_RHO, (0.1, 1e-3, "delta over the lifetime cap"))
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="lifetime"):
        conn.execute(CHARGE_RHO, (0.6, 0, "rho over the lifetime cap"))
    assert conn.execute(CHARGE_RHO, (0.5, 5e-4, "fits")).fetchone() == (0.0, 0.0)
    row = _row(db, analyst)
    assert (row["rho_lifetime"], row["delta_lifetime"]) == (Decimal("1.5"), Decimal("0.0015"))


def test_switching_units_starts_a_new_period_and_keeps_the_lifetime(db, analyst):
    db.as_role(analyst).execute(CHARGE, (1.0, 0, "in epsilon"))
    db.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 2)", (analyst,))
    db.as_role(analyst).execute(CHARGE, (1.0, 0, "in rho"))
    row = _row(db, analyst)
    assert (row["rho_spent"], row["rho_lifetime"], row["epsilon_lifetime"]) == (
        Decimal("0.5"),
        Decimal("0.5"),
        1,
    )


def test_an_upgrade_keeps_budgets_and_fills_the_lifetime_from_the_ledger(db, analyst):
    """An install before zCDP and lifetime accounting had none of their columns: reinstalling
    adds them, keeps every row, and starts each lifetime total from the ledger."""
    conn = db.as_role(analyst)
    conn.execute(CHARGE, (1.0, 0.0001, "one"))
    conn.execute(CHARGE, (0.5, 0, "two"))
    db.admin.execute(
        "ALTER TABLE diffix.privacy_budgets DROP COLUMN unit, DROP COLUMN rho_total, "
        "DROP COLUMN rho_spent, DROP COLUMN conversion_delta, DROP COLUMN lifetime_epsilon, "
        "DROP COLUMN lifetime_delta, DROP COLUMN lifetime_rho, DROP COLUMN epsilon_lifetime, "
        "DROP COLUMN delta_lifetime, DROP COLUMN rho_lifetime;"
        "ALTER TABLE diffix.budget_ledger DROP COLUMN unit, DROP COLUMN rho"
    )
    install.install(db.dsn(), out=io.StringIO())
    row = _row(db, analyst)
    assert (row["unit"], row["epsilon_spent"], row["epsilon_lifetime"]) == (
        "eps_delta",
        Decimal("1.5"),
        Decimal("1.5"),
    )
    assert row["delta_lifetime"] == Decimal("0.0001")
    assert [r[0] for r in _ledger(db, analyst)] == [1, Decimal("0.5")]
    assert db.execute(
        "SELECT DISTINCT unit FROM diffix.budget_ledger WHERE role_name = %s", (analyst,)
    ) == [("eps_delta",)]


# --- DP answers: zCDP composition and free replays ------------------------------------------------

PEOPLE = """
CREATE TABLE people (id integer PRIMARY KEY, city text, amount numeric);
INSERT INTO people SELECT i, CASE WHEN i % 2 = 0 THEN 'Rome' ELSE 'Oslo' END, i * 10
  FROM generate_series(1, 200) i;
CALL diffix.mark_personal('people', 'id');
CALL diffix.set_dp_bounds('people', 'amount', 0, 2000);
CALL diffix.set_dp_domain('people', 'city', ARRAY['Rome', 'Oslo']);
"""


@pytest.fixture
def people(db):
    db.admin.execute(PEOPLE)
    return db


def _dp(conn, sql: str, epsilon: float, delta: float = 0.0) -> dict:
    return conn.execute(
        "SELECT diffix.dp_query_json(%s, %s, %s)", (sql, epsilon, delta)
    ).fetchone()[0]


def test_100_counts_cost_less_under_zcdp_by_what_theory_predicts(people):
    """100 count queries at epsilon 0.1: pure composition spends epsilon 10; under zCDP each
    costs rho = 0.01 / 2 (Laplace: epsilon-DP is epsilon^2/2-zCDP; Gaussian: the rho its sigma
    is derived from), 0.5 in all, which is (0.5 + 2 sqrt(0.5 ln(10^6)), 10^-6)-DP: 5.757."""
    epsilon, queries, conversion_delta = 0.1, 100, 1e-6
    pure, zcdp = people.create_role("anonymized_dp"), people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 100, 0)", (pure,))
    people.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 100)", (zcdp,))
    for role, noise in ((pure, "laplace"), (zcdp, "gaussian")):
        with people.as_role(role) as conn:
            conn.execute("SELECT diffix.set('dp_noise', %s)", (noise,))
            for i in range(queries):
                doc = _dp(conn, f"SELECT count(*) AS n{i} FROM people", epsilon)
                assert abs(doc["rows"][0][0] - 200) < 200  # noise around the true count
    assert doc["dp"]["aggregates"][0]["mechanism"] == "discrete_gaussian"
    assert doc["dp"]["aggregates"][0]["noise_scale"]["n"] == pytest.approx(1 / epsilon)
    ledger_pure = people.execute(
        "SELECT unit, sum(epsilon), count(*) FROM diffix.budget_ledger WHERE role_name = %s "
        "GROUP BY unit",
        (pure,),
    )
    ledger_zcdp = people.execute(
        "SELECT unit, sum(rho), count(*), count(epsilon) FROM diffix.budget_ledger "
        "WHERE role_name = %s GROUP BY unit",
        (zcdp,),
    )
    assert ledger_pure == [("eps_delta", pytest.approx(Decimal("10")), queries)]
    assert ledger_zcdp == [("rho", Decimal("0.5"), queries, 0)]
    spent_pure = float(ledger_pure[0][1])
    spent_zcdp = _zcdp_epsilon(float(ledger_zcdp[0][1]), conversion_delta)
    predicted_saving = queries * epsilon - _zcdp_epsilon(queries * epsilon**2 / 2, conversion_delta)
    assert spent_pure - spent_zcdp == pytest.approx(predicted_saving, rel=1e-12)
    assert spent_zcdp == pytest.approx(5.757, abs=1e-3)
    assert float(_row(people, zcdp)["epsilon_spent"]) == pytest.approx(spent_zcdp, rel=1e-12)
    assert float(_row(people, pure)["epsilon_spent"]) == pytest.approx(spent_pure)


def test_gaussian_answers_with_partition_selection_and_quantiles(people):
    """Under Gaussian noise the query's rho = epsilon^2 / 2 is split among 3 aggregates and
    partition selection; the pure-DP parts (selection, median) get epsilon_share with
    epsilon_share^2 / 2 = rho / 4, and the ledger charges rho and the selection's delta."""
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 1, delta => 1e-5)", (role,))
    with people.as_role(role) as conn:
        conn.execute("SELECT diffix.set('dp_noise', 'gaussian')")
        doc = _dp(
            conn,
            "SELECT diffix.floor_by(id, 100) AS band, count(*), avg(amount), "
            "median(amount) FROM people GROUP BY 1",
            1.0,
            1e-6,
        )
    report = doc["dp"]
    assert report["rho"] == 0.5 and report["delta"] == 1e-6
    selection_epsilon = math.sqrt(2 * 0.5 / 4)
    assert report["partition_selection"]["epsilon"] == pytest.approx(selection_epsilon, 1e-6)
    count, average, median = report["aggregates"]
    assert count["mechanism"] == average["mechanism"] == "discrete_gaussian"
    assert count["rho"] == average["rho"] == 0.125
    assert median["mechanism"] == "exponential"
    assert median["epsilon"] == pytest.approx(selection_epsilon, 1e-6)
    assert {row[0] for row in doc["rows"]} <= {0, 100, 200}
    assert _row(people, role)["rho_spent"] == Decimal("0.5")
    assert _row(people, role)["delta_spent"] == Decimal("0.000001")


def test_gaussian_noise_needs_a_zcdp_budget_and_is_refused_for_free(people):
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 0)", (role,))
    with people.as_role(role) as conn:
        conn.execute("SELECT diffix.set('dp_noise', 'gaussian')")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="zCDP"):
            _dp(conn, "SELECT count(*) FROM people", 0.5)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="dp_noise"):
            conn.execute("SELECT diffix.set('dp_noise', 'uniform')")
    assert _ledger(people, role) == []


def test_a_laplace_answer_on_a_zcdp_budget_costs_epsilon_squared_over_two(people):
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 0.5)", (role,))
    with people.as_role(role) as conn:
        doc = _dp(conn, "SELECT count(*), avg(amount) FROM people", 0.8)
        assert doc["dp"]["rho"] == pytest.approx(0.32)
        assert doc["dp"]["remaining"]["rho"] == pytest.approx(0.18)
        assert doc["dp"]["aggregates"][0]["mechanism"] == "discrete_laplace"
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="rho"):
            _dp(conn, "SELECT count(*) AS again FROM people", 0.8)
    assert _row(people, role)["rho_spent"] == Decimal("0.32")


def test_identical_queries_replay_their_answer_for_free(people):
    """50 reruns (whitespace, case, comments aside) spend once and get the first answer; 5
    rephrasings each pay; a change of the data pays again; another role pays for its own."""
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 0)", (role,))
    sql = "SELECT city, count(*), avg(amount) FROM people GROUP BY city"
    reruns = [sql, "select city, COUNT(*), AVG(amount)\n  from people group by city -- again"]
    rephrasings = [
        "SELECT city, count(*) AS n, avg(amount) FROM people GROUP BY city",
        "SELECT city, count(*), avg(amount) FROM public.people GROUP BY city",
        "SELECT city, count(id), avg(amount) FROM people GROUP BY city",
        "SELECT city, count(*), avg(amount) FROM people GROUP BY 1",
        "SELECT * FROM (SELECT city, count(*), avg(amount) FROM people GROUP BY city) t",
    ]
    with people.as_role(role) as conn:
        first = _dp(conn, sql, 0.1)
        assert first["dp"]["replayed"] is False and first["dp"]["epsilon"] == 0.1
        answers = [_dp(conn, reruns[i % 2], 0.1) for i in range(50)]
        assert {json.dumps(a["rows"]) for a in answers} == {json.dumps(first["rows"])}
        assert all(a["dp"]["replayed"] and a["dp"]["epsilon"] == 0 for a in answers)
        assert answers[-1]["dp"]["remaining"] == {"epsilon": 9.9, "delta": 0}
        assert _dp(conn, sql, 0.2)["dp"]["replayed"] is False  # another epsilon pays
        for rephrased in rephrasings:
            assert _dp(conn, rephrased, 0.1)["dp"]["replayed"] is False
        people.admin.execute("INSERT INTO people VALUES (1000, 'Rome', 5)")
        people.admin.execute("SELECT pg_catalog.pg_stat_force_next_flush()")
        changed = _dp(conn, sql, 0.1)
        assert changed["dp"]["replayed"] is False
        assert _dp(conn, sql, 0.1)["rows"] == changed["rows"]
    assert len(_ledger(people, role)) == 1 + 1 + 5 + 1
    assert float(_row(people, role)["epsilon_spent"]) == pytest.approx(0.1 * 7 + 0.2)
    other = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 0)", (other,))
    with people.as_role(other) as conn:
        assert _dp(conn, sql, 0.1)["dp"]["replayed"] is False
    assert len(_ledger(people, other)) == 1


def test_a_new_period_pays_again(people):
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0, interval '1 day')", (role,))
    with people.as_role(role) as conn:
        _dp(conn, "SELECT count(*) FROM people", 0.5)
        assert _dp(conn, "SELECT count(*) FROM people", 0.5)["dp"]["replayed"] is True
        _renew(people, role)
        assert _dp(conn, "SELECT count(*) FROM people", 0.5)["dp"]["replayed"] is False
    assert len(_ledger(people, role)) == 2


def test_analysts_cannot_read_forge_or_fetch_stored_answers(people):
    role = people.create_role("anonymized_dp")
    people.admin.execute("CALL diffix.set_privacy_budget(%s, 1, 0)", (role,))
    conn = people.as_role(role)
    _dp(conn, "SELECT count(*) FROM people", 0.5)
    for attack in [
        "SELECT * FROM diffix.dp_replays",
        "DELETE FROM diffix.dp_replays",
        "SELECT diffix._dp_replay('x')",
        "SELECT diffix._dp_replay_store('x', '{}')",
        "SELECT diffix._dp_replay_put(1, 'x', '{}')",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)
    assert people.execute("SELECT count(*) FROM diffix.dp_replays") == [(1,)]
