"""DP queries over a table partitioned over a local and a postgres_fdw partition: answered and
charged like over a plain table, their statistics computed per partition (contribution bounding
per unit runs where the unit's rows are), and the unique-unit shortcut an administrator declares
for a table that can have no unique index (docs/scale-out.md, "DP")."""

from __future__ import annotations

import psycopg
import pytest
from shard_fixtures import SPLIT, create_sharded_tx, shard_database

from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog
from pldiffix.dp import partitions, planner
from pldiffix.dp.query import parse

METADATA = """
CALL diffix.set_dp_bounds('{t}', 'amount', 0, 50);
CALL diffix.set_dp_max_contributions('{t}', 2);
CALL diffix.set_dp_domain('{t}', 'kind', ARRAY['card', 'cash', 'wire']);
"""
ONE_ROW_EACH = """
SELECT i AS aid, (ARRAY['card', 'cash', 'wire'])[1 + i % 3] AS kind, (i % 40)::float8 AS amount
FROM generate_series(1, 120) i
"""


@pytest.fixture
def sharded(db, shard):
    create_sharded_tx(db.admin, shard)
    for table in ("tx", "local_copy.tx"):
        db.admin.execute(METADATA.format(t=table))
    db.admin.execute("CALL diffix.configure('dp_max_epsilon', '8')")
    return db


def _dp(conn, sql: str, epsilon: float = 8.0) -> tuple[dict, list[str]]:
    messages: list[str] = []
    conn.add_notice_handler(lambda diagnostic: messages.append(diagnostic.message_primary or ""))
    conn.execute("SET client_min_messages = debug2")
    try:
        doc = conn.execute("SELECT diffix.dp_query_json(%s, %s, 0)", (sql, epsilon)).fetchone()[0]
    finally:
        conn.execute("RESET client_min_messages")
    return doc, [m for m in messages if m.startswith("pldiffix: DP ")]


def _ledger(db, role: str) -> list[tuple]:
    return db.execute(
        "SELECT epsilon, delta, mechanism, sql FROM diffix.budget_ledger "
        "WHERE role_name = %s ORDER BY id",
        (role,),
    )


def test_dp_answers_and_charges_over_shards_as_over_a_local_table(sharded):
    roles = [sharded.create_role("anonymized_dp") for _ in range(2)]
    for role in roles:
        sharded.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 1e-3)", (role,))
    query = "SELECT kind, count(*), sum(amount) FROM {t} GROUP BY kind"
    sharded_doc, reads = _dp(sharded.as_role(roles[0]), query.format(t="tx"))
    local_doc, local_reads = _dp(sharded.as_role(roles[1]), query.format(t="local_copy.tx"))
    assert reads == ["pldiffix: DP statistics read per partition (2 partitions)"]
    assert local_reads == []
    for doc in (sharded_doc, local_doc):
        assert sorted(row[0] for row in doc["rows"]) == ["card", "cash", "wire"]
        assert doc["dp"]["remaining"]["epsilon"] == pytest.approx(2.0)
        # 240 rows, 1 to 3 per AID: 200 once bounded to 2 per AID, before noise of scale ~1.5
        assert 185 < sum(row[1] for row in doc["rows"]) < 215
    sharded_ledger, local_ledger = (_ledger(sharded, role) for role in roles)
    assert len(sharded_ledger) == 1
    assert [r[:3] for r in sharded_ledger] == [r[:3] for r in local_ledger]


def test_quantiles_and_joins_read_per_partition(sharded):
    sharded.admin.execute(
        """
        CREATE TABLE customers AS SELECT DISTINCT aid AS id FROM local_copy.tx;
        CALL diffix.mark_personal('customers', 'id');
        CALL diffix.set_dp_unit_path('tx', 'aid', 'customers', 'id');
        """
    )
    role = sharded.create_role("anonymized_dp")
    sharded.admin.execute("CALL diffix.set_privacy_budget(%s, 100, 1e-3)", (role,))
    conn = sharded.as_role(role)
    per_partition = [
        "pldiffix: DP statistics read per partition (2 partitions)",
        "pldiffix: DP histogram read per partition (2 partitions)",
    ]
    for sql in (
        "SELECT kind, count(*), median(amount) FROM tx GROUP BY kind",
        "SELECT t.kind, count(*), median(t.amount) FROM tx t JOIN customers c ON c.id = t.aid "
        "GROUP BY t.kind",
    ):
        doc, reads = _dp(conn, sql)
        assert reads == per_partition, sql
        assert sorted(row[0] for row in doc["rows"]) == ["card", "cash", "wire"]
        assert all(0 <= row[2] <= 50 for row in doc["rows"])


class _Plpy:
    """What `dp.partitions.per_partition_sql` asks of PL/Python, over a psycopg connection."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str):
        cursor = self.conn.execute(sql)
        names = [c.name for c in cursor.description]
        oids = [c.type_code for c in cursor.description]

        class Shape:
            def colnames(self) -> list[str]:
                return names

            def coltypes(self) -> list[int]:
                return oids

        return Shape()

    def debug(self, message: str) -> None:
        pass


TX = StaticCatalog(
    {
        ("public", "tx"): RelationInfo(
            "public",
            "tx",
            RelationKind.PERSONAL,
            (
                ColumnInfo("aid", "integer", is_aid=True),
                ColumnInfo("kind", "text"),
                ColumnInfo("amount", "double precision"),
            ),
        )
    }
)


@pytest.mark.parametrize("unique", [False, True])
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT kind, count(*), count(DISTINCT aid), sum(amount), avg(amount) FROM tx "
        "GROUP BY kind",
        "SELECT count(*), stddev(amount) FROM tx",
    ],
)
def test_per_partition_statistics_equal_those_over_the_root(sharded, sql, unique):
    """Bounded and clamped statistics, exactly: each unit is bounded in its own partition, whose
    aggregation runs on its shard."""
    query = parse(sql, TX)
    metadata = planner.TableMetadata(2, unique, {"amount": planner.Bounds(0.0, 50.0)})
    plan = planner.plan(query, metadata, 11)
    leaves = [("public", "tx_p0"), ("public", "tx_p1")]
    sharded.admin.execute("SET ROLE diffix_engine")  # its user mapping reaches the shard
    try:
        per_partition = partitions.per_partition_sql(
            _Plpy(sharded.admin), plan.sql, ("public", "tx"), leaves
        )
        over_root = sorted(sharded.admin.execute(plan.sql).fetchall(), key=repr)
        added = sorted(sharded.admin.execute(per_partition).fetchall(), key=repr)
        explained = [row[0] for row in sharded.admin.execute("EXPLAIN VERBOSE " + per_partition)]
    finally:
        sharded.admin.execute("RESET ROLE")
    assert per_partition != plan.sql
    assert over_root and added == over_root
    # the foreign partition's per-unit (or, with unique units, per-group) aggregation ships
    assert any("Relations: Aggregate on (public.tx_p1" in line for line in explained), explained


@pytest.mark.parametrize("unique", [False, True])
def test_per_partition_histograms_equal_those_over_the_root(sharded, unique):
    """The bounded rows per group and grid point of a quantile, in the same order."""
    query = parse("SELECT kind, median(amount) FROM tx GROUP BY kind", TX)
    metadata = planner.TableMetadata(2, unique, {"amount": planner.Bounds(0.0, 50.0)})
    plan = planner.plan(query, metadata, 11)
    histogram = plan.histogram_sql(query, metadata, 0)
    leaves = [("public", "tx_p0"), ("public", "tx_p1")]
    sharded.admin.execute("SET ROLE diffix_engine")
    try:
        per_partition = partitions.per_partition_sql(
            _Plpy(sharded.admin), histogram, ("public", "tx"), leaves, keys=("bin",), ordered=True
        )
        over_root = sharded.admin.execute(histogram).fetchall()
        added = sharded.admin.execute(per_partition).fetchall()
    finally:
        sharded.admin.execute("RESET ROLE")
    assert per_partition != histogram
    assert len(over_root) > 3 and added == over_root


def test_only_an_administrator_declares_unique_units(sharded):
    analyst = sharded.create_role("anonymized_dp")
    conn = sharded.as_role(analyst)
    for call in (
        "CALL diffix.declare_dp_unique_units('tx')",
        "SELECT diffix._declare_dp_unique_units('tx'::regclass, true)",
        "INSERT INTO diffix.dp_unique_units VALUES ('tx'::regclass, current_user)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call)
        conn.rollback()
    assert sharded.execute("SELECT count(*) FROM diffix.dp_unique_units")[0][0] == 0
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not personal"):
        sharded.admin.execute("CALL diffix.declare_dp_unique_units('tx_p0')")


def test_declared_unique_units_are_taken_as_one_row_each(db, server_dsn):
    with shard_database(server_dsn, ONE_ROW_EACH, f"aid >= {SPLIT}") as shard:
        create_sharded_tx(db.admin, shard, rows=ONE_ROW_EACH)
        db.admin.execute(METADATA.format(t="tx") + "CALL diffix.configure('dp_max_epsilon', '8')")
        role = db.create_role("anonymized_dp")
        db.admin.execute("CALL diffix.set_privacy_budget(%s, 100, 1e-3)", (role,))
        conn = db.as_role(role)
        sql = "SELECT count(*) FROM tx"
        before, _ = _dp(conn, sql)
        db.admin.execute("CALL diffix.declare_dp_unique_units('tx')")
        declared = db.execute(
            "SELECT relid::regclass::text, declared_by FROM diffix.dp_unique_units"
        )
        admin = db.execute("SELECT session_user")[0][0]
        assert declared == [("tx", admin)]
        # show_dp_metadata lists the declaration, to analysts too
        shown = conn.execute(
            "SELECT value FROM diffix.show_dp_metadata() WHERE setting = 'unique_units'"
        ).fetchall()
        assert shown == [(f"true (declared by {admin})",)]
        after, reads = _dp(conn, sql + " ")  # another text: not a replay of the first answer
        assert reads == ["pldiffix: DP statistics read per partition (2 partitions)"]
        # one row per unit: the count's sensitivity drops from 2 (max_contributions) to 1
        assert before["dp"]["max_contributions"] == 2 and after["dp"]["max_contributions"] == 1
        assert before["dp"]["aggregates"] != after["dp"]["aggregates"]
        assert abs(after["rows"][0][0] - 120) < 30
        db.admin.execute("CALL diffix.declare_dp_unique_units('tx', false)")
        assert db.execute("SELECT count(*) FROM diffix.dp_unique_units")[0][0] == 0
        assert db.execute(
            "SELECT count(*) FROM diffix.show_dp_metadata() WHERE setting = 'unique_units'"
        ) == [(0,)]
