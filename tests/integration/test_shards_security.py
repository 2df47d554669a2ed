"""Sharded personal tables: a partitioned table over a local and a postgres_fdw leaf, marked
personal; its partitions and the shard's server stay out of analysts' reach (docs/scale-out.md)."""

from __future__ import annotations

import psycopg
import pytest
from engine_reads import same_answer
from psycopg import sql
from shard_fixtures import create_sharded_tx


@pytest.fixture
def sharded(db, shard):
    create_sharded_tx(db.admin, shard)
    return db


@pytest.fixture
def analyst(sharded):
    return sharded.create_role("anonymized_trusted", prefix="analyst")


def answer(conn: psycopg.Connection, query: str):
    return conn.execute("SELECT diffix.query_json(%s)", (query,)).fetchone()[0]


def findings(db, like: str) -> list[tuple]:
    return db.execute(
        "SELECT severity, object, finding FROM diffix.check_security() WHERE object LIKE %s "
        "ORDER BY 1, 2, 3",
        (like,),
    )


def test_the_root_is_labeled_and_covers_its_partitions(sharded):
    assert sharded.execute(
        "SELECT objname, label FROM diffix.show_labels() WHERE objname LIKE 'public.tx%' ORDER BY 1"
    ) == [("public.tx", "personal"), ("public.tx.aid", "aid")]
    for leaf in ("tx_p0", "tx_p1"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="takes no label"):
            sharded.admin.execute(f"CALL diffix.mark_public('{leaf}')")


def test_analysts_get_the_same_answers_as_over_a_local_table(sharded, analyst):
    conn = sharded.as_role(analyst)
    for query in (
        "SELECT kind, count(*), count(DISTINCT aid) FROM {t} GROUP BY kind",
        "SELECT count(*) FROM {t}",
        "SELECT diffix.floor_by(amount, 5.0) AS a, count(*) FROM {t} GROUP BY 1",
        "SELECT kind, sum(amount), avg(amount), count(amount) FROM {t} GROUP BY kind",
    ):
        sharded_answer = answer(conn, query.format(t="tx"))
        local_answer = answer(conn, query.format(t="local_copy.tx"))
        # counts exactly; float sums added in another order may differ in their last bits
        same_answer(
            sorted(sharded_answer["rows"], key=repr), sorted(local_answer["rows"], key=repr)
        )
        assert sharded_answer["rows"]
        assert answer(conn, query.format(t="tx")) == sharded_answer  # run after run


@pytest.mark.parametrize("leaf", ["tx_p0", "tx_p1"])
def test_analysts_cannot_read_a_partition(sharded, analyst, leaf):
    conn = sharded.as_role(analyst)
    assert conn.execute(f"SELECT has_table_privilege('{leaf}', 'SELECT')").fetchone() == (False,)
    # planning a foreign leaf with use_remote_estimate looks for the analyst's user mapping
    # first: either error, never rows
    with pytest.raises((psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedObject)):
        conn.execute(f"SELECT * FROM {leaf}")
    with pytest.raises(psycopg.Error):
        answer(conn, f"SELECT count(*) FROM {leaf}")


@pytest.mark.parametrize("leaf", ["tx_p0", "tx_p1"])
def test_grants_on_a_partition_are_refused(sharded, analyst, leaf):
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would be readable"):
        sharded.admin.execute(f'GRANT SELECT ON {leaf} TO "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would be readable"):
        sharded.admin.execute(f"GRANT SELECT (kind) ON {leaf} TO PUBLIC")


def test_partitions_attached_or_created_later_are_covered(sharded, analyst):
    admin = sharded.admin
    admin.execute(
        "ALTER TABLE tx DETACH PARTITION tx_p1;"
        "CREATE TABLE tx_p1a PARTITION OF tx FOR VALUES FROM (60) TO (90)"
    )
    # a table readable by PUBLIC cannot join the tree
    admin.execute(
        "CREATE TABLE tx_p1b (aid integer, kind text, amount float8);"
        "GRANT SELECT ON tx_p1b TO PUBLIC"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="tx_p1b would be readable"):
        admin.execute("ALTER TABLE tx ATTACH PARTITION tx_p1b FOR VALUES FROM (90) TO (MAXVALUE)")
    admin.execute(
        "REVOKE SELECT ON tx_p1b FROM PUBLIC;"
        "ALTER TABLE tx ATTACH PARTITION tx_p1b FOR VALUES FROM (90) TO (MAXVALUE)"
    )
    # default privileges that would open a new partition refuse its creation
    admin.execute(
        "ALTER TABLE tx DETACH PARTITION tx_p1b;"
        f'ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO "{analyst}"'
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would be readable"):
        admin.execute("CREATE TABLE tx_p1c PARTITION OF tx FOR VALUES FROM (90) TO (MAXVALUE)")
    admin.execute(f'ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM "{analyst}"')
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="would be readable"):
        admin.execute(f'GRANT SELECT ON tx_p1a TO "{analyst}"')
    conn = sharded.as_role(analyst)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM tx_p1a")
    # the engine reads the new partitions only through the root until it may read them
    assert findings(sharded, "public.tx%") == [
        ("info", "public.tx_p1a", "diffix_engine cannot read this partition of public.tx: "
         "queries read the table through its root, not partition by partition"),
    ]  # fmt: skip
    assert answer(conn, "SELECT count(*) FROM tx")["rows"]
    admin.execute("CALL diffix.mark_personal('tx', 'aid')")
    assert not findings(sharded, "public.tx%")


def test_a_table_the_analyst_owns_cannot_become_a_partition(sharded, analyst):
    admin = sharded.admin
    admin.execute(f'CREATE SCHEMA sandbox AUTHORIZATION "{analyst}"')
    conn = sharded.as_role(analyst)
    conn.execute("CREATE TABLE sandbox.mine (aid integer, kind text, amount float8)")
    admin.execute("ALTER TABLE tx DETACH PARTITION tx_p1")
    # the analyst owns no table of the tree, so attaches nothing and adopts nothing
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
        conn.execute("ALTER TABLE tx ATTACH PARTITION sandbox.mine FOR VALUES FROM (60) TO (70)")
    conn.execute(
        "CREATE TABLE sandbox.parent (aid integer, kind text, amount float8) "
        "PARTITION BY RANGE (aid)"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
        conn.execute(
            "ALTER TABLE sandbox.parent ATTACH PARTITION tx_p0 FOR VALUES FROM (0) TO (60)"
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
        conn.execute("CREATE TABLE sandbox.leaf PARTITION OF tx FOR VALUES FROM (60) TO (70)")
    # an administrator attaching it would hand the analyst a partition: refused
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ownership"):
        admin.execute("ALTER TABLE tx ATTACH PARTITION sandbox.mine FOR VALUES FROM (60) TO (70)")


def test_a_personal_table_attached_under_an_open_parent_is_refused(sharded, analyst):
    admin = sharded.admin
    admin.execute(
        "CREATE TABLE open_parent (aid integer, kind text, amount float8) PARTITION BY RANGE (aid);"
        "GRANT SELECT ON open_parent TO PUBLIC"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="open_parent would be readable"):
        admin.execute(
            "ALTER TABLE open_parent ATTACH PARTITION local_copy.tx FOR VALUES FROM (0) TO (1000)"
        )


def test_check_security_reports_mappings_analysts_can_use(sharded, analyst, shard):
    admin = sharded.admin
    assert not findings(sharded, "%shard1%")
    admin.execute(
        sql.SQL("CREATE USER MAPPING FOR PUBLIC SERVER shard1 OPTIONS (user {}, password {})")
        .format(sql.Literal(shard.reader), sql.Literal(shard.password))
        .as_string(admin)
    )
    assert findings(sharded, "%shard1%") == [
        (
            "warning",
            "user mapping for PUBLIC on server shard1",
            f"{analyst} (anonymized_trusted) could use it once granted USAGE on the server to "
            "read rows of public.tx on the shard directly",
        )
    ]
    admin.execute(f'GRANT USAGE ON FOREIGN SERVER shard1 TO "{analyst}"')
    # the threat: with USAGE and a mapping, the analyst reads the shard around the engine
    admin.execute(f'CREATE SCHEMA sandbox AUTHORIZATION "{analyst}"')
    conn = sharded.as_role(analyst)
    conn.execute(
        "CREATE FOREIGN TABLE sandbox.raw (aid integer, kind text, amount float8) "
        "SERVER shard1 OPTIONS (schema_name 'public', table_name 'tx_remote')"
    )
    assert conn.execute("SELECT count(*) FROM sandbox.raw").fetchone()[0] > 0
    assert ("critical", "user mapping for PUBLIC on server shard1") in [
        row[:2] for row in findings(sharded, "%shard1%")
    ]
    admin.execute(
        "DROP USER MAPPING FOR PUBLIC SERVER shard1;"
        f'CREATE USER MAPPING FOR "{analyst}" SERVER shard1 '
        f"OPTIONS (user '{shard.reader}', password '{shard.password}')"
    )
    assert [row[:2] for row in findings(sharded, "%shard1%")] == [
        ("critical", f"user mapping for {analyst} on server shard1")
    ]


def test_check_security_reports_an_analyst_owning_the_server_and_a_missing_engine_mapping(
    sharded, analyst
):
    admin = sharded.admin
    admin.execute(
        f'GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO "{analyst}";'
        f'ALTER SERVER shard1 OWNER TO "{analyst}";'
        "DROP USER MAPPING FOR diffix_engine SERVER shard1"
    )
    assert [row[:2] for row in findings(sharded, "server shard1")] == [
        ("critical", "server shard1"),
        ("warning", "server shard1"),
    ]


def test_mark_personal_refuses_partitions_and_trees_it_cannot_protect(sharded, shard):
    admin = sharded.admin
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="takes no label"):
        admin.execute("CALL diffix.mark_personal('tx_p0', 'aid')")
    admin.execute(
        "CREATE TABLE t2 (aid integer, v text) PARTITION BY LIST (v);"
        "CREATE TABLE t2_a PARTITION OF t2 FOR VALUES IN ('a') PARTITION BY RANGE (aid);"
        "CREATE TABLE t2_a0 PARTITION OF t2_a FOR VALUES FROM (0) TO (10);"
        "CREATE TABLE t2_b PARTITION OF t2 FOR VALUES IN ('b');"
        "CALL diffix.mark_public('t2_b')"
    )
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="mark the root"):
        admin.execute("CALL diffix.mark_personal('t2_a', 'aid')")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="t2_b is labeled public"):
        admin.execute("CALL diffix.mark_personal('t2', 'aid')")
    admin.execute("CALL diffix.unmark_table('t2_b'); CALL diffix.mark_personal('t2', 'aid')")
    admin.execute(
        "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;"
        "CREATE TABLE t3 (aid integer) PARTITION BY RANGE (aid);"
        "CREATE FOREIGN TABLE t3_f PARTITION OF t3 FOR VALUES FROM (0) TO (10) SERVER files "
        "OPTIONS (filename '/dev/null')"
    )
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="another wrapper"):
        admin.execute("CALL diffix.mark_personal('t3', 'aid')")
    admin.execute(
        "CREATE TABLE t4 (aid integer) PARTITION BY RANGE (aid);"
        "CREATE TABLE t4_a PARTITION OF t4 FOR VALUES FROM (0) TO (10);"
        "ALTER TABLE t4_a ENABLE ROW LEVEL SECURITY"
    )
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="row-level security"):
        admin.execute("CALL diffix.mark_personal('t4', 'aid')")


def test_the_engine_rechecks_the_tree_before_reading(sharded, analyst):
    admin = sharded.admin
    conn = sharded.as_role(analyst)
    assert answer(conn, "SELECT count(*) FROM tx")["rows"]
    # a partition of another wrapper attached after marking (by a superuser) stops the reads
    admin.execute(
        "ALTER TABLE tx DETACH PARTITION tx_p1;"
        "CREATE EXTENSION file_fdw; CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;"
        "CREATE FOREIGN TABLE tx_f PARTITION OF tx FOR VALUES FROM (60) TO (MAXVALUE) "
        "SERVER files OPTIONS (filename '/dev/null')"
    )
    with pytest.raises(psycopg.Error, match=r"another wrapper|could not be answered"):
        answer(conn, "SELECT count(*) FROM tx")


def test_hostile_search_path_and_shadowing_objects_change_nothing(sharded, analyst):
    conn = sharded.as_role(analyst)
    queries = ["SELECT kind, count(*) FROM tx GROUP BY kind", "SELECT count(*) FROM tx"]
    expected = [answer(conn, query) for query in queries]
    conn.execute(
        "CREATE TEMP TABLE pg_inherits (inhrelid oid, inhparent oid);"
        "CREATE TEMP TABLE pg_partition_tree (relid oid);"
        "CREATE TEMP TABLE pg_foreign_table (ftrelid oid, ftserver oid);"
        # what the per-partition statements pack with (bucket_query._per_aid_array)
        "CREATE FUNCTION pg_temp.int4send(integer) RETURNS bytea LANGUAGE sql "
        "AS 'SELECT NULL::bytea';"
        "CREATE FUNCTION pg_temp.nothing(bytea, bytea, bytea) RETURNS bytea LANGUAGE sql "
        "AS 'SELECT NULL::bytea';"
        "CREATE AGGREGATE pg_temp.string_agg(bytea, bytea) (sfunc = pg_temp.nothing, "
        "stype = bytea);"
        "SET search_path = pg_temp, public, pg_catalog"
    )
    assert [answer(conn, query) for query in queries] == expected
    assert conn.execute("SELECT has_table_privilege('public.tx_p1', 'SELECT')").fetchone() == (
        False,
    )
