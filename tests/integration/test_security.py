"""The security model: anonymized roles never read personal tables except through the engine."""

from __future__ import annotations

import struct

import psycopg
import pytest


@pytest.fixture
def analyst(bank):
    return bank.create_role("anonymized_untrusted")


def test_marking_personal_revokes_select_from_public_and_anonymized_roles(bank, analyst):
    conn = bank.as_role(analyst)
    for attack in [
        "SELECT * FROM customers",
        "SELECT id FROM customers",
        "COPY customers TO STDOUT",
        "SELECT * FROM public.customers TABLESAMPLE SYSTEM (100)",
        "TABLE customers",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)


def test_a_view_or_function_created_by_the_analyst_cannot_read_personal_data(bank, analyst):
    bank.admin.execute(f'CREATE SCHEMA sandbox AUTHORIZATION "{analyst}"')
    conn = bank.as_role(analyst)
    conn.execute("CREATE VIEW sandbox.v AS SELECT * FROM public.customers")
    conn.execute(
        "CREATE FUNCTION sandbox.steal() RETURNS SETOF public.customers "
        "LANGUAGE sql AS 'SELECT * FROM public.customers'"
    )
    for attack in [
        "SELECT * FROM sandbox.v",
        "SELECT * FROM sandbox.steal()",
        "SELECT diffix.query_json('SELECT * FROM sandbox.steal()')",
        "SELECT diffix.query_json('SELECT count(*) FROM sandbox.v')",
    ]:
        with pytest.raises(psycopg.Error) as error:
            conn.execute(attack)
        assert (
            "permission denied" in str(error.value)
            or "anonymizing" in str(error.value)
            or "no anonymization label" in str(error.value)
        )


@pytest.mark.parametrize(
    "grant",
    [
        "GRANT SELECT ON customers TO PUBLIC",
        'GRANT SELECT ON customers TO "{analyst}"',
        'GRANT SELECT (city) ON customers TO "{analyst}"',
        "GRANT SELECT ON customers TO diffix_anonymized_untrusted",
        'ALTER TABLE customers OWNER TO "{analyst}"',
    ],
)
def test_careless_grants_that_would_expose_a_personal_table_are_refused(bank, analyst, grant):
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"refused: personal table public\.customers"
    ):
        bank.admin.execute(grant.format(analyst=analyst))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bank.as_role(analyst).execute("SELECT count(*) FROM customers")


@pytest.mark.parametrize(
    ("grant", "withheld"),
    [
        ('GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{analyst}"', "SELECT"),
        (
            "grant all on all tables in schema public to public",
            "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER",
        ),
        ('GRANT SELECT ON cities, customers TO "{analyst}"', "SELECT"),
    ],
)
def test_a_broad_grant_opens_the_other_tables_and_withholds_personal_ones(
    bank, analyst, grant, withheld
):
    expected = [f"GRANT applied except {withheld} on personal table public.customers"]
    notices: list[str] = []
    bank.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    bank.admin.execute(grant.format(analyst=analyst))
    assert notices == expected
    conn = bank.as_role(analyst)
    assert conn.execute("SELECT count(*) FROM cities").fetchone()[0] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM customers")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT city FROM customers")
    assert bank.execute("SELECT * FROM diffix._personal_table_exposures()") == []
    # run again, it changes nothing on the other tables and is still no error
    notices.clear()
    if "ALL TABLES" in grant.upper():
        bank.admin.execute(grant.format(analyst=analyst))
        assert notices == expected
    assert bank.execute("SELECT * FROM diffix.check_security() WHERE severity = 'critical'") == []


def test_a_table_owner_who_is_no_superuser_gets_the_same_withholding(bank, analyst):
    owner = bank.create_role("direct")
    bank.admin.execute(f'CREATE SCHEMA shop AUTHORIZATION "{owner}"')
    conn = bank.as_role(owner)
    conn.execute("CREATE TABLE shop.orders (uid int, total int); CREATE TABLE shop.items (n int)")
    conn.execute("INSERT INTO shop.orders VALUES (1, 10); INSERT INTO shop.items VALUES (1)")
    bank.admin.execute("CALL diffix.mark_personal('shop.orders', 'uid')")
    conn.execute(f'GRANT USAGE ON SCHEMA shop TO "{analyst}"')
    conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA shop TO "{analyst}"')
    reader = bank.as_role(analyst)
    assert reader.execute("SELECT n FROM shop.items").fetchall() == [(1,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("SELECT total FROM shop.orders")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused: personal table"):
        conn.execute(f'GRANT SELECT ON shop.orders TO "{analyst}"')


def test_a_broad_grant_still_opens_personal_tables_to_direct_roles(bank):
    direct = bank.create_role("direct")
    bank.admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{direct}"')
    assert bank.as_role(direct).execute("SELECT count(*) FROM customers").fetchone() == (60,)


def test_grants_to_direct_roles_and_on_public_tables_are_allowed(bank, analyst):
    direct = bank.create_role("direct")
    bank.admin.execute(f'GRANT SELECT ON customers TO "{direct}"')
    bank.admin.execute(f'GRANT SELECT ON cities TO "{analyst}"')
    assert bank.as_role(direct).execute("SELECT count(*) FROM customers").fetchone() == (60,)


def test_marking_a_role_anonymized_revokes_its_direct_grants(bank):
    role = bank.create_role("direct")
    bank.admin.execute(f'GRANT SELECT ON customers TO "{role}"')
    bank.admin.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (role,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bank.as_role(role).execute("SELECT * FROM customers")


def test_check_security_reports_paths_through_role_membership(bank, analyst):
    reader = bank.create_role(login=False)
    bank.admin.execute(f'GRANT SELECT ON customers TO "{reader}"; GRANT "{reader}" TO "{analyst}"')
    findings = bank.execute("SELECT severity, object, finding FROM diffix.check_security()")
    assert (
        "critical",
        "public.customers",
        f"{analyst} (anonymized_untrusted) can read it through role membership",
    ) in findings


def test_check_security_reports_engine_membership_and_anonymized_superusers(bank):
    role = bank.create_role()
    bank.admin.execute(f'GRANT diffix_engine TO "{role}"')
    boss = bank.create_role()
    bank.admin.execute(f'ALTER ROLE "{boss}" SUPERUSER')
    bank.admin.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (boss,))
    findings = bank.execute("SELECT severity, object, finding FROM diffix.check_security()")
    assert ("critical", role, "member of diffix_engine: can read every personal table") in findings
    assert ("critical", boss, "superuser with access level anonymized_trusted") in findings


@pytest.mark.parametrize(
    "level", ["anonymized_trusted", "anonymized_untrusted", "anonymized_dp", "perturbed", "direct"]
)
def test_check_security_is_for_administrators_only(bank, level):
    role = bank.create_role(level)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="check_security"):
        bank.as_role(role).execute("SELECT * FROM diffix.check_security()")


def test_a_member_of_diffix_admin_gets_the_report(bank, analyst):
    admin = bank.create_role()
    bank.admin.execute(f'GRANT diffix_admin TO "{admin}"')
    reader = bank.create_role(login=False)
    bank.admin.execute(f'GRANT SELECT ON customers TO "{reader}"; GRANT "{reader}" TO "{analyst}"')
    findings = (
        bank.as_role(admin)
        .execute("SELECT severity, object FROM diffix.check_security()")
        .fetchall()
    )
    assert ("critical", "public.customers") in findings


def test_a_clean_setup_has_no_critical_findings(bank, analyst):
    rows = bank.execute("SELECT severity FROM diffix.check_security() WHERE severity = 'critical'")
    assert rows == []


def test_the_engine_role_is_a_plain_nologin_role(db):
    attributes = db.execute(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
        "FROM pg_roles WHERE rolname = 'diffix_engine'"
    )
    assert attributes == [(False, False, False, False, False)]
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(db.dsn("diffix_engine"))


def test_every_security_definer_function_pins_its_search_path(db):
    unpinned = db.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p "
        "WHERE p.pronamespace = 'diffix'::regnamespace AND p.prosecdef "
        "AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')"
    )
    assert unpinned == []
    definers = db.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'diffix'::regnamespace AND prosecdef"
    )[0][0]
    assert definers >= 8


def test_only_the_engine_may_read_arrays_as_bytes(bank, analyst):
    """diffix._array_bytes (LANGUAGE internal) is the engine's, not a general-purpose function."""
    grantees = bank.execute(
        "SELECT r.rolname FROM pg_roles r WHERE has_function_privilege(r.oid, "
        "'diffix._array_bytes(anyarray)', 'EXECUTE') AND NOT r.rolsuper ORDER BY 1"
    )
    assert grantees == [("diffix_engine",)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bank.as_role(analyst).execute("SELECT diffix._array_bytes(ARRAY[1, 2])")
    flat = bank.execute("SELECT diffix._array_bytes(ARRAY[7, -1]::int4[])")[0][0]
    assert flat[-8:] == struct.pack("=2i", 7, -1)  # the elements, in the server's byte order


def test_analyst_objects_cannot_hijack_definer_functions(bank, analyst):
    """A definer function that resolved unqualified names through the caller's search_path
    would call these; the pinned search_path means the real ones run."""
    bank.admin.execute(f'CREATE SCHEMA trap AUTHORIZATION "{analyst}"')
    conn = bank.as_role(analyst)
    conn.execute(
        "CREATE FUNCTION trap.current_setting(text) RETURNS text LANGUAGE sql "
        "AS $$ SELECT 'postgres'::text $$"
    )
    conn.execute(
        "CREATE FUNCTION trap.pg_has_role(oid, text, text) RETURNS boolean "
        "LANGUAGE sql AS 'SELECT true'"
    )
    conn.execute("SET search_path = trap, public")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CALL diffix.mark_role(%s, 'direct')", (analyst,))
    assert conn.execute("SELECT diffix.access_level()").fetchone() == ("anonymized_untrusted",)


def test_the_engine_function_never_returns_raw_rows_when_called_directly(bank):
    direct = bank.create_role("direct")
    conn = bank.as_role(direct)
    with pytest.raises(psycopg.Error) as error:
        conn.execute("SELECT diffix._anonymized_query_json('SELECT * FROM customers', 'direct')")
    assert "Berlin" not in str(error.value)


def test_anonymized_users_cannot_query_unlabeled_tables_unless_configured(bank, analyst):
    conn = bank.as_role(analyst)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has no anonymization label"):
        conn.execute("SELECT diffix.query_json('SELECT * FROM notes')")
    bank.admin.execute("CALL diffix.configure('treat_unmarked_tables_as_public', 'true')")
    assert conn.execute("SELECT diffix.query_json('SELECT * FROM notes')").fetchone()[0] == {
        "columns": ["body"],
        "rows": [["unlabeled"]],
    }


def test_public_queries_run_with_the_analysts_own_privileges(bank, analyst):
    bank.admin.execute("REVOKE SELECT ON cities FROM PUBLIC")
    conn = bank.as_role(analyst)
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="permission denied for table cities"
    ):
        conn.execute("SELECT diffix.query_json('SELECT * FROM cities')")
