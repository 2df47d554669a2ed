"""cellkey/plan.py, without a database: the accepted subset, what each refusal says, and the
post-processing query that orders and limits the perturbed cells."""

from __future__ import annotations

import pytest
import sqlglot

from pldiffix.cellkey import plan
from pldiffix.cellkey.table import CellKeyTable, Column
from pldiffix.core.statements import QueryError

CITY = Column("city", 25, "text", "text", numeric=False, collatable=True)
AGE = Column("age", 23, "int4", "integer", numeric=True, collatable=False)
AMOUNT = Column("amount", 1700, "numeric", "numeric", numeric=True, collatable=False)


def _table() -> CellKeyTable:
    return CellKeyTable(
        relid=1,
        sql_name='"public"."sales"',
        canonical_name="public.sales",
        columns={"city": CITY, "age": AGE, "amount": AMOUNT},
        method="laplace",
    )


def _plan(sql: str) -> plan.Plan:
    return plan.plan_query(sqlglot.parse_one(sql, read="postgres"), _table())


def test_a_grouped_query_is_planned():
    planned = _plan(
        "SELECT s.city, count(*) AS n, sum(amount), avg(amount) FROM sales AS s"
        " WHERE age IN (30, 40) AND city IS NULL GROUP BY 1 ORDER BY n DESC, 1 LIMIT 5 OFFSET 2"
    )
    assert [(i.name, i.kind) for i in planned.items] == [
        ("city", "group"),
        ("n", "count"),
        ("sum", "sum"),
        ("avg", "avg"),
    ]
    assert planned.groups == [plan.GroupKey(CITY, False)]
    assert planned.summed == [AMOUNT]
    assert [(c.column.name, c.values) for c in planned.conditions] == [
        ("age", ["30", "40"]),
        ("city", [None]),
    ]
    assert planned.order == [(1, True, True), (0, False, False)]
    assert (planned.limit, planned.offset) == (5, 2)


def test_order_by_names_a_selected_expression():
    planned = _plan("SELECT city, count(*) FROM sales GROUP BY city ORDER BY count(*) NULLS FIRST")
    assert planned.order == [(1, False, True)]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT count(*) FROM sales JOIN other ON true", "joins is not supported"),
        ("WITH s AS (SELECT 1) SELECT count(*) FROM sales", "WITH is not supported"),
        ("SELECT city, count(*) FROM sales GROUP BY city HAVING count(*) > 1", "HAVING"),
        ("SELECT count(*) FROM sales AS s(a, b)", "column aliases on the table"),
        ("SELECT nowhere, count(*) FROM sales GROUP BY 1", "column 'nowhere' does not exist"),
        ("SELECT x.city, count(*) FROM sales GROUP BY 1", "unknown table or alias 'x'"),
        ("SELECT city, count(*) FROM sales", "must appear in the GROUP BY clause"),
        ("SELECT count(city) FROM sales", "only count(*) is supported"),
        ("SELECT sum(city) FROM sales", "the column is not numeric"),
        ("SELECT max(age) FROM sales", "aggregate max is not supported"),
        ("SELECT count(*) FROM sales WHERE age > 3", "only column = constant"),
        ("SELECT count(*) FROM sales WHERE age = 1 AND age = 2", "restricted twice"),
        ("SELECT count(*) FROM sales WHERE age = amount", "compare with constants only"),
        ("SELECT count(*) FROM sales ORDER BY age", "ORDER BY must name a selected column"),
        ("SELECT count(*) FROM sales LIMIT age", "LIMIT takes a non-negative integer"),
        ("SELECT diffix.tbe_range(age), count(*) FROM sales GROUP BY 1", "needs declared ranges"),
        ("SELECT tbe_range(age), count(*) FROM sales GROUP BY 1", "with its schema"),
        # a quoted "DIFFIX" is another schema (an analyst's), not pldiffix's
        ('SELECT "DIFFIX".tbe_range(age), count(*) FROM sales GROUP BY 1', "can be selected"),
        ("SELECT DIFFIX.tbe_range(age), count(*) FROM sales GROUP BY 1", "needs declared ranges"),
        ("SELECT 1 UNION SELECT 2", "only a plain SELECT"),
    ],
)
def test_refusals_say_what_is_wrong(sql, message):
    with pytest.raises(QueryError) as refused:
        _plan(sql)
    assert message in refused.value.message


def _statement(sql: str, cells: list[list[str | None]]) -> str:
    return plan.post_processing(_plan(sql), cells)


def test_the_post_processing_query_orders_limits_and_keeps_ties_in_the_cells_order():
    sql = _statement(
        'SELECT city AS "Town", count(*), sum(amount) FROM sales GROUP BY 1'
        " ORDER BY 2 DESC, city LIMIT 10 OFFSET 1",
        [["a", "5", "1.50"], [None, "7", None]],
    )
    tree = sqlglot.parse_one(sql, read="postgres")  # one statement that sqlglot reads
    assert [e.alias_or_name for e in tree.expressions] == ["Town", "count", "sum"]
    assert sql.endswith(
        ' ORDER BY t.c1 DESC NULLS FIRST, t.c0 COLLATE "C" ASC NULLS LAST, t.o LIMIT 10 OFFSET 1'
    )
    # the cells, their SQL types and their order, as typed literals
    assert "AS text[]" in sql and "AS bigint[]" in sql and "AS numeric[]" in sql
    assert '{"a",NULL}' in sql and '{"5","7"}' in sql and '{"1.50",NULL}' in sql
    assert '{"0","1"}' in sql


def test_without_order_by_the_cells_keep_their_order():
    sql = _statement("SELECT count(*) FROM sales", [["3"]])
    assert sql.endswith("ORDER BY t.o")


def test_no_cells_make_an_empty_typed_relation():
    sql = _statement("SELECT age, count(*) FROM sales GROUP BY age", [])
    assert "WHERE FALSE" in sql and "CAST(NULL AS integer)" in sql
