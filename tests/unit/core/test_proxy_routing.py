"""What the front does with a statement (plpython/pldiffix/core/proxy_routing.py)."""

from __future__ import annotations

import pytest

from pldiffix.core import proxy_routing as routing
from pldiffix.core import reads
from pldiffix.core.proxy_routing import Route, RoutingError

PROTECTED = {"customers", "public.customers", '"Accounts"'}


def _route(sql: str) -> Route:
    statements = routing.parse_statements(sql)
    assert statements is not None
    return routing.route(statements, PROTECTED.__contains__)


ROUTES = [
    ("SELECT city, count(*) FROM customers GROUP BY city", Route.ENGINE),
    ("SELECT count(*) FROM public.customers", Route.ENGINE),
    ('SELECT count(*) FROM "Accounts"', Route.ENGINE),
    ("SELECT * FROM (SELECT city FROM customers) s", Route.ENGINE),
    ("SELECT * FROM customers LIMIT 0", Route.PROBE),
    ("SELECT * FROM customers WHERE 1 <> 1", Route.PROBE),
    ("SELECT * FROM customers WHERE (0 = 1)", Route.PROBE),
    ("SELECT * FROM customers WHERE false", Route.PROBE),
    ("SELECT * FROM customers WHERE 'a' = 'b' AND city = 'x'", Route.PROBE),
    ("SELECT count(*) FROM customers WHERE 1 = 1", Route.ENGINE),
    ("SELECT count(*) FROM customers LIMIT 1", Route.ENGINE),
    ("SELECT * FROM pg_catalog.pg_class", Route.PASS),
    ("WITH customers AS (SELECT 1 AS x) SELECT x FROM customers", Route.PASS),
    ("WITH Customers AS (SELECT 1 AS x) SELECT x FROM CUSTOMERS", Route.PASS),
    # a CTE hides a table only where it is in scope
    (
        "SELECT * FROM (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) AS a, customers",
        Route.ENGINE,
    ),
    ("WITH customers AS (SELECT 1 AS x) SELECT count(*) FROM public.customers", Route.ENGINE),
    ("SELECT 1 UNION ALL SELECT count(*) FROM customers", Route.ENGINE),
    ("SELECT 1 WHERE EXISTS (SELECT 1 FROM customers)", Route.ENGINE),
    ("EXPLAIN SELECT 1", Route.PASS),
    ("PREPARE q AS SELECT name FROM cities", Route.PASS),
    ("COPY (SELECT city, count(*) FROM customers GROUP BY city) TO STDOUT", Route.ENGINE),
    ("COPY (SELECT count(*) FROM customers) TO STDOUT WITH (FORMAT csv)", Route.ENGINE),
    ("COPY (SELECT count(*) FROM customers LIMIT 0) TO STDOUT", Route.ENGINE),
    ("INSERT INTO notes SELECT city FROM customers", Route.PASS),
    ("SET search_path = public", Route.PASS),
    ("SELECT 1; SELECT 2", Route.PASS),
]


@pytest.mark.parametrize(("sql", "expected"), ROUTES)
def test_routes(sql, expected):
    assert _route(sql) is expected


@pytest.mark.parametrize(
    "sql",
    [
        "COPY customers TO STDOUT",
        "COPY (SELECT count(*) FROM customers) TO '/tmp/counts'",
        "COPY (SELECT count(*) FROM customers) TO PROGRAM 'cat'",
        'COPY (SELECT count(*) FROM customers) TO "STDOUT"',
        "COPY public.customers FROM STDIN",
        "COPY (SELECT count(*) FROM customers) TO STDOUT; SELECT 1",
    ],
)
def test_copy_of_a_protected_table_is_refused(sql):
    with pytest.raises(RoutingError, match="COPY is not available") as error:
        _route(sql)
    assert error.value.sqlstate == "42501"


def test_a_protected_query_must_come_alone():
    with pytest.raises(RoutingError, match="sent alone"):
        _route("SELECT 1; SELECT count(*) FROM customers")


def test_unparseable_text_is_left_to_the_server():
    assert routing.parse_statements("SELEC city FRM") in (None, ())


def test_parameters_become_typed_literals():
    (tree,) = routing.parse_statements(
        "SELECT count(*) FROM customers WHERE city = $1 AND age = $2 AND note = $3"
    )
    inlined = routing.inline_parameters(tree, ["Ro'me", "30", None], ["text", "integer", None])
    assert inlined.sql(dialect="postgres") == (
        "SELECT COUNT(*) FROM customers WHERE city = CAST('Ro''me' AS TEXT) "
        "AND age = CAST('30' AS INT) AND note = NULL"
    )
    assert "$1" in tree.sql(dialect="postgres")  # the parsed tree itself is untouched


def test_a_parameter_without_a_value_is_an_error():
    (tree,) = routing.parse_statements("SELECT count(*) FROM customers WHERE city = $2")
    with pytest.raises(RoutingError, match=r"no value bound for parameter \$2"):
        routing.inline_parameters(tree, ["x"], ["text"])


def test_fetch_statement_quotes_names_and_casts_to_the_described_types():
    statement = routing.fetch_statement(
        ["city", "count", 'odd"name'],
        ["text", "bigint", "integer"],
        ["text", "bigint", "numeric"],
    )
    assert statement == (
        'SELECT t.c1 AS "city", t.c2 AS "count", CAST(t.c3 AS numeric) AS "odd""name"'
        " FROM diffix._proxy_rows($1) AS t(c1 text, c2 bigint, c3 integer)"
    )


def test_fetch_statement_inlines_the_token_only_when_given():
    assert routing.fetch_statement(["n"], ["bigint"], None, token=7).endswith(
        " FROM diffix._proxy_rows(7) AS t(c1 bigint)"
    )


def test_fetch_statement_keeps_repeated_names():
    statement = routing.fetch_statement(["n", "n"], ["bigint", "bigint"], None)
    assert statement.startswith('SELECT t.c1 AS "n", t.c2 AS "n" FROM')


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("PREPARE q AS SELECT count(*) FROM customers", "PREPARE of a statement"),
        ('prepare "q x" (int, text) as select count(*) from customers', "PREPARE of a statement"),
        ("EXPLAIN SELECT count(*) FROM customers", "EXPLAIN of a query"),
        ("EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM customers", "EXPLAIN of a query"),
        ("EXPLAIN ANALYZE VERBOSE SELECT * FROM public.customers", "EXPLAIN of a query"),
    ],
)
def test_prepare_and_explain_over_protected_tables_are_refused_clearly(sql, message):
    with pytest.raises(RoutingError, match=message) as error:
        _route(sql)
    assert error.value.sqlstate == "0A000"
    assert error.value.hint


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("COPY (SELECT 1) TO STDOUT", "COPY (FETCH) TO STDOUT"),
        (
            "copy ( select (x) from (select 1 as x) s ) to stdout with (format csv, header)",
            "copy (FETCH) to stdout with (format csv, header)",
        ),
        ("COPY (SELECT ')' AS p) TO STDOUT CSV", "COPY (FETCH) TO STDOUT CSV"),
    ],
)
def test_copy_out_puts_the_fetch_statement_in_place_of_the_query(sql, expected):
    (tree,) = routing.parse_statements(sql)
    assert routing.copied_query(tree) is not None
    assert routing.copy_out(sql, "FETCH") == expected


def test_a_text_is_parsed_once_and_its_kept_tree_is_never_changed():
    sql = "SELECT COUNT(*) FROM customers WHERE city = $1"
    (tree,) = routing.parse_statements(sql)
    inlined = routing.inline_parameters(tree, ["Rome"], ["text"])
    (again,) = routing.parse_statements(sql)
    assert again is tree
    assert again.sql(dialect="postgres") == sql
    assert "$1" not in inlined.sql(dialect="postgres")


# --- the tokens-only route ------------------------------------------------------------------------

# (text, the tables its tokens say it surely reads; None: the tokens leave it to the parse)
SURELY_READ = [
    ("SELECT city, count(*) FROM customers GROUP BY city", ["customers"]),
    ("/* 17 */ SELECT count(*) FROM customers;", ["customers"]),
    ("SELECT count(*) FROM customers;;", ["customers"]),
    ("select CITY from CUSTOMERS group by 1", ["CUSTOMERS"]),
    ("SELECT count(*) FROM public.customers", ["public.customers"]),
    ("SELECT count(*) FROM public . customers", ["public.customers"]),
    ('SELECT count(*) FROM "public"."customers" AS c', ['"public"."customers"']),
    ('SELECT count(*) FROM "Accounts"', ['"Accounts"']),
    ('SELECT count(*) FROM "cust""omers"', ['"cust""omers"']),
    ('SELECT "FROM" FROM cities', ["cities"]),
    ("SELECT count(*) FROM cities c JOIN customers u ON u.city = c.name", ["cities", "customers"]),
    ("SELECT count(*) FROM cities LEFT OUTER JOIN customers USING (city)", ["cities", "customers"]),
    ("SELECT (SELECT count(*) FROM customers)", ["customers"]),
    ("SELECT count(*) FROM cities WHERE EXISTS (SELECT 1 FROM customers)", ["cities", "customers"]),
    ("SELECT count(*) FROM customers LIMIT 5", ["customers"]),
    ("SELECT count(*) FROM customers WHERE city = 'x' AND age > 3", ["customers"]),
    ("SELECT 1 UNION SELECT count(*) FROM customers", ["customers"]),
    # comments, strings and dollar quotes hide what they hold, and only that
    ("SELECT count(*) FROM /* cities */ customers -- JOIN cities", ["customers"]),
    ("SELECT 1 /* FROM customers */", None),
    ("SELECT 1 -- FROM customers", None),
    ("SELECT 1 FROM cities /* nested /* FROM customers */ still a comment */", ["cities"]),
    ("SELECT 'FROM customers' FROM cities", ["cities"]),
    ("SELECT $$ FROM customers $$", None),
    ("SELECT $x$ FROM customers $x$, count(*) FROM cities", ["cities"]),
    ("SELECT $a$ $$ $a$ AS s, count(*) FROM customers", ["customers"]),
    ("SELECT E'\\' FROM customers --'", None),
    ("SELECT 1 AS x$a$, count(*) FROM customers AS c$a$", ["customers"]),
    # names that are not tables read
    ("SELECT extract(year FROM joined) FROM cities", ["cities"]),
    ("SELECT substring(name FROM customers) FROM cities", ["cities"]),
    ("SELECT trim(both FROM customers) FROM cities", ["cities"]),
    ("SELECT name IS DISTINCT FROM customers FROM cities", ["cities"]),
    ("SELECT name IS NOT DISTINCT FROM customers FROM cities", ["cities"]),
    ("SELECT count(*) FROM customers()", None),
    ("SELECT count(*) FROM generate_series(1, 3) AS customers", None),
    ("SELECT count(*) FROM ONLY customers", None),
    ("SELECT count(*) FROM customers *", None),
    ("SELECT count(*) FROM db.public.customers", None),
    ('SELECT count(*) FROM U&"\\0063ustomers"', None),
    # a CTE may shadow a table: the parse decides
    ("WITH customers AS (SELECT 1 AS x) SELECT x FROM customers", None),
    ("SELECT * FROM (WITH customers AS (SELECT 1 AS x) SELECT x FROM customers) AS s", None),
    # what may be a type probe: the parse decides
    ("SELECT * FROM customers LIMIT 0", None),
    ("SELECT * FROM customers LIMIT 00", None),
    ("SELECT * FROM customers LIMIT ALL", None),
    ("SELECT * FROM customers LIMIT $1", None),
    ("SELECT * FROM customers WHERE 1 <> 1", None),
    ("SELECT * FROM customers WHERE false", None),
    ("SELECT * FROM customers WHERE 'a' = 'b' AND city = 'x'", None),
    ("SELECT * FROM customers WHERE city = 'x' AND (0 = 1)", None),
    # anything but one SELECT: the parse decides (refusals, COPY, EXPLAIN, PREPARE)
    ("SELECT count(*) FROM customers; SELECT 1", None),
    ("SELECT 1; SELECT count(*) FROM customers", None),
    ("EXPLAIN SELECT * FROM customers", None),
    ("COPY (SELECT count(*) FROM customers) TO STDOUT", None),
    ("PREPARE q AS SELECT count(*) FROM customers", None),
    ("(SELECT count(*) FROM customers)", None),
    ("TABLE customers", None),
    ("SELECT count(*) FROM customers)", None),
    ("SELECT count(*) FROM (customers", None),
    ("SELECT count(*) FROM customers /* unterminated", None),
    ("", None),
]


@pytest.mark.parametrize(("sql", "expected"), SURELY_READ)
def test_the_tokens_name_only_tables_surely_read(sql, expected):
    assert routing.tables_surely_read(sql) == expected


@pytest.mark.parametrize(("sql", "expected"), [(s, e) for s, e in SURELY_READ if e])
def test_the_tokens_name_tables_the_parse_reads_too(sql, expected):
    statements = routing.parse_statements(sql)
    assert statements is not None and len(statements) == 1
    assert set(expected) <= {read.text for read in reads.tables_read(statements[0])}


def test_the_tokens_say_engine_only_where_the_parse_does():
    """Every text of this module whose tokens name a protected table routes to the engine when
    parsed: the tokens never decide what the parse would pass, refuse or probe."""
    texts = [sql for sql, _ in SURELY_READ] + [sql for sql, _ in ROUTES]
    decided = [
        sql
        for sql in texts
        if any(name in PROTECTED for name in routing.tables_surely_read(sql) or [])
    ]
    assert len(decided) >= 20
    for sql in decided:
        assert _route(sql) is Route.ENGINE, sql
