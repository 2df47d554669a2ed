"""Database setup for the conformance cases, expressed with pldiffix's own API.

pg_diffix's regression suite builds its database in ``_setup.sql`` and then, file by file, adds
the tables each file needs (all files share one database and run in alphabetical order, each in a
fresh session). This module describes the *final* state of that database, which is what every
case in ``cases.py`` expects:

* the database-wide salt (pg_diffix: ``ALTER DATABASE ... SET pg_diffix.salt``),
* every table with the exact data, column types and physical insertion order of the suite,
* table/column labels (pg_diffix: ``diffix.mark_*`` procedures / ``SECURITY LABEL``),
* one role per access level (see ``ROLE_FOR_LEVEL``) and the privileges the suite granted.

``setup_statements()`` returns the SQL to run, in order, as a superuser on an empty database in
which pldiffix is installed. Per-session settings are *not* part of the setup: each case carries
the settings in force when pg_diffix ran it (``Case.settings`` / ``Case.pg_settings``).

Differences from the pg_diffix suite, all chosen so that the recorded answers stay valid:

* ``test_datetime.tz`` is inserted with an explicit UTC offset (-07). pg_regress inserted the bare
  literal ``'2012-05-14'`` in its session time zone (PST8PDT, daylight time in May), which is the
  same instant: 2012-05-14 07:00 UTC.
* ``test_stress`` is filled from ``random()`` in the suite; here the values are derived from the
  row number so the table is reproducible. The only recorded answer on it is ``COUNT(*)`` with no
  noise, which depends on the number of distinct AIDs (50000) only.
* pg_diffix ran every anonymized case as the single role ``diffix_test`` and chose the level with
  its ``pg_diffix.session_access_level`` setting (the session user was a superuser, which is why
  the suite could switch back to ``direct``). pldiffix takes the level from the role's label, so
  there is a role per level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

DIRECT = "direct"
TRUSTED = "anonymized_trusted"
UNTRUSTED = "anonymized_untrusted"
LEVELS = (DIRECT, TRUSTED, UNTRUSTED)

SALT = "diffix"

# Database-wide configuration: CALL diffix.configure(name, value).
DATABASE_SETTINGS: tuple[tuple[str, str], ...] = (("salt", SALT),)

# Role that runs the cases of each access level. `diffix_test` keeps pg_diffix's name (and ends up
# labelled anonymized_trusted, as after pg_diffix's admin.sql).
ROLE_FOR_LEVEL: dict[str, str] = {
    TRUSTED: "diffix_test",
    UNTRUSTED: "diffix_test_untrusted",
    DIRECT: "diffix_test_direct",
}

# PostgreSQL session settings pg_regress gives every test session (environment PGTZ, PGDATESTYLE,
# PGOPTIONS). pg_diffix's era of pg_regress used the zone name PST8PDT; America/Los_Angeles has the
# same rules for the dates used here and exists in every tz database. Case.pg_settings lists only
# the settings a test file changed on top of these.
SESSION_BASELINE: tuple[tuple[str, str], ...] = (
    ("DateStyle", "Postgres, MDY"),
    ("TimeZone", "America/Los_Angeles"),
    ("IntervalStyle", "postgres_verbose"),
)


@dataclass(frozen=True)
class Table:
    """A table created with explicit rows. ``columns`` is the column list of CREATE TABLE."""

    name: str
    columns: str
    rows: tuple[tuple[Any, ...], ...] = ()


def _lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _create(table: Table) -> Iterator[str]:
    yield f"CREATE TABLE {table.name} ({table.columns})"
    if table.rows:
        values = ", ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in table.rows)
        yield f"INSERT INTO {table.name} VALUES {values}"


# --- tables of pg_diffix's _setup.sql ----------------------------------------------------------

TEST_CUSTOMERS = Table(
    "test_customers",
    "id INTEGER PRIMARY KEY, city TEXT, discount REAL, planet TEXT",
    (
        (0, None, None, None),
        (1, "Berlin", 1.0, "Earth"),
        (2, "Berlin", 1.0, "Earth"),
        (3, "Rome", 0.5, "Earth"),
        (4, "London", 2.0, "Earth"),
        (5, "Berlin", 2.0, "Earth"),
        (6, "Rome", 1.0, "Earth"),
        (7, "Rome", 0.5, "Earth"),
        (8, "Berlin", 0.0, "Earth"),
        (9, "Rome", 1.0, "Earth"),
        (10, "Berlin", 2.0, "Earth"),
        (11, "Rome", 1.5, "Earth"),
        (12, "Rome", 0.5, "Earth"),
        (13, "Rome", 0.5, "Earth"),
        (14, "Berlin", 1.5, "Earth"),
        (15, "Berlin", 1.0, "Earth"),
        (16, "Berlin", 1.0, "Earth"),
        (17, "Madrid", 2.0, "Earth"),
    ),
)

TEST_PRODUCTS = Table(
    "test_products",
    "id INTEGER PRIMARY KEY, name TEXT, price REAL",
    (
        (0, None, None),
        (1, "Food", 1.5),
        (2, "Car", 100.0),
        (3, "House", 400.0),
        (4, "Movie", 10.0),
    ),
)

# (cid, pid) in insertion order; one row is (NULL, NULL).
TEST_PURCHASES = Table(
    "test_purchases",
    "cid INTEGER, pid INTEGER",
    (
        (0, 0), (0, 1), (0, 3), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1),
        (8, 2), (9, 1), (10, 2), (11, 1), (12, 1), (13, 2), (1, 2), (2, 2), (3, 2), (4, 2),
        (5, 2), (6, 2), (7, 1), (8, 1), (9, 2), (1, 2), (1, 2), (2, 1), (3, 0), (None, None),
        (4, 3), (5, 3), (6, 4), (7, -1), (7, 4), (8, -2), (9, -3), (10, -4),
    ),
)  # fmt: skip

TEST_PATIENTS = Table(
    "test_patients",
    "id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER",
    (
        (0, None, "Berlin", 37),
        (1, "John", "Berlin", 37),
        (2, "Alice", "Berlin", 37),
        (3, "Bob", "Berlin", 37),
        (4, "Emma", "Berlin", 64),
        (5, "John", "Berlin", 57),
        (6, "Bob", "Berlin", 19),
        (7, "Alice", "Rome", 37),
        (8, "Dan", "Rome", 37),
        (9, "Anna", "Rome", 64),
        (10, "Mike", "London", 64),
        (11, "Mike", "London", 57),
        (12, "Mike", "London", 16),
        (13, "Mike", "London", 17),
    ),
)

EMPTY_TEST_CUSTOMERS = Table(
    "empty_test_customers", "id INTEGER PRIMARY KEY, name TEXT, city TEXT, discount REAL"
)

# --- count_histogram.sql -----------------------------------------------------------------------

# (user id, number of rows the user contributes), in insertion order.
COUNT_HISTOGRAM_CONTRIBUTIONS = ((1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2), (7, 2), (8, 6),
                                 (9, 7), (10, 13))  # fmt: skip

COUNT_HISTOGRAM_TEST = Table(
    "count_histogram_test",
    "id INTEGER, value TEXT",
    tuple((uid, "value") for uid, n in COUNT_HISTOGRAM_CONTRIBUTIONS for _ in range(n)),
)

# --- datetime.sql ------------------------------------------------------------------------------

TEST_DATETIME = Table(
    "test_datetime",
    "id INTEGER, d DATE, t TIME, ts TIMESTAMP WITHOUT TIME ZONE, tz TIMESTAMP WITH TIME ZONE, "
    "i INTERVAL",
    tuple(
        (uid, "2012-05-14", "14:59", "2012-05-14", "2012-05-14 00:00:00-07", "1 years")
        for uid in range(1, 8)
    ),
)

# --- led.sql -----------------------------------------------------------------------------------

_DEPT_ROWS = (
    *((i, "math", "m", "prof") for i in range(1, 5)),
    *((i, "math", "f", "prof") for i in range(5, 9)),
    *((i, "history", "m", "prof") for i in range(9, 13)),
    *((i, "history", "f", "prof") for i in range(13, 17)),
)
_DEPT_COLUMNS = "id INTEGER PRIMARY KEY, dept TEXT, gender TEXT, title TEXT"

LED_BASE = Table(
    "led_base", _DEPT_COLUMNS, (*_DEPT_ROWS, *((i, "cs", "m", "prof") for i in range(17, 21)))
)

# (name, copied from, extra rows). Copies are CREATE TABLE ... AS TABLE (no primary key, same
# column types, same row order), followed by the extra rows.
LED_COPIES: tuple[tuple[str, str, tuple[tuple[Any, ...], ...]], ...] = (
    ("led_with_victim", "led_base", ((21, "cs", "f", "prof"),)),
    ("led_with_two_victims", "led_with_victim", ((22, "cs", "f", "prof"),)),
    ("led_with_three_cs_women", "led_with_two_victims", ((23, "cs", "f", "prof"),)),
    ("led_with_different_titles", "led_with_victim", ((22, "cs", "f", "asst"),)),
    (
        "led_with_star_bucket",
        "led_with_victim",
        ((22, "biol", "f", "asst"), (23, "chem", "m", "asst"), (24, "biol", "f", "prof")),
    ),
)

# --- star_bucket.sql ---------------------------------------------------------------------------

STAR_BUCKET_BASE = Table("star_bucket_base", _DEPT_COLUMNS, _DEPT_ROWS)

STAR_BUCKET_COPIES: tuple[tuple[str, str, tuple[tuple[Any, ...], ...]], ...] = (
    (
        "star_bucket",
        "star_bucket_base",
        ((17, "phys", "m", "prof"), (18, "chem", "f", "asst"), (20, "cs", "f", "prof")),
    ),
    ("star_bucket_suppressed_1", "star_bucket_base",
     ((17, "phys", "m", "prof"), (18, "phys", "m", "prof"))),
    ("star_bucket_suppressed_2", "star_bucket_base",
     ((17, "chem", "f", "prof"), (18, "phys", "m", "asst"))),
)  # fmt: skip

# Created empty (AS TABLE ... WITH NO DATA), star_bucket_only then filled.
STAR_BUCKET_ONLY_ROWS = (
    (1, "math", "m", "asst"),
    (2, "math", "f", "prof"),
    (3, "phys", "m", "asst"),
    (4, "cs", "f", "prof"),
    (5, "history", "f", "asst"),
)

# --- validation.sql ----------------------------------------------------------------------------

TEST_VALIDATION = Table(
    "test_validation",
    "id INTEGER PRIMARY KEY, name TEXT, city TEXT, discount REAL, birthday DATE, lunchtime TIME, "
    "last_seen TIMESTAMP, last_seen_tz TIMESTAMP WITH TIME ZONE",
)

# Personal tables and their AID columns, as labelled by the suite (names as the suite wrote them).
PERSONAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("public.test_customers", ("id",)),
    ("public.test_purchases", ("cid",)),
    ("public.test_patients", ("id", "name")),
    ("public.empty_test_customers", ("id",)),
    ("count_histogram_test", ("id",)),
    ("test_datetime", ("id",)),
    ("led_base", ("id",)),
    ("led_with_victim", ("id",)),
    ("led_with_two_victims", ("id",)),
    ("led_with_three_cs_women", ("id",)),
    ("led_with_different_titles", ("id",)),
    ("led_with_star_bucket", ("id",)),
    ("public.test_customers_negative", ("id",)),
    ("public.test_customers_mixed", ("id",)),
    ("star_bucket_base", ("id",)),
    ("star_bucket", ("id",)),
    ("star_bucket_suppressed_1", ("id",)),
    ("star_bucket_suppressed_2", ("id",)),
    ("star_bucket_empty", ("id",)),
    ("star_bucket_only", ("id",)),
    ("test_stress", ("id",)),
    ("test_validation", ("id",)),
    ("superclass", ("x",)),
    ("subclass", ("y",)),
)
PUBLIC: tuple[str, ...] = ("public.test_products",)
# Only birthday stays not_filterable: the suite marks last_seen and then clears it again.
NOT_FILTERABLE: tuple[tuple[str, str], ...] = (("test_validation", "birthday"),)


def table_names() -> tuple[str, ...]:
    """Unqualified names of every table the setup creates."""
    return tuple(name.removeprefix("public.") for name, _ in PERSONAL) + tuple(
        name.removeprefix("public.") for name in PUBLIC
    )


def _call(proc: str, *args: str) -> str:
    return f"CALL diffix.{proc}(" + ", ".join(_lit(a) for a in args) + ")"


def _copy(name: str, source: str, rows: Sequence[tuple[Any, ...]]) -> Iterator[str]:
    yield f"CREATE TABLE {name} AS TABLE {source}"
    if rows:
        values = ", ".join("(" + ", ".join(_lit(v) for v in row) + ")" for row in rows)
        yield f"INSERT INTO {name} VALUES {values}"


def setup_statements() -> list[str]:
    """SQL statements (no trailing semicolons) building the conformance database, in order."""
    out: list[str] = [_call("configure", name, value) for name, value in DATABASE_SETTINGS]

    for table in (TEST_CUSTOMERS, TEST_PRODUCTS, TEST_PURCHASES, TEST_PATIENTS):
        out.extend(_create(table))
    out.extend(_create(EMPTY_TEST_CUSTOMERS))
    out.extend(_create(COUNT_HISTOGRAM_TEST))
    out.extend(_create(TEST_DATETIME))

    out.extend(_create(LED_BASE))
    for name, source, rows in LED_COPIES:
        out.extend(_copy(name, source, rows))

    # noiseless.sql derives two tables from test_customers. The arithmetic decides the column type
    # (negation keeps real; real - numeric resolves to double precision).
    out.append(
        "CREATE TABLE test_customers_negative AS "
        "SELECT id, city, -discount AS discount, planet FROM test_customers"
    )
    out.append(
        "CREATE TABLE test_customers_mixed AS "
        "SELECT id, city, discount - 1.0 AS discount, planet FROM test_customers"
    )

    out.extend(_create(STAR_BUCKET_BASE))
    for name, source, rows in STAR_BUCKET_COPIES:
        out.extend(_copy(name, source, rows))
    out.append("CREATE TABLE star_bucket_empty AS TABLE star_bucket_base WITH NO DATA")
    out.extend(_copy("star_bucket_only", "star_bucket_empty", STAR_BUCKET_ONLY_ROWS))

    out.append(
        "CREATE TABLE test_stress AS SELECT n AS id, left(md5(n::text), 4) AS t, "
        "((n * 7919) % 10001 / 1000.0)::real AS r, (n * 613) % 1001 AS i "
        "FROM generate_series(1, 50000) AS series(n)"
    )

    out.extend(_create(TEST_VALIDATION))
    out.append("CREATE TABLE superclass (x INTEGER)")
    out.append("CREATE TABLE subclass (x INTEGER, y INTEGER)")
    out.append("INSERT INTO subclass VALUES (1, 2)")

    # Labels. Inheritance is set up only after both tables are labelled: pg_diffix refuses to
    # label tables that take part in inheritance (case validation:29/30).
    for name, aids in PERSONAL:
        out.append(_call("mark_personal", name, *aids))
    for name in PUBLIC:
        out.append(_call("mark_public", name))
    out.append(_call("mark_not_filterable", "test_validation", "birthday"))
    out.append(_call("mark_not_filterable", "test_validation", "last_seen"))
    out.append(_call("mark_filterable", "test_validation", "last_seen"))
    out.append("ALTER TABLE subclass INHERIT superclass")

    # Roles. pg_diffix granted SELECT on every table to its test role and ALL on test_datetime
    # (datetime.sql updates it at the direct level).
    for level, role in ROLE_FOR_LEVEL.items():
        out.append(
            "DO $$ BEGIN CREATE ROLE " + role + " WITH LOGIN NOSUPERUSER; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        out.append(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        out.append(f"GRANT ALL PRIVILEGES ON TABLE test_datetime TO {role}")
        out.append(_call("mark_role", role, level))
    return out


def setup_sql() -> str:
    """``setup_statements()`` as one script."""
    return "".join(stmt + ";\n" for stmt in setup_statements())
