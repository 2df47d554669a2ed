"""What an analyst may execute: every function in pldiffix's schemas, checked against a short,
justified allow-list, and every definer's pinned settings."""

from __future__ import annotations

import psycopg
import pytest

# SECURITY DEFINER functions PUBLIC may execute, and why each is safe to call directly.
PUBLIC_DEFINERS = {
    # the gate: level from the catalog, audit, charge, then one mechanism (answers.py)
    "diffix._answer": "the gate",
    "diffix._audit_refusal": "adds refusals about the caller only",
    "diffix._set": "decides who may change what against the catalog",
    "diffix._database_settings": "settings without the salt",
    "diffix.privacy_budget": "the caller's own budget only (admins: all)",
    # each checks that the caller is an administrator before doing anything
    "diffix._configure": "admin check",
    "diffix._salt": "admin check",
    "diffix._mark_personal": "admin check",
    "diffix._mark_public": "admin check",
    "diffix._unmark_table": "admin check",
    "diffix._set_filterable": "admin check",
    "diffix._mark_cellkey": "admin check",
    "diffix._perturb_admin": "admin check",
    "diffix._perturbation_report": "admin check",
    "diffix._set_dp_bounds": "admin check",
    "diffix._set_dp_domain": "admin check",
    "diffix._set_dp_max_contributions": "admin check",
    "diffix._synthesize": "admin check",
    "diffix._synthetic_report": "admin check",
    # level, k, cost, SELECT on the columns and budget checked inside before the charge
    "diffix._dp_sample": "charged to the caller's own budget",
    "diffix._set_dp_bounds_per_partition": "admin check",
    "diffix._declare_dp_unique_units": "admin check",
    "diffix._set_dp_unit_path": "admin check",
    "diffix._dp_suggest_bounds": "admin check",
    "diffix.mark_role": "admin check",
    "diffix.unmark_role": "admin check",
    "diffix.set_privacy_budget": "admin check",
    "diffix.set_privacy_budget_zcdp": "admin check",
    "diffix.acknowledge_finding": "admin check",
    "diffix.audit_storage": "admin check",
    "diffix.show_audit": "admin check",
    "diffix._forget_dropped_objects": "event trigger: forgets labels of dropped objects",
    "diffix.show_perturbations": "configured cell-key tables and their parameters, no keys",
    # cell-key functions: direct-level roles and administrators only (checked inside)
    "diffix._tbe_perturb": "direct or admin check",
    "diffix._tbe_range": "direct or admin check",
}

ADMIN_ONLY_CALLS = [
    "SELECT diffix._configure('noise_layer_sd', '0')",
    "SELECT diffix._salt()",
    "SELECT diffix._mark_personal('customers'::regclass, ARRAY['id'])",
    "SELECT diffix._mark_public('customers'::regclass, true)",
    "SELECT diffix._unmark_table('customers'::regclass, true)",
    "CALL diffix.acknowledge_finding(1)",
    "SELECT diffix._set_filterable('customers'::regclass, 'city', true)",
    "SELECT diffix._set_dp_bounds('customers'::regclass, 'age', 0, 1)",
    "SELECT diffix._set_dp_max_contributions('customers'::regclass, 1)",
    "SELECT diffix._set_dp_bounds_per_partition('customers'::regclass, 2, 3)",
    "SELECT diffix._declare_dp_unique_units('customers'::regclass, true)",
    "SELECT diffix._set_dp_unit_path('customers'::regclass, 'id', 'customers'::regclass, 'id')",
    "SELECT diffix._set_dp_domain('customers'::regclass, 'city', ARRAY['x'])",
    "SELECT * FROM diffix._dp_suggest_bounds('customers'::regclass, 'age', 1)",
    "SELECT diffix._perturbation_report('customers'::regclass)",
    "CALL diffix.mark_role(current_user, 'direct')",
    "CALL diffix.set_privacy_budget(current_user, 100, 0)",
    "CALL diffix.set_privacy_budget_zcdp(current_user, 100)",
    "SELECT * FROM diffix.show_audit()",
]

PINNED = {"search_path=pg_catalog, pg_temp", "standard_conforming_strings=on"}
GATE_PINNED = PINNED | {
    "backslash_quote=safe_encoding",
    "datestyle=ISO, MDY",
    "intervalstyle=postgres",
    "timezone=UTC",
    "extra_float_digits=1",
    "bytea_output=hex",
    "array_nulls=on",
    "quote_all_identifiers=off",
    "lc_monetary=C",
    "lc_numeric=C",
}


@pytest.fixture(scope="module")
def shop(module_db):
    module_db.admin.execute(
        """
        CREATE TABLE customers (id integer, city text, age integer);
        INSERT INTO customers SELECT i, 'Rome', 20 + i % 40 FROM generate_series(1, 30) i;
        CALL diffix.mark_personal('customers', 'id');
        """
    )
    return module_db


def test_public_definers_are_the_allow_list(shop):
    rows = shop.execute(
        """
        SELECT n.nspname || '.' || p.proname
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname LIKE 'diffix%' AND p.prosecdef
          AND EXISTS (SELECT FROM aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                      WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
        """
    )
    assert {r[0] for r in rows} == set(PUBLIC_DEFINERS)


def test_ledger_and_audit_writers_are_closed_to_public(shop):
    analyst = shop.create_role("anonymized_untrusted")
    conn = shop.as_role(analyst)
    for call in [
        "SELECT diffix._audit_record('direct', 'direct', 'forged', true)",
        "SELECT * FROM diffix._charge_budget(1, 0, 'x', 'dp')",
        "SELECT diffix._loopback('SELECT 1')",
        "SELECT diffix._array_bytes(ARRAY[1])",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call)


@pytest.mark.parametrize("call", ADMIN_ONLY_CALLS)
def test_admin_definers_refuse_analysts(shop, call):
    analyst = shop.create_role("anonymized_trusted")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shop.as_role(analyst).execute(call)


def test_every_definer_pins_its_settings(shop):
    """dblink's own C functions aside (their schema is closed to PUBLIC)."""
    rows = shop.execute(
        """
        SELECT n.nspname || '.' || p.proname, l.lanname, COALESCE(p.proconfig, '{}')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE n.nspname LIKE 'diffix%' AND p.prosecdef AND l.lanname <> 'c'
        """
    )
    assert rows
    for name, language, config in rows:
        wanted = GATE_PINNED if language == "plpython3u" else PINNED
        pinned = {
            setting.split("=", 1)[0].lower() + "=" + setting.split("=", 1)[1] for setting in config
        }
        missing = wanted - pinned
        assert not missing, f"{name} does not pin {sorted(missing)}"


def test_check_security_reports_analysts_who_can_set_role_to_a_weaker_level(shop):
    analyst = shop.create_role("anonymized_untrusted")
    shop.admin.execute(f'GRANT pg_read_all_stats TO "{analyst}"')
    weaker = shop.create_role("anonymized_trusted", login=False)
    shop.admin.execute(f'GRANT "{weaker}" TO "{analyst}"')
    findings = shop.execute(
        "SELECT severity, finding FROM diffix.check_security() WHERE object = %s", (analyst,)
    )
    assert (
        "warning",
        f"{analyst} (anonymized_untrusted) can SET ROLE to pg_read_all_stats, "
        "whose level is none (default_access_level)",
    ) in findings
    assert (
        "warning",
        f"{analyst} (anonymized_untrusted) can SET ROLE to {weaker}, "
        "whose level is anonymized_trusted",
    ) in findings
