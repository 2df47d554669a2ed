# ruff: noqa: E501  (SQL test data reads better unwrapped)
"""Validation against the pg_diffix regression suite (test/sql/validation.sql).

Every query of validation.sql appears here for the access level it is run with there, as our own
test data, against a fake catalog with the schema of _setup.sql and validation.sql. PREPARE and
EXECUTE are not SELECT statements; their cases are covered by the equivalent SELECTs with the
parameter values written in (and the statements themselves are rejected).
"""

from __future__ import annotations

import contextlib

import pytest

from pldiffix.core.query_model import ValidatedQuery
from pldiffix.core.relations import (
    ColumnInfo,
    FunctionInfo,
    RelationInfo,
    RelationKind,
    StaticCatalog,
)
from pldiffix.diffix.validation import ValidationError, validate

TRUSTED = "anonymized_trusted"
UNTRUSTED = "anonymized_untrusted"

P, U, N = RelationKind.PERSONAL, RelationKind.PUBLIC, RelationKind.UNLABELED


def _rel(
    schema: str,
    name: str,
    kind: RelationKind,
    columns: list[tuple[str, str]],
    aids: tuple[str, ...] = (),
    not_filterable: tuple[str, ...] = (),
    inheritance: bool = False,
) -> tuple[tuple[str, str], RelationInfo]:
    cols = tuple(ColumnInfo(c, t, c in aids, c in not_filterable) for c, t in columns)
    return (schema, name), RelationInfo(schema, name, kind, cols, inheritance)


def make_catalog(search_path: tuple[str, ...] = ("public",)) -> StaticCatalog:
    """The schema of pg_diffix's _setup.sql and validation.sql (plus a few metadata relations)."""
    relations = dict(
        [
            _rel(
                "public",
                "test_customers",
                P,
                [("id", "integer"), ("city", "text"), ("discount", "real"), ("planet", "text")],
                aids=("id",),
            ),
            _rel("public", "test_purchases", P, [("cid", "integer"), ("pid", "integer")], ("cid",)),
            _rel("public", "test_products", U, [("id", "integer"), ("name", "text"), ("price", "real")]),
            _rel(
                "public",
                "test_patients",
                P,
                [("id", "integer"), ("name", "text"), ("city", "text"), ("age", "integer")],
                aids=("id", "name"),
            ),
            _rel(
                "public",
                "empty_test_customers",
                P,
                [("id", "integer"), ("name", "text"), ("city", "text"), ("discount", "real")],
                aids=("id",),
            ),
            _rel(
                "public",
                "test_validation",
                P,
                [
                    ("id", "integer"),
                    ("name", "text"),
                    ("city", "text"),
                    ("discount", "real"),
                    ("birthday", "date"),
                    ("lunchtime", "time without time zone"),
                    ("last_seen", "timestamp without time zone"),
                    ("last_seen_tz", "timestamp with time zone"),
                ],
                aids=("id",),
                not_filterable=("birthday",),
            ),
            _rel("public", "superclass", P, [("x", "integer")], ("x",), inheritance=True),
            _rel(
                "public", "subclass", P, [("x", "integer"), ("y", "integer")], ("y",), inheritance=True
            ),
            _rel("public", "unlabeled_table", N, [("a", "integer"), ("b", "text")]),
            _rel(
                "public",
                "test_datetime",
                P,
                [("id", "int4"), ("d", "date"), ("t", "time"), ("ts", "timestamp"), ("tz", "timestamptz"), ("i", "interval")],
                aids=("id",),
            ),
            _rel("public", "count_histogram_test", P, [("id", "integer"), ("value", "text")], ("id",)),
            _rel("public", "numbers", P, [("uid", "bigint"), ("amount", "numeric(10,2)"), ("small", "smallint")], ("uid",)),
            _rel("pg_catalog", "pg_tables", N, [("schemaname", "name"), ("tablename", "name"), ("tableowner", "name")]),
            _rel("pg_catalog", "pg_class", N, [("oid", "oid"), ("relname", "name")]),
            _rel("pg_catalog", "pg_stats", N, [("schemaname", "name"), ("tablename", "name"), ("most_common_vals", "anyarray")]),
            _rel("pg_catalog", "pg_statistic", N, [("starelid", "oid"), ("stavalues1", "anyarray")]),
            _rel("pg_catalog", "pg_stat_user_functions", N, [("funcid", "oid"), ("calls", "bigint")]),
            _rel("pg_catalog", "pg_stat_user_indexes", N, [("relid", "oid"), ("idx_scan", "bigint")]),
            _rel("pg_catalog", "pg_stat_activity", N, [("datname", "name"), ("pid", "integer"), ("usesysid", "oid"), ("query", "text")]),
            _rel("information_schema", "tables", N, [("table_schema", "name"), ("table_name", "name")]),
        ]
    )  # fmt: skip
    functions: dict[tuple[str, str], FunctionInfo] = {}
    for name in ("count_noise", "sum_noise", "avg_noise", "count_histogram", "is_suppress_bin"):
        functions[("diffix", name)] = FunctionInfo("diffix", name, "aggregate")
    for name in ("floor_by", "round_by", "ceil_by", "access_level"):
        functions[("diffix", name)] = FunctionInfo("diffix", name)
    for name in ("show_settings", "show_labels", "unnest_histogram"):
        functions[("diffix", name)] = FunctionInfo("diffix", name, returns_set=True)
    functions[("pg_catalog", "pg_backend_pid")] = FunctionInfo("pg_catalog", "pg_backend_pid")
    functions[("pg_catalog", "bit_and")] = FunctionInfo("pg_catalog", "bit_and", "aggregate")
    functions[("public", "my_func")] = FunctionInfo("public", "my_func")
    functions[("public", "my_srf")] = FunctionInfo("public", "my_srf", returns_set=True)
    return StaticCatalog(relations, functions, search_path)


CATALOG = make_catalog()


def check(sql: str, level: str = TRUSTED, **options: bool) -> ValidatedQuery:
    return validate(sql, CATALOG, level, **options)


def reject(sql: str, level: str = TRUSTED, **options: bool) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        validate(sql, CATALOG, level, **options)
    return info.value


# --------------------------------------------------------------------------------------------------
# validation.sql, trusted mode
# --------------------------------------------------------------------------------------------------

TRUSTED_ACCEPTED = [
    # Supported functions for defining buckets
    "SELECT COUNT(*) FROM test_validation\n  GROUP BY substring(city, 1, 1);",
    "SELECT COUNT(*) FROM test_validation\n"
    "  GROUP BY width_bucket(id, 0, 1000, 10), width_bucket(id::float, 0.0, 1000.0, 10);",
    "SELECT COUNT(*) FROM test_validation\n"
    "  GROUP BY round(id::float), ceil(id::float), ceiling(id::float), floor(id::float);",
    "SELECT COUNT(*) FROM test_validation\n"
    "  GROUP BY round(id::numeric), ceil(id::numeric), ceiling(id::numeric), floor(id::numeric);",
    "SELECT COUNT(*) FROM test_validation\n"
    "  GROUP BY round(id::integer), ceil(id::integer), ceiling(id::integer), floor(id::integer);",
    "SELECT COUNT(*) FROM test_validation\n"
    "  GROUP BY round(id::bigint), ceil(id::bigint), ceiling(id::bigint), floor(id::bigint);",
    "SELECT\n  diffix.round_by(id::numeric, 5),\n  diffix.round_by(id::double precision, 5),\n"
    "  COUNT(*)\nFROM test_validation\nGROUP BY 1, 2;",
    "SELECT\n  diffix.ceil_by(id::numeric, 5),\n  diffix.ceil_by(id::double precision, 5),\n"
    "  COUNT(*)\nFROM test_validation\nGROUP BY 1, 2;",
    "SELECT\n  diffix.floor_by(id::numeric, 5),\n  diffix.floor_by(id::double precision, 5),\n"
    "  COUNT(*)\nFROM test_validation\nGROUP BY 1, 2;",
    "SELECT\n  substring(cast(last_seen AS text), 1, 3),\n"
    "  substring(cast(last_seen_tz AS text), 1, 3),\n  substring(cast(birthday AS text), 2, 3),\n"
    "  substring(cast(lunchtime AS varchar), 1, 4)\nFROM test_validation\nGROUP BY 1, 2, 3, 4;",
    "SELECT\n  date_trunc('year', last_seen),\n  date_trunc('year', last_seen_tz),\n"
    "  date_trunc('year', birthday),\n  extract(month from last_seen) as extract,\n"
    "  extract(month from last_seen_tz) as extract,\n  extract(month from birthday) as extract,\n"
    "  date_part('month', last_seen) as date_part,\n  date_part('month', last_seen_tz) as date_part,\n"
    "  date_part('month', birthday) as date_part\nFROM test_validation\n"
    "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9;",
    # Allow all functions post-anonymization.
    "SELECT 2 * length(city) FROM test_validation GROUP BY city;",
    # Allow diffix.is_suppress_bin in non-direct access level.
    "SELECT city, count(*), diffix.is_suppress_bin(*) from test_validation GROUP BY 1;",
    # Allow simple equality filters in WHERE clauses
    "SELECT COUNT(*) FROM test_validation WHERE city = 'London';",
    "SELECT COUNT(*) FROM test_validation WHERE substring(city, 1, 1) = 'L' AND discount = 10.0 "
    "AND discount = 20.0;",
    # Set operations between anonymizing queries.
    "SELECT city FROM test_validation EXCEPT SELECT city FROM test_validation;",
    "SELECT city FROM test_validation UNION SELECT city FROM test_validation;",
    # Anonymizing sublinks are supported.
    "SELECT EXISTS (SELECT city FROM test_validation);",
    "SELECT 1 WHERE EXISTS (SELECT city FROM test_validation);",
    "SELECT 'London' IN (SELECT city FROM test_validation);",
    # Anonymizing leaf subqueries are supported.
    "SELECT * FROM ( SELECT COUNT(*) FROM test_validation ) x;",
    "SELECT COUNT(city)\nFROM (\n  SELECT city FROM test_validation\n  GROUP BY 1\n) x;",
    "SELECT COUNT(*), COUNT(x.city), COUNT(DISTINCT x.city)\nFROM (\n"
    "  SELECT name, city, discount, birthday, lunchtime, last_seen FROM test_validation\n) x;",
    "SELECT COUNT(DISTINCT x.modified_name) FROM ( SELECT name AS modified_name FROM "
    "test_validation ) x;",
    "SELECT COUNT(*), COUNT(x.city), COUNT(DISTINCT x.user_name)\nFROM (\n"
    "  SELECT y.city as city, y.name as user_name\n"
    "  FROM ( SELECT name, city, discount, birthday, lunchtime, last_seen FROM test_validation ) y\n"
    ") x;",
    "SELECT * FROM (SELECT name FROM test_validation) x, (SELECT city FROM test_validation) y;",
    "WITH c AS (SELECT city FROM test_validation) SELECT * FROM c;",
    "SELECT (SELECT city FROM test_validation);",
    # Allow discovery statements
    "SELECT EXISTS (SELECT FROM PG_Catalog.pg_tables WHERE schemaname='public' AND "
    "tablename='test_customers');",
    "SELECT EXISTS (SELECT FROM Information_Schema.tables WHERE table_schema='public' AND "
    "table_name='test_customers');",
    # Settings and labels UDFs work
    "SELECT * FROM diffix.show_settings() LIMIT 2;",
    "SELECT * FROM diffix.show_labels() WHERE objname LIKE 'public.empty_test_customers%';",
    # Allow prepared statements: EXECUTE prepared(1.0) with the parameter written in
    "SELECT discount, count(*) FROM empty_test_customers WHERE discount = 1.0::float GROUP BY 1;",
    # Allow anonymizing JOINs
    "SELECT COUNT(*) FROM test_validation AS c\n  INNER JOIN test_purchases ON c.id = cid;",
    "SELECT COUNT(*) FROM test_validation AS t1\n"
    "  INNER JOIN test_validation AS t2 ON t1.name = t2.name AND t1.city = t2.city;",
    "SELECT COUNT(c.city), COUNT(p.name) FROM test_validation AS c\n"
    "  LEFT JOIN test_purchases ON c.id = cid\n  LEFT JOIN test_products AS p ON pid = p.id;",
    "SELECT COUNT(*) FROM test_validation NATURAL JOIN test_patients;",
    "SELECT COUNT(*) FROM test_validation JOIN test_patients USING (name);",
    # Get accepted because of selecting AID with generalization
    "SELECT diffix.floor_by(id, 2), count(*) FROM test_validation GROUP BY 1;",
]

TRUSTED_REJECTED = [
    # round(double precision, integer) does not exist (rejected by PostgreSQL itself)
    "SELECT COUNT(*) FROM test_validation\n  GROUP BY round(id::float, -1), round(id::numeric, -1);",
    # non SELECT queries
    "INSERT INTO test_validation VALUES (NULL, NULL,NULL);",
    # WITH attached to an anonymizing query
    "WITH c AS (SELECT 1 FROM test_validation) SELECT 1 FROM test_validation;",
    # GROUPING SETS
    "SELECT city FROM test_validation GROUP BY GROUPING SETS ((city), ());",
    "SELECT city FROM test_validation GROUP BY CUBE ((city));",
    # SRF functions
    "SELECT generate_series(1,4) FROM test_validation;",
    # sublinks
    "SELECT city, (SELECT 1 FROM test_validation) FROM test_validation GROUP BY 1;",
    # DISTINCT
    "SELECT DISTINCT city FROM test_validation;",
    # window functions
    "SELECT avg(discount) OVER (PARTITION BY city) FROM test_validation;",
    # unsupported aggregators
    "SELECT SUM(distinct id) FROM test_validation;",
    "SELECT SUM(id + 5) FROM test_validation;",
    "SELECT AVG(distinct id) FROM test_validation;",
    "SELECT AVG(id + 5) FROM test_validation;",
    "SELECT diffix.avg_noise(distinct id) FROM test_validation;",
    "SELECT diffix.avg_noise(id + 5) FROM test_validation;",
    "SELECT MIN(id) + MAX(id) FROM test_validation;",
    "SELECT city FROM test_validation GROUP BY 1 ORDER BY AVG(LENGTH(city));",
    "SELECT count(city ORDER BY city) FROM test_validation;",
    "SELECT count(*) FILTER (WHERE true) FROM test_validation;",
    "SELECT count(distinct id + 5) FROM test_validation;",
    "SELECT count(distinct least(id, 5)) FROM test_validation;",
    "SELECT count(id + 5) FROM test_validation;",
    "SELECT count(least(id, 5)) FROM test_validation;",
    "SELECT diffix.count_histogram(city) FROM test_validation;",
    "SELECT diffix.sum_noise(last_seen) FROM test_validation;",
    "SELECT diffix.avg_noise(last_seen::date) FROM test_validation;",
    # only a subset of expressions is supported for defining buckets
    "SELECT COUNT(*) FROM test_validation GROUP BY LENGTH(city);",
    "SELECT COUNT(*) FROM test_validation GROUP BY city || 'xxx';",
    "SELECT LENGTH(city) FROM test_validation;",
    "SELECT city, 'aaaa' FROM test_validation GROUP BY 1, 2;",
    # EXECUTE prepared_param_as_label('aaaa') with the parameter written in
    "SELECT city, 'aaaa'::text FROM test_validation GROUP BY 1, 2;",
    "SELECT COUNT(*) FROM test_validation GROUP BY round(floor(id));",
    "SELECT COUNT(*) FROM test_validation GROUP BY floor(cast(discount AS integer));",
    "SELECT COUNT(*) FROM test_validation GROUP BY substr(city, 1, id);",
    "SELECT COUNT(*) FROM test_validation GROUP BY substr('aaaa', 1, 2);",
    # lack of interval support
    "SELECT date_trunc('year', lunchtime) FROM test_validation GROUP BY 1;",
    "SELECT extract(hour from lunchtime) FROM test_validation GROUP BY 1;",
    # averaging opportunity
    "SELECT  date_trunc('year', last_seen_tz, 'EST') FROM test_validation GROUP BY 1;",
    # unsupported expression node types
    "SELECT COALESCE(discount, 20) FROM test_validation;",
    "SELECT NULLIF(discount, 20) FROM test_validation;",
    "SELECT GREATEST(discount, 20) FROM test_validation;",
    "SELECT LEAST(discount, 20) FROM test_validation;",
    # invalid JOINs
    "SELECT COUNT(*) FROM test_validation JOIN test_purchases ON id != cid;",
    "SELECT COUNT(*) FROM test_validation JOIN test_purchases ON id = cid OR cid = id;",
    "SELECT COUNT(*) FROM test_validation JOIN test_purchases ON true;",
    "SELECT COUNT(*) FROM test_validation, test_purchases;",
    # invalid WHERE clauses
    "SELECT COUNT(*) FROM test_validation WHERE city <> 'London';",
    "SELECT COUNT(*) FROM test_validation WHERE city = 'London' OR discount = 10;",
    "SELECT COUNT(*) FROM test_validation WHERE diffix.round_by(id, 5) = 0;",
    "SELECT COUNT(*) FROM test_validation WHERE city = CONCAT('Lon', 'don');",
    # non-datetime cast to text
    "SELECT cast(id AS text) FROM test_validation GROUP BY 1;",
    "SELECT cast(id AS varchar) FROM test_validation GROUP BY 1;",
    "SELECT substring(cast(id AS text), 1, 1) FROM test_validation GROUP BY 1;",
    "SELECT substring(cast(id AS varchar), 1, 1) FROM test_validation GROUP BY 1;",
    # invalid subqueries
    "SELECT * FROM (SELECT length(city) FROM test_validation) x;",
    "SELECT EXISTS (SELECT length(city) FROM test_validation);",
    "SELECT 1 WHERE EXISTS (SELECT length(city) FROM test_validation);",
    "SELECT 1 UNION SELECT length(city) FROM test_validation;",
    "SELECT * FROM (SELECT 1) t1, (SELECT length(city) FROM test_validation) t2;",
    "WITH c AS (SELECT length(city) FROM test_validation) SELECT * FROM c;",
    "SELECT (SELECT length(city) FROM test_validation);",
    # pg_catalog tables with sensitive stats
    "SELECT * FROM pg_stats LIMIT 10;",
    "SELECT * FROM pg_statistic LIMIT 10;",
    "SELECT * FROM pg_stat_user_functions LIMIT 10;",
    "SELECT * FROM pg_stat_user_indexes LIMIT 10;",
    "SELECT * FROM pg_stat_activity LIMIT 10;",
    # inheritance
    "SELECT x, y FROM subclass;",
    "SELECT x FROM superclass;",
    # system columns
    "SELECT ctid FROM test_validation;",
    "SELECT tableoid FROM test_validation;",
    "SELECT count(ctid) FROM test_validation;",
    "SELECT count(tableoid) FROM test_validation;",
    "SELECT count(distinct ctid) FROM test_validation;",
    "SELECT count(distinct tableoid) FROM test_validation;",
    # selecting AID columns
    "SELECT id FROM test_validation;",
    "SELECT 1 FROM test_validation GROUP BY id;",
    "SELECT * FROM (SELECT id FROM test_validation) z;",
    # PREPARE / EXECUTE are not SELECT statements
    "PREPARE prepared(float) AS SELECT discount, count(*) FROM empty_test_customers "
    "WHERE discount = $1 GROUP BY 1;",
    "EXECUTE prepared(1.0);",
    "PREPARE prepared_param_as_label(text) AS SELECT city, $1 FROM test_validation GROUP BY 1, 2;",
    "EXECUTE prepared_param_as_label('aaaa');",
]

# --------------------------------------------------------------------------------------------------
# validation.sql, untrusted mode
# --------------------------------------------------------------------------------------------------

UNTRUSTED_ACCEPTED = [
    "SELECT substring(city, 1, 2) from test_validation;",
    "SELECT floor(discount) from test_validation;",
    "SELECT round(discount) from test_validation;",
    "SELECT discount from test_validation;",
    "SELECT diffix.floor_by(discount, 2) from test_validation;",
    "SELECT diffix.floor_by(discount, 20) from test_validation;",
    "SELECT diffix.floor_by(discount, 2.0) from test_validation;",
    "SELECT diffix.floor_by(discount, 0.2) from test_validation;",
    "SELECT diffix.floor_by(discount, 20.0) from test_validation;",
    "SELECT diffix.floor_by(discount, 50.0) from test_validation;",
    "SELECT diffix.count_histogram(id, 5) from test_validation;",
    "SELECT count(*) FROM test_validation WHERE discount = 3;",
    # Marking columns as `filterable` works.
    "SELECT COUNT(*) FROM test_validation WHERE substring(cast(last_seen as text), 4) = '2000';",
    # EXECUTE prepared_floor_by(2.0) / prepared_substring(1, 2) with the parameters written in
    "SELECT diffix.floor_by(discount, 2.0::numeric) FROM test_validation GROUP BY 1;",
    "SELECT substring(city, 1::int, 2::int) FROM test_validation GROUP BY 1;",
]

UNTRUSTED_REJECTED = [
    # invalid generalization parameters
    "SELECT substring(city, 2, 2) from test_validation;",
    "SELECT diffix.floor_by(discount, 3) from test_validation;",
    "SELECT diffix.floor_by(discount, 3.0) from test_validation;",
    "SELECT diffix.floor_by(discount, 5000000000.1) from test_validation;",
    "SELECT diffix.count_histogram(id, 3) from test_validation;",
    # invalid generalizing functions
    "SELECT width_bucket(discount, 2, 200, 5) from test_validation;",
    "SELECT ceil(discount) from test_validation;",
    "SELECT diffix.ceil_by(discount, 2) from test_validation;",
    # Marking columns as `not_filterable` works.
    "SELECT COUNT(*) FROM test_validation WHERE substring(cast(birthday as text), 4) = '2000';",
    # EXECUTE prepared_floor_by(2.1) / prepared_substring(2, 3) with the parameters written in
    "SELECT diffix.floor_by(discount, 2.1::numeric) FROM test_validation GROUP BY 1;",
    "SELECT substring(city, 2::int, 3::int) FROM test_validation GROUP BY 1;",
    "PREPARE prepared_floor_by(numeric) AS SELECT diffix.floor_by(discount, $1) "
    "FROM test_validation GROUP BY 1;",
]

# The analyst guide forbids diffix.round_by for untrusted analysts; pg_diffix accepts it.
UNTRUSTED_GUIDE_REJECTED = ["SELECT diffix.round_by(discount, 2) from test_validation;"]


@pytest.mark.parametrize("sql", TRUSTED_ACCEPTED)
def test_trusted_accepted(sql: str) -> None:
    check(sql, TRUSTED)


@pytest.mark.parametrize("sql", TRUSTED_REJECTED)
def test_trusted_rejected(sql: str) -> None:
    error = reject(sql, TRUSTED)
    assert error.message
    assert error.hint


@pytest.mark.parametrize("sql", UNTRUSTED_ACCEPTED)
def test_untrusted_accepted(sql: str) -> None:
    check(sql, UNTRUSTED)


@pytest.mark.parametrize("sql", UNTRUSTED_REJECTED + UNTRUSTED_GUIDE_REJECTED)
def test_untrusted_rejected(sql: str) -> None:
    error = reject(sql, UNTRUSTED)
    assert error.message
    assert error.hint


@pytest.mark.parametrize("sql", TRUSTED_ACCEPTED)
def test_trusted_queries_without_untrusted_only_features_also_work_untrusted(sql: str) -> None:
    """Untrusted is never more permissive than trusted."""
    with contextlib.suppress(ValidationError):
        check(sql, UNTRUSTED)
    for rejected in TRUSTED_REJECTED:
        if rejected == sql:
            pytest.fail("listed as both accepted and rejected")


@pytest.mark.parametrize("sql", TRUSTED_REJECTED)
def test_trusted_rejections_hold_for_untrusted(sql: str) -> None:
    reject(sql, UNTRUSTED)


def test_round_by_is_accepted_for_trusted_analysts() -> None:
    check("SELECT diffix.round_by(discount, 2) from test_validation;", TRUSTED)


def test_a_quoted_cte_name_keeps_its_case() -> None:
    """WITH "Test_Customers" does not hide test_customers (PostgreSQL folds only the unquoted
    name): the statement reads the personal table, so its WITH is refused."""
    with pytest.raises(ValidationError, match="reads personal tables"):
        validate(
            'WITH "Test_Customers" AS (SELECT 1 AS city) SELECT city FROM test_customers',
            make_catalog(),
            TRUSTED,
        )


@pytest.mark.parametrize(
    "sql",
    [
        "WITH Test_Customers AS (SELECT 1 AS city) SELECT city FROM test_customers",
        'WITH test_customers AS (SELECT 1 AS city) SELECT city FROM "test_customers"',
    ],
)
def test_an_unquoted_cte_name_folds_and_hides_the_table(sql: str) -> None:
    relations = validate(sql, make_catalog(), TRUSTED).relations
    assert not any(r.kind is P for r in relations)
