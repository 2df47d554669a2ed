"""Privileges other than SELECT on a personal table, attacked. INSERT answers by unique violations
whether a person's key exists, UPDATE and DELETE by their row counts (and destroy data), TRUNCATE
destroys it, REFERENCES lets the analyst's own foreign key probe the key column, TRIGGER runs the
analyst's function as whoever next writes the table. The exposing-grants trigger refuses or
withholds every one of them for PUBLIC and anonymized roles (sql/core/45_exposures.sql), as it
does SELECT; direct roles keep them."""

from __future__ import annotations

import psycopg
import pytest
from grant_checks import acl_of, critical_findings

PRIVILEGES = ["INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
COLUMN_PRIVILEGES = ["INSERT", "UPDATE", "REFERENCES"]
ALL_LISTED = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"

# What each privilege gives an attacker, as statements run by the analyst on {t}: the first
# answers a question about the rows (or changes them), on a table where the analyst holds it.
ATTACKS = {
    "INSERT": ["INSERT INTO {t} (id) VALUES (7)"],  # unique violation: person 7 exists
    "UPDATE": ["UPDATE {t} SET age = 0"],  # the command tag counts the rows
    "DELETE": ["DELETE FROM {t}"],
    "TRUNCATE": ["TRUNCATE {t}"],
    "REFERENCES": [
        "CREATE TABLE sandbox.probe (cid integer REFERENCES {t} (id))",
        "INSERT INTO sandbox.probe VALUES (7)",  # a foreign key violation: person 7 is absent
    ],
    "TRIGGER": [
        "CREATE TRIGGER steal BEFORE INSERT OR UPDATE OR DELETE ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION sandbox.as_writer()"
    ],
}


@pytest.fixture
def world(bank):
    bank.admin.execute(
        """
        ALTER TABLE customers ADD PRIMARY KEY (id);
        CREATE TABLE people (id integer PRIMARY KEY, age integer);
        INSERT INTO people VALUES (7, 30);
        """
    )
    return bank


@pytest.fixture
def analyst(world):
    role = world.create_role("anonymized_untrusted")
    world.admin.execute(
        f'CREATE SCHEMA sandbox AUTHORIZATION "{role}";'
        "CREATE FUNCTION sandbox.as_writer() RETURNS trigger LANGUAGE plpgsql "
        "AS 'BEGIN RETURN NULL; END';"
        f'ALTER FUNCTION sandbox.as_writer() OWNER TO "{role}"'
    )
    return role


@pytest.fixture
def team(world):
    """A NOLOGIN role that is a member of a level, and a login member of it."""
    group = world.create_role(login=False)
    world.admin.execute(f'GRANT diffix_anonymized_dp TO "{group}"')
    member = world.create_role()
    world.admin.execute(f'GRANT "{group}" TO "{member}"')
    return group, member


def _attack(db, role: str, privilege: str, table: str) -> None:
    """Runs the privilege's attack as the role, each statement in a transaction rolled back."""
    conn = db.as_role(role)
    conn.autocommit = False
    try:
        for statement in ATTACKS[privilege]:
            conn.execute(statement.format(t=table))
    finally:
        conn.rollback()


def _denied(db, role: str, privilege: str, table: str = "public.customers") -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        _attack(db, role, privilege, table)


@pytest.mark.parametrize("privilege", PRIVILEGES)
def test_each_privilege_is_an_oracle_on_a_table_nothing_protects(world, analyst, privilege):
    """The control: on an unlabeled table the same grant gives the attack what it wants."""
    world.admin.execute(f'GRANT {privilege} ON people TO "{analyst}"')
    if privilege == "INSERT":
        with pytest.raises(psycopg.errors.UniqueViolation):
            _attack(world, analyst, privilege, "public.people")
    elif privilege == "REFERENCES":
        world.admin.execute("DELETE FROM people")  # the key 7 is absent: a violation says so
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            _attack(world, analyst, privilege, "public.people")
    else:
        _attack(world, analyst, privilege, "public.people")
    if privilege == "DELETE":
        conn = world.as_role(analyst)
        conn.autocommit = False
        assert conn.execute("DELETE FROM people").rowcount == 1  # an exact count, no SELECT
        conn.rollback()


@pytest.mark.parametrize("privilege", PRIVILEGES)
@pytest.mark.parametrize(
    "grant",
    [
        'GRANT {p} ON customers TO "{analyst}"',
        'GRANT {p} ON TABLE customers TO "{analyst}" WITH GRANT OPTION',
        "GRANT {p} ON customers TO PUBLIC",
        "GRANT {p} ON customers TO diffix_anonymized_untrusted",
        'GRANT {p} ON customers TO "{group}"',
        'GRANT SELECT ON cities TO "{analyst}"; GRANT {p} ON customers TO "{analyst}"',
    ],
)
def test_a_grant_of_any_privilege_on_a_personal_table_is_refused(
    world, analyst, team, privilege, grant
):
    group, member = team
    before = acl_of(world, "customers")
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege,
        match=r"refused: personal table public\.customers would be readable or writable by "
        rf".*\({privilege} by table grant\)",
    ):
        world.admin.execute(grant.format(p=privilege, analyst=analyst, group=group))
    assert acl_of(world, "customers") == before  # nothing half-done
    for role in (analyst, member):
        _denied(world, role, privilege)
    assert world.execute("SELECT * FROM diffix._personal_table_exposures()") == []
    assert critical_findings(world) == []


@pytest.mark.parametrize("privilege", COLUMN_PRIVILEGES)
@pytest.mark.parametrize("grantee", ['"{analyst}"', "PUBLIC", "diffix_anonymized_dp", '"{group}"'])
def test_a_column_grant_of_any_privilege_is_refused(world, analyst, team, privilege, grantee):
    group, member = team
    grantee = grantee.format(analyst=analyst, group=group)
    before = acl_of(world, "customers")
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege, match=rf"\({privilege} by column grant\)"
    ):
        world.admin.execute(f"GRANT {privilege} (id, age) ON customers TO {grantee}")
    assert acl_of(world, "customers") == before
    for role in (analyst, member):
        _denied(world, role, privilege)


@pytest.mark.parametrize(
    "grant",
    [
        'GRANT ALL ON customers TO "{analyst}"',
        'GRANT ALL PRIVILEGES ON TABLE customers TO "{analyst}" WITH GRANT OPTION',
        "GRANT ALL ON customers TO PUBLIC",
        'GRANT ALL (id, age) ON customers TO "{analyst}"',
        'GRANT INSERT (id), UPDATE (age), REFERENCES (id) ON customers TO "{analyst}"',
    ],
)
def test_grant_all_is_refused_and_names_every_privilege(world, analyst, grant):
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        world.admin.execute(grant.format(analyst=analyst))
    message = refused.value.diag.message_primary
    for privilege in ("INSERT", "UPDATE", "REFERENCES"):
        assert privilege in message, message
    for privilege in PRIVILEGES:
        _denied(world, analyst, privilege)


def test_the_insert_probe_fails_with_permission_denied_whatever_the_session_tries(world, analyst):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        world.admin.execute(f'GRANT INSERT ON customers TO "{analyst}"')
    conn = world.as_role(analyst)
    for attack in [
        "INSERT INTO customers (id) VALUES (7)",
        "INSERT INTO customers (id) VALUES (7) ON CONFLICT DO NOTHING",
        "INSERT INTO public.customers SELECT 7",
        "MERGE INTO customers c USING (SELECT 7 AS id) s ON c.id = s.id "
        "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
        "SET ROLE diffix_anonymized_untrusted; INSERT INTO customers (id) VALUES (7)",
        "SET ROLE diffix_engine",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(attack)


@pytest.mark.parametrize(
    ("grant", "withheld", "opened"),
    [
        ('GRANT ALL ON ALL TABLES IN SCHEMA public TO "{analyst}"', ALL_LISTED, PRIVILEGES),
        (
            "GRANT INSERT, DELETE ON ALL TABLES IN SCHEMA public TO PUBLIC",
            "INSERT, DELETE",
            ["INSERT", "DELETE"],
        ),
        ('GRANT TRUNCATE ON notes, customers TO "{analyst}"', "TRUNCATE", ["TRUNCATE"]),
        (
            'grant references, trigger on all tables in schema public to "{group}"',
            "REFERENCES, TRIGGER",
            ["REFERENCES", "TRIGGER"],
        ),
    ],
)
def test_a_broad_grant_opens_the_other_tables_and_withholds_every_privilege(
    world, analyst, team, grant, withheld, opened
):
    group, member = team
    notices: list[str] = []
    world.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    world.admin.execute(grant.format(analyst=analyst, group=group))
    assert notices == [f"GRANT applied except {withheld} on personal table public.customers"]
    reader = member if "{group}" in grant else analyst
    for privilege in opened:  # what the grant gave on the other tables stays
        assert world.execute(
            "SELECT has_table_privilege(%s, 'notes', %s)", (reader, privilege)
        ) == [(True,)]
    assert world.execute("SELECT * FROM diffix._personal_table_exposures()") == []
    assert critical_findings(world) == []
    for privilege in PRIVILEGES:
        _denied(world, analyst, privilege)


def test_marking_personal_revokes_every_privilege_analysts_held(world, analyst, team):
    group, member = team
    direct = world.create_role("direct")
    passer = world.create_role("anonymized_trusted")
    world.admin.execute(
        f"""
        CREATE TABLE later (id integer PRIMARY KEY, age integer);
        INSERT INTO later SELECT i, i FROM generate_series(1, 20) i;
        GRANT INSERT, UPDATE (age), REFERENCES, TRIGGER ON later TO "{analyst}";
        GRANT TRUNCATE ON later TO PUBLIC;
        GRANT DELETE ON later TO diffix_anonymized_dp;
        GRANT UPDATE ON later TO "{group}";
        GRANT INSERT ON later TO "{passer}" WITH GRANT OPTION;
        GRANT ALL ON later TO "{direct}";
        """
    )
    world.as_role(passer).execute(f'GRANT INSERT ON later TO "{member}"')
    world.admin.execute("CALL diffix.mark_personal('later', 'id')")
    held = world.execute(
        "SELECT DISTINCT CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END "
        "FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = 'later'::regclass "
        "UNION SELECT DISTINCT pg_get_userbyid(a.grantee) FROM pg_attribute t, "
        "aclexplode(t.attacl) a WHERE t.attrelid = 'later'::regclass ORDER BY 1"
    )
    owner = world.execute("SELECT current_user")[0][0]
    assert sorted(r[0] for r in held) == sorted([owner, "diffix_engine", direct])
    for role in (analyst, member, passer):
        for privilege in PRIVILEGES:
            _denied(world, role, privilege, "public.later")
    assert world.as_role(direct).execute("DELETE FROM later WHERE id = 1").rowcount == 1
    assert critical_findings(world) == []


def test_marking_a_role_anonymized_revokes_its_other_privileges(world):
    role = world.create_role("direct")
    world.admin.execute(f'GRANT INSERT, TRUNCATE, REFERENCES (id) ON customers TO "{role}"')
    world.admin.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (role,))
    assert world.execute("SELECT * FROM diffix._personal_table_exposures()") == []
    for privilege in ("INSERT", "TRUNCATE"):
        _denied(world, role, privilege)


def test_an_owner_change_to_an_analyst_is_refused(world, analyst, team):
    group, _ = team
    for new_owner in (analyst, group):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"\(ownership\)"):
            world.admin.execute(f'ALTER TABLE customers OWNER TO "{new_owner}"')
    assert world.execute(
        "SELECT relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) "
        "FROM pg_class WHERE oid = 'customers'::regclass"
    ) == [(True,)]


def test_a_refused_grant_rolls_back_with_its_transaction(world, analyst):
    conn = world.connect()
    conn.autocommit = False
    conn.execute(f'GRANT INSERT ON notes TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f'GRANT TRIGGER ON customers TO "{analyst}"')
    conn.rollback()
    assert world.execute(
        "SELECT has_table_privilege(%s, 'notes', 'INSERT'), "
        "has_table_privilege(%s, 'customers', 'TRIGGER')",
        (analyst, analyst),
    ) == [(False, False)]


def test_a_broad_grant_rolled_back_leaves_nothing(world, analyst):
    before = {rel: acl_of(world, rel) for rel in ("customers", "notes", "cities")}
    conn = world.connect()
    conn.autocommit = False
    conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{analyst}"')
    conn.rollback()
    assert {rel: acl_of(world, rel) for rel in before} == before


def test_direct_roles_may_read_and_write(world):
    direct = world.create_role("direct")
    world.admin.execute(f'GRANT ALL ON customers TO "{direct}" WITH GRANT OPTION')
    conn = world.as_role(direct)
    conn.autocommit = False
    conn.execute("INSERT INTO customers (id) VALUES (1000)")
    assert conn.execute("UPDATE customers SET age = 1 WHERE id = 1000").rowcount == 1
    assert conn.execute("DELETE FROM customers WHERE id = 1000").rowcount == 1
    conn.execute("TRUNCATE customers")
    conn.rollback()
    notices: list[str] = []
    world.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    world.admin.execute(f'GRANT INSERT ON ALL TABLES IN SCHEMA public TO "{direct}"')
    assert notices == []


def test_a_direct_role_cannot_pass_a_privilege_on_to_an_analyst(world, analyst):
    """The trigger runs as the grantor: a direct role holding a grant option is refused too."""
    direct = world.create_role("direct")
    world.admin.execute(f'GRANT DELETE, TRUNCATE ON customers TO "{direct}" WITH GRANT OPTION')
    conn = world.as_role(direct)
    for statement in [
        f'GRANT DELETE ON customers TO "{analyst}"',
        "GRANT TRUNCATE ON customers TO PUBLIC",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused: personal"):
            conn.execute(statement)
    _denied(world, analyst, "DELETE")


def test_check_security_names_the_privilege(world, analyst):
    # a grant inherited through membership in a role without a level
    writer = world.create_role(login=False)
    world.admin.execute(
        f'GRANT UPDATE (age) ON customers TO "{writer}"; GRANT "{writer}" TO "{analyst}"'
    )
    # a direct grant the trigger never saw: the role got its level by plain membership
    holder = world.create_role("direct")
    world.admin.execute(f'GRANT INSERT, TRUNCATE ON customers TO "{holder}"')
    world.admin.execute(f'GRANT diffix_anonymized_dp TO "{holder}"')
    findings = world.execute(
        "SELECT object, finding, fix FROM diffix.check_security() WHERE severity = 'critical'"
    )
    assert (
        "public.customers",
        f"{holder} holds INSERT, TRUNCATE on it directly (table grant)",
        f"REVOKE ALL ON public.customers FROM {holder}",
    ) in findings
    assert any(
        finding == f"{analyst} (anonymized_untrusted) holds UPDATE on it through role membership"
        for _, finding, _ in findings
    ), findings
    world.execute("SELECT diffix._revoke_exposures()")
    world.admin.execute(f'REVOKE "{writer}" FROM "{analyst}"')
    assert critical_findings(world) == []


def test_what_a_references_or_trigger_grant_left_stops_mark_personal(world, analyst):
    """A foreign key or trigger made while the grant was held would outlive its REVOKE:
    mark_personal refuses and leaves the table as it was; check_security reports such leftovers
    (here made by plain membership in a level, which no event trigger sees)."""
    world.admin.execute(
        f"""
        CREATE TABLE later (id integer PRIMARY KEY);
        INSERT INTO later SELECT generate_series(1, 20);
        GRANT REFERENCES, TRIGGER ON later TO "{analyst}";
        """
    )
    conn = world.as_role(analyst)
    conn.execute("CREATE TABLE sandbox.probe (cid integer REFERENCES public.later (id))")
    conn.execute(
        "CREATE TRIGGER steal AFTER INSERT ON public.later "
        "FOR EACH STATEMENT EXECUTE FUNCTION sandbox.as_writer()"
    )
    before = acl_of(world, "later")
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        world.admin.execute("CALL diffix.mark_personal('later', 'id')")
    message = refused.value.diag.message_primary
    assert "public.later cannot be marked personal" in message
    assert "REFERENCES (constraint probe_cid_fkey on sandbox.probe)" in message
    assert "TRIGGER (steal runs sandbox.as_writer())" in message
    assert acl_of(world, "later") == before
    assert world.execute(
        "SELECT count(*) FROM diffix.table_labels WHERE relid = 'later'::regclass"
    ) == [(0,)]
    # made personal first, the leftovers a later level change leaves are findings
    conn.execute("DROP TABLE sandbox.probe")
    world.admin.execute("DROP TRIGGER steal ON later")
    world.admin.execute(f'REVOKE ALL ON later FROM "{analyst}"')
    world.admin.execute("CALL diffix.mark_personal('later', 'id')")
    owner = world.create_role("direct")
    world.admin.execute(
        f'CREATE SCHEMA mine AUTHORIZATION "{owner}"; GRANT REFERENCES ON later TO "{owner}"'
    )
    world.as_role(owner).execute("CREATE TABLE mine.probe (cid integer REFERENCES public.later)")
    world.admin.execute(f'REVOKE ALL ON later FROM "{owner}"')
    world.admin.execute(f'GRANT diffix_anonymized_dp TO "{owner}"')
    findings = {finding for _, finding in critical_findings(world)}
    assert (
        f"{owner} holds REFERENCES (constraint probe_cid_fkey on mine.probe) on it directly "
        "(foreign key)" in findings
    ), findings
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="refused"):
        world.admin.execute(f'GRANT SELECT ON cities TO "{analyst}"')
    world.admin.execute("DROP TABLE mine.probe")
    assert critical_findings(world) == []
    world.admin.execute(f'GRANT SELECT ON cities TO "{analyst}"')


def test_a_trigger_running_an_analysts_function_on_a_personal_table_is_refused(world, analyst):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"\(TRIGGER \(steal runs"):
        world.admin.execute(
            "CREATE TRIGGER steal AFTER INSERT ON customers "
            "FOR EACH STATEMENT EXECUTE FUNCTION sandbox.as_writer()"
        )
    assert world.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'steal'") == [(0,)]


# A table the DBA owns with a foreign key into a personal table: whoever may write it learns, by
# a foreign key violation or none, whether a person's key exists.


@pytest.fixture
def visits(world):
    world.admin.execute(
        "CREATE TABLE visits (cid integer REFERENCES customers (id), note text);"
        "CREATE TABLE plain_visits (pid integer REFERENCES people (id), note text)"
    )
    return world


def _fk_refused(db, grant: str) -> None:
    with pytest.raises(
        psycopg.errors.InsufficientPrivilege,
        match=r"would hold (INSERT|UPDATE).* on public\.visits \(foreign key visits_cid_fkey "
        r"into public\.customers\)",
    ):
        db.admin.execute(grant)


def test_a_foreign_key_into_an_unprotected_table_is_an_oracle(visits, analyst):
    visits.admin.execute(f'GRANT INSERT ON plain_visits TO "{analyst}"')
    conn = visits.as_role(analyst)
    conn.execute("INSERT INTO plain_visits (pid) VALUES (7)")  # person 7 exists
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO plain_visits (pid) VALUES (8)")  # person 8 does not


@pytest.mark.parametrize(
    "grant",
    [
        'GRANT INSERT ON visits TO "{analyst}"',
        'GRANT UPDATE (cid) ON visits TO "{analyst}"',
        'GRANT INSERT (note) ON visits TO "{analyst}"',
        "GRANT INSERT ON visits TO diffix_anonymized_untrusted",
        'GRANT UPDATE ON visits TO "{group}"',
        "GRANT INSERT, UPDATE ON visits TO PUBLIC",
    ],
)
def test_a_write_grant_on_a_table_referencing_a_personal_one_is_refused(
    visits, analyst, team, grant
):
    group, member = team
    before = acl_of(visits, "visits")
    _fk_refused(visits, grant.format(analyst=analyst, group=group))
    assert acl_of(visits, "visits") == before
    for role in (analyst, member):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            visits.as_role(role).execute("INSERT INTO visits (cid) VALUES (7)")
    assert critical_findings(visits) == []


def test_a_broad_grant_withholds_writes_on_the_referencing_table(visits, analyst):
    notices: list[str] = []
    visits.admin.add_notice_handler(lambda notice: notices.append(notice.message_primary))
    visits.admin.execute(f'GRANT INSERT, SELECT ON ALL TABLES IN SCHEMA public TO "{analyst}"')
    assert len(notices) == 1
    assert notices[0].startswith("GRANT applied except ")
    assert (
        "INSERT on public.visits (foreign key visits_cid_fkey into public.customers)"
        in (notices[0])
    )
    conn = visits.as_role(analyst)
    assert conn.execute("SELECT count(*) FROM visits").fetchall() == [(0,)]  # SELECT kept
    assert visits.execute(
        "SELECT has_table_privilege(%s, 'notes', 'INSERT'), "
        "has_table_privilege(%s, 'plain_visits', 'INSERT'), "
        "has_table_privilege(%s, 'visits', 'INSERT')",
        (analyst, analyst, analyst),
    ) == [(True, True, False)]
    assert critical_findings(visits) == []


def test_adding_the_foreign_key_while_analysts_write_the_table_is_refused(world, analyst):
    world.admin.execute(f'CREATE TABLE visits (cid integer); GRANT INSERT ON visits TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="visits_cid_fkey"):
        world.admin.execute("ALTER TABLE visits ADD FOREIGN KEY (cid) REFERENCES customers (id)")
    assert world.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'visits'::regclass"
    ) == [(0,)]


def test_marking_the_referenced_table_personal_revokes_the_writes(world, analyst, team):
    group, member = team
    world.admin.execute(
        f"""
        CREATE TABLE later (id integer PRIMARY KEY);
        INSERT INTO later SELECT generate_series(1, 20);
        CREATE TABLE later_visits (lid integer REFERENCES later (id), note text);
        GRANT SELECT, INSERT ON later_visits TO "{analyst}";
        GRANT UPDATE (lid) ON later_visits TO "{group}";
        """
    )
    world.admin.execute("CALL diffix.mark_personal('later', 'id')")
    assert world.execute(
        "SELECT has_table_privilege(%s, 'later_visits', 'SELECT'), "
        "has_table_privilege(%s, 'later_visits', 'INSERT'), "
        "has_column_privilege(%s, 'later_visits', 'lid', 'UPDATE')",
        (analyst, analyst, member),
    ) == [(True, False, False)]
    assert critical_findings(world) == []


def test_check_security_names_table_constraint_and_role(visits):
    holder = visits.create_role("direct")
    visits.admin.execute(f'GRANT INSERT ON visits TO "{holder}"')
    visits.admin.execute(f'GRANT diffix_anonymized_dp TO "{holder}"')  # no event trigger sees it
    findings = visits.execute(
        "SELECT object, finding, fix FROM diffix.check_security() WHERE severity = 'critical'"
    )
    assert (
        "public.visits",
        f"{holder} holds INSERT on it directly (foreign key visits_cid_fkey into public.customers)",
        f"REVOKE INSERT, UPDATE ON public.visits FROM {holder}, or drop the constraint",
    ) in findings, findings
    visits.execute("SELECT diffix._revoke_exposures()")
    assert critical_findings(visits) == []


def test_direct_roles_may_write_the_referencing_table(visits):
    direct = visits.create_role("direct")
    visits.admin.execute(f'GRANT INSERT, UPDATE ON visits TO "{direct}"')
    conn = visits.as_role(direct)
    conn.autocommit = False
    conn.execute("INSERT INTO visits (cid) VALUES (1)")
    conn.rollback()


def test_a_refused_write_grant_rolled_back_leaves_nothing(visits, analyst):
    before = {rel: acl_of(visits, rel) for rel in ("visits", "notes")}
    conn = visits.connect()
    conn.autocommit = False
    conn.execute(f'GRANT INSERT ON notes TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f'GRANT INSERT ON visits TO "{analyst}"')
    conn.rollback()
    assert {rel: acl_of(visits, rel) for rel in before} == before


def test_check_security_names_writes_inherited_through_membership(visits, analyst):
    writer = visits.create_role(login=False)
    visits.admin.execute(
        f'GRANT UPDATE (cid) ON visits TO "{writer}"; GRANT "{writer}" TO "{analyst}"'
    )
    findings = {finding for _, finding in critical_findings(visits)}
    assert (
        f"{analyst} (anonymized_untrusted) holds UPDATE on it through role membership "
        "(foreign key visits_cid_fkey into public.customers)" in findings
    ), findings
    visits.admin.execute(f'REVOKE "{writer}" FROM "{analyst}"')
    assert critical_findings(visits) == []
