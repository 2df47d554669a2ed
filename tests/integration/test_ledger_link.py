"""How the ledger's loopback reaches the server, on a cluster of its own whose pg_hba.conf is that
of a default Debian server (peer on the socket, scram on localhost), then one where no route
asks for a password: the installer must choose localhost in the first, and fail with what to
add to pg_hba.conf in the second, after which analyst queries are refused, not unlogged."""

from __future__ import annotations

import io

import psycopg
import pytest
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
