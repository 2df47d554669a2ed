"""A partitioned personal table has a row estimate (the sum over its partitions, the foreign one
estimated by its shard), so `max_pass_mb` splits a large query into passes over it as over a
plain table, with the same answer (docs/scale-out.md)."""

from __future__ import annotations

import pytest
from engine_reads import read_reported
from shard_fixtures import SPLIT, create_sharded_tx, shard_database

ROWS = 300_000  # 1.2 MB of packed AIDs for count(*): 2 passes at max_pass_mb = 1
BIG = f"""
SELECT i AS aid, (ARRAY['card', 'cash', 'wire'])[1 + i % 3] AS kind, (i % 17)::float8 AS amount
FROM generate_series(1, {ROWS}) i
"""


@pytest.fixture(scope="module")
def big(module_db, server_dsn):
    with shard_database(server_dsn, BIG, f"aid >= {SPLIT}") as shard:
        create_sharded_tx(module_db.admin, shard, rows=BIG)
        module_db.admin.execute("ANALYZE local_copy.tx")
        yield module_db, module_db.as_role(module_db.create_role("anonymized_trusted"))


def reported(conn, sql: str) -> tuple[list, list[str]]:
    """The sorted rows of `sql`'s answer and the engine's DEBUG2 reports about how it read it."""
    messages: list[str] = []
    conn.add_notice_handler(lambda diagnostic: messages.append(diagnostic.message_primary or ""))
    conn.execute("SET client_min_messages = debug2")
    try:
        rows = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]
    finally:
        conn.execute("RESET client_min_messages")
    return sorted(rows, key=repr), [m for m in messages if m.startswith("pldiffix: read")]


def test_a_large_query_over_shards_takes_passes_with_the_same_answer(big):
    db, conn = big
    query = "SELECT kind, count(*), count(DISTINCT aid) FROM {t} GROUP BY kind"
    db.admin.execute("CALL diffix.configure('max_pass_mb', '512')")
    whole = reported(conn, query.format(t="tx"))
    db.admin.execute("CALL diffix.configure('max_pass_mb', '1')")
    split = reported(conn, query.format(t="tx"))
    local = read_reported(conn, query.format(t="local_copy.tx"))
    assert whole[1] == ["pldiffix: read 2 partitions in 1 passes"]
    assert split[1] == ["pldiffix: read 2 partitions in 2 passes"]
    assert split[0] == whole[0] == local.rows
