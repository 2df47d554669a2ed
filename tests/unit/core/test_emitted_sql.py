"""SQL around released rows: rows as a relation, equality filters as a condition."""

from __future__ import annotations

import sqlglot

from pldiffix.core import emitted_sql


def test_rows_relation() -> None:
    relation = emitted_sql.rows_relation(
        ["__i", "l0", "a0"], ["integer", "bigint[]", "bigint"], [["0", "{1}", "5"]], "a0"
    )
    assert "CAST('{1}' AS bigint[])" in relation  # no backslash: a plain string constant
    assert 'generate_series(1, v."a0")' in relation
    columnar = emitted_sql.rows_relation(
        ["__i", "l0"], ["integer", "text"], [["0", "O'Brien\\"], ["1", None]], None
    )
    assert 'ROWS FROM (pg_catalog.unnest(CAST(\'{"0","1"}\' AS integer[]))' in columnar
    assert "CAST(E'{\"O''Brien\\\\\\\\\",NULL}' AS text[])" in columnar
    assert emitted_sql.array_literal(['a"b', "", None]) == '{"a\\"b","",NULL}'
    empty = emitted_sql.rows_relation(["__i"], ["integer"], [], None)
    assert "WHERE FALSE" in empty


def test_equalities_are_anded_and_none_is_true() -> None:
    def parse(text: str) -> sqlglot.exp.Expression:
        return sqlglot.parse_one(text, read="postgres")

    pairs = [(parse("t.a"), parse("1")), (parse("upper(t.b)"), parse("'x'"))]
    assert emitted_sql.equalities_sql(pairs) == "(t.a) = (1) AND (UPPER(t.b)) = ('x')"
    assert emitted_sql.equalities_sql([]) == "TRUE"
