"""The row reads BI tools send first, recognised and rewritten (diffix/first_contact.py)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from test_validation import CATALOG, check

from pldiffix.core import sqltext
from pldiffix.core.relations import RelationInfo
from pldiffix.diffix import first_contact
from pldiffix.diffix.validation import ValidationError


def _resolve(schema: str | None, name: str) -> RelationInfo | None:
    for candidate in [schema] if schema else CATALOG.search_path:
        relation = CATALOG.get_relation(candidate, name)
        if relation is not None:
            return relation
    return None


def _read(sql: str) -> first_contact.RowRead | None:
    return first_contact.row_read(sqlglot.parse_one(sql, read="postgres"), _resolve)


def _rewritten(sql: str) -> str:
    read = _read(sql)
    assert read is not None, sql
    return sqltext.render(first_contact.rewritten(read))


ALL_COLUMNS = [
    "SELECT * FROM test_customers",
    "SELECT * FROM public.test_customers LIMIT 200",
    "SELECT t.* FROM public.test_customers t LIMIT 200 OFFSET 10",
    "SELECT test_customers.id, test_customers.city, test_customers.discount,"
    " test_customers.planet FROM test_customers",
    "SELECT planet, id, discount, city FROM TEST_CUSTOMERS",
    'SELECT "id", city, discount, planet FROM "test_customers"',
    "SELECT public.test_customers.id, public.test_customers.city,"
    " public.test_customers.discount, public.test_customers.planet FROM public.test_customers",
]


@pytest.mark.parametrize("sql", ALL_COLUMNS)
def test_reads_of_every_column_become_valid_anonymizing_queries(sql: str) -> None:
    with pytest.raises(ValidationError, match="AID column"):
        check(sql)
    text = _rewritten(sql)
    check(text)
    check(text, "anonymized_untrusted")
    assert "CAST(NULL AS INT)" in text


def test_the_aid_column_keeps_its_place_and_type() -> None:
    text = _rewritten("SELECT planet, id, discount, city FROM test_customers LIMIT 5")
    assert text == (
        'SELECT q."planet", CAST(NULL AS INT) AS "id", q."discount", q."city" FROM '
        '(SELECT "city", "discount", "planet" FROM test_customers) AS q LIMIT 5'
    )


def test_two_aid_columns_are_both_left_out() -> None:
    read = _read("SELECT * FROM test_patients LIMIT 1")
    assert read is not None
    assert read.left_out == ("id", "name")
    text = sqltext.render(first_contact.rewritten(read))
    assert 'CAST(NULL AS INT) AS "id"' in text and 'CAST(NULL AS TEXT) AS "name"' in text
    message = first_contact.notice(read)
    assert "id, name" in message and "public.test_patients" in message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT city FROM test_customers",  # no AID column selected: valid as it is
        "SELECT id, city FROM test_customers",  # not every column: the analyst's own query
        "SELECT id, id, city, discount, planet FROM test_customers",
        "SELECT *, 1 FROM test_customers",
        "SELECT * FROM test_customers WHERE city = 'Rome'",
        "SELECT * FROM test_customers ORDER BY city",
        "SELECT DISTINCT * FROM test_customers",
        "SELECT * FROM test_customers GROUP BY 1, 2, 3, 4",
        "SELECT * FROM test_customers JOIN test_purchases ON id = cid",
        "SELECT other.* FROM test_customers",
        "SELECT x.id, x.city, x.discount, x.planet FROM test_customers",
        "SELECT other.test_customers.id, test_customers.city, test_customers.discount,"
        " test_customers.planet FROM test_customers",
        "SELECT public.t.id, t.city, t.discount, t.planet FROM test_customers t",
        "SELECT t.* FROM test_customers t(a, b, c, d)",
        "SELECT * FROM test_products",  # public
        "SELECT * FROM unlabeled_table",
        "SELECT * FROM superclass",  # only AID columns: nothing to answer with
        "SELECT * FROM (SELECT * FROM test_customers) s",
        "WITH c AS (SELECT * FROM test_customers) SELECT * FROM c",
        "SELECT * FROM test_customers UNION SELECT * FROM test_customers",
        "SELECT * FROM nowhere",
        "SELECT * FROM other.test_customers",
        "SELECT * FROM test_customers LIMIT (SELECT max(id) FROM test_customers)",
        "SELECT * FROM test_customers OFFSET (SELECT count(*) FROM test_customers WHERE id = 1)",
        "SELECT * FROM test_customers LIMIT ALL",
        "SELECT * FROM test_customers LIMIT '5'",
        "SELECT * FROM test_customers FETCH FIRST 5 ROWS ONLY",
    ],
)
def test_other_statements_are_left_to_validation(sql: str) -> None:
    assert _read(sql) is None


def test_dp_refusal_points_to_aggregate_queries() -> None:
    read = _read("SELECT * FROM test_customers LIMIT 200")
    assert read is not None
    refusal = first_contact.RowReadRefused(read).report()
    assert refusal.sqlstate == "42501"
    assert "anonymized_dp" in refusal.message
    assert refusal.hint is not None and "GROUP BY" in refusal.hint


def test_hostile_names_are_quoted() -> None:
    from pldiffix.core.relations import ColumnInfo, RelationKind

    relation = RelationInfo(
        "public",
        'we"ird',
        RelationKind.PERSONAL,
        (ColumnInfo('a"); DROP TABLE x; --', "text"), ColumnInfo("uid", "bigint", is_aid=True)),
    )
    tree = sqlglot.parse_one('SELECT * FROM "we""ird"', read="postgres")
    read = first_contact.row_read(tree, lambda schema, name: relation)
    assert read is not None
    text = sqltext.render(first_contact.rewritten(read))
    assert 'q."a""); DROP TABLE x; --"' in text
    assert sqlglot.parse_one(text, read="postgres").find(exp.Drop) is None
