# ruff: noqa: E501  (SQL test data reads better unwrapped)
"""Validation: other accepted shapes, deliberate differences, error quality and the query model."""

from __future__ import annotations

import pytest
from sqlglot import exp
from test_validation import CATALOG, TRUSTED, UNTRUSTED, check, make_catalog, reject

from pldiffix.core.levels import AccessLevel
from pldiffix.core.query_model import Join, RangeEntry
from pldiffix.core.relations import RelationKind
from pldiffix.diffix.validation import ValidationError, validate

# Shapes accepted by pg_diffix in misc.sql, datetime.sql and count_histogram.sql.
ACCEPTED_SHAPES = [
    "SELECT * FROM (SELECT count(*) AS num_purchases FROM test_purchases) x, "
    "(SELECT count(*) AS num_customers FROM test_customers) y",
    "SELECT coalesce(patients.city, customers.city) AS city, customers.count AS num_customers, "
    "patients.count AS num_patients FROM (SELECT city, count(*) FROM test_patients GROUP BY 1) "
    "patients FULL OUTER JOIN (SELECT city, count(*) FROM test_customers GROUP BY 1) customers "
    "ON patients.city = customers.city",
    "SELECT city, count(*) FROM test_customers GROUP BY city HAVING city LIKE 'B%'",
    "SELECT age, count(*) FROM test_patients GROUP BY age HAVING age IS NULL OR age > 40",
    "SELECT age, count(*) FROM test_patients GROUP BY age "
    "HAVING (age IS NULL OR age > 65) AND count(*) > 5",
    "SELECT * FROM (SELECT age, count(*) FROM test_patients GROUP BY age HAVING age < 65) x "
    "WHERE x.age > 15",
    "SELECT city, count(*) FROM test_customers GROUP BY city",
    "SELECT count(*), city FROM test_customers GROUP BY city",
    "SELECT count(*), count(*) FROM test_customers",
    "SELECT city FROM test_customers LIMIT 4",
    "SELECT city FROM test_customers ORDER BY 1",
    "SELECT FROM test_customers WHERE FALSE",
    'SELECT TRUE AS "_" FROM test_customers WHERE 1 <> 1 LIMIT 0',
    "SELECT id FROM test_customers WHERE NULL = NULL",
    "SELECT COUNT(*) FROM test_customers c JOIN test_purchases pur ON c.id = cid",
    "SELECT ts, count(*) FROM test_datetime GROUP BY 1",
    "SELECT count(*) FROM test_datetime WHERE date_trunc('year', ts) = '2012-01-01'::timestamp",
    "SELECT count(*) FROM test_datetime WHERE extract(century from ts) = 21",
    "SELECT count(*) FROM test_datetime WHERE date_part('century', ts) = 21",
    "SELECT cast(extract(minute from ts) as integer) as extract FROM test_datetime GROUP BY 1",
    "SELECT cast(extract(second from ts) as integer) as extract FROM test_datetime GROUP BY 1",
    "SELECT diffix.count_histogram(id) FROM count_histogram_test",
    "SELECT diffix.count_histogram(id, 5) FROM count_histogram_test",
    "SELECT diffix.unnest_histogram(x.histogram) FROM (SELECT diffix.count_histogram(id) AS "
    "histogram FROM count_histogram_test) x",
    "SELECT diffix.count_noise(*), diffix.count_noise(city), diffix.count_noise(DISTINCT city), "
    "diffix.sum_noise(discount), diffix.avg_noise(discount) FROM test_customers",
    "SELECT upper(city) AS c, count(*) FROM test_customers GROUP BY city ORDER BY c",
    "SELECT city, sum(discount), avg(discount) FROM test_customers GROUP BY 1",
]


@pytest.mark.parametrize("sql", ACCEPTED_SHAPES)
def test_other_accepted_shapes(sql: str) -> None:
    check(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY test_customers TO STDOUT",
        "ALTER TABLE test_customers DROP COLUMN id",
        "EXPLAIN SELECT city FROM test_customers LIMIT 4",
        "SELECT 1; SELECT 2",
        "SET pg_diffix.session_access_level = 'direct'",
        "WITH x AS (DELETE FROM test_products RETURNING *) SELECT * FROM x",
        "SELECT 1 INTO newtable FROM test_products",
        "",
    ],
)
def test_only_single_select_statements(sql: str) -> None:
    error = reject(sql)
    assert error.hint


# --------------------------------------------------------------------------------------------------
# Deliberate differences from pg_diffix
# --------------------------------------------------------------------------------------------------


def test_avg_of_numeric_column_is_accepted() -> None:
    result = check("SELECT avg(amount), avg(small), sum(amount) FROM numbers")
    kinds = [a.kind for a in result.anonymizing[0].aggregates]
    assert kinds == ["avg", "avg", "sum"]
    check("SELECT avg(discount::numeric) FROM test_customers")


def test_round_by_is_rejected_for_untrusted_analysts() -> None:
    error = reject("SELECT diffix.round_by(discount, 2) FROM test_customers", UNTRUSTED)
    assert "diffix.round_by" in error.message
    assert "untrusted" in error.message
    assert error.fragment == "diffix.round_by(discount, 2)"
    check("SELECT diffix.round_by(discount, 2) FROM test_customers", TRUSTED)


# --------------------------------------------------------------------------------------------------
# Error quality: what, where, what instead
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "level", "fragment", "words", "hint_words"),
    [
        (
            "SELECT COUNT(*) FROM test_validation GROUP BY LENGTH(city)",
            TRUSTED,
            "LENGTH(city)",
            ["length()"],
            ["GROUP BY col"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation GROUP BY round(id::float, -1)",
            TRUSTED,
            "round(id::float, -1)",
            ["round(double precision, integer)", "does not exist"],
            ["numeric"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation WHERE city <> 'London'",
            TRUSTED,
            "city <> 'London'",
            ["equality"],
            ["(city = ...)", "t WHERE city <> 'London'"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation WHERE city = CONCAT('Lon', 'don')",
            TRUSTED,
            "CONCAT('Lon', 'don')",
            ["constant"],
            ["literal"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation WHERE diffix.round_by(id, 5) = 0",
            TRUSTED,
            "id",
            ["AID", "id"],
            ["other columns"],
        ),
        ("SELECT id FROM test_validation", TRUSTED, "id", ["AID", "id"], ["count(DISTINCT id)"]),
        (
            "SELECT SUM(id + 5) FROM test_validation",
            TRUSTED,
            "id + 5",
            ["sum()", "plain column"],
            ["sum(col) + 5"],
        ),
        (
            "SELECT MIN(id) + MAX(id) FROM test_validation",
            TRUSTED,
            "MIN(id)",
            ["min()"],
            ["count(*)"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation, test_purchases",
            TRUSTED,
            "test_purchases",
            ["CROSS JOIN"],
            ["ON a.col = b.col"],
        ),
        (
            "SELECT substring(cast(id AS text), 1, 1) FROM test_validation GROUP BY 1",
            TRUSTED,
            "cast(id AS text)",
            ["substring()", "plain column"],
            ["substring(col, 1, 3)"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation GROUP BY substr(city, 1, id)",
            TRUSTED,
            "id",
            ["argument 3", "constant"],
            ["literal"],
        ),
        (
            "SELECT date_trunc('year', last_seen_tz, 'EST') FROM test_validation GROUP BY 1",
            TRUSTED,
            "date_trunc('year', last_seen_tz, 'EST')",
            ["time zone"],
            ["date_trunc('unit', col)"],
        ),
        (
            "SELECT * FROM (SELECT length(city) FROM test_validation) x",
            TRUSTED,
            "length(city)",
            ["length()"],
            ["GROUP BY col"],
        ),
        (
            "SELECT substring(city, 2, 2) FROM test_validation",
            UNTRUSTED,
            "2",
            ["position 1", "untrusted"],
            ["substring(city, 1, n)"],
        ),
        (
            "SELECT diffix.floor_by(discount, 3) FROM test_validation",
            UNTRUSTED,
            "3",
            ["bin size", "not 3"],
            ["2 or 5"],
        ),
        (
            "SELECT diffix.floor_by(discount, 5000000000.1) FROM test_validation",
            UNTRUSTED,
            "5000000000.1",
            ["5000000000.1"],
            ["5000000000 or 10000000000"],
        ),
        (
            "SELECT ceil(discount) FROM test_validation",
            UNTRUSTED,
            "ceil(discount)",
            ["ceil()", "untrusted"],
            ["floor(col)"],
        ),
        (
            "SELECT COUNT(*) FROM test_validation WHERE substring(cast(birthday as text), 4) = '2000'",
            UNTRUSTED,
            "birthday",
            ["not_filterable", "birthday"],
            ["Group by birthday"],
        ),
        (
            "SELECT city, count(*) FROM test_validation GROUP BY city ORDER BY name",
            TRUSTED,
            "name",
            ["GROUP BY"],
            ["Add name to GROUP BY"],
        ),
        (
            "SELECT * FROM unlabeled_table",
            TRUSTED,
            "unlabeled_table",
            ["no anonymization label"],
            ["mark"],
        ),
        (
            "SELECT * FROM pg_stats",
            TRUSTED,
            "pg_stats",
            ["pg_catalog.pg_stats"],
            ["information_schema"],
        ),
        (
            "SELECT nosuch FROM test_products",
            TRUSTED,
            "nosuch",
            ['"nosuch" does not exist'],
            ["price"],
        ),
    ],
)
def test_error_names_expression_and_gives_hint(
    sql: str, level: str, fragment: str, words: list[str], hint_words: list[str]
) -> None:
    error = reject(sql, level)
    assert error.fragment == fragment
    assert error.position is not None
    assert sql[error.position :].startswith(fragment)
    for word in words:
        assert word in error.message
    assert error.hint
    for word in hint_words:
        assert word in error.hint
    text = str(error)
    assert error.message in text and fragment in text and error.hint in text


def test_error_has_sqlstate_and_dict() -> None:
    error = reject("SELECT * FROM nosuch")
    assert error.sqlstate == "42P01"
    assert error.to_dict()["fragment"] == "nosuch"


def test_syntax_error() -> None:
    error = reject("SELECT FROM WHERE (")
    assert error.sqlstate == "42601"


# --------------------------------------------------------------------------------------------------
# Non-personal queries and labels
# --------------------------------------------------------------------------------------------------


def test_public_tables_are_unrestricted() -> None:
    result = check(
        "SELECT name, length(name), min(price) OVER (), ctid FROM test_products WHERE price > 3 "
        "OR name LIKE 'x%' ORDER BY 2"
    )
    assert result.anonymizing == []
    assert [(r.schema, r.name, r.kind) for r in result.relations] == [
        ("public", "test_products", RelationKind.PUBLIC)
    ]


def test_unlabeled_tables() -> None:
    reject("SELECT a FROM unlabeled_table")
    reject("SELECT count(*) FROM test_products WHERE id IN (SELECT a FROM unlabeled_table)")
    result = check("SELECT a, b FROM unlabeled_table", treat_unmarked_tables_as_public=True)
    assert not result.is_anonymizing
    assert result.non_personal_relations[0].kind is RelationKind.UNLABELED


def test_reports_relations_and_functions() -> None:
    result = check(
        "SELECT my_func(x.city), pg_backend_pid() FROM (SELECT city, count(*) FROM test_customers "
        "GROUP BY city) x JOIN test_products p ON p.name = x.city"
    )
    names = {(r.schema, r.name, r.kind) for r in result.relations}
    assert names == {
        ("public", "test_customers", RelationKind.PERSONAL),
        ("public", "test_products", RelationKind.PUBLIC),
    }
    assert [(r.schema, r.name) for r in result.non_personal_relations] == [
        ("public", "test_products")
    ]
    functions = {(f.schema, f.name, f.builtin) for f in result.functions}
    assert ("public", "my_func", False) in functions
    assert ("pg_catalog", "pg_backend_pid", False) in functions
    assert ("pg_catalog", "count", True) in functions


def test_unknown_function_is_rejected() -> None:
    error = reject("SELECT nope(name) FROM test_products")
    assert error.sqlstate == "42883"
    assert "nope" in error.message


def test_search_path_resolution() -> None:
    catalog = make_catalog(("public", "diffix"))
    result = validate(
        "SELECT floor_by(discount, 2), count_noise(*) FROM test_customers GROUP BY 1",
        catalog,
        TRUSTED,
    )
    anon = result.anonymizing[0]
    assert anon.groups[0].kind == "floor_by"
    assert anon.aggregates[0].kind == "count_noise_star"
    with pytest.raises(ValidationError):
        validate("SELECT floor_by(discount, 2) FROM test_customers", CATALOG, TRUSTED)


def test_access_level_enum_and_direct() -> None:
    check_result = validate(
        "SELECT city FROM test_customers", CATALOG, AccessLevel.ANONYMIZED_TRUSTED
    )
    assert check_result.access_level == TRUSTED
    with pytest.raises(ValueError):
        validate("SELECT 1", CATALOG, AccessLevel.DIRECT)


def test_pg_catalog_allowed_columns() -> None:
    check("SELECT pid, datname FROM pg_stat_activity")
    check("SELECT count(*) FROM pg_stats")
    reject("SELECT query, usesysid FROM pg_stat_activity")


# --------------------------------------------------------------------------------------------------
# Extra rules
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT city FROM test_customers WHERE city = (SELECT name FROM test_products LIMIT 1)",
        "SELECT c.city FROM test_customers c JOIN (SELECT name FROM test_products) p ON p.name = c.city",
        "SELECT city FROM test_customers CROSS JOIN test_products",
        "SELECT (SELECT count(*) FROM test_customers c WHERE c.city = p.name) FROM test_products p",
        "SELECT city FROM test_customers WHERE city = $1",
        "SELECT bit_and(id) FROM test_customers",
        "SELECT city, my_srf() FROM test_customers",
        "SELECT city FROM test_customers FOR UPDATE",
        "SELECT count(t.*) FROM test_customers t",
        "SELECT city FROM test_customers WHERE 'x' = city",
        "SELECT city FROM test_customers GROUP BY city HAVING count(*) > 1 WINDOW w AS ()",
        "SELECT city::int FROM test_customers",
        "SELECT d::timestamp FROM test_datetime",
        "SELECT sum(city) FROM test_customers",
        "SELECT diffix.count_histogram(id, 0) FROM test_customers",
        "SELECT diffix.count_histogram(id, city) FROM test_customers",
        "SELECT date_trunc('year', i) FROM test_datetime",
        "SELECT discount::numeric FROM test_customers",
    ],
)
def test_more_rejections(sql: str) -> None:
    level = UNTRUSTED if "discount::numeric" in sql else TRUSTED
    reject(sql, level)


def test_untrusted_transparent_cast_around_generalization_is_checked() -> None:
    reject("SELECT substring(city, 2)::varchar FROM test_customers", UNTRUSTED)
    check("SELECT substring(city, 1, 2)::varchar FROM test_customers", UNTRUSTED)
    check("SELECT cast(d AS text) FROM test_datetime", UNTRUSTED)


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


def test_model_explicit_grouping() -> None:
    result = check(
        "SELECT diffix.floor_by(c.discount, 0.5) AS d, upper(c.city) AS u, count(*), "
        "count(DISTINCT p.pid), sum(c.discount) "
        "FROM test_customers c JOIN test_purchases p ON c.id = p.cid "
        "WHERE c.planet = 'Earth' AND substring(c.city, 1, 1) = 'B' "
        "GROUP BY 1, c.city HAVING count(*) > 2 ORDER BY 1 LIMIT 10"
    )
    assert len(result.anonymizing) == 1
    anon = result.anonymizing[0]
    assert anon.node is result.ast
    assert [(e.alias, e.relation.name, e.aid_columns) for e in anon.relations] == [
        ("c", "test_customers", ("id",)),
        ("p", "test_purchases", ("cid",)),
    ]
    assert isinstance(anon.from_tree, Join)
    assert anon.from_tree.kind == "inner"
    cond = anon.from_tree.conditions[0]
    assert (cond.left.alias, cond.left.name, cond.right.alias, cond.right.name) == (
        "c",
        "id",
        "p",
        "cid",
    )
    assert [(f.subject.kind, f.subject.column.name, f.value.sql()) for f in anon.filters] == [
        ("column", "planet", "'Earth'"),
        ("substring", "city", "'B'"),
    ]
    assert [g.kind for g in anon.groups] == ["floor_by", "column"]
    floor_by = anon.groups[0]
    assert floor_by.column.name == "discount" and floor_by.column.type == "float4"
    assert [a.sql() for a in floor_by.args] == ["0.5"]
    assert floor_by.expression.sql(dialect="postgres") == 'diffix.floor_by("c"."discount", 0.5)'
    assert anon.explicit_grouping and not anon.implicit_grouping
    assert [(a.kind, a.column.name if a.column else None) for a in anon.aggregates] == [
        ("count_star", None),
        ("count_distinct", "pid"),
        ("sum", "discount"),
        ("count_star", None),
    ]
    assert [(o.name, o.group_index) for o in anon.outputs] == [
        ("d", 0),
        ("u", None),
        ("count", None),
        ("count", None),
        ("sum", None),
    ]
    assert anon.having is not None and anon.limit is not None and anon.order_by is not None
    assert [c.name for c in anon.aid_columns] == ["id", "cid"]
    assert anon.low_count_filter
    # every aggregate node is inside the anonymizing node, so the rewriter can replace it
    inside = {id(n) for n in anon.node.walk()}
    assert all(id(a.node) in inside for a in anon.aggregates)
    # columns are qualified in the AST
    assert 'UPPER("c"."city")' in anon.node.sql(dialect="postgres")


def test_model_implicit_grouping_and_post_processing() -> None:
    result = check(
        "SELECT x.city, count(*) FROM (SELECT city, 'k' AS k, floor(discount) FROM test_customers) x "
        "GROUP BY x.city"
    )
    assert len(result.anonymizing) == 1
    anon = result.anonymizing[0]
    assert anon.implicit_grouping and not anon.explicit_grouping
    assert [g.kind for g in anon.groups] == ["column", "floor"]
    assert [(o.name, o.group_index) for o in anon.outputs] == [
        ("city", 0),
        ("k", None),
        ("floor", 1),
    ]
    assert anon.aggregates == ()
    assert anon.low_count_filter
    # the anonymizing node sits inside the post-processing query
    assert isinstance(result.ast, exp.Select)
    assert any(node is anon.node for node in result.ast.walk())


def test_model_star_expansion_and_global_aggregate() -> None:
    anon = check("SELECT * FROM (SELECT city, planet FROM test_customers) x").anonymizing[0]
    assert [o.name for o in anon.outputs] == ["city", "planet"]
    anon = check("SELECT count(*) FROM test_customers").anonymizing[0]
    assert anon.groups == () and not anon.implicit_grouping and not anon.low_count_filter
    anon = check("SELECT 1 FROM test_customers").anonymizing[0]
    assert anon.implicit_grouping and anon.groups == () and not anon.low_count_filter


def test_model_natural_join_and_histogram() -> None:
    anon = check("SELECT COUNT(*) FROM test_customers NATURAL JOIN test_patients").anonymizing[0]
    assert isinstance(anon.from_tree, Join)
    assert [(c.left.name, c.right.name) for c in anon.from_tree.conditions] == [
        ("id", "id"),
        ("city", "city"),
    ]
    assert all(isinstance(e, RangeEntry) for e in anon.relations)
    assert [len(e.aid_columns) for e in anon.relations] == [1, 2]
    anon = check("SELECT diffix.count_histogram(id, 5) FROM count_histogram_test").anonymizing[0]
    histogram = anon.aggregates[0]
    assert (histogram.kind, histogram.column.name, histogram.bin_size) == (
        "count_histogram",
        "id",
        5,
    )


def test_model_set_operation_and_cte() -> None:
    result = check(
        "WITH c AS (SELECT city FROM test_customers) "
        "SELECT * FROM c UNION SELECT city FROM test_patients"
    )
    assert len(result.anonymizing) == 2
    assert {a.relations[0].relation.name for a in result.anonymizing} == {
        "test_customers",
        "test_patients",
    }
