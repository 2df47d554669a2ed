"""No error oracle at the untrusted and DP levels (docs/security.md, "Errors").

An error that happens only when some row reaches an expression is an exact yes/no answer about
that row. Every grouping expression, filter, join and aggregate these levels allow is run, with
hostile constants, over two neighbouring tables: `calm`, and `hostile`, which holds the same rows
plus three persons whose rows carry the values that make expressions fail (integer minimums, NaN
and infinities, floats at the ends of their range, numerics beyond float's, dates at the ends of
their range, empty and very long text, rows whose sums overflow). The outcome must be the same on
both: both refused with the same message, or both answered.
"""

from __future__ import annotations

import psycopg
import pytest

COLUMNS = (
    "pid integer, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, n numeric, "
    "t text, b bytea, d date, ts timestamp, tz timestamptz"
)
CALM_ROWS = """
INSERT INTO {t} SELECT i, i % 7, i * 3, i * 1000, i / 4.0, i * 1.5, i * 2.25, 'city' || (i % 5),
  ('x' || i)::bytea, date '2020-01-01' + i, timestamp '2020-01-01' + i * interval '5 hours',
  timestamptz '2020-01-01 00:00+00' + i * interval '7 hours'
FROM generate_series(1, 40) i;
"""
# Three persons, several rows each: each value makes some unguarded expression fail.
HOSTILE_ROWS = """
INSERT INTO hostile VALUES
  (999, -32768, -2147483648, -9223372036854775808, 3.4e38, 1.7976931348623157e308,
   1e400, '', '\\x'::bytea, '5874897-12-31', '294276-12-31 23:59:59', '294276-12-31 23:59:59+00'),
  (999, 32767, 2147483647, 9223372036854775807, -3.4e38, -1.7976931348623157e308,
   -1e400, repeat('y', 100000), '\\xff'::bytea, '4714-11-24 BC', '4714-11-24 00:00:00 BC',
   '4714-11-24 00:00:00+00 BC'),
  (999, 0, 0, 0, 'NaN', 'NaN', 'NaN', 'é', NULL, 'infinity', 'infinity', '-infinity'),
  (999, 1, 1, 1, 1e-45, 5e-324, 1e-400, ' ', NULL, '-infinity', '-infinity', 'infinity'),
  (999, -1, -1, -1, 'Infinity', 'Infinity', 'Infinity', NULL, NULL, NULL, NULL, NULL),
  (999, 2, 2, 2, '-Infinity', '-Infinity', '-Infinity', 'x', NULL, NULL, NULL, NULL),
  -- sums: finite values whose sum overflows
  (998, -32768, -2147483648, 1, 3e38, 1.7e308, 1.7e308, 'a', NULL, NULL, NULL, NULL),
  (998, -32768, -2147483648, 1, 3e38, 1.7e308, 1.7e308, 'a', NULL, NULL, NULL, NULL),
  (998, 1, 1, 1, -3e38, -1.7e308, -1.7e308, 'a', NULL, NULL, NULL, NULL),
  (998, 1, 1, 1, -3e38, -1.7e308, -1.7e308, 'a', NULL, '294276-12-28', '4000-01-05 00:00:00 BC',
   '4000-01-05 00:00:00+00 BC'),
  -- in a bucket the calm table releases: infinities and NaN among many ordinary values
  (997, 3, 3, 3, 'Infinity', 'Infinity', 'Infinity', 'city1', NULL, NULL, NULL, NULL),
  (997, 3, 3, 3, 'NaN', 'NaN', 'NaN', 'city1', NULL, NULL, NULL, NULL),
  (997, 3, 3, 3, '-Infinity', '-Infinity', '-Infinity', 'city2', NULL, NULL, NULL, NULL);
"""
# Many persons sharing extreme values: buckets of them are released, not suppressed.
CROWD_ROWS = """
INSERT INTO crowd SELECT i + 1000, -32768, -2147483648, -9223372036854775808, 'NaN', 'Infinity',
  'NaN', '', NULL, 'infinity', '-infinity', '4714-11-24 00:00:00+00 BC'
FROM generate_series(1, 30) i;
INSERT INTO crowd SELECT i + 2000, 1, 1, 1, '-Infinity', 'NaN', 'Infinity', 'x', NULL,
  '5874897-12-31', '294276-12-31 23:59:59', '294276-12-31 23:59:59+00'
FROM generate_series(1, 30) i;
INSERT INTO crowd SELECT i + 3000, 1, 1, 1, 3e38, 1.7e308, 1e400, 'y', NULL, '4714-11-24 BC',
  '4714-11-24 00:00:00 BC', 'infinity' FROM generate_series(1, 30) i;
"""
NUMBER_COLUMNS = ("i2", "i4", "i8", "f4", "f8", "n")

# Grouping expressions, over the columns above. Some are refused at some level: then they must be
# refused alike on both tables.
GROUPINGS = [
    *("i2", "i4", "i8", "f4", "f8", "n", "t", "b", "d", "ts", "tz"),
    # substring
    "substring(t, 1, 3)", "substring(t, 1, 0)", "substring(t, 1, -1)", "substring(t, 1)",
    "substring(t, 2, 3)", "substring(t, -5, 2147483647)", "substring(b, 1, 2)",
    "substring(b, 1, -2)", "substr(t, 1, 2)",
    # rounding
    "floor(f8)", "floor(f4)", "floor(n)", "floor(i4)", "round(f8)", "round(n)", "round(n, 2)",
    "round(n, -3)", "round(f8::numeric, 1)", "ceil(f8)", "ceil(n)",
    # width_bucket
    "width_bucket(f8, 0, 100, 10)", "width_bucket(n, 0, 100, 10)", "width_bucket(f4, 0, 1, 3)",
    "width_bucket(i4, -1e300, 1e300, 10)", "width_bucket(f8, 0, 0, 10)",
    "width_bucket(f8, 0, 100, 0)", "width_bucket(f8, 0, 100, 2147483647)",
    "width_bucket(f8, 'NaN', 100, 10)", "width_bucket(f8, 0, 'Infinity', 10)",
    "width_bucket(n, 0, 1e400, 10)", "width_bucket(n, 0, 100::float8, 5)",
    # date_trunc and extract
    "date_trunc('year', ts)", "date_trunc('millennium', tz)", "date_trunc('week', d)",
    "date_trunc('day', tz)", "date_trunc('microseconds', ts)", "date_trunc('epoch', ts)",
    "date_trunc('century', d)", "extract(year FROM d)", "extract(hour FROM d)",
    "extract(epoch FROM ts)", "extract(epoch FROM tz)::integer", "extract(year FROM ts)::integer",
    "extract(year FROM tz)::smallint", "date_part('julian', d)", "date_part('nope', ts)",
    "extract(dow FROM ts)",
    # floor_by & co.
    "diffix.floor_by(f8, 0.1)", "diffix.floor_by(f8, 10)", "diffix.floor_by(f8, 1e-300)",
    "diffix.floor_by(n, 0.001)", "diffix.floor_by(n, 0)", "diffix.floor_by(n, -5)",
    "diffix.floor_by(i8, 1000)", "diffix.floor_by(f4, 0.5)", "diffix.floor_by(n, 10::float8)",
    "diffix.round_by(f8, 10)", "diffix.ceil_by(n, 5)", "diffix.ceil_by(f8, 1e100)",
    # casts
    "i8::integer", "i4::smallint", "i8::smallint", "f8::integer", "f8::bigint", "f4::smallint",
    "n::integer", "n::bigint", "f8::real", "n::double precision", "n::real", "d::timestamptz",
    "d::text", "ts::text", "tz::varchar", "i4::float8", "f8::numeric", "i2::bigint",
    "floor(i8::integer)", "substring(d::text, 1, 4)", "date_trunc('year', d::timestamptz)",
    "floor(n::real)", "width_bucket(n::float8, 0, 10, 2)", "diffix.floor_by(i8::int4, 10)",
]  # fmt: skip

FILTERS = [
    "f8 = 1.5", "n = 1.5::float8", "n = 2.25", "i4::smallint = 6", "f8::integer = 3",
    "diffix.floor_by(f8, 0.1) = 0.5", "substring(t, 1, -1) = 'x'", "substring(t, 1, 2) = 'ci'",
    "date_trunc('year', ts) = '2020-01-01'", "d = '2020-01-02'::timestamptz",
    "n::float8 = 4.5", "width_bucket(f8, 0, 100, 10) = 1", "extract(epoch FROM ts)::int = 0",
    "i2 = 70000", "ts = '2020-01-01'::date", "t = ''",
]  # fmt: skip

JOINS = [
    f"a.pid = b.pid AND {condition}"
    for condition in ("a.n = b.f8", "a.f4 = b.n", "a.n = b.i8", "a.d = b.tz", "a.ts = b.tz")
]

AGGREGATES = [
    *(f"sum({c})" for c in NUMBER_COLUMNS),
    *(f"avg({c})" for c in NUMBER_COLUMNS),
    "count(n)", "count(DISTINCT n)", "count(DISTINCT f8)", "count(t)", "sum(i8::integer)",
    "sum(n::float8)", "avg(f8::real)", "sum(i2::integer)", "count(i8::smallint)",
    "diffix.sum_noise(f8)", "diffix.avg_noise(n)", "diffix.count_noise(f4)",
    "diffix.sum_noise(i4)", "diffix.avg_noise(i2)", "diffix.sum_noise(i8)",
    "diffix.count_histogram(pid)", "diffix.count_histogram(pid, 5)", "diffix.is_suppress_bin(*)",
    "stddev(f8)", "variance(n)", "median(f8)", "percentile_cont(0.9) WITHIN GROUP (ORDER BY n)",
]  # fmt: skip


@pytest.fixture(scope="module")
def world(module_db):
    admin = module_db.admin
    for table in ("calm", "hostile", "crowd"):
        admin.execute(f"CREATE TABLE {table} ({COLUMNS})")
        admin.execute(CALM_ROWS.format(t=table))
    admin.execute(HOSTILE_ROWS)
    admin.execute(CROWD_ROWS)
    for table in ("calm", "hostile", "crowd"):
        admin.execute("CALL diffix.mark_personal(%s, 'pid')", (table,))
        for column in NUMBER_COLUMNS:
            admin.execute("CALL diffix.set_dp_bounds(%s, %s, -100, 100)", (table, column))
    untrusted = module_db.create_role("anonymized_untrusted")
    dp = module_db.create_role("anonymized_dp")
    admin.execute("CALL diffix.set_privacy_budget(%s, %s, %s)", (dp, 1e6, 0.5))
    connections = {"untrusted": module_db.as_role(untrusted), "dp": module_db.as_role(dp)}
    for conn in connections.values():
        conn.autocommit = True
    return module_db, connections


def _outcome(conn: psycopg.Connection, level: str, sql: str, table: str) -> tuple:
    """("answered",) or ("refused", SQLSTATE, message with the table's name neutralized)."""
    text = sql.format(t=table)
    try:
        if level == "dp":
            conn.execute("SELECT diffix.dp_query_json(%s, 0.01, 1e-6)", (text,)).fetchone()
        else:
            conn.execute("SELECT diffix.query_json(%s)", (text,)).fetchone()
    except psycopg.Error as error:
        message = (error.diag.message_primary or str(error)).replace(table, "<t>")
        return ("refused", error.diag.sqlstate, message)
    return ("answered",)


def _raw_fails(db, expression_sql: str) -> bool:
    """Whether PostgreSQL itself fails evaluating the query on `hostile` but not on `calm`."""
    outcomes = []
    for table in ("calm", "hostile"):
        try:
            db.admin.execute(expression_sql.format(t=table)).fetchall()
            outcomes.append(True)
        except psycopg.Error:
            outcomes.append(False)
    return outcomes == [True, False]


def _queries() -> list[tuple[str, str, str]]:
    """(kind, the anonymizing query, the same query's rows as PostgreSQL computes them)."""
    queries = []
    for g in GROUPINGS:
        queries.append(
            ("group", f"SELECT {g}, count(*) FROM {{t}} GROUP BY 1", f"SELECT {g} FROM {{t}}")
        )
    for f in FILTERS:
        queries.append(
            (
                "filter",
                f"SELECT count(*) FROM {{t}} WHERE i4 = 3 AND {f}",
                f"SELECT 1 FROM {{t}} WHERE {f}",
            )
        )
    for condition in JOINS:
        queries.append(
            (
                "join",
                f"SELECT count(*) FROM {{t}} a JOIN {{t}} b ON {condition}",
                f"SELECT 1 FROM {{t}} a JOIN {{t}} b ON {condition}",
            )
        )
    for a in AGGREGATES:
        queries.append(
            ("aggregate", f"SELECT {a} FROM {{t}}", f"SELECT pid, {a} FROM {{t}} GROUP BY pid")
        )
        queries.append(
            (
                "aggregate",
                f"SELECT t, {a} FROM {{t}} GROUP BY t",
                f"SELECT t, {a} FROM {{t}} GROUP BY t",
            )
        )
    return queries


QUERIES = _queries()


@pytest.mark.parametrize("level", ["untrusted", "dp"])
# the analyst's session zone, as far from UTC as PostgreSQL allows each way: local times reach
# past the ends of the timestamp range
@pytest.mark.parametrize("zone", ["UTC+167:59", "UTC-167:59"])
def test_every_allowed_expression_has_the_same_outcome_on_neighbouring_tables(world, level, zone):
    _, connections = world
    conn = connections[level]
    conn.execute(f"SET timezone = '{zone}'")
    differing = []
    answered = 0
    for _kind, sql, _raw in QUERIES:
        calm = _outcome(conn, level, sql, "calm")
        hostile = _outcome(conn, level, sql, "hostile")
        if calm != hostile:
            differing.append((sql, calm, hostile))
        answered += calm == ("answered",)
    assert not differing, "\n".join(f"{s}\n  calm: {c}\n  hostile: {h}" for s, c, h in differing)
    # the levels answer much of the list: the test is not passed by refusing everything
    assert answered >= len(QUERIES) // 3, answered


def test_the_hostile_rows_do_break_the_unguarded_expressions(world):
    """The test above can fail: PostgreSQL itself errors on `hostile` for many of the queries."""
    db, _ = world
    breaking = [raw for _kind, _sql, raw in QUERIES if _raw_fails(db, raw)]
    assert len(breaking) >= 55, breaking


def test_a_refusal_names_the_fault_before_any_row_is_read(world):
    _, connections = world
    conn = connections["untrusted"]
    outcome = _outcome(
        conn, "untrusted", "SELECT substring(t, 1, -1), count(*) FROM {t} GROUP BY 1", "calm"
    )
    assert outcome[0] == "refused" and "cannot be negative" in outcome[2]
    outcome = _outcome(
        connections["dp"],
        "dp",
        "SELECT width_bucket(f8, 0, 0, 10), count(*) FROM {t} GROUP BY 1",
        "calm",
    )
    assert outcome[0] == "refused" and "two different finite numbers" in outcome[2]


@pytest.mark.parametrize("level", ["untrusted", "dp"])
def test_released_buckets_of_extreme_values_change_no_outcome(world, level):
    """Extreme values shared by many persons reach the released answer, and the anonymizer."""
    _, connections = world
    conn = connections[level]
    conn.execute("SET timezone = 'UTC'")
    differing = []
    for _kind, sql, _raw in QUERIES:
        calm = _outcome(conn, level, sql, "calm")
        crowd = _outcome(conn, level, sql, "crowd")
        if calm != crowd:
            differing.append((sql, calm, crowd))
    assert not differing, "\n".join(f"{s}\n  calm: {c}\n  crowd: {h}" for s, c, h in differing)
