"""core/reads.py: the tables a statement reads, common table expressions left out."""

from __future__ import annotations

import pytest
import sqlglot

from pldiffix.core import reads
from pldiffix.core.relations import ColumnInfo, RelationInfo, RelationKind, StaticCatalog


def _read(sql: str) -> list[tuple[str | None, str]]:
    tree = sqlglot.parse_one(sql, read="postgres")
    return [(read.schema, read.name) for read in reads.tables_read(tree)]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM people", [(None, "people")]),
        ("SELECT * FROM Public.PEOPLE", [("public", "people")]),
        ('SELECT * FROM "Odd"."People"', [("Odd", "People")]),
        # a CTE hides the table of its name where it is in scope, and only there
        ("WITH people AS (SELECT 1) SELECT * FROM people", []),
        ("WITH People AS (SELECT 1) SELECT * FROM PEOPLE", []),
        ('WITH people AS (SELECT 1) SELECT * FROM "People"', [(None, "People")]),
        ("WITH people AS (SELECT 1) SELECT * FROM public.people", [("public", "people")]),
        (
            "WITH people AS (SELECT 1) SELECT * FROM (SELECT * FROM people) AS p"
            " WHERE EXISTS (SELECT 1 FROM people AS q)",
            [],
        ),
        ("SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) AS a, t", [(None, "t")]),
        ("WITH people AS (SELECT * FROM people) SELECT * FROM people", [(None, "people")]),
        (
            "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
            [],
        ),
        # subqueries, set operations, laterals and functions in FROM
        ("SELECT 1 WHERE 1 IN (SELECT id FROM people)", [(None, "people")]),
        ("SELECT a FROM x UNION SELECT b FROM y", [(None, "x"), (None, "y")]),
        (
            "SELECT * FROM generate_series(1, 2) AS g, LATERAL (SELECT * FROM people) AS l",
            [(None, "people")],
        ),
        # statements other than queries: every table named counts
        ("INSERT INTO x SELECT * FROM people", [(None, "x"), (None, "people")]),
        ("COPY (SELECT * FROM people) TO STDOUT", [(None, "people")]),
    ],
)
def test_tables_read(sql, expected):
    assert sorted(_read(sql), key=str) == sorted(expected, key=str)


def test_the_text_of_a_read_is_the_name_as_written():
    tree = sqlglot.parse_one('SELECT * FROM "My Schema".People, db.s.t', read="postgres")
    assert [read.text for read in reads.tables_read(tree)] == [
        '"My Schema".People',
        "db.s.t",
    ]


def _relation(schema: str, name: str, kind: RelationKind) -> RelationInfo:
    return RelationInfo(schema, name, kind, (ColumnInfo("id", "int4", is_aid=True),))


def test_resolve_follows_the_search_path_with_pg_catalog_first():
    catalog = StaticCatalog(
        {
            ("a", "people"): _relation("a", "people", RelationKind.PUBLIC),
            ("b", "people"): _relation("b", "people", RelationKind.PERSONAL),
            ("pg_catalog", "pg_class"): _relation("pg_catalog", "pg_class", RelationKind.UNLABELED),
            ("b", "pg_class"): _relation("b", "pg_class", RelationKind.PERSONAL),
        },
        search_path=("b", "a"),
    )
    tree = sqlglot.parse_one("SELECT * FROM people, a.people, pg_class, nowhere", read="postgres")
    found = [reads.resolve(read, catalog) for read in reads.tables_read(tree)]
    assert [(r.schema, r.name) if r else None for r in found] == [
        ("b", "people"),
        ("a", "people"),
        ("pg_catalog", "pg_class"),
        None,
    ]
    assert [r.kind for r in reads.relations_read(tree, catalog)] == [
        RelationKind.PERSONAL,
        RelationKind.PUBLIC,
        RelationKind.UNLABELED,
    ]
