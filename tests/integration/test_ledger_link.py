"""How the ledger's loopback reaches the server, on a cluster of its own whose pg_hba.conf is that
of a default Debian server (peer on the socket, scram on localhost), then one where no route
asks for a password: the installer must choose localhost in the first, and fail with what to
add to pg_hba.conf in the second, after which analyst queries are refused, not unlogged."""

from __future__ import annotations

import io

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.cluster import EmbeddedCluster

DEBIAN_HBA = """
local all postgres trust
local all all peer
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""
TRUST_ONLY_HBA = """
local all all trust
host all all 127.0.0.1/32 trust
"""


def _use_hba(cluster: EmbeddedCluster, text: str) -> None:
    (cluster.root / "data" / "pg_hba.conf").write_text(text)
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="module")
def cluster():
    try:
        with EmbeddedCluster(settings={"listen_addresses": "127.0.0.1"}) as started:
            yield started
    except RuntimeError as error:
        pytest.skip(f"no embedded cluster: {error}")


def test_on_a_default_debian_server_the_loopback_uses_localhost(cluster):
    _use_hba(cluster, DEBIAN_HBA)
    out = io.StringIO()
    install.install(cluster.dsn, out=out)
    chosen = f"connect the ledger loopback ... ok (host=127.0.0.1 port={cluster.port})"
    assert chosen in out.getvalue()
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE debian_analyst LOGIN PASSWORD 'pw'")
        admin.execute("CALL diffix.mark_role('debian_analyst', 'anonymized_untrusted')")
    analyst_dsn = make_conninfo(cluster.dsn, host="127.0.0.1", user="debian_analyst", password="pw")
    with psycopg.connect(analyst_dsn, autocommit=True) as analyst:
        analyst.execute("SELECT diffix.query_json('SELECT 1 AS one')")
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        logged = admin.execute("SELECT sql FROM diffix.show_audit('debian_analyst')").fetchall()
        admin.execute("DROP OWNED BY debian_analyst; DROP ROLE debian_analyst")
    assert logged == [("SELECT 1 AS one",)]


def test_without_a_password_route_the_installer_says_what_to_add(cluster):
    _use_hba(cluster, TRUST_ONLY_HBA)
    with pytest.raises(install.InstallError) as error:
        install.install(cluster.dsn, out=io.StringIO())
    message = str(error.value)
    assert "analyst queries are refused until it works" in message
    assert "local all +diffix_ledger scram-sha-256" in message
    assert "password is required" in message
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE lonely_analyst LOGIN")
        admin.execute("CALL diffix.mark_role('lonely_analyst', 'anonymized_untrusted')")
        findings = admin.execute("SELECT finding FROM diffix.check_security()").fetchall()
    assert any("loopback is not configured" in f for (f,) in findings)
    analyst_dsn = make_conninfo(cluster.dsn, user="lonely_analyst")
    with (
        psycopg.connect(analyst_dsn, autocommit=True) as analyst,
        pytest.raises(psycopg.errors.ConnectionException) as refused,
    ):
        analyst.execute("SELECT diffix.query_json('SELECT 1 AS one')")
    assert "ledger loopback is not configured" in refused.value.diag.message_primary


def _owned_by_a_plain_role(empty_db):
    """The database handed to a non-superuser owner: in PostgreSQL 15 that role controls
    `public` (owned by pg_database_owner)."""
    owner = empty_db.create_role(prefix="dbowner")
    empty_db.admin.execute(
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(empty_db.name), sql.Identifier(owner)
        )
    )
    return owner


LOOT = "CREATE TABLE public.loot (connstr text); GRANT INSERT ON public.loot TO PUBLIC"
TRAP = """
CREATE FUNCTION {schema}.dblink_connect(name text, connstr text) RETURNS text
LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO public.loot VALUES (connstr) RETURNING 'OK' $$;
CREATE FUNCTION {schema}.dblink_connect(connstr text) RETURNS text
LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO public.loot VALUES (connstr) RETURNING 'OK' $$;
CREATE FUNCTION {schema}.dblink(name text, statement text) RETURNS SETOF record
LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY SELECT 'logged'::text; END $$;
CREATE FUNCTION {schema}.dblink_get_connections() RETURNS text[]
LANGUAGE sql AS $$ SELECT '{{}}'::text[] $$;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO PUBLIC;
GRANT USAGE ON SCHEMA {schema} TO PUBLIC;
"""


def test_a_database_owner_cannot_catch_the_loopback_password(empty_db):
    owner = _owned_by_a_plain_role(empty_db)
    empty_db.admin.execute("CREATE EXTENSION dblink")  # in public, as many databases have it
    out = io.StringIO()
    install.install(empty_db.dsn(), out=out)
    assert "moved the dblink extension from schema public to diffix_dblink" in out.getvalue()
    assert "must now write diffix_dblink.dblink(...)" in out.getvalue()
    analyst = empty_db.create_role("anonymized_untrusted")

    attacker = empty_db.as_role(owner)
    attacker.execute("ALTER SCHEMA public RENAME TO old_public")
    attacker.execute("CREATE SCHEMA public")
    attacker.execute(LOOT)
    attacker.execute(TRAP.format(schema="public"))
    attacker.execute("CREATE SCHEMA dblink_traps")
    attacker.execute(TRAP.format(schema="dblink_traps"))
    attacker.execute(
        sql.SQL("ALTER DATABASE {} SET search_path = dblink_traps, public").format(
            sql.Identifier(empty_db.name)
        )
    )
    for attempt in [
        "ALTER SCHEMA diffix_dblink RENAME TO taken",
        "CREATE FUNCTION diffix_dblink.dblink_connect(text) RETURNS text "
        "LANGUAGE sql AS $$ SELECT 'x' $$",
        "DROP SCHEMA diffix_dblink CASCADE",
        "ALTER EXTENSION dblink SET SCHEMA public",
    ]:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            attacker.execute(attempt)

    conn = empty_db.as_role(analyst)
    conn.execute("SELECT diffix.query_json('SELECT 1 AS one')")
    assert empty_db.execute("SELECT count(*) FROM public.loot") == [(0,)]  # no password caught
    assert empty_db.execute("SELECT sql FROM diffix.show_audit(%s)", (analyst,)) == [
        ("SELECT 1 AS one",)
    ]
    critical = empty_db.execute(
        "SELECT object, finding FROM diffix.check_security() WHERE severity = 'critical'"
    )
    assert critical == []


def test_a_diffix_dblink_schema_made_by_someone_else_stops_the_install(empty_db):
    owner = _owned_by_a_plain_role(empty_db)
    empty_db.as_role(owner).execute("CREATE SCHEMA diffix_dblink")
    with pytest.raises(install.InstallError, match=r"belongs to .*, who is not a superuser"):
        install.install(empty_db.dsn(), out=io.StringIO())
    assert empty_db.execute("SELECT to_regnamespace('diffix')") == [(None,)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("GRANT CREATE ON SCHEMA diffix_dblink TO PUBLIC", "PUBLIC may create objects in it"),
        ("GRANT CREATE ON SCHEMA diffix TO {role}", "{role} may create objects in it"),
        ("ALTER SCHEMA diffix_dblink OWNER TO {role}", "{role}, not a superuser, owns it"),
        (
            "CREATE FUNCTION diffix_dblink.dblink_connect(int) RETURNS int "
            "LANGUAGE sql AS $$ SELECT 1 $$",
            "a function that is not dblink's",
        ),
        (
            "ALTER FUNCTION diffix_dblink.dblink_connect(text, text) OWNER TO {role}",
            "{role}, not a superuser, owns it and could replace it",
        ),
        ("ALTER EXTENSION dblink SET SCHEMA public", "is in schema public, not diffix_dblink"),
        (
            "GRANT EXECUTE ON FUNCTION diffix_dblink.dblink_connect(text, text) TO PUBLIC",
            "PUBLIC may execute it",
        ),
    ],
)
def test_check_security_reports_a_writable_path_to_the_loopback(db, change, expected):
    role = db.create_role(login=False)
    db.admin.execute(change.format(role=f'"{role}"'))
    findings = db.execute("SELECT finding FROM diffix.check_security() WHERE severity = 'critical'")
    assert any(expected.format(role=role) in finding for (finding,) in findings), findings
