"""The SQL admin check (diffix._require_admin) and role lookup (diffix._role_oid) that every
administrators-only definer shares: internal, pinned, and the same refusal from each caller."""

from __future__ import annotations

import psycopg
import pytest

HELPERS = ("diffix._require_admin(text)", "diffix._role_oid(text)")

# Each definer that checks through diffix._require_admin, and what its refusal names.
REFUSALS = [
    ("SELECT diffix._salt()", "read the salt"),
    ("CALL diffix.mark_role(current_user, 'direct')", "mark roles"),
    ("CALL diffix.unmark_role(current_user)", "unmark roles"),
    ("CALL diffix.set_privacy_budget(current_user, 100, 0)", "set privacy budgets"),
    ("CALL diffix.set_privacy_budget_zcdp(current_user, 100)", "set privacy budgets"),
    ("SELECT * FROM diffix.show_audit()", "read the audit log"),
    ("SELECT * FROM diffix.audit_storage()", "read the audit log's size"),
    ("SELECT diffix._mark_public('t'::regclass, true)", "label tables"),
    ("CALL diffix.acknowledge_finding(1)", "acknowledge findings"),
    ("SELECT * FROM diffix.show_perturbations()", "see perturbation configurations"),
]


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute("CREATE TABLE t (id integer); CALL diffix.mark_public('t')")
    return module_db


def test_the_helpers_are_closed_to_public_and_pin_their_search_path(shop):
    for signature in HELPERS:
        (config, public) = shop.execute(
            "SELECT p.proconfig, EXISTS (SELECT FROM aclexplode(COALESCE(p.proacl, "
            "acldefault('f', p.proowner))) a WHERE a.grantee = 0) "
            "FROM pg_proc p WHERE p.oid = %s::regprocedure",
            (signature,),
        )[0]
        assert not public, signature
        assert {"search_path=pg_catalog, pg_temp", "standard_conforming_strings=on"} <= set(
            config
        ), signature


@pytest.mark.parametrize(
    "call", ["SELECT diffix._require_admin('x')", "SELECT diffix._role_oid('postgres')"]
)
def test_an_analyst_cannot_call_the_helpers(shop, call):
    analyst = shop.create_role("anonymized_trusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        shop.as_role(analyst).execute(call)


@pytest.mark.parametrize(("call", "action"), REFUSALS)
def test_every_admin_definer_refuses_with_the_same_words(shop, call, action):
    analyst = shop.create_role("direct")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        shop.as_role(analyst).execute(call)
    assert refused.value.diag.message_primary == (
        f"only superusers and members of diffix_admin can {action}"
    )


def test_set_role_from_an_administrator_to_an_analyst_is_refused(shop):
    analyst = shop.create_role("anonymized_trusted")
    admin = shop.create_role()
    shop.admin.execute(f'GRANT diffix_admin TO "{admin}"; GRANT "{analyst}" TO "{admin}"')
    conn = shop.as_role(admin)
    conn.execute("SELECT * FROM diffix.audit_storage()")
    conn.execute(f'SET ROLE "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="read the audit log's size"):
        conn.execute("SELECT * FROM diffix.audit_storage()")


def test_a_hostile_search_path_does_not_change_the_check(shop):
    """Names the helpers call, planted where an analyst's session would look first."""
    analyst = shop.create_role("anonymized_trusted")
    conn = shop.as_role(analyst)
    conn.execute(
        """
        SET search_path = pg_temp, public;
        CREATE FUNCTION pg_temp._is_admin(name) RETURNS boolean LANGUAGE sql AS 'SELECT true';
        CREATE FUNCTION pg_temp._invoking_role() RETURNS name LANGUAGE sql AS 'SELECT ''postgres''';
        CREATE FUNCTION pg_temp.pg_has_role(oid, text, text) RETURNS boolean
          LANGUAGE sql AS 'SELECT true';
        """
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="set privacy budgets"):
        conn.execute("CALL diffix.set_privacy_budget(current_user, 100, 0)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="mark roles"):
        conn.execute("CALL diffix.mark_role(current_user, 'direct')")
    assert shop.execute("SELECT count(*) FROM diffix.privacy_budgets") == [(0,)]


def test_an_administrator_naming_a_missing_role_is_told_so(shop):
    for call in [
        "CALL diffix.mark_role('no_such_role', 'direct')",
        "CALL diffix.unmark_role('no_such_role')",
        "CALL diffix.set_privacy_budget('no_such_role', 1, 0)",
    ]:
        with pytest.raises(psycopg.errors.UndefinedObject, match='role "no_such_role" does not'):
            shop.admin.execute(call)
