"""The per-partition bucket statement over a table partitioned on its AID ships its aggregation
to the shard: EXPLAIN VERBOSE on the coordinator shows the aggregate inside the remote SQL
(docs/scale-out.md, "Per-partition statements")."""

from __future__ import annotations

import math

import pytest
from psycopg import sql
from shard_fixtures import create_sharded_tx

from pldiffix.core.query_model import RelationRef
from pldiffix.core.relations import (
    ColumnInfo,
    FunctionInfo,
    RelationInfo,
    RelationKind,
    StaticCatalog,
)
from pldiffix.diffix import bucket_query, rewrite, shards
from pldiffix.diffix.validation import validate

TX = RelationInfo(
    "public",
    "tx",
    RelationKind.PERSONAL,
    (
        ColumnInfo("aid", "integer", is_aid=True),
        ColumnInfo("kind", "text"),
        ColumnInfo("amount", "double precision"),
    ),
    inheritance=True,
    partitioned=True,
)
FUNCTIONS = {("diffix", "floor_by"): FunctionInfo("diffix", "floor_by")}
TEXT = rewrite.SqlType(25, "text", "text", "S")
INT4 = rewrite.SqlType(23, "integer", "int4", "N")


@pytest.fixture
def sharded(db, shard):
    create_sharded_tx(db.admin, shard)
    # EXPLAIN as the superuser needs a mapping of its own (test only)
    db.admin.execute(
        sql.SQL("CREATE USER MAPPING FOR CURRENT_USER SERVER shard1 OPTIONS (user {}, password {})")
        .format(sql.Literal(shard.reader), sql.Literal(shard.password))
        .as_string(db.admin)
    )
    return db


def statement(query: str, labels: list[rewrite.SqlType], **options) -> str:
    model = validate(
        query, StaticCatalog({("public", "tx"): TX}, FUNCTIONS, ("public",)), "anonymized_trusted"
    ).anonymizing[0]
    bucket = bucket_query.bucket_query(
        model, labels, ["integer"], lambda c: "float8", False, True, keyed=True, sent=True,
        **options,
    )  # fmt: skip
    leaves = [RelationRef("public", f"tx_p{k}", RelationKind.PERSONAL) for k in (0, 1)]
    return shards.per_partition_sql(bucket.sql, model.from_tree, leaves)


def remote_plan(db, text: str) -> list[str]:
    lines = [row[0] for row in db.execute("EXPLAIN VERBOSE " + text)]
    return [line.strip() for line in lines]


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        ("SELECT kind, count(*), count(DISTINCT aid) FROM tx GROUP BY kind", [TEXT]),
        ("SELECT count(*) FROM tx", []),
        ("SELECT kind, count(*) FROM tx WHERE kind = 'card' GROUP BY kind", [TEXT]),
        ("SELECT diffix.floor_by(aid, 10) AS g, count(*) FROM tx GROUP BY 1", [INT4]),
        ("SELECT kind, sum(amount), count(amount) FROM tx GROUP BY kind", [TEXT]),
    ],
)
def test_the_aggregation_runs_on_the_shard(sharded, query, labels):
    plan = remote_plan(sharded, statement(query, labels, max_row_bytes=math.inf))
    relations = [line for line in plan if line.startswith("Relations:")]
    remote = [line for line in plan if line.startswith("Remote SQL:")]
    assert len(relations) == 1 and relations[0].startswith(
        "Relations: Aggregate on (public.tx_p1 "
    ), plan
    # packed per-AID values as bytea built on the shard (no function of the coordinator's)
    assert len(remote) == 1 and "string_agg(int4send(aid)" in remote[0], plan
    assert "diffix." not in remote[0], plan


def test_a_foreign_branch_runs_asynchronously(sharded):
    # a branch is the Append's direct child (no Subquery Scan around it): with async_capable,
    # postgres_fdw starts every foreign branch before waiting for any
    sharded.admin.execute("ALTER SERVER shard1 OPTIONS (ADD async_capable 'true')")
    plan = remote_plan(sharded, statement("SELECT count(*) FROM tx", [], max_row_bytes=math.inf))
    assert any(line.startswith("->  Async Foreign Scan") for line in plan), plan
    assert not any("Subquery Scan" in line for line in plan), plan
