"""The rewriter: seed material, the per-bucket SQL, and the statement over the anonymized rows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_validation import CATALOG, TRUSTED

from pldiffix.diffix import bucket_query, rewrite, seed_material
from pldiffix.diffix.validation import validate

TYPES = {
    ("test_customers", "discount"): "float4",
    ("test_customers", "id"): "int4",
    ("test_customers", "city"): "text",
    ("test_datetime", "ts"): "timestamp",
    ("test_patients", "age"): "int4",
}


def _model(sql: str):
    return validate(sql, CATALOG, TRUSTED).anonymizing[0]


def _materials(sql: str) -> list[str]:
    model = _model(sql)
    relation_of = {e.alias: e.relation.name for e in model.relations}

    def type_of(column):
        return TYPES.get((relation_of.get(column.table), column.name))

    plan = seed_material.seed_plan(model, type_of)
    # constants rendered as pg_diffix would (numbers via float8, strings as they are)
    texts = {}
    for node, _ in plan.constants():
        texts[id(node)] = (
            str(node.this)
            if node.is_string
            else rewrite.value_text(float(node.this)).removesuffix(".0")
        )
    return [seed_material.join_material(m, texts) for m in plan.materials]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT city, count(*) FROM test_customers GROUP BY 1", ["test_customers.city"]),
        (
            "SELECT substring(city, 1, 2), count(*) FROM test_customers GROUP BY 1",
            ["substring,test_customers.city,1,2"],
        ),
        (
            "SELECT diffix.floor_by(age, 30), count(*) FROM test_patients GROUP BY 1",
            ["floor_by,test_patients.age,30"],
        ),
        (
            "SELECT count(*) FROM test_datetime WHERE date_trunc('year', ts) = '2012-01-01'",
            ["date_trunc,year,test_datetime.ts"],
        ),
        (
            "SELECT cast(extract(minute from ts) as integer), count(*) FROM test_datetime "
            "GROUP BY 1",
            ["extract,minute,test_datetime.ts"],
        ),
        (
            "SELECT cast(discount as integer), count(*) FROM test_customers c GROUP BY 1",
            ["int4,test_customers.discount"],
        ),
    ],
)
def test_seed_material_follows_pg_diffix(sql: str, expected: list[str]) -> None:
    assert _materials(sql) == expected


def test_bucket_query_groups_per_aid_and_bucket_and_qualifies_relations() -> None:
    model = _model(
        "SELECT c.city, count(*), sum(c.discount), count(DISTINCT p.pid) "
        "FROM test_customers c JOIN test_purchases p ON c.id = p.cid GROUP BY 1"
    )
    labels = [rewrite.SqlType(25, "text", "text", "S")]
    query = bucket_query.bucket_query(
        model,
        labels,
        ["int4", "int4"],
        lambda c: TYPES.get((c.relation.name, c.name), "int4"),
        hidden_count=False,
    )
    assert '"public"."test_customers" AS "c"' in query.sql
    assert "GROUPING SETS" in query.sql
    assert query.sql.count("array_agg(DISTINCT") == 2  # count distinct: one per AID instance
    assert [i.kind for i in query.inputs] == ["count_star", "sum", "count_distinct"]
    assert query.inputs[1].summand.value == "float4"
    assert query.float_sums == [query.inputs[1].value]


def test_anonymized_rows_replace_the_anonymizing_select() -> None:
    result = validate(
        "SELECT upper(x.city), x.n FROM (SELECT city, count(*) AS n FROM test_customers "
        "GROUP BY city HAVING count(*) > 1 ORDER BY 2) x",
        CATALOG,
        TRUSTED,
    )
    model = result.anonymizing[0]
    rewrite.replace_by_rows(model, "ph", ["l0"], ["a0", "a1"])
    text = result.ast.sql(dialect="postgres")
    assert "test_customers" not in text
    assert '"__pldiffix_b"."l0" AS "city"' in text
    assert '"__pldiffix_b"."a0" AS "n"' in text
    assert 'WHERE "__pldiffix_b"."a1" > 1' in text
    assert 'ORDER BY 2, "__pldiffix_b"."__i"' in text


def test_value_text() -> None:
    assert rewrite.value_text(1.5) == "1.5"
    assert rewrite.value_text(float("nan")) == "NaN"
    assert rewrite.value_text(Decimal("2.50")) == "2.50"
    assert rewrite.value_text([[None, 3], [1, 4]]) == "{{NULL,3},{1,4}}"
    assert rewrite.value_text(True) == "true"


def _bucket_query(
    sql: str,
    aid_types: list[str],
    shortcut: bool = True,
    max_row_bytes: float = 0.0,
    partition: bucket_query.Partition | None = None,
    row_range: bucket_query.RowRange | None = None,
    sent: bool = False,
) -> bucket_query.BucketQuery:
    model = _model(sql)
    labels = [rewrite.SqlType(25, "text", "text", "S")] * len(model.groups)
    return bucket_query.bucket_query(
        model,
        labels,
        aid_types,
        lambda c: TYPES.get((c.relation.name, c.name), "int4"),
        hidden_count=False,
        distinct_aid_shortcut=shortcut,
        max_row_bytes=max_row_bytes,
        partition=partition,
        row_range=row_range,
        sent=sent,
    )


@pytest.mark.parametrize(
    ("sql", "aid_types", "rows"),
    [
        ("SELECT city, count(*), count(DISTINCT id) FROM test_customers GROUP BY 1", ["int4"], 1),
        ("SELECT count(city), sum(id), avg(id) FROM test_customers", ["int8"], True),
        ("SELECT city, count(*) FROM test_customers GROUP BY 1", ["text"], False),
        ("SELECT city, sum(discount) FROM test_customers GROUP BY 1", ["int4"], False),  # float4
        ("SELECT count(DISTINCT city) FROM test_customers", ["int4"], False),
        (
            "SELECT c.city, count(*) FROM test_customers c "
            "JOIN test_purchases p ON c.id = p.cid GROUP BY 1",
            ["int4", "int4"],
            False,
        ),
    ],
)
def test_bucket_rows_are_shipped_only_when_python_can_group_them_exactly(
    sql: str, aid_types: list[str], rows: int
) -> None:
    query = _bucket_query(sql, aid_types, max_row_bytes=64)
    assert query.rows is bool(rows)
    assert ('GROUP BY "l0", "i0"' in query.sql or "GROUPING SETS" in query.sql) is not rows
    assert not _bucket_query(sql, aid_types).rows


def test_bucket_rows_pack_aids_the_aids_of_null_rows_and_values() -> None:
    sql = "SELECT city, sum(id) FROM test_customers GROUP BY 1"
    # at most 4 (AID) + 4 (the AID again if the value is NULL) + 8 (the value)
    query = _bucket_query(sql, ["int4"], max_row_bytes=16)
    assert query.packed == {"a0": "int4", "na0": "int4", "rv0": "int8"}
    assert not _bucket_query(sql, ["int4"], max_row_bytes=15.9).rows  # over the memory budget
    assert (
        'diffix._array_bytes(pg_catalog.array_agg(("i0")::pg_catalog.int4) '
        'FILTER (WHERE "i0" IS NOT NULL AND "v0" IS NULL)) AS na0'
    ) in query.sql


@pytest.mark.parametrize("max_row_bytes", [16.0, 0.0])  # rows, per-AID values
def test_sent_packed_columns_of_the_rows_form_use_built_in_functions_only(
    max_row_bytes: float,
) -> None:
    # what postgres_fdw ships to a shard: no diffix function, no COALESCE
    sql = "SELECT city, sum(id) FROM test_customers GROUP BY 1"
    query = _bucket_query(sql, ["int4"], max_row_bytes=max_row_bytes, sent=True)
    assert query.rows is bool(max_row_bytes)
    if query.rows:
        assert query.sent
        assert "diffix." not in query.sql and "COALESCE" not in query.sql
        assert (
            'pg_catalog.string_agg(pg_catalog.int4send(("i0")::pg_catalog.int4), '
            "''::pg_catalog.bytea) FILTER (WHERE "
        ) in query.sql
    else:  # the per-AID form aggregates on the coordinator whatever it packs: arrays
        assert not query.sent and "string_agg" not in query.sql
    assert not _bucket_query(sql, ["int4"], max_row_bytes=max_row_bytes).sent


def test_single_grouping_set_is_a_plain_group_by() -> None:
    query = _bucket_query("SELECT city, count(*) FROM test_customers GROUP BY 1", ["int4"])
    assert "GROUPING" not in query.sql
    assert 'GROUP BY "l0", "i0")' in query.sql
    assert "0 AS gs" in query.sql


def test_count_distinct_of_the_only_aid_ships_nothing_of_its_own() -> None:
    sql = "SELECT city, count(DISTINCT id) FROM test_customers GROUP BY 1"
    query = _bucket_query(sql, ["int4"])
    assert [(i.kind, i.distinct_aids) for i in query.inputs] == [("count_distinct", True)]
    assert "dense_rank" not in query.sql and "GROUPING" not in query.sql
    general = _bucket_query(sql, ["int4"], shortcut=False)
    assert not general.inputs[0].distinct_aids
    assert "dense_rank" in general.sql and "GROUPING SETS" in general.sql
    other = _bucket_query("SELECT count(DISTINCT city) FROM test_customers", ["int4"])
    assert not other.inputs[0].distinct_aids


@pytest.mark.parametrize(
    ("sql", "aid_types", "partitionable"),
    [
        ("SELECT city, count(*), count(DISTINCT id), avg(id) FROM test_customers GROUP BY 1",
         ["int4"], True),
        ("SELECT city, count(*) FROM test_customers GROUP BY 1", ["int8"], False),
        ("SELECT city, count(*) FROM test_customers GROUP BY 1", ["text"], False),
        ("SELECT count(DISTINCT city) FROM test_customers", ["int4"], False),
        ("SELECT diffix.count_histogram(id) FROM test_customers", ["int4"], False),
        ("SELECT c.city, count(*) FROM test_customers c "
         "JOIN test_purchases p ON c.id = p.cid GROUP BY 1", ["int4", "int4"], False),
    ],
)  # fmt: skip
def test_only_one_int4_aid_with_combinable_aggregates_is_read_in_passes(
    sql: str, aid_types: list[str], partitionable: bool
) -> None:
    for max_row_bytes in (0.0, 64.0):  # both forms
        assert _bucket_query(sql, aid_types, max_row_bytes=max_row_bytes).partitionable is (
            partitionable
        )
    if not partitionable:
        with pytest.raises(ValueError, match="passes"):
            _bucket_query(sql, aid_types, partition=bucket_query.Partition(1, 3))


@pytest.mark.parametrize("max_row_bytes", [0.0, 64.0])
def test_a_pass_reads_its_partition_and_keys_its_buckets(max_row_bytes: float) -> None:
    sql = "SELECT city, count(*), sum(id) FROM test_customers GROUP BY 1"
    whole = _bucket_query(sql, ["int4"], max_row_bytes=max_row_bytes)
    first = _bucket_query(
        sql, ["int4"], max_row_bytes=max_row_bytes, partition=bucket_query.Partition(0, 3)
    )
    other = _bucket_query(
        sql, ["int4"], max_row_bytes=max_row_bytes, partition=bucket_query.Partition(2, 3)
    )
    hashed = '(pg_catalog.hashint4("test_customers"."id") & 2147483647) OPERATOR(pg_catalog.%) 3'
    assert f"{hashed} = 2" in other.sql and f"{hashed} = 0" in first.sql
    assert '("test_customers"."id" IS NULL OR ' in first.sql  # rows without an AID: pass 0
    assert "IS NULL OR" not in other.sql
    assert "hashint4" not in whole.sql and " AS k" not in whole.sql
    key = 'pg_catalog.hash_record_extended(ROW("l0", "l0" IS NULL), 0) AS k'
    assert key in first.sql and key in other.sql
    assert first.packed == whole.packed and first.rows == whole.rows


def test_partition_numbers_are_checked() -> None:
    for index, count in ((0, 1), (3, 3), (-1, 2)):
        with pytest.raises(ValueError, match="invalid partition"):
            bucket_query.Partition(index, count)


def test_a_row_range_reads_its_blocks_and_keys_its_buckets() -> None:
    sql = "SELECT city, count(*), sum(id) FROM test_customers AS c GROUP BY 1"
    whole = _bucket_query(sql, ["int4"], max_row_bytes=64)
    middle = _bucket_query(sql, ["int4"], max_row_bytes=64, row_range=bucket_query.RowRange(10, 20))
    first = _bucket_query(sql, ["int4"], max_row_bytes=64, row_range=bucket_query.RowRange(0, 10))
    last = _bucket_query(sql, ["int4"], max_row_bytes=64, row_range=bucket_query.RowRange(20, None))
    low, high = "\"c\".ctid >= '({},0)'::pg_catalog.tid", "\"c\".ctid < '({},0)'::pg_catalog.tid"
    assert f"AND {low.format(10)} AND {high.format(20)}" in middle.sql
    assert f"AND {high.format(10)}" in first.sql and "ctid >=" not in first.sql
    assert f"AND {low.format(20)}" in last.sql and "ctid <" not in last.sql
    assert "ctid" not in whole.sql and " AS k" not in whole.sql
    key = 'pg_catalog.hash_record_extended(ROW("l0", "l0" IS NULL), 0) AS k'
    assert key in middle.sql and key in first.sql and key in last.sql
    assert middle.packed == whole.packed and middle.rows
    both = _bucket_query(
        sql,
        ["int4"],
        max_row_bytes=64,
        partition=bucket_query.Partition(1, 2),
        row_range=bucket_query.RowRange(10, 20),
    )
    assert "hashint4" in both.sql and low.format(10) in both.sql and both.sql.count(" AS k") == 1


@pytest.mark.parametrize(
    ("sql", "aid_types"),
    [
        ("SELECT city, count(*) FROM test_customers GROUP BY 1", ["text"]),  # per-AID form
        ("SELECT c.city, count(*) FROM test_customers c "
         "JOIN test_purchases p ON c.id = p.cid GROUP BY 1", ["int4", "int4"]),
    ],
)  # fmt: skip
def test_only_a_query_shipping_rows_of_one_relation_is_read_in_row_ranges(
    sql: str, aid_types: list[str]
) -> None:
    with pytest.raises(ValueError, match="row ranges"):
        _bucket_query(sql, aid_types, max_row_bytes=64, row_range=bucket_query.RowRange(0, 5))


@pytest.mark.parametrize(
    ("blocks", "count", "bounds"),
    [
        (10, 3, [(0, 3), (3, 6), (6, None)]),
        (100, 4, [(0, 25), (25, 50), (50, 75), (75, None)]),
        (2, 5, [(0, 1), (1, None)]),  # no more ranges than blocks
        (7, 1, [(0, None)]),
    ],
)
def test_row_ranges_cover_every_block_once(blocks: int, count: int, bounds: list) -> None:
    ranges = bucket_query.row_ranges(blocks, count)
    assert [(r.first, r.end) for r in ranges] == bounds
    assert bucket_query.RowRange(0, None).predicate("t") == "TRUE"


@pytest.mark.parametrize(("first", "end"), [(-1, 4), (5, 5), (6, 2)])
def test_row_range_bounds_are_checked(first: int, end: int) -> None:
    with pytest.raises(ValueError, match="invalid row range"):
        bucket_query.RowRange(first, end)


def test_bytes_per_row_is_what_one_input_row_can_add() -> None:
    sql = "SELECT city, count(*), count(id), sum(id) FROM test_customers GROUP BY 1"
    assert _bucket_query(sql, ["int4"], max_row_bytes=64).bytes_per_row == 4 + 4 + 8
    # per-AID form: the AID, its rows, per counted column a count, per summed column two legs
    assert _bucket_query(sql, ["int4"]).bytes_per_row == 4 + 8 * (1 + 1 + 2)


@pytest.mark.parametrize("max_row_bytes", [0.0, 64.0])
@pytest.mark.parametrize(
    ("sql", "fenced"),
    [
        ("SELECT city, sum(discount::numeric) FROM test_customers GROUP BY 1", True),
        ("SELECT city, avg(id::int8) FROM test_customers GROUP BY 1", True),
        ("SELECT city, sum(id), count(discount::numeric) FROM test_customers GROUP BY 1", False),
    ],
)
def test_a_computed_summand_is_computed_once_per_row(
    sql: str, fenced: bool, max_row_bytes: float
) -> None:
    query = _bucket_query(sql, ["int4"], max_row_bytes=max_row_bytes)
    # the rows subquery stays a subquery (OFFSET 0) only where inlining it would repeat work
    assert ("WHERE TRUE OFFSET 0) base" in query.sql) is fenced
