"""DP synthetic twins end to end: publication charged and audited, analysts read the twin,
refusals spend nothing, no raw value of an undeclared column reaches a twin."""

from __future__ import annotations

import json

import psycopg
import pytest

PATIENTS = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE TABLE patients (
  id integer PRIMARY KEY, city text, age integer, weight double precision, born date,
  insured boolean, state mood, secret text, visit_id bigint);
INSERT INTO patients
SELECT i, CASE WHEN i % 3 = 0 THEN 'Rome' WHEN i % 3 = 1 THEN 'Oslo' ELSE 'Lima' END,
       20 + (i * 7) % 60, 50 + (i % 40), DATE '1950-01-01' + (i * 37) % 20000,
       i % 4 = 0, CASE WHEN i % 5 = 0 THEN 'busy'::mood ELSE 'calm'::mood END,
       'secret-' || md5(i::text), i * 1000
FROM generate_series(1, 3000) i;
CALL diffix.mark_personal('patients', 'id');
CALL diffix.set_dp_domain('patients', 'city', ARRAY['Rome', 'Oslo']);
CALL diffix.set_dp_bounds('patients', 'age', 0, 100);
CALL diffix.set_dp_bounds('patients', 'weight', 40, 100);
CREATE TABLE visits (pid integer, amount numeric);
INSERT INTO visits SELECT 1 + i % 50, i % 100 FROM generate_series(1, 2000) i;
CALL diffix.mark_personal('visits', 'pid');
CALL diffix.set_dp_bounds('visits', 'amount', 0, 100);
CALL diffix.set_dp_max_contributions('visits', 5);
"""


@pytest.fixture(scope="module")
def world(module_db):
    module_db.admin.execute(PATIENTS)
    return module_db


def _budget(db, role: str, epsilon: float = 1000, delta: float = 0.5) -> None:
    db.admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (role, epsilon, delta))


def _ledger(db) -> list[tuple]:
    return db.execute(
        "SELECT role_name, epsilon::float8, delta::float8, mechanism FROM diffix.budget_ledger "
        "WHERE mechanism = 'synthetic' ORDER BY id"
    )


def test_publication_is_charged_audited_and_readable_by_analysts(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    before = len(_ledger(world))
    notices: list[str] = []
    world.admin.add_notice_handler(lambda d: notices.append(d.message_primary))
    world.admin.execute(
        "CALL diffix.synthesize('patients', 1.0, 1e-6, 'patients_twin', options => %s)",
        (json.dumps({"bins": {"born": ["1950-01-01", "1980-01-01", "2005-01-01"]}}),),
    )
    assert any("patients_twin" in n for n in notices)
    spent = _ledger(world)[before:]
    assert spent == [(admin, 1.0, 1e-6, "synthetic")]
    log = world.execute(
        "SELECT mechanism, accepted, epsilon::float8, delta::float8, rows_returned, level "
        "FROM diffix.show_audit() WHERE mechanism = 'synthetic'"
    )
    assert log[-1][:4] == ("synthetic", True, 1.0, 1e-6) and log[-1][5] == "admin"
    columns = world.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'diffix_synthetic' AND table_name = 'patients_twin' "
        "ORDER BY ordinal_position"
    )
    originals = world.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = 'patients' ORDER BY ordinal_position"
    )
    assert columns == originals
    count = world.execute("SELECT count(*) FROM diffix_synthetic.patients_twin")[0][0]
    assert 2500 < count < 3500  # a noisy count of 3000
    for level in ("anonymized_trusted", "anonymized_untrusted", "anonymized_dp"):
        analyst = world.create_role(level)
        rows = (
            world.as_role(analyst)
            .execute("SELECT count(*) FROM diffix_synthetic.patients_twin")
            .fetchone()
        )
        assert rows == (count,)
        sample = (
            world.as_role(analyst)
            .execute("SELECT * FROM diffix.dp_sample('patients', 5)")
            .fetchall()
        )
        assert len(sample) == 5 and set(sample[0][0]) == {c for c, _ in originals}


def test_twin_values_come_from_declarations_only(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute("CALL diffix.synthesize('patients', 2.0, 1e-6, 'declared', 2000)")
    twin = "diffix_synthetic.declared"
    assert world.execute(f"SELECT count(*) FROM {twin}")[0][0] == 2000
    # undeclared text: placeholders; the raw strings never appear
    leaked = world.execute(f"SELECT count(*) FROM {twin} s JOIN patients p ON p.secret = s.secret")[
        0
    ][0]
    assert leaked == 0
    assert world.execute(f"SELECT count(*) FROM {twin} WHERE secret NOT LIKE 'synthetic_%'") == [
        (0,)
    ]
    # categorical values only from the domain (Lima is not declared: NULL), enum and boolean
    cities = {r[0] for r in world.execute(f"SELECT DISTINCT city FROM {twin}")}
    assert cities <= {"Rome", "Oslo", None} and "Rome" in cities
    assert {r[0] for r in world.execute(f"SELECT DISTINCT state FROM {twin}")} <= {
        "calm",
        "busy",
        None,
    }
    # numeric values inside the declared bounds; undeclared columns NULL
    low, high = world.execute(f"SELECT min(age), max(age) FROM {twin}")[0]
    assert low >= 0 and high <= 100
    assert world.execute(f"SELECT count(visit_id), count(born) FROM {twin}") == [(0, 0)]
    # synthetic identifiers, not the real ones reused by accident of the data: 1..n
    assert world.execute(f"SELECT min(id), max(id), count(DISTINCT id) FROM {twin}") == [
        (1, 2000, 2000)
    ]


def test_refusals_spend_nothing(world):
    admin = world.execute("SELECT current_user")[0][0]
    spent = world.execute(
        "SELECT COALESCE(sum(epsilon), 0)::float8 FROM diffix.budget_ledger WHERE role_name = %s",
        (admin,),
    )[0][0]
    _budget(world, admin, epsilon=spent + 1)
    before = _ledger(world)
    analyst = world.create_role("anonymized_dp")
    _budget(world, analyst)
    cases = [
        (world.admin, "CALL diffix.synthesize('patients', 5, 1e-6, 'too_much')", "budget"),
        (world.admin, "CALL diffix.synthesize('patients', 0.5, 0, 'no_delta')", "delta"),
        (world.admin, "CALL diffix.synthesize('patients', 0.5, 1e-6, 'Bad-Name')", "name"),
        (
            world.admin,
            "CALL diffix.synthesize('patients', 0.5, 1e-6, 'x', columns => ARRAY['secret'])",
            "neither bins nor a domain",
        ),
        (
            world.admin,
            "CALL diffix.synthesize('patients', 0.5, 1e-6, 'x', options => '{\"bins\": 3}')",
            "object",
        ),
        (
            world.as_role(analyst),
            "CALL diffix.synthesize('patients', 0.5, 1e-6, 'mine')",
            "only superusers",
        ),
        (world.admin, "CALL diffix.synthesize('pg_class', 0.5, 1e-6, 'x')", "personal"),
    ]
    for conn, statement, message in cases:
        with pytest.raises(psycopg.Error) as error:
            conn.execute(statement)
        assert message in str(error.value)
    assert _ledger(world) == before
    assert world.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'diffix_synthetic' "
        "AND tablename IN ('too_much', 'no_delta', 'x', 'mine')"
    ) == [(0,)]


def test_synthesizing_again_spends_again_and_says_so(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    notices: list[str] = []
    world.admin.add_notice_handler(lambda d: notices.append(d.message_primary))
    before = len(_ledger(world))
    world.admin.execute("CALL diffix.synthesize('visits', 0.5, 1e-6, 'visits_twin')")
    world.admin.execute("CALL diffix.synthesize('visits', 0.5, 1e-6, 'visits_twin')")
    assert len(_ledger(world)) == before + 2
    assert any("synthesized 1 time(s) before" in n for n in notices)
    assert world.execute(
        "SELECT count(*) FROM diffix.synthetic_tables WHERE name = 'visits_twin'"
    ) == [(1,)]


def test_report_measures_the_twin_against_its_source(world, capsys, tmp_path):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute("CALL diffix.synthesize('patients', 4.0, 1e-6, 'reported')")
    rows = world.execute("SELECT * FROM diffix.synthetic_report('reported')")
    by_key = {(r[0], r[1], r[2]): r[3:] for r in rows}
    real, synthetic, ratio = by_key[("rows", None, None)]
    assert real == 3000 and 2500 < synthetic < 3500 and ratio == synthetic / real
    one_way = {k[1]: v[2] for k, v in by_key.items() if k[0] == "tvd" and k[2] is None}
    assert set(one_way) == {"city", "age", "weight", "insured", "state"}
    assert all(0 <= tvd < 0.1 for tvd in one_way.values())  # epsilon 4 on 3000 rows
    two_way = [v[2] for k, v in by_key.items() if k[0] == "tvd" and k[2] is not None]
    assert len(two_way) == 10 and all(0 <= tvd < 0.5 for tvd in two_way)
    real_corr, synthetic_corr, difference = by_key[("correlation", "age", "weight")]
    assert difference == pytest.approx(synthetic_corr - real_corr)
    share = by_key[("exact_match_share", None, None)][2]
    assert 0 <= share <= 1
    # the command prints the same figures
    from pldiffix_installer import cli

    assert cli.main(["synthetic-report", "--dsn", world.dsn(), "--name", "reported"]) == 0
    printed = capsys.readouterr().out
    assert "diffix_synthetic.reported" in printed and "exact_match_share" in printed
    assert "marginal" not in printed  # the per-cell rows are for the plots
    # per cell, the real and synthetic counts of each modeled column
    cities = [v for k, v in by_key.items() if k[0] == "marginal" and k[1] == "city"]
    assert sum(v[0] for v in cities) == 3000 and sum(v[1] for v in cities) == synthetic
    page = tmp_path / "report.html"
    assert (
        cli.main(["synthetic-report", "--dsn", world.dsn(), "reported", "--html", str(page)]) == 0
    )
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") == 5


def test_the_html_report_escapes_hostile_names_and_values(world, tmp_path):
    world.admin.execute(
        'CREATE TABLE hostile (id int PRIMARY KEY, "<b onmouseover=alert(1)>" text); '
        "INSERT INTO hostile SELECT i, CASE WHEN i % 2 = 0 THEN '<script>alert(2)</script>' "
        "ELSE 'plain' END FROM generate_series(1, 200) i; "
        "CALL diffix.mark_personal('hostile', 'id'); "
        "CALL diffix.set_dp_domain('hostile', '<b onmouseover=alert(1)>', "
        "ARRAY['<script>alert(2)</script>', 'plain'])"
    )
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute("CALL diffix.synthesize('hostile', 2.0, 1e-6, 'hostile_twin')")
    from pldiffix_installer import cli

    page = tmp_path / "hostile.html"
    assert (
        cli.main(["synthetic-report", "--dsn", world.dsn(), "hostile_twin", "--html", str(page)])
        == 0
    )
    text = page.read_text()
    assert "<script" not in text and "<b " not in text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in text
    assert "&lt;b onmouseover=alert(1)&gt;" in text and text.count("<svg") == 1


def test_reports_and_publications_are_for_administrators_only(world):
    analyst = world.create_role("anonymized_trusted")
    conn = world.as_role(analyst)
    for statement in (
        "SELECT * FROM diffix.synthetic_report('reported')",
        "SELECT * FROM diffix._synthetic_report('reported')",
        "SELECT diffix._synthesize('patients'::regclass, 1, 1e-6, 'x', NULL, NULL, '{}')",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    for statement in (
        "SELECT diffix._audit_publication('synthetic', 'forged', true, NULL, 1, 1, 0)",
        "INSERT INTO diffix.synthetic_tables VALUES ('f', 1, 'f', 1, 0, 1, 1, '{}', now(), 'x')",
        "CREATE TABLE diffix_synthetic.mine (a int)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with pytest.raises(psycopg.Error, match="no synthetic twin"):
        world.admin.execute("SELECT * FROM diffix.synthetic_report('nothing_here')")


def test_hostile_session_settings_do_not_change_a_synthesis(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    conn = world.connect()
    conn.execute("CREATE TEMP TABLE diffix_synthetic (x int)")  # a decoy in pg_temp
    conn.execute(
        "SET search_path = pg_temp, public; SET standard_conforming_strings = off; "
        "SET datestyle = 'SQL, DMY'; SET extra_float_digits = -15"
    )
    conn.execute(
        "CALL diffix.synthesize('patients', 1.0, 1e-6, 'hostile', 500, ARRAY['city', 'age'])"
    )
    assert (
        world.execute("SELECT count(*), count(city), min(age) >= 0 FROM diffix_synthetic.hostile")[
            0
        ][0]
        == 500
    )
    # a domain with quotes and backslashes reaches the twin verbatim
    world.admin.execute(
        "CALL diffix.set_dp_domain('visits', 'amount', ARRAY[1, 2]::numeric[]);"
        "CALL diffix.set_dp_bounds('visits', 'amount', NULL, NULL)"
    )
    world.admin.execute("CREATE TABLE odd (id int PRIMARY KEY, label text)")
    world.admin.execute(
        "INSERT INTO odd SELECT i, CASE WHEN i % 2 = 0 THEN E'a''b\\\\c' ELSE 'plain' END "
        "FROM generate_series(1, 400) i"
    )
    world.admin.execute("CALL diffix.mark_personal('odd', 'id')")
    world.admin.execute("CALL diffix.set_dp_domain('odd', 'label', ARRAY[E'a''b\\\\c', 'plain'])")
    conn.execute("CALL diffix.synthesize('odd', 2.0, 1e-6, 'odd_twin')")
    labels = {r[0] for r in world.execute("SELECT DISTINCT label FROM diffix_synthetic.odd_twin")}
    assert "a'b\\c" in labels and labels <= {"a'b\\c", "plain", None}


def test_more_refusals_spend_nothing(world):
    admin = world.create_role()
    world.admin.execute(f'GRANT diffix_admin TO "{admin}"')
    conn = world.as_role(admin)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
        conn.execute("CALL diffix.synthesize('patients', 0.5, 1e-6, 'unpaid')")
    _budget(world, admin)
    world.admin.execute("CREATE TABLE diffix_synthetic.taken (a int)")
    with pytest.raises(psycopg.Error, match="not a synthetic twin"):
        conn.execute("CALL diffix.synthesize('patients', 0.5, 1e-6, 'taken')")
    assert world.execute(
        "SELECT count(*) FROM diffix.budget_ledger WHERE role_name = %s", (admin,)
    ) == [(0,)]
    # the admin's own budget pays, not the login's: SET ROLE to an analyst is refused outright
    analyst = world.create_role("anonymized_trusted")
    world.admin.execute(f'GRANT "{analyst}" TO "{admin}"')
    conn.execute(f'SET ROLE "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only superusers"):
        conn.execute("CALL diffix.synthesize('patients', 0.5, 1e-6, 'as_analyst')")
    conn.execute("RESET ROLE")
    conn.execute("CALL diffix.synthesize('patients', 0.5, 1e-6, 'paid_by_admin', 100)")
    assert world.execute(
        "SELECT epsilon::float8, mechanism FROM diffix.budget_ledger WHERE role_name = %s",
        (admin,),
    ) == [(0.5, "synthetic")]


def test_twins_are_public_tables_for_the_gate_and_raise_no_finding(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute("CALL diffix.synthesize('patients', 1.0, 1e-6, 'gated', 300)")
    analyst = world.create_role("anonymized_dp")
    answer = (
        world.as_role(analyst)
        .execute("SELECT diffix.query_json('SELECT count(*) AS n FROM diffix_synthetic.gated')")
        .fetchone()[0]
    )
    assert "300" in json.dumps(answer)
    findings = world.execute(
        "SELECT severity, object FROM diffix.check_security() WHERE object LIKE '%synthetic%'"
    )
    assert findings == []


def test_uninstall_drops_the_twins(empty_db):
    import io

    from pldiffix_installer import install, uninstall

    install.install(empty_db.dsn(), out=io.StringIO())
    empty_db.admin.execute(
        "CREATE TABLE t (id int PRIMARY KEY, b boolean); "
        "INSERT INTO t SELECT i, i % 2 = 0 FROM generate_series(1, 50) i; "
        "CALL diffix.mark_personal('t', 'id'); "
        "CALL diffix.set_privacy_budget(current_user, 5, 1e-3)"
    )
    empty_db.admin.execute("CALL diffix.synthesize('t', 1, 1e-6, 't_twin')")
    uninstall.uninstall(empty_db.dsn(), out=io.StringIO())
    assert empty_db.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'diffix_synthetic'"
    ) == [(0,)]


def test_a_domain_column_is_written_as_its_base_type(world):
    """A domain's CHECK could call any function; the twin never casts into one."""
    world.admin.execute(
        "CREATE FUNCTION public.noisy_check(v integer) RETURNS boolean LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE NOTICE 'check ran as %', current_user; RETURN true; END $$; "
        "CREATE DOMAIN score AS integer CHECK (public.noisy_check(VALUE)); "
        "CREATE DOMAIN label AS text CHECK (public.noisy_check(length(VALUE))); "
        "CREATE TABLE scored (id int PRIMARY KEY, s score, l label); "
        "INSERT INTO scored SELECT i, i % 10, 'x' FROM generate_series(1, 200) i; "
        "CALL diffix.mark_personal('scored', 'id'); "
        "CALL diffix.set_dp_bounds('scored', 's', 0, 10)"
    )
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    notices: list[str] = []
    conn = world.connect()
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("CALL diffix.synthesize('scored', 1.0, 1e-6, 'scored_twin')")
    assert not any("check ran" in n for n in notices)
    assert world.execute(
        "SELECT column_name, data_type, domain_name FROM information_schema.columns "
        "WHERE table_schema = 'diffix_synthetic' AND table_name = 'scored_twin' "
        "ORDER BY ordinal_position"
    ) == [("id", "integer", None), ("s", "integer", None), ("l", "text", None)]
    assert (
        world.execute(
            "SELECT count(*) FILTER (WHERE s BETWEEN 0 AND 10), count(*) FILTER (WHERE l LIKE "
            "'synthetic_%') FROM diffix_synthetic.scored_twin"
        )[0][0]
        > 0
    )


def test_with_nothing_modeled_the_twin_is_a_noisy_count_of_placeholders(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute(
        "CALL diffix.synthesize('patients', 5.0, 1e-6, 'only_count', columns => '{}'::text[])"
    )
    rows = world.execute(
        "SELECT count(*), count(DISTINCT id), count(age), count(insured), "
        "count(*) FILTER (WHERE city LIKE 'synthetic_%' AND secret LIKE 'synthetic_%') "
        "FROM diffix_synthetic.only_count"
    )[0]
    assert 2900 < rows[0] < 3100 and rows[1] == rows[0] and rows[2:4] == (0, 0)
    assert rows[4] == rows[0]
    budget = world.execute(
        "SELECT model -> 'budget' -> 'measurement' ->> 'marginals' FROM diffix.synthetic_tables "
        "WHERE name = 'only_count'"
    )
    assert budget == [("1",)]


def test_a_synthesis_failing_after_the_charge_has_paid_and_is_logged(world):
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    before = len(_ledger(world))
    locker = world.connect()
    locker.autocommit = False
    locker.execute("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE")
    try:
        conn = world.connect()
        conn.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("CALL diffix.synthesize('patients', 0.25, 1e-6, 'locked_out')")
    finally:
        locker.rollback()
    assert _ledger(world)[before:] == [(admin, 0.25, 1e-6, "synthetic")]
    last = world.execute(
        "SELECT accepted, reason, epsilon::float8 FROM diffix.show_audit() "
        "WHERE mechanism = 'synthetic' ORDER BY id DESC LIMIT 1"
    )[0]
    assert last[0] is False and "lock timeout" in last[1] and last[2] == 0.25
    assert world.execute(
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'diffix_synthetic' "
        "AND tablename = 'locked_out'"
    ) == [(0,)]


def test_a_bi_tools_row_read_is_answered_from_the_published_twin(world):
    """SELECT * FROM <personal table> LIMIT n, at every anonymized level, through query_json
    and the proxy: the twin's rows, with a NOTICE saying they are synthetic."""
    from psycopg.conninfo import make_conninfo

    from pldiffix_proxy.listener import running_in_thread

    world.admin.execute("CREATE TABLE clinic (pid integer, ward text, stay integer)")
    world.admin.execute(
        "INSERT INTO clinic SELECT i, (ARRAY['A', 'B'])[1 + i % 2], i % 9 "
        "FROM generate_series(1, 500) i"
    )
    world.admin.execute("CALL diffix.mark_personal('clinic', 'pid')")
    world.admin.execute("CALL diffix.set_dp_domain('clinic', 'ward', ARRAY['A', 'B'])")
    admin = world.execute("SELECT current_user")[0][0]
    _budget(world, admin)
    world.admin.execute("CALL diffix.synthesize('clinic', 1.0, 1e-6, 'clinic_twin')")
    twin = {tuple(r) for r in world.execute("SELECT * FROM diffix_synthetic.clinic_twin")}
    for level in ("anonymized_trusted", "anonymized_untrusted", "anonymized_dp"):
        analyst = world.create_role(level)
        conn = world.as_role(analyst)
        notices: list[str] = []
        conn.add_notice_handler(lambda d, seen=notices: seen.append(d.message_primary))
        doc = conn.execute("SELECT diffix.query_json('SELECT * FROM clinic LIMIT 5')").fetchone()[0]
        assert doc["columns"] == ["pid", "ward", "stay"] and len(doc["rows"]) == 5
        assert all(tuple(row) in twin for row in doc["rows"])
        assert any("synthetic twin diffix_synthetic.clinic_twin" in n for n in notices)
    spent = world.execute(
        "SELECT count(*) FROM diffix.budget_ledger WHERE role_name = %s", (analyst,)
    )
    assert spent == [(0,)]  # free at the DP level too
    with running_in_thread(world.dsn(), startup_timeout=2.0) as front:
        dsn = make_conninfo(world.dsn(analyst), host="127.0.0.1", port=front.port)
        with psycopg.connect(dsn, autocommit=True) as client:
            rows = client.execute("SELECT * FROM public.clinic LIMIT 3").fetchall()
    assert len(rows) == 3 and all(row in twin for row in rows)


# --- diffix.dp_sample(table, k, epsilon [, delta]): charged to the caller ----------------------


def _spent(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT epsilon::float8, delta::float8, mechanism FROM diffix.budget_ledger "
        "WHERE role_name = %s ORDER BY id",
        (role,),
    )


def _sample_audit(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT accepted, level, rows_returned, epsilon::float8, reason FROM "
        "diffix.show_audit(%s) WHERE mechanism = 'synthetic' ORDER BY id",
        (role,),
    )


def _sampler(world, level: str = "anonymized_dp", *, budget: float | None = 10) -> str:
    analyst = world.create_role(level)
    if budget is not None:
        _budget(world, analyst, epsilon=budget, delta=1e-4)
    return analyst


def test_a_charged_sample_is_paid_audited_and_holds_no_raw_value(world):
    analyst = _sampler(world)
    conn = world.as_role(analyst)
    rows = [r[0] for r in conn.execute("SELECT * FROM diffix.dp_sample('patients', 300, 0.5)")]
    assert len(rows) == 300
    assert set(rows[0]) == {
        "id",
        "city",
        "age",
        "weight",
        "born",
        "insured",
        "state",
        "secret",
        "visit_id",
    }
    assert {r["city"] for r in rows} <= {"Rome", "Oslo", None}
    assert all(r["secret"].startswith("synthetic_") for r in rows)
    assert all(r["age"] is None or 0 <= r["age"] <= 100 for r in rows)
    assert sorted(r["id"] for r in rows) == list(range(1, 301))
    assert _spent(world, analyst) == [(0.5, 1e-6, "synthetic")]
    accepted, level, returned, epsilon, _ = _sample_audit(world, analyst)[-1]
    assert (accepted, level, returned, epsilon) == (True, "anonymized_dp", 300, 0.5)
    # an explicit delta; a trusted analyst pays the same way
    trusted = _sampler(world, "anonymized_trusted")
    world.as_role(trusted).execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.25, 1e-5)")
    assert _spent(world, trusted) == [(0.25, 1e-5, "synthetic")]


def test_a_rolled_back_sample_stays_paid_and_logged(world):
    analyst = _sampler(world)
    conn = world.as_role(analyst)
    conn.autocommit = False
    assert len(conn.execute("SELECT * FROM diffix.dp_sample('patients', 10, 0.5)").fetchall()) == 10
    conn.rollback()
    assert _spent(world, analyst) == [(0.5, 1e-6, "synthetic")]
    assert [row[0] for row in _sample_audit(world, analyst)] == [True]


@pytest.mark.parametrize(
    "call, message",
    [
        ("'patients', 0, 0.5", "k must be between 1 and 100000"),
        ("'patients', -5, 0.5", "k must be between"),
        ("'patients', 2000000000, 0.5", "k must be between"),
        ("'patients', NULL, 0.5", "k must be between"),
        ("'patients', 5, 0", "epsilon must be a positive number"),
        ("'patients', 5, -1", "epsilon must be a positive number"),
        ("'patients', 5, 'NaN'", "epsilon must be a positive number"),
        ("'patients', 5, 'Infinity'", "epsilon must be a positive number"),
        ("'patients', 5, NULL", "epsilon must be a positive number"),
        ("'patients', 5, 5", "dp_max_epsilon"),
        ("'patients', 5, 0.5, 0", "delta must be in (0, 1)"),
        ("'patients', 5, 0.5, 0.01", "dp_max_delta"),
        ("'patients', 5, 2, 1e-6", "does not cover"),  # within dp_max_epsilon once raised
        ("'pg_class', 5, 0.5", "personal"),
    ],
)
def test_charged_sample_refusals_spend_nothing(world, call, message):
    world.admin.execute("CALL diffix.configure('dp_max_epsilon', '3')")
    analyst = _sampler(world, budget=1)
    conn = world.as_role(analyst)
    with pytest.raises(psycopg.Error, match=message.replace("(", r"\(").replace(")", r"\)")):
        conn.execute(f"SELECT * FROM diffix.dp_sample({call})")
    assert _spent(world, analyst) == []
    assert [row[0] for row in _sample_audit(world, analyst)] == [False]


def test_a_sample_needs_budget_schema_usage_and_declared_cells(world):
    no_budget = _sampler(world, budget=None)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
        world.as_role(no_budget).execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.5)")
    world.admin.execute(
        "CREATE SCHEMA vault; CREATE TABLE vault.kept (id int PRIMARY KEY, b boolean); "
        "INSERT INTO vault.kept SELECT i, i % 2 = 0 FROM generate_series(1, 100) i; "
        "CALL diffix.mark_personal('vault.kept', 'id')"
    )
    outsider = _sampler(world)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
        world.as_role(outsider).execute("SELECT * FROM diffix.dp_sample('vault.kept', 5, 0.5)")
    # the internal function, given the table's oid directly, refuses too
    relid = world.execute("SELECT 'vault.kept'::regclass::oid::int8")[0][0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no USAGE"):
        world.as_role(outsider).execute(
            "SELECT * FROM diffix._dp_sample(%s::oid, 5, 0.5, 1e-6)", (relid,)
        )
    world.admin.execute(f'GRANT USAGE ON SCHEMA vault TO "{outsider}"')
    # the engine, which reads the table, needs USAGE too: refused before the charge
    with pytest.raises(psycopg.Error, match="engine cannot read"):
        world.as_role(outsider).execute("SELECT * FROM diffix.dp_sample('vault.kept', 5, 0.5)")
    world.admin.execute("GRANT USAGE ON SCHEMA vault TO diffix_engine")
    rows = world.as_role(outsider).execute("SELECT * FROM diffix.dp_sample('vault.kept', 5, 0.5)")
    assert len(rows.fetchall()) == 5
    world.admin.execute(
        "CREATE TABLE bare (id int PRIMARY KEY, note text); INSERT INTO bare VALUES (1, 'x'); "
        "CALL diffix.mark_personal('bare', 'id')"
    )
    with pytest.raises(psycopg.Error, match="no column with declared cells"):
        world.as_role(outsider).execute("SELECT * FROM diffix.dp_sample('bare', 5, 0.5)")
    perturbed = _sampler(world, "perturbed")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="perturbed"):
        world.as_role(perturbed).execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.5)")
    assert _spent(world, no_budget) == [] and _spent(world, perturbed) == []
    assert _spent(world, outsider) == [(0.5, 1e-6, "synthetic")]
    assert [row[0] for row in _sample_audit(world, outsider)] == [False, False, True, False]


def test_a_sample_after_set_role_is_paid_by_the_role_acted_as(world):
    login = world.create_role("anonymized_dp")  # no budget of its own
    payer = _sampler(world, budget=2)
    world.admin.execute(f'GRANT "{payer}" TO "{login}"')
    conn = world.as_role(login)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
        conn.execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.5)")
    conn.execute("CREATE TEMP TABLE budget_ledger (x int)")  # decoys in pg_temp
    conn.execute(
        "CREATE FUNCTION pg_temp.has_schema_privilege(name, oid, text) RETURNS boolean "
        "LANGUAGE sql AS 'SELECT true'"
    )
    conn.execute(f'SET ROLE "{payer}"; SET search_path = pg_temp, public')
    assert len(conn.execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.5)").fetchall()) == 5
    assert _spent(world, payer) == [(0.5, 1e-6, "synthetic")]
    assert _spent(world, login) == []
    conn.execute("RESET ROLE")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no privacy budget"):
        conn.execute("SELECT * FROM diffix.dp_sample('patients', 5, 0.5)")
    assert _spent(world, login) == []


def test_a_zcdp_budget_pays_a_sample_in_rho_without_delta(world):
    from pldiffix.synth import accounting

    analyst = world.create_role("anonymized_dp")
    world.admin.execute("CALL diffix.set_privacy_budget_zcdp(%s, 0.02)", (analyst,))
    conn = world.as_role(analyst)
    assert len(conn.execute("SELECT * FROM diffix.dp_sample('patients', 20, 0.5)").fetchall()) == 20
    charged = world.execute(
        "SELECT rho::float8, delta::float8, mechanism FROM diffix.budget_ledger "
        "WHERE role_name = %s",
        (analyst,),
    )
    planned = accounting.rho_for(0.5, 1e-6)
    assert len(charged) == 1 and charged[0][1:] == (0.0, "synthetic")
    assert planned * 0.999 <= charged[0][0] <= planned
    # 0.02 - 0.0045 left: not the 0.0175 of epsilon 1
    with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="does not cover"):
        conn.execute("SELECT * FROM diffix.dp_sample('patients', 20, 1.0)")
