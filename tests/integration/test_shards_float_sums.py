"""Float sums over a sharded table equal those over the same rows in a local table bit for bit,
run after run, although the rows come in another order: a single AID instance's total is the
exact sum of its contributions, and the parts' exact totals add exactly (docs/scale-out.md,
`anonymization.exact_sum`)."""

from __future__ import annotations

import pytest
from shard_fixtures import SPLIT, create_sharded_tx, shard_database

# One row per AID; thirds and tenths: a float sum added in another order differs in its last bits.
ROWS = """
SELECT i AS aid, (ARRAY['card', 'cash'])[1 + i % 2] AS kind,
       ((CASE i % 5 WHEN 3 THEN -1 ELSE 1 END) * (1.0 / i + (i % 7) * 0.1 + i / 3.0))::float8
         AS amount
FROM generate_series(1, 400) i
"""
PER_PARTITION = ["pldiffix: read 2 partitions in 1 passes"]
QUERIES = [  # (query, how the sharded table is read)
    ("SELECT kind, sum(amount), avg(amount), count(*) FROM {t} GROUP BY kind", PER_PARTITION),
    ("SELECT sum(amount), diffix.avg_noise(amount) FROM {t} WHERE kind = 'card'", PER_PARTITION),
    # count(DISTINCT) of another column: one per-AID statement through the root, whose
    # postgres_fdw branches run concurrently (rows interleave differently between runs)
    ("SELECT sum(amount), count(DISTINCT kind) FROM {t}", []),
]


@pytest.fixture(scope="module")
def reordered(module_db, server_dsn):
    with shard_database(server_dsn, ROWS, f"aid >= {SPLIT}") as shard:
        create_sharded_tx(module_db.admin, shard, rows=ROWS)
        # the local copy's rows in the other order of AIDs (each AID has one row)
        module_db.admin.execute(
            "CREATE TEMP TABLE reversed AS SELECT * FROM local_copy.tx ORDER BY aid DESC;"
            "TRUNCATE local_copy.tx; INSERT INTO local_copy.tx SELECT * FROM reversed;"
            "ANALYZE local_copy.tx"
        )
        yield module_db, module_db.as_role(module_db.create_role("anonymized_trusted"))


def _answer(conn, sql: str) -> tuple[list, list[str]]:
    messages: list[str] = []
    conn.add_notice_handler(lambda diagnostic: messages.append(diagnostic.message_primary or ""))
    conn.execute("SET client_min_messages = debug2")
    try:
        rows = conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]["rows"]
    finally:
        conn.execute("RESET client_min_messages")
    return sorted(rows, key=repr), [m for m in messages if m.startswith("pldiffix: read 2")]


def test_the_rows_add_up_differently_in_another_order(reordered) -> None:
    db, _ = reordered
    forward, backward = db.admin.execute(
        "SELECT sum(amount ORDER BY aid), sum(amount ORDER BY aid DESC) FROM local_copy.tx"
    ).fetchone()
    assert forward != backward


@pytest.mark.parametrize(("query", "read"), QUERIES)
def test_float_sums_over_shards_equal_local_ones_exactly(reordered, query, read) -> None:
    _, conn = reordered
    local, _ = _answer(conn, query.format(t="local_copy.tx"))
    sharded, reads = _answer(conn, query.format(t="tx"))
    assert reads == read
    assert sharded == local and local
    for _ in range(3):
        assert _answer(conn, query.format(t="tx"))[0] == sharded
