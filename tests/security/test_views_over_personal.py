"""Views, materialized views and rules over personal rows (sql/core/46_derived_relations.sql): a
view reads with its owner's privileges, so granting it to an analyst is granting the rows. The
exposing-grants trigger refuses or withholds such grants, a labeling that would leave one open
revokes it, and check_security reports the paths no event trigger sees."""

from __future__ import annotations

import json

import psycopg
import pytest
from grant_checks import acl_of, critical_findings

VIEWS = """
CREATE VIEW v AS SELECT id, city, age FROM customers;
CREATE VIEW vv AS SELECT city, age FROM v;
CREATE VIEW barrier WITH (security_barrier) AS SELECT city FROM customers WHERE age > 30;
CREATE VIEW invoker WITH (security_invoker) AS SELECT city FROM customers;
CREATE VIEW mixed AS SELECT c.city, k.country FROM customers c JOIN cities k ON k.name = c.city;
CREATE VIEW exists_oracle AS SELECT name FROM cities
  WHERE EXISTS (SELECT FROM customers WHERE id = 7 AND age = 27);
CREATE MATERIALIZED VIEW copied AS SELECT * FROM customers;
CREATE SCHEMA other;
CREATE VIEW other.far AS SELECT city FROM public.vv;
CREATE VIEW public_view AS SELECT name FROM cities;
"""

RELATIONS = ["v", "vv", "barrier", "invoker", "mixed", "exists_oracle", "copied", "other.far"]


@pytest.fixture
def views(bank):
    bank.admin.execute(VIEWS)
    bank.admin.execute("GRANT USAGE ON SCHEMA other TO PUBLIC")
    return bank


@pytest.fixture
def analyst(views):
    return views.create_role("anonymized_untrusted")


def _cannot_read(db, role: str, relation: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.as_role(role).execute(f"SELECT * FROM {relation}")


@pytest.mark.parametrize("relation", RELATIONS)
@pytest.mark.parametrize(
    "grant",
    [
        'GRANT SELECT ON {rel} TO "{analyst}"',
        'GRANT ALL ON {rel} TO "{analyst}"',
        'GRANT ALL PRIVILEGES ON TABLE {rel} TO "{analyst}" WITH GRANT OPTION',
        "GRANT SELECT ON {rel} TO PUBLIC",
        'GRANT SELECT (city) ON {rel} TO "{analyst}"',
        "GRANT SELECT ON {rel} TO diffix_anonymized_untrusted",
        'GRANT INSERT, UPDATE ON {rel} TO "{analyst}"',
    ],
)
def test_grants_of_a_relation_over_personal_rows_to_analysts_are_refused(
    views, analyst, relation, grant
):
    if relation == "exists_oracle":
        grant = grant.replace("(city)", "(name)")
    before = acl_of(views, relation)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"reads rows of public\.cust"):
        views.admin.execute(grant.format(rel=relation, analyst=analyst))
    assert acl_of(views, relation) == before  # nothing half-done
    _cannot_read(views, analyst, relation)
    assert critical_findings(views) == []


def test_a_role_that_is_a_member_of_an_analyst_level_is_an_analyst(views):
    team = views.create_role(login=False)
    views.admin.execute(f'GRANT diffix_anonymized_dp TO "{team}"')
    member = views.create_role()
    views.admin.execute(f'GRANT "{team}" TO "{member}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        views.admin.execute(f'GRANT SELECT ON vv TO "{team}"')
    _cannot_read(views, member, "vv")


def test_a_grant_made_by_a_view_owner_who_is_no_superuser_is_refused(views, analyst):
    """The trigger runs as whoever issues the GRANT, here a direct-level owner."""
    owner = views.create_role("direct")
    views.admin.execute(
        f'GRANT SELECT ON customers TO "{owner}"; GRANT CREATE ON SCHEMA other TO "{owner}"'
    )
    conn = views.as_role(owner)
    conn.execute("CREATE VIEW other.owned AS SELECT city FROM public.customers")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        conn.execute(f'GRANT SELECT ON other.owned TO "{analyst}"')
    _cannot_read(views, analyst, "other.owned")


@pytest.mark.parametrize(
    "grant",
    [
        'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{analyst}"',
        'GRANT SELECT ON cities, v, copied TO "{analyst}"',
        "GRANT ALL ON ALL TABLES IN SCHEMA public, other TO PUBLIC",
    ],
)
def test_a_broad_grant_opens_the_others_and_withholds_the_views(views, analyst, grant):
    notices: list[str] = []
    views.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    views.admin.execute(grant.format(analyst=analyst))
    assert any("view public.v (reads public.customers)" in n for n in notices), notices
    conn = views.as_role(analyst)
    assert conn.execute("SELECT count(*) FROM cities").fetchone() == (3,)
    for relation in ("v", "copied"):
        _cannot_read(views, analyst, relation)
    assert views.execute("SELECT * FROM diffix._derived_exposures()") == []
    assert critical_findings(views) == []


def test_a_refused_grant_rolls_back_with_its_transaction(views, analyst):
    conn = views.connect()
    conn.autocommit = False
    conn.execute(f'GRANT SELECT ON public_view TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f'GRANT SELECT ON vv, barrier TO "{analyst}"')
    conn.rollback()
    _cannot_read(views, analyst, "public_view")
    _cannot_read(views, analyst, "vv")
    assert views.execute("SELECT * FROM diffix._derived_exposures()") == []


def test_redefining_a_granted_view_to_read_personal_rows_is_refused(views, analyst):
    """CREATE OR REPLACE of the view itself, or of a view under it."""
    views.admin.execute(
        "CREATE VIEW inner_v AS SELECT name AS city FROM cities;"
        "CREATE VIEW outer_v AS SELECT city FROM inner_v;"
        f'GRANT SELECT ON outer_v TO "{analyst}"'
    )
    for redefinition in (
        "CREATE OR REPLACE VIEW inner_v AS SELECT city FROM customers",
        "CREATE OR REPLACE VIEW outer_v AS SELECT city FROM customers",
        'CREATE OR REPLACE RULE "_RETURN" AS ON SELECT TO outer_v DO INSTEAD '
        "SELECT city FROM customers",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
            views.admin.execute(redefinition)
    rows = views.as_role(analyst).execute("SELECT city FROM outer_v ORDER BY 1").fetchall()
    assert rows == [("Berlin",), ("Oslo",), ("Rome",)]  # still the public definition


def test_default_privileges_do_not_open_a_new_view(views, analyst):
    views.admin.execute(f'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        views.admin.execute("CREATE VIEW fresh AS SELECT city FROM customers")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        views.admin.execute("CREATE MATERIALIZED VIEW fresh_copy AS SELECT city FROM customers")
    assert views.execute("SELECT to_regclass('fresh'), to_regclass('fresh_copy')") == [(None, None)]
    views.admin.execute("CREATE VIEW fresh_public AS SELECT name FROM cities")  # still allowed
    assert views.as_role(analyst).execute("SELECT count(*) FROM fresh_public").fetchone() == (3,)


def test_a_rule_that_reads_personal_rows_on_a_table_analysts_write_is_refused(views, analyst):
    """A rule's actions run with the table owner's privileges: INSERT becomes a read."""
    views.admin.execute(f'CREATE TABLE inbox (x int); GRANT INSERT ON inbox TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        views.admin.execute(
            "CREATE RULE leak AS ON INSERT TO inbox DO INSTEAD SELECT id, city FROM customers"
        )
    conn = views.as_role(analyst)
    conn.execute("INSERT INTO inbox VALUES (1)")
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert views.execute("SELECT count(*) FROM inbox") == [(1,)]


def test_owner_changes(views, analyst):
    """A view an analyst owns reads with the analyst's privileges (nothing); a materialized
    view is a copy of the rows, so its ownership is refused."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ownership"):
        views.admin.execute(f'ALTER MATERIALIZED VIEW copied OWNER TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ownership"):
        views.admin.execute(f'ALTER TABLE copied OWNER TO "{analyst}"')
    views.admin.execute(f'ALTER VIEW vv OWNER TO "{analyst}"')
    conn = views.as_role(analyst)
    _cannot_read(views, analyst, "vv")
    other = views.create_role("anonymized_trusted")
    conn.execute(f'GRANT SELECT ON vv TO "{other}"')  # it reads as its owner: nothing
    _cannot_read(views, other, "vv")
    assert critical_findings(views) == []


def test_views_an_analyst_creates_read_nothing(views, analyst):
    views.admin.execute(f'CREATE SCHEMA sandbox AUTHORIZATION "{analyst}"')
    conn = views.as_role(analyst)
    conn.execute("CREATE VIEW sandbox.mine AS SELECT * FROM public.v")
    conn.execute("CREATE VIEW sandbox.direct AS SELECT * FROM public.customers")
    for relation in ("sandbox.mine", "sandbox.direct"):
        _cannot_read(views, analyst, relation)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE MATERIALIZED VIEW sandbox.copy AS SELECT * FROM public.customers")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would copy rows"):
        conn.execute(
            "CREATE MATERIALIZED VIEW sandbox.empty AS SELECT * FROM public.customers WITH NO DATA"
        )
    assert critical_findings(views) == []


def test_materialized_views_over_personal_rows_are_for_administrators(views):
    direct = views.create_role("direct")
    views.admin.execute(
        f'GRANT SELECT ON customers TO "{direct}"; GRANT CREATE ON SCHEMA other TO "{direct}"'
    )
    conn = views.as_role(direct)
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=r"would copy rows of public\.customers"
    ):
        conn.execute("CREATE MATERIALIZED VIEW other.copy AS SELECT city FROM public.customers")
    conn.execute("CREATE VIEW other.plain AS SELECT city FROM public.customers")  # no copy
    conn.execute("CREATE MATERIALIZED VIEW other.cities_copy AS SELECT * FROM public.cities")
    admin = views.create_role("direct")
    views.admin.execute(
        f'GRANT diffix_admin TO "{admin}"; GRANT SELECT ON customers TO "{admin}";'
        f'GRANT CREATE ON SCHEMA other TO "{admin}"'
    )
    views.as_role(admin).execute(
        "CREATE MATERIALIZED VIEW other.admin_copy AS SELECT city FROM public.customers"
    )


def test_marking_a_table_personal_revokes_the_views_over_it(db):
    analyst = db.create_role("anonymized_untrusted")
    db.admin.execute(
        "CREATE TABLE people (id int, city text); INSERT INTO people VALUES (1, 'Rome');"
        "CREATE VIEW people_v AS SELECT city FROM people;"
        "CREATE VIEW people_vv AS SELECT city FROM people_v;"
        f'GRANT SELECT ON people_vv TO "{analyst}"; GRANT SELECT (city) ON people_v TO PUBLIC'
    )
    assert db.as_role(analyst).execute("SELECT city FROM people_vv").fetchall() == [("Rome",)]
    notices: list[str] = []
    db.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    db.admin.execute("CALL diffix.mark_personal('people', 'id')")
    assert any("public.people_vv from " + analyst in n for n in notices), notices
    assert any("public.people_v from PUBLIC" in n for n in notices), notices
    _cannot_read(db, analyst, "people_vv")
    _cannot_read(db, analyst, "people_v")
    assert critical_findings(db) == []


def test_an_analyst_owned_copy_stops_the_labeling(db):
    """A materialized view an analyst owns cannot be revoked: marking its source personal is
    refused, and nothing of the call stays."""
    analyst = db.create_role("anonymized_untrusted")
    db.admin.execute(
        "CREATE TABLE people (id int, city text); INSERT INTO people VALUES (1, 'Rome');"
        "CREATE MATERIALIZED VIEW people_copy AS SELECT * FROM people;"
        f'ALTER MATERIALIZED VIEW people_copy OWNER TO "{analyst}"'
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="people_copy"):
        db.admin.execute("CALL diffix.mark_personal('people', 'id')")
    assert db.execute("SELECT count(*) FROM diffix.table_labels") == [(0,)]


def test_an_administrator_may_publish_a_view_with_force(views, analyst):
    """mark_public(view, force => true) is the override: the grant goes through and the
    finding stays until acknowledged; unmarking protects the view again."""
    views.admin.execute(
        "CREATE VIEW per_city AS SELECT city, count(*) AS n FROM customers GROUP BY city"
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="force => true"):
        views.admin.execute("CALL diffix.mark_public('per_city')")
    views.admin.execute("CALL diffix.mark_public('per_city', force => true)")
    views.admin.execute(f'GRANT SELECT ON per_city TO "{analyst}"')
    assert len(views.as_role(analyst).execute("SELECT * FROM per_city").fetchall()) == 3
    finding = views.execute(
        "SELECT fix FROM diffix.check_security() WHERE object = 'public.per_city'"
    )
    assert len(finding) == 1 and "acknowledge_finding" in finding[0][0]
    assert critical_findings(views) == []
    number = views.execute(
        "SELECT id FROM diffix.unlabeled_tables WHERE table_name = 'public.per_city'"
    )[0][0]
    views.admin.execute("CALL diffix.acknowledge_finding(%s)", (number,))
    assert (
        views.execute("SELECT 1 FROM diffix.check_security() WHERE object = 'public.per_city'")
        == []
    )
    notices: list[str] = []
    views.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    views.admin.execute("CALL diffix.unmark_table('per_city')")
    assert any("revoked" in n for n in notices), notices
    _cannot_read(views, analyst, "per_city")


def test_an_analyst_cannot_publish_a_view(views, analyst):
    conn = views.as_role(analyst)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only superusers"):
        conn.execute("CALL diffix.mark_public('public.v', force => true)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT diffix._release_derived('public.v'::regclass, true)")


def test_a_hostile_search_path_during_the_admins_grant_changes_nothing(views, analyst):
    """The trigger pins its search_path: functions, operators and relations an analyst plants in
    a schema first on the administrator's path never run and never answer for the catalog."""
    views.admin.execute(f'CREATE SCHEMA trap AUTHORIZATION "{analyst}"')
    conn = views.as_role(analyst)
    conn.execute(
        "CREATE TABLE trap.ran (who text);"
        "GRANT INSERT ON trap.ran TO PUBLIC;"
        "CREATE FUNCTION trap.has_table_privilege(oid, oid, text) RETURNS boolean LANGUAGE sql "
        "AS $$ INSERT INTO trap.ran VALUES (current_user) RETURNING false $$;"
        "CREATE FUNCTION trap.aclexplode(aclitem[]) RETURNS TABLE (grantor oid, grantee oid, "
        "privilege_type text, is_grantable boolean) LANGUAGE sql "
        "AS $$ INSERT INTO trap.ran VALUES (current_user) RETURNING 0::oid, 1::oid, 'x', false $$;"
        "CREATE FUNCTION trap.pg_get_userbyid(oid) RETURNS name LANGUAGE sql "
        "AS $$ INSERT INTO trap.ran VALUES (current_user) RETURNING 'x'::name $$;"
        "CREATE TABLE trap.pg_depend (classid oid, objid oid, refclassid oid, refobjid oid);"
        "CREATE TABLE trap.pg_rewrite (oid oid, ev_class oid);"
        "CREATE FUNCTION trap.int_eq(oid, oid) RETURNS boolean LANGUAGE sql "
        "AS $$ INSERT INTO trap.ran VALUES (current_user) RETURNING false $$;"
        "CREATE OPERATOR trap.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = trap.int_eq);"
        "GRANT USAGE ON SCHEMA trap TO PUBLIC"
    )
    admin = views.connect()
    admin.execute("SET search_path = trap, public, pg_catalog")
    admin.execute("CREATE TEMP TABLE pg_class (oid oid, relacl aclitem[])")
    for grant in (
        f'GRANT SELECT ON public.vv TO "{analyst}"',
        "GRANT SELECT ON public.copied TO PUBLIC",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
            admin.execute(grant)
    admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{analyst}"')
    _cannot_read(views, analyst, "public.vv")
    assert views.execute("SELECT count(*) FROM trap.ran") == [(0,)]
    assert critical_findings(views) == []


def test_security_definer_functions_that_read_personal_rows_are_reported(views, analyst):
    views.admin.execute(
        "CREATE FUNCTION other.lookup(i int) RETURNS text LANGUAGE sql SECURITY DEFINER "
        "SET search_path = pg_catalog AS 'SELECT city FROM public.customers WHERE id = i';"
        "CREATE FUNCTION other.atomic(i int) RETURNS bigint LANGUAGE sql SECURITY DEFINER "
        "BEGIN ATOMIC SELECT count(*) FROM public.vv WHERE age = i; END;"
        "CREATE FUNCTION other.dynamic(t text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER "
        "AS $$ DECLARE n bigint; BEGIN EXECUTE 'SELECT count(*) FROM ' || t INTO n; "
        "RETURN n; END $$;"
        "CREATE FUNCTION other.harmless() RETURNS int LANGUAGE sql AS 'SELECT 1'"
    )
    findings = views.execute(
        "SELECT severity, object, finding FROM diffix.check_security() "
        "WHERE finding LIKE 'SECURITY DEFINER function%' ORDER BY object"
    )
    by_object = {obj: (severity, finding) for severity, obj, finding in findings}
    assert by_object["other.lookup(integer)"][0] == "critical"
    assert by_object["other.atomic(integer)"][0] == "critical"
    assert by_object["other.dynamic(text)"][0] == "warning"
    assert analyst in by_object["other.lookup(integer)"][1]
    assert not any("harmless" in obj for obj in by_object)
    views.admin.execute(
        "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA other FROM PUBLIC;"
        "ALTER FUNCTION other.dynamic(text) SECURITY INVOKER"
    )
    assert (
        views.execute(
            "SELECT 1 FROM diffix.check_security() WHERE finding LIKE 'SECURITY DEFINER function%'"
        )
        == []
    )


@pytest.mark.parametrize(
    "copy",
    [
        "CREATE TABLE {name} AS SELECT * FROM customers",
        "CREATE TABLE {name} AS SELECT city FROM public.v WHERE age > 30",
        "SELECT id, city INTO {name} FROM customers WHERE id = 5",
        "CREATE TABLE {name} AS SELECT * FROM copied",
    ],
)
def test_a_table_created_as_a_copy_of_personal_rows_is_protected(views, analyst, copy):
    """CREATE TABLE AS and SELECT INTO leave no link to their source: the statistics of the
    command tell that it read personal rows, and the copy is recorded."""
    notices: list[str] = []
    views.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    views.admin.execute(copy.format(name="dump"))
    assert any("public.dump holds rows of" in n for n in notices), notices
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"public\.dump reads rows of"):
        views.admin.execute(f'GRANT SELECT ON dump TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ownership"):
        views.admin.execute(f'ALTER TABLE dump OWNER TO "{analyst}"')
    views.admin.execute("CREATE VIEW over_dump AS SELECT * FROM dump")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="reads rows of"):
        views.admin.execute("GRANT SELECT ON over_dump TO PUBLIC")
    if "id" in copy or "*" in copy:  # labeled personal, it is read through the engine
        views.admin.execute("CALL diffix.mark_personal('dump', 'id')")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege, match=r"personal table public\.dump"
        ):
            views.admin.execute(f'GRANT SELECT ON dump TO "{analyst}"')
    else:  # declared publishable by an administrator
        views.admin.execute("CALL diffix.mark_public('dump', force => true)")
        views.admin.execute(f'GRANT SELECT ON dump TO "{analyst}"')
        assert views.as_role(analyst).execute("SELECT count(*) FROM dump").fetchone()[0] > 0
    views.admin.execute("DROP TABLE dump CASCADE")
    assert views.execute("SELECT count(*) FROM diffix.copied_tables") == [(0,)]


def test_copies_that_read_no_personal_rows_are_ordinary_tables(views, analyst):
    views.admin.execute(
        "CREATE TABLE lookup AS SELECT * FROM cities;"
        "CREATE TABLE empty_copy AS SELECT * FROM customers WITH NO DATA;"
        "CREATE TABLE nothing AS SELECT * FROM customers WHERE false;"
        f'GRANT SELECT ON lookup, empty_copy, nothing TO "{analyst}"'
    )
    assert views.execute("SELECT count(*) FROM diffix.copied_tables") == [(0,)]


def test_copies_of_personal_rows_are_for_administrators(views):
    """Also when the command overwrites what the trigger noted before it ran."""
    direct = views.create_role("direct")
    views.admin.execute(
        f'GRANT SELECT ON customers TO "{direct}"; GRANT CREATE ON SCHEMA other TO "{direct}"'
    )
    conn = views.as_role(direct)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would copy rows"):
        conn.execute("CREATE TABLE other.mine AS SELECT * FROM public.customers")
    for noted in (
        "{}",
        '{"1": 0}',
        json.dumps({str(views.execute("SELECT 'customers'::regclass::oid")[0][0]): 1e30}),
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would copy rows"):
            conn.execute(  # the command rewrites what the trigger noted before it
                "CREATE TABLE other.mine AS SELECT c.*, "
                "set_config('pldiffix.protected_reads_before', %s, true) FROM public.customers c",
                (noted,),
            )
    conn.execute("CREATE TEMP TABLE scratch AS SELECT * FROM public.customers")  # this session's
    assert conn.execute("SELECT count(*) FROM scratch").fetchone() == (60,)
