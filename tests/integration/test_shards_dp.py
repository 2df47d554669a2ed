"""DP queries over a table partitioned over a local and a postgres_fdw partition: answered and
charged like over a plain table (docs/scale-out.md, "DP")."""

from __future__ import annotations

import pytest
from shard_fixtures import ROWS, SPLIT, create_sharded_tx, shard_database


@pytest.fixture
def sharded(db, server_dsn):
    with shard_database(server_dsn, ROWS, f"aid >= {SPLIT}") as shard:
        create_sharded_tx(db.admin, shard)
        db.admin.execute(
            "CALL diffix.set_dp_bounds('tx', 'amount', 0, 50);"
            "CALL diffix.set_dp_max_contributions('tx', 2);"
            "CALL diffix.set_dp_domain('tx', 'kind', ARRAY['card', 'cash', 'wire']);"
            "CALL diffix.configure('dp_max_epsilon', '8')"
        )
        yield db


def test_dp_answers_and_charges_over_shards(sharded):
    role = sharded.create_role("anonymized_dp")
    sharded.admin.execute("CALL diffix.set_privacy_budget(%s, 10, 1e-3)", (role,))
    conn = sharded.as_role(role)
    doc = conn.execute(
        "SELECT diffix.dp_query_json(%s, 8.0, 0)",
        ("SELECT kind, count(*), sum(amount) FROM tx GROUP BY kind",),
    ).fetchone()[0]
    assert sorted(row[0] for row in doc["rows"]) == ["card", "cash", "wire"]
    assert doc["dp"]["remaining"]["epsilon"] == pytest.approx(2.0)
    # 240 rows, 1 to 3 per AID: 200 once bounded to 2 per AID, before noise of scale ~1.5
    assert 185 < sum(row[1] for row in doc["rows"]) < 215
