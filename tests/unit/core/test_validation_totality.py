"""Expressions that cannot fail on a row (validation/totality.py): what the untrusted and DP levels
refuse up front, what the trusted level still accepts, and the total forms the engine runs."""

from __future__ import annotations

import pytest

from pldiffix.core.relations import (
    ColumnInfo,
    FunctionInfo,
    RelationInfo,
    RelationKind,
    StaticCatalog,
)
from pldiffix.core.validation import ValidationError, validate
from pldiffix.core.validation.totality import cast_can_fail, comparison_can_fail
from pldiffix.diffix import rewrite
from pldiffix.diffix.validation.aggregates import DiffixAggregates
from pldiffix.dp.query import parse

TRUSTED, UNTRUSTED = "anonymized_trusted", "anonymized_untrusted"

_COLUMNS = (
    ("pid", "integer"), ("i2", "smallint"), ("i4", "integer"), ("i8", "bigint"),
    ("f4", "real"), ("f8", "double precision"), ("n", "numeric"), ("t", "text"), ("b", "bytea"),
    ("d", "date"), ("ts", "timestamp"), ("tz", "timestamptz"),
)  # fmt: skip
CATALOG = StaticCatalog(
    relations={
        (("public", name)): RelationInfo(
            "public",
            name,
            RelationKind.PERSONAL,
            tuple(ColumnInfo(c, typ, is_aid=c == "pid") for c, typ in _COLUMNS),
        )
        for name in ("p", "q")
    },
    functions={
        ("diffix", name): FunctionInfo("diffix", name)
        for name in ("floor_by", "round_by", "ceil_by")
    },
)


def _model(sql: str, level: str, total: bool = False):
    return validate(sql, CATALOG, level, DiffixAggregates(), total_expressions=total).anonymizing[0]


def _refusal(sql: str, level: str, total: bool = False) -> str:
    with pytest.raises(ValidationError) as error:
        validate(sql, CATALOG, level, DiffixAggregates(), total_expressions=total)
    return str(error.value)


# Accepted at the trusted level (pg_diffix's model: an error may follow), refused up front when
# expressions must not fail; `message` is part of the refusal.
FAILING_CONSTANTS = [
    ("SELECT substring(t, 1, -1), count(*) FROM p GROUP BY 1", "cannot be negative"),
    ("SELECT count(*) FROM p WHERE substring(t, 1, -2) = 'a'", "cannot be negative"),
    ("SELECT width_bucket(f8, 0, 0, 10), count(*) FROM p GROUP BY 1", "two different finite"),
    ("SELECT width_bucket(f8, 0, 'Infinity', 10), count(*) FROM p GROUP BY 1", "finite"),
    ("SELECT width_bucket(f8, 'NaN', 1, 10), count(*) FROM p GROUP BY 1", "finite"),
    ("SELECT width_bucket(f8, -1e308, 1e308, 10), count(*) FROM p GROUP BY 1", "finite"),
    ("SELECT width_bucket(n, 0, 100, 0), count(*) FROM p GROUP BY 1", "bucket count"),
    ("SELECT width_bucket(n, 0, 100, 2147483647), count(*) FROM p GROUP BY 1", "bucket count"),
    ("SELECT date_trunc('epoch', ts), count(*) FROM p GROUP BY 1", "unit"),
    ("SELECT date_trunc('fortnight', tz), count(*) FROM p GROUP BY 1", "unit"),
    ("SELECT extract(hour FROM d), count(*) FROM p GROUP BY 1", "for a date value"),
    ("SELECT date_part('nope', ts), count(*) FROM p GROUP BY 1", "field"),
    ("SELECT diffix.floor_by(n, 0), count(*) FROM p GROUP BY 1", "bin size"),
    ("SELECT diffix.floor_by(f8, 1e-300), count(*) FROM p GROUP BY 1", "bin size"),
    ("SELECT diffix.ceil_by(f8, 1e200), count(*) FROM p GROUP BY 1", "bin size"),
    ("SELECT diffix.round_by(n, -5), count(*) FROM p GROUP BY 1", "bin size"),
    ("SELECT count(*) FROM p WHERE n = 1.5::float8", "converts every row's value"),
    ("SELECT sum(i8::integer) FROM p", "cannot be aggregated"),
    ("SELECT count(n::double precision) FROM p", "cannot be aggregated"),
    ("SELECT count(*) FROM p JOIN q ON p.pid = q.pid AND p.n = q.f8", "joining numeric"),
    ("SELECT count(*) FROM p JOIN q ON p.pid = q.pid AND q.f4 = p.n", "joining float4"),
]


@pytest.mark.parametrize(("sql", "message"), FAILING_CONSTANTS)
def test_the_trusted_level_accepts_what_may_fail(sql: str, message: str) -> None:
    _model(sql, TRUSTED)


@pytest.mark.parametrize(("sql", "message"), FAILING_CONSTANTS)
def test_dp_rules_refuse_what_may_fail(sql: str, message: str) -> None:
    assert message in _refusal(sql, TRUSTED, total=True)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT substring(t, 1, -1), count(*) FROM p GROUP BY 1", "cannot be negative"),
        ("SELECT count(*) FROM p WHERE substring(t, 1, -2) = 'a'", "cannot be negative"),
        ("SELECT substring(b, 1, -1), count(*) FROM p GROUP BY 1", "cannot be negative"),
        ("SELECT diffix.floor_by(f8, 1e-300), count(*) FROM p GROUP BY 1", "bin size"),
        ("SELECT count(*) FROM p WHERE n = 1.5::float8", "converts every row's value"),
        ("SELECT sum(i8::integer) FROM p", "cannot be aggregated"),
        ("SELECT count(*) FROM p JOIN q ON p.pid = q.pid AND p.n = q.f8", "joining numeric"),
        ("SELECT count(*) FROM p WHERE date_trunc('epoch', ts) = '2020-01-01'", "unit"),
    ],
)
def test_untrusted_rules_refuse_what_may_fail(sql: str, message: str) -> None:
    assert message in _refusal(sql, UNTRUSTED)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT substring(t, 1, 0), count(*) FROM p GROUP BY 1",
        "SELECT substring(t, 1, NULL), count(*) FROM p GROUP BY 1",
        "SELECT width_bucket(f8, 100, 0, 10), count(*) FROM p GROUP BY 1",
        "SELECT date_trunc('MONTH', ts), count(*) FROM p GROUP BY 1",
        "SELECT extract(epoch FROM tz)::integer, count(*) FROM p GROUP BY 1",
        "SELECT diffix.floor_by(n, 0.001), count(*) FROM p GROUP BY 1",
        "SELECT count(*) FROM p WHERE n = 1.5 AND f8 = 2 AND i4::smallint = 3 AND n::real = 1",
        "SELECT sum(i2::integer), avg(f4::double precision) FROM p",
        "SELECT count(*) FROM p JOIN q ON p.pid = q.pid AND p.n = q.i8 AND p.d = q.tz",
    ],
)
def test_dp_rules_keep_what_cannot_fail(sql: str) -> None:
    _model(sql, TRUSTED, total=True)


def _emitted(sql: str) -> tuple[str, str]:
    model = _model(sql, TRUSTED)
    generalization = model.groups[0] if model.groups else model.filters[0].subject
    return (
        generalization.expression.sql(dialect="postgres"),
        generalization.emitted.sql(dialect="postgres"),
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT i8::integer, count(*) FROM p GROUP BY 1",
        "SELECT f8::bigint, count(*) FROM p GROUP BY 1",
        "SELECT n::real, count(*) FROM p GROUP BY 1",
        "SELECT d::timestamptz, count(*) FROM p GROUP BY 1",
        "SELECT width_bucket(f8, 0, 1, 3), count(*) FROM p GROUP BY 1",
        "SELECT date_trunc('year', ts), count(*) FROM p GROUP BY 1",
        "SELECT date_trunc('year', d), count(*) FROM p GROUP BY 1",
        "SELECT diffix.floor_by(f8, 0.1), count(*) FROM p GROUP BY 1",
        "SELECT floor(i8::integer), count(*) FROM p GROUP BY 1",
        "SELECT count(*) FROM p WHERE extract(epoch FROM ts)::integer = 0",
    ],
)
def test_what_could_fail_is_emitted_guarded_and_kept_as_written(sql: str) -> None:
    written, emitted = _emitted(sql)
    assert "CASE WHEN" not in written
    assert "CASE WHEN" in emitted


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT i4, count(*) FROM p GROUP BY 1",
        "SELECT i4::bigint, count(*) FROM p GROUP BY 1",
        "SELECT substring(t, 1, 2), count(*) FROM p GROUP BY 1",
        "SELECT width_bucket(i4, 0, 100, 10), count(*) FROM p GROUP BY 1",
        "SELECT diffix.floor_by(i4, 10), count(*) FROM p GROUP BY 1",
        "SELECT floor(f8), count(*) FROM p GROUP BY 1",
        "SELECT ts::text, count(*) FROM p GROUP BY 1",
    ],
)
def test_what_cannot_fail_is_emitted_as_written(sql: str) -> None:
    written, emitted = _emitted(sql)
    assert emitted == written


def test_the_engine_filters_on_the_total_form() -> None:
    model = _model("SELECT count(*) FROM p WHERE i8::integer = 3", TRUSTED)
    assert "CASE WHEN" in rewrite.where_sql(model)


def test_dp_groups_are_emitted_in_their_total_form() -> None:
    query = parse("SELECT f8::integer, count(*) FROM p GROUP BY 1", CATALOG)
    assert query.groups[0].expression.sql(dialect="postgres").startswith("(CASE WHEN")
    assert "CASE WHEN" not in query.shadow.groups[0].expression.sql(dialect="postgres")


def test_dp_refuses_a_failing_constant_before_anything_else() -> None:
    with pytest.raises(ValidationError, match="cannot be negative"):
        parse("SELECT substring(t, 1, -1), count(*) FROM p GROUP BY 1", CATALOG)


@pytest.mark.parametrize(
    ("source", "target", "fails"),
    [
        ("int8", "int4", True), ("int4", "int2", True), ("int2", "int4", False),
        ("int4", "int8", False), ("float8", "int4", True), ("numeric", "int8", True),
        ("float4", "int2", True), ("numeric", "float8", True), ("numeric", "float4", True),
        ("float8", "float4", True), ("float4", "float8", False), ("float8", "numeric", False),
        ("int8", "float4", False), ("date", "timestamptz", True), ("date", "text", False),
    ],
)  # fmt: skip
def test_which_casts_can_fail(source: str, target: str, fails: bool) -> None:
    assert cast_can_fail(source, target) is fails


def test_which_comparisons_can_fail() -> None:
    assert comparison_can_fail("numeric", "float8")
    assert comparison_can_fail("real", "numeric")
    assert not comparison_can_fail("numeric", "int8")
    assert not comparison_can_fail("float8", "int4")
    assert not comparison_can_fail("numeric", None)
