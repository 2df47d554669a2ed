# ruff: noqa: E501 - data file: SQL and pg_diffix error texts are kept on their original lines.
"""pg_diffix's regression suite as pldiffix conformance cases. See README.md in this folder.

Each case is one statement of pg_diffix's test/sql/<source>, with the session state it ran in
and the answer recorded in test/expected/<source stem>.out. Generated once from the suite by a
throwaway parser, then reviewed by hand; edit it as data.
"""

# Statements of the suite that are deliberately not cases:
#
# * setup: CREATE/INSERT/GRANT/labelling/LOAD statements and the salt are in schema.py; SET of
#   pg_diffix settings, DateStyle, TimeZone and the access level are folded into every later
#   case of the same file (Case.settings, Case.pg_settings, Case.level); PREPARE is attached to
#   the EXECUTE cases that use it (Case.prepare).
# * left out (also listed in SKIPPED, with the reason):
#   misc:41          EXPLAIN SELECT age, count(*)
#                    -> EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan
#                       node places HAVING/WHERE filters); pldiffix plans differently
#   misc:46          EXPLAIN SELECT *
#                    -> EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan
#                       node places HAVING/WHERE filters); pldiffix plans differently
#   misc:54          EXPLAIN SELECT *
#                    -> EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan
#                       node places HAVING/WHERE filters); pldiffix plans differently
#   misc:67          DO $$
#                    -> PL/pgSQL DO block running an anonymizing PERFORM: no result to compare,
#                       and query_json is pldiffix's only entry point
#   misc:85          EXPLAIN SELECT city FROM test_customers LIMIT 4
#                    -> EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)
#   misc:86          EXPLAIN (COSTS false) SELECT city FROM test_customers LIM...
#                    -> EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)
#   misc:93          EXPLAIN SELECT name FROM test_products LIMIT 4
#                    -> EXPLAIN of a public-table query: PostgreSQL's own plan and costs,
#                       nothing of pg_diffix
#   misc:94          EXPLAIN (ANALYZE, SUMMARY false, TIMING false, COSTS true...
#                    -> EXPLAIN ANALYZE of a public-table query: PostgreSQL's own plan and
#                       costs, nothing of pg_diffix
#   misc:97          EXPLAIN SELECT city FROM test_customers ORDER BY 1
#                    -> EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)
#   misc:105         EXPLAIN VERBOSE SELECT COUNT(*) FROM test_customers c JOI...
#                    -> EXPLAIN VERBOSE: expected output names pg_diffix's internal aggregate
#                       (anon_count_star)
#   stress:23        DO $$
#                    -> PL/pgSQL DO loop over random data: no result to compare (a
#                       crash/performance check)
#   validation:158   \dt empty_test_customers
#                    -> psql meta-command (client-side catalog listing)
#   validation:159   \d empty_test_customers
#                    -> psql meta-command (client-side catalog listing)
#   validation:160   \dt+ empty_test_customers
#                    -> psql meta-command (client-side catalog listing)
#   validation:161   \d+ empty_test_customers
#                    -> psql meta-command (client-side catalog listing)
#   validation:168   SELECT * FROM diffix.show_settings() LIMIT 2
#                    -> show_settings() output is pg_diffix's own setting names and descriptions

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["direct", "anonymized_trusted", "anonymized_untrusted"]
Kind = Literal["query", "statement"]

DIRECT: Level = "direct"
TRUSTED: Level = "anonymized_trusted"
UNTRUSTED: Level = "anonymized_untrusted"


@dataclass(frozen=True)
class Case:
    """One statement of the pg_diffix suite and its expected outcome.

    id: "<source stem>:<line>", the line in pg_diffix's test/sql/<source> where the statement
        starts (pg_diffix commit 94b4edf).
    source: the pg_diffix test file, e.g. "noisy.sql".
    level: access level the statement ran at.
    superuser: pg_diffix ran it as a superuser (before the file's SET ROLE); otherwise as the
        ordinary test role.
    kind: "query" - send ``sql`` through ``diffix.query_json``; "statement" - execute ``sql`` as is
        on the connection (administration and settings calls, already in pldiffix's API).
    sql: the statement as pg_diffix ran it, without the trailing semicolon (for statements that
        use a pg_diffix-only form, the pldiffix translation; the original is in original_sql).
    settings: pldiffix session settings in force, in the order to apply them with
        ``SELECT diffix.set(name, value)`` (pg_diffix: SET pg_diffix.<name>).
    pg_settings: PostgreSQL settings the test file changed, on top of schema.SESSION_BASELINE.
    prepare: PREPARE statement to run first in the same session (``sql`` is then an EXECUTE);
        sql_inlined is the same query with the parameters written as typed literals.
    columns, rows: the expected answer (JSON-typed values: int, float, str, bool, None, lists for
        arrays; timestamps as the ISO strings jsonb produces). None for a statement with no
        result.
    ordered: the whole row order is significant.
    suppress_bin_rows: the first N rows are the suppress bin and must come first (the order of the
        remaining rows is not significant unless ``ordered``).
    error: for a rejected statement, pg_diffix's (or PostgreSQL's) error message, for reference
        only: pldiffix's wording differs.
    tags: "prepared", "translated", "postgres-error" (refused by PostgreSQL itself, not by the
        anonymization checks), "mutates-state" (changes labels or data; run the file's cases in
        order), "show-labels", "catalog".
    """

    id: str
    source: str
    level: Level
    sql: str
    kind: Kind = "query"
    superuser: bool = False
    settings: tuple[tuple[str, str], ...] = ()
    pg_settings: tuple[tuple[str, str], ...] = ()
    prepare: str | None = None
    sql_inlined: str | None = None
    original_sql: str | None = None
    columns: tuple[str, ...] | None = None
    rows: tuple[tuple[Any, ...], ...] | None = None
    ordered: bool = False
    suppress_bin_rows: int = 0
    error: str | None = None
    tags: frozenset[str] = frozenset()
    note: str = ""

    @property
    def rejected(self) -> bool:
        return self.error is not None

    @property
    def has_answer(self) -> bool:
        return self.columns is not None


@dataclass(frozen=True)
class Skipped:
    """A statement of the suite that is deliberately not a case."""

    id: str
    source: str
    sql: str
    reason: str


# Session settings in force (in application order), by test file.
_S_ADMIN = (("strict", "false"),)
_S_ADMIN_2 = (("strict", "false"), ("top_count_max", "3"))
_S_ADMIN_3 = (("strict", "false"), ("top_count_max", "4"))
_S_ADMIN_4 = (("top_count_max", "4"), ("strict", "true"))
_S_ADMIN_5 = (("strict", "true"), ("top_count_max", "3"))
_S_ADMIN_6 = (("strict", "true"), ("top_count_max", "4"))
_S_ADMIN_7 = (("strict", "true"), ("top_count_max", "4"), ("text_label_for_suppress_bin", "*"))
_S_COUNT_HISTOGRAM = (
    ("strict", "false"),
    ("noise_layer_sd", "0"),
    ("low_count_min_threshold", "2"),
    ("low_count_layer_sd", "0"),
)
_S_LED = (
    ("strict", "false"),
    ("noise_layer_sd", "0"),
    ("low_count_min_threshold", "3"),
    ("low_count_layer_sd", "0"),
    ("outlier_count_min", "1"),
    ("outlier_count_max", "1"),
    ("top_count_min", "3"),
    ("top_count_max", "3"),
)
_S_MISC = (("strict", "false"), ("low_count_min_threshold", "2"), ("low_count_layer_sd", "0"))
_S_NOISELESS = (
    ("strict", "false"),
    ("noise_layer_sd", "0"),
    ("low_count_layer_sd", "0"),
    ("outlier_count_min", "1"),
    ("outlier_count_max", "1"),
    ("top_count_min", "3"),
    ("top_count_max", "3"),
)
_S_NOISY = (("noise_layer_sd", "7"), ("low_count_layer_sd", "2"), ("low_count_min_threshold", "2"))
_S_STRESS = (("strict", "false"), ("noise_layer_sd", "0"), ("low_count_layer_sd", "0"))

CASES: tuple[Case, ...] = (
    # --- admin.sql -----------------------------------------------------------------------
    Case(
        id="admin:4",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.mark_role('diffix_test', 'direct')",
        tags=frozenset({"mutates-state"}),
        note=(
            "The admin:4..11 statements relabel objects and must run in this order; admin:9 and"
            " admin:10 restore the labels of the setup."
        ),
    ),
    Case(
        id="admin:5",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="SELECT * FROM diffix.show_labels() WHERE objname IN ('diffix_test', 'public.test_products')",
        columns=("objtype", "objname", "label"),
        rows=(
            ("table", "public.test_products", "public"),
            ("role", "diffix_test", "direct"),
        ),
        tags=frozenset({"show-labels"}),
        note="show_labels() filtered to two objects.",
    ),
    Case(
        id="admin:6",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.unmark_table('public.test_products')",
        tags=frozenset({"mutates-state"}),
    ),
    Case(
        id="admin:7",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.unmark_role('diffix_test')",
        tags=frozenset({"mutates-state"}),
    ),
    Case(
        id="admin:8",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="SELECT * FROM diffix.show_labels() WHERE objname IN ('diffix_test', 'public.test_products')",
        columns=("objtype", "objname", "label"),
        rows=(),
        tags=frozenset({"show-labels"}),
    ),
    Case(
        id="admin:9",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.mark_role('diffix_test', 'anonymized_trusted')",
        tags=frozenset({"mutates-state"}),
    ),
    Case(
        id="admin:10",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.mark_public('public.test_products')",
        tags=frozenset({"mutates-state"}),
    ),
    Case(
        id="admin:11",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="SELECT * FROM diffix.show_labels() WHERE objname IN ('diffix_test', 'public.test_products')",
        columns=("objtype", "objname", "label"),
        rows=(
            ("table", "public.test_products", "public"),
            ("role", "diffix_test", "anonymized_trusted"),
        ),
        tags=frozenset({"show-labels"}),
    ),
    Case(
        id="admin:14",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="SELECT diffix.set('strict', 'false')",
        original_sql="SET pg_diffix.strict = false",
        tags=frozenset({"translated"}),
        note=(
            "Settings cases admin:14..21 form one session: each lists the settings the earlier "
            "successful statements left in force."
        ),
    ),
    Case(
        id="admin:15",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN,
        sql="SELECT diffix.set('top_count_max', '0')",
        original_sql="SET pg_diffix.top_count_max = 0",
        error='0 is outside the valid range for parameter "pg_diffix.top_count_max" (1 .. 1000)',
        tags=frozenset({"postgres-error", "translated"}),
        note="Out of the setting's range (1 .. 1000) regardless of strict mode.",
    ),
    Case(
        id="admin:16",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN,
        sql="SELECT diffix.set('top_count_max', '3')",
        original_sql="SET pg_diffix.top_count_max = 3",
        tags=frozenset({"translated"}),
    ),
    Case(
        id="admin:17",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_2,
        sql="SELECT diffix.set('strict', 'true')",
        original_sql="SET pg_diffix.strict = true",
        error='invalid value for parameter "pg_diffix.strict": 1',
        tags=frozenset({"postgres-error", "translated"}),
        note=(
            "pg_diffix printed NOTICE 'Current values of anonymization parameters do not "
            "conform to strict mode.' and refused: top_count_max - top_count_min is 0."
        ),
    ),
    Case(
        id="admin:18",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_2,
        sql="SELECT diffix.set('top_count_max', '4')",
        original_sql="SET pg_diffix.top_count_max = 4",
        tags=frozenset({"translated"}),
    ),
    Case(
        id="admin:19",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_3,
        sql="SELECT diffix.set('strict', 'true')",
        original_sql="SET pg_diffix.strict = true",
        tags=frozenset({"translated"}),
    ),
    Case(
        id="admin:20",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_4,
        sql="SELECT diffix.set('top_count_max', '3')",
        original_sql="SET pg_diffix.top_count_max = 3",
        tags=frozenset({"translated"}),
        note=(
            "Accepted with only a NOTICE ('Bounds must differ by at least 1'): in strict mode "
            "pg_diffix warns about the interval but still takes top_count_max = top_count_min ="
            " 3."
        ),
    ),
    Case(
        id="admin:21",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_5,
        sql="SELECT diffix.set('top_count_max', '4')",
        original_sql="SET pg_diffix.top_count_max = 4",
        tags=frozenset({"translated"}),
    ),
    Case(
        id="admin:24",
        source="admin.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        settings=_S_ADMIN_6,
        sql="CALL diffix.mark_personal('public.test_customers', 'id', 'discount')",
        original_sql="SECURITY LABEL FOR pg_diffix ON COLUMN test_customers.discount IS 'aid'",
        error="[PG_DIFFIX] AID label can not be set on target column because the type is unsupported",
        tags=frozenset({"translated"}),
        note=(
            "Translated as labelling discount (REAL) as an extra AID column: it must be refused"
            " (unsupported AID column type) and leave the labels unchanged."
        ),
    ),
    Case(
        id="admin:31",
        source="admin.sql",
        level=TRUSTED,
        kind="statement",
        settings=_S_ADMIN_6,
        sql="SELECT diffix.set('text_label_for_suppress_bin', '*')",
        original_sql="SET pg_diffix.text_label_for_suppress_bin = '*'",
        tags=frozenset({"translated"}),
        note="text_label_for_suppress_bin is one of the settings every user may change.",
    ),
    Case(
        id="admin:34",
        source="admin.sql",
        level=TRUSTED,
        kind="statement",
        settings=_S_ADMIN_7,
        sql="SELECT diffix.set('salt', '')",
        original_sql="SET pg_diffix.salt = ''",
        error='permission denied to set parameter "pg_diffix.salt"',
        tags=frozenset({"postgres-error", "translated"}),
        note=(
            "pg_diffix's salt is a session-settable GUC that only superusers may change; an "
            "anonymized user must not change it through diffix.set nor diffix.configure."
        ),
    ),
    Case(
        id="admin:35",
        source="admin.sql",
        level=TRUSTED,
        kind="statement",
        settings=_S_ADMIN_7,
        sql="CALL diffix.mark_public('public.test_customers')",
        error="[PG_DIFFIX] Statement requires direct access level.",
        note="Labelling requires the direct level.",
    ),
    Case(
        id="admin:36",
        source="admin.sql",
        level=TRUSTED,
        kind="statement",
        settings=_S_ADMIN_7,
        sql="SELECT diffix.set('noise_layer_sd', '0.0')",
        original_sql="SET pg_diffix.noise_layer_sd = 0.0",
        error='permission denied to set parameter "pg_diffix.noise_layer_sd"',
        tags=frozenset({"postgres-error", "translated"}),
    ),
    # --- count_histogram.sql -------------------------------------------------------------
    Case(
        id="count_histogram:36",
        source="count_histogram.sql",
        level=DIRECT,
        superuser=True,
        settings=_S_COUNT_HISTOGRAM,
        sql="SELECT diffix.count_histogram(id) FROM count_histogram_test",
        columns=("count_histogram",),
        rows=(([[1, 4], [2, 3], [6, 1], [7, 1], [13, 1]],),),
        note="Direct level: exact histogram.",
    ),
    Case(
        id="count_histogram:37",
        source="count_histogram.sql",
        level=DIRECT,
        superuser=True,
        settings=_S_COUNT_HISTOGRAM,
        sql="SELECT diffix.count_histogram(id, 5) FROM count_histogram_test",
        columns=("count_histogram",),
        rows=(([[0, 7], [5, 2], [10, 1]],),),
    ),
    Case(
        id="count_histogram:46",
        source="count_histogram.sql",
        level=TRUSTED,
        settings=_S_COUNT_HISTOGRAM,
        sql="SELECT diffix.count_histogram(id) FROM count_histogram_test",
        columns=("count_histogram",),
        rows=(([[None, 3], [1, 4], [2, 3]],),),
        note="[None, n] is the histogram's suppress bin, first in the array.",
    ),
    Case(
        id="count_histogram:47",
        source="count_histogram.sql",
        level=TRUSTED,
        settings=_S_COUNT_HISTOGRAM,
        sql="SELECT diffix.count_histogram(id, 5) FROM count_histogram_test",
        columns=("count_histogram",),
        rows=(([[0, 7], [5, 2]],),),
    ),
    Case(
        id="count_histogram:53",
        source="count_histogram.sql",
        level=TRUSTED,
        settings=_S_COUNT_HISTOGRAM,
        sql=(
            "SELECT diffix.unnest_histogram(x.histogram)\n"
            "FROM (\n"
            "  SELECT diffix.count_histogram(id) AS histogram\n"
            "  FROM count_histogram_test\n"
            ") x"
        ),
        columns=("unnest_histogram",),
        rows=(
            ([None, 3],),
            ([1, 4],),
            ([2, 3],),
        ),
        ordered=True,
        note="Ordered: rows come from unnesting one array, so their order is the array's.",
    ),
    # --- datetime.sql --------------------------------------------------------------------
    Case(
        id="datetime:31",
        source="datetime.sql",
        level=TRUSTED,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_trusted",),),
    ),
    Case(
        id="datetime:39",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "SQL"),),
        sql="SELECT ts, count(*) FROM test_datetime GROUP BY 1",
        columns=("ts", "count"),
        rows=(("2012-05-14T00:00:00", 9),),
        note=(
            "DateStyle changes how psql printed ts (05/14/2012 00:00:00); the JSON form is ISO "
            "either way. The point is that the count (its noise) is the same under both "
            "DateStyles: compare with datetime:41."
        ),
    ),
    Case(
        id="datetime:41",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"),),
        sql="SELECT ts, count(*) FROM test_datetime GROUP BY 1",
        columns=("ts", "count"),
        rows=(("2012-05-14T00:00:00", 9),),
    ),
    Case(
        id="datetime:44",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "EST")),
        sql="SELECT tz, count(*) FROM test_datetime GROUP BY 1",
        columns=("tz", "count"),
        rows=(("2012-05-14T02:00:00-05:00", 11),),
        note=(
            "timestamptz shown in the session TimeZone (EST, -05:00); the noise is seeded from "
            "the UTC value so datetime:46, :51, :55 give the same count."
        ),
    ),
    Case(
        id="datetime:46",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT tz, count(*) FROM test_datetime GROUP BY 1",
        columns=("tz", "count"),
        rows=(("2012-05-14T07:00:00+00:00", 11),),
    ),
    Case(
        id="datetime:49",
        source="datetime.sql",
        level=DIRECT,
        kind="statement",
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="UPDATE test_datetime SET tz = '2012-05-14T07:00+00:00' WHERE true",
        tags=frozenset({"mutates-state"}),
        note="Value-preserving: 2012-05-14T07:00+00:00 is the instant already stored.",
    ),
    Case(
        id="datetime:51",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT tz, count(*) FROM test_datetime GROUP BY 1",
        columns=("tz", "count"),
        rows=(("2012-05-14T07:00:00+00:00", 11),),
    ),
    Case(
        id="datetime:53",
        source="datetime.sql",
        level=DIRECT,
        kind="statement",
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="UPDATE test_datetime SET tz = '2012-05-14T08:00+01:00' WHERE true",
        tags=frozenset({"mutates-state"}),
        note="Value-preserving: 2012-05-14T08:00+01:00 is the instant already stored.",
    ),
    Case(
        id="datetime:55",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT tz, count(*) FROM test_datetime GROUP BY 1",
        columns=("tz", "count"),
        rows=(("2012-05-14T07:00:00+00:00", 11),),
    ),
    Case(
        id="datetime:58",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT count(*) FROM test_datetime WHERE date_trunc('year', ts) = '2012-01-01'::timestamp",
        columns=("count",),
        rows=((11,),),
        note="Filters add noise layers: compare datetime:59/60 (different filter, 9).",
    ),
    Case(
        id="datetime:59",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT count(*) FROM test_datetime WHERE extract(century from ts) = 21",
        columns=("count",),
        rows=((9,),),
    ),
    Case(
        id="datetime:60",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT count(*) FROM test_datetime WHERE date_part('century', ts) = 21",
        columns=("count",),
        rows=((9,),),
    ),
    Case(
        id="datetime:63",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT cast(extract(minute from ts) as integer) as extract FROM test_datetime GROUP BY 1",
        columns=("extract",),
        rows=((0,),),
    ),
    Case(
        id="datetime:65",
        source="datetime.sql",
        level=TRUSTED,
        pg_settings=(("DateStyle", "ISO"), ("TimeZone", "UTC")),
        sql="SELECT cast(extract(second from ts) as integer) as extract FROM test_datetime GROUP BY 1",
        columns=("extract",),
        rows=((0,),),
    ),
    # --- led.sql -------------------------------------------------------------------------
    Case(
        id="led:75",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM led_base\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 4),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="led:79",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM led_with_victim\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 5),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
        note="LED: the isolated cs/f victim is merged into cs/m (5).",
    ),
    Case(
        id="led:83",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM led_with_two_victims\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 6),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
        note="LED: both cs/f victims (below the threshold of 3) are merged into cs/m (6).",
    ),
    Case(
        id="led:87",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=(
            "SELECT dept, gender, title, count(*)\nFROM led_with_three_cs_women\nGROUP BY 1, 2, 3"
        ),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 4),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
            ("cs", "f", "prof", 3),
        ),
        note="Three cs women are not isolated: no LED merge, cs/f is reported.",
    ),
    Case(
        id="led:91",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=(
            "SELECT dept, gender, title, count(*)\nFROM led_with_different_titles\nGROUP BY 1, 2, 3"
        ),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 4),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
        note=(
            "The two cs/f rows differ by title; neither is merged and the suppress bin (2 "
            "users) is itself suppressed."
        ),
    ),
    Case(
        id="led:95",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM led_with_star_bucket\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("*", "*", "*", 3),
            ("cs", "m", "prof", 5),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
        suppress_bin_rows=1,
        note=(
            "LED merges the cs/f victim into cs/m (5); the three other singletons form the "
            "suppress bin (3)."
        ),
    ),
    Case(
        id="led:103",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(distinct id)\nFROM led_base\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 4),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="led:107",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=(
            "SELECT dept, gender, title, count(distinct id)\nFROM led_with_victim\nGROUP BY 1, 2, 3"
        ),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("cs", "m", "prof", 5),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="led:111",
        source="led.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql="SELECT count(*) FROM led_with_victim",
        columns=("count",),
        rows=((21,),),
    ),
    # --- misc.sql ------------------------------------------------------------------------
    Case(
        id="misc:14",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql=(
            "SELECT * FROM\n"
            "  (SELECT count(*) AS num_purchases FROM test_purchases) x,\n"
            "  (SELECT count(*) AS num_customers FROM test_customers) y"
        ),
        columns=("num_purchases", "num_customers"),
        rows=((34, 16),),
    ),
    Case(
        id="misc:18",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql=(
            "SELECT\n"
            "  coalesce(patients.city, customers.city) AS city,\n"
            "  customers.count AS num_customers,\n"
            "  patients.count AS num_patients\n"
            "FROM\n"
            "  (SELECT city, count(*) FROM test_patients GROUP BY 1) patients\n"
            "FULL OUTER JOIN\n"
            "  (SELECT city, count(*) FROM test_customers GROUP BY 1) customers\n"
            "ON patients.city = customers.city"
        ),
        columns=("city", "num_customers", "num_patients"),
        rows=(
            ("Rome", 7, 2),
            ("Berlin", 9, 6),
            ("*", 2, None),
        ),
        note=(
            "Post-processing: the customers subquery's suppress bin ('*') becomes an ordinary "
            "value of the join and is not the first row any more."
        ),
    ),
    Case(
        id="misc:28",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql=("SELECT city, count(*)\nFROM test_customers\nGROUP BY city\nHAVING city LIKE 'B%'"),
        columns=("city", "count"),
        rows=(("Berlin", 9),),
    ),
    Case(
        id="misc:33",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql=(
            "SELECT age, count(*)\nFROM test_patients\nGROUP BY age\nHAVING age IS NULL OR age > 40"
        ),
        columns=("age", "count"),
        rows=(
            (None, 2),
            (57, 2),
            (64, 2),
        ),
        suppress_bin_rows=1,
        note=(
            "The NULL-age row is the suppress bin (no patient has a NULL age); HAVING keeps it "
            "because its label is NULL."
        ),
    ),
    Case(
        id="misc:38",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT 'London' IN (SELECT city FROM test_customers)",
        columns=("?column?",),
        rows=((False,),),
        note="London has one customer, so its bin is suppressed and the IN test is false.",
    ),
    Case(
        id="misc:74",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT city, count(*) FROM test_customers GROUP BY city",
        columns=("city", "count"),
        rows=(
            ("*", 2),
            ("Rome", 7),
            ("Berlin", 9),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="misc:75",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT count(*), city FROM test_customers GROUP BY city",
        columns=("count", "city"),
        rows=(
            (2, "*"),
            (7, "Rome"),
            (9, "Berlin"),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="misc:78",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT count(*), count(*) FROM test_customers",
        columns=("count", "count"),
        rows=((16, 16),),
    ),
    Case(
        id="misc:81",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="COPY test_customers TO STDOUT",
        error="[PG_DIFFIX] Statement requires direct access level.",
        note="Utility statement at an anonymized level.",
    ),
    Case(
        id="misc:82",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="ALTER TABLE test_customers DROP COLUMN id",
        error="[PG_DIFFIX] Statement requires direct access level.",
    ),
    Case(
        id="misc:89",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="EXPLAIN ANALYZE SELECT city FROM test_customers LIMIT 4",
        error="[PG_DIFFIX] EXPLAIN ANALYZE is not allowed for queries involving personal tables",
        note="EXPLAIN ANALYZE would execute the query and expose raw row counts.",
    ),
    Case(
        id="misc:90",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="EXPLAIN (COSTS) SELECT city FROM test_customers LIMIT 4",
        error="[PG_DIFFIX] COSTS option is not allowed for queries involving personal tables",
        note="EXPLAIN with costs would expose table statistics.",
    ),
    Case(
        id="misc:100",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT FROM test_customers WHERE FALSE",
        columns=(),
        rows=(),
        note="No columns at all: psql printed '--' and '(0 rows)'.",
    ),
    Case(
        id="misc:101",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql='SELECT TRUE AS "_" FROM test_customers WHERE 1 <> 1 LIMIT 0',
        columns=("_",),
        rows=(),
    ),
    Case(
        id="misc:102",
        source="misc.sql",
        level=TRUSTED,
        settings=_S_MISC,
        sql="SELECT id FROM test_customers WHERE NULL = NULL",
        columns=("id",),
        rows=(),
        note=(
            "Selects the AID column yet pg_diffix accepts it: the constant-false WHERE (NULL = "
            "NULL) lets the planner drop the scan. validation:306 rejects selecting an AID "
            "column when the table is really read."
        ),
    ),
    Case(
        id="misc:109",
        source="misc.sql",
        level=DIRECT,
        settings=_S_MISC,
        sql="SELECT diffix.sum_noise(discount), diffix.count_noise(*) FROM test_customers",
        columns=("sum_noise", "count_noise"),
        rows=((0, 0),),
        note="At the direct level the noise aggregates answer 0.",
    ),
    Case(
        id="misc:112",
        source="misc.sql",
        level=DIRECT,
        kind="statement",
        settings=_S_MISC,
        sql="CALL diffix.mark_not_filterable('test_customers', 'id')",
        error="Column `id` is already marked as an AID.",
        note=(
            "pg_diffix refuses because id is an AID column. pg_diffix ran it as the "
            "non-superuser test role at the direct level; run it as an administrator to test "
            "that reason rather than a missing privilege."
        ),
    ),
    Case(
        id="misc:113",
        source="misc.sql",
        level=DIRECT,
        kind="statement",
        settings=_S_MISC,
        sql="CALL diffix.mark_filterable('test_customers', 'id')",
        error="Column `id` is already marked as an AID.",
        note="See misc:112.",
    ),
    # --- noiseless.sql -------------------------------------------------------------------
    Case(
        id="noiseless:24",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_trusted",),),
    ),
    Case(
        id="noiseless:30",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*) FROM test_customers",
        columns=("count",),
        rows=((18,),),
    ),
    Case(
        id="noiseless:31",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*) FROM test_purchases",
        columns=("count",),
        rows=((36,),),
    ),
    Case(
        id="noiseless:33",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(city), COUNT(DISTINCT city) FROM test_customers",
        columns=("count", "count"),
        rows=((17, 2),),
    ),
    Case(
        id="noiseless:35",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(DISTINCT cid) FROM test_purchases",
        columns=("count",),
        rows=((14,),),
    ),
    Case(
        id="noiseless:37",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city, COUNT(DISTINCT id) FROM test_customers GROUP BY 1",
        columns=("city", "count"),
        rows=(
            ("*", 3),
            ("Rome", 7),
            ("Berlin", 8),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="noiseless:39",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*) FROM test_customers WHERE planet = 'Earth'",
        columns=("count",),
        rows=((17,),),
    ),
    Case(
        id="noiseless:45",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT SUM(id), diffix.sum_noise(id) FROM test_customers",
        columns=("sum", "sum_noise"),
        rows=((151, 0),),
    ),
    Case(
        id="noiseless:46",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT SUM(discount), diffix.sum_noise(discount) FROM test_customers",
        columns=("sum", "sum_noise"),
        rows=((19, 0),),
    ),
    Case(
        id="noiseless:47",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city, SUM(id), diffix.sum_noise(id) FROM test_customers GROUP BY 1",
        columns=("city", "sum", "sum_noise"),
        rows=(
            ("*", None, None),
            ("Rome", 59, 0),
            ("Berlin", 68, 0),
        ),
        suppress_bin_rows=1,
        note="The suppress bin's sum and sum_noise are NULL.",
    ),
    Case(
        id="noiseless:48",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city, SUM(discount), diffix.sum_noise(discount) FROM test_customers GROUP BY 1",
        columns=("city", "sum", "sum_noise"),
        rows=(
            ("*", None, None),
            ("Rome", 4.8333335, 0),
            ("Berlin", 9, 0),
        ),
        suppress_bin_rows=1,
        note="sum(real) has type real: 4.8333335 is the float4 value as printed.",
    ),
    Case(
        id="noiseless:50",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT SUM(discount), diffix.sum_noise(discount) FROM test_customers_negative",
        columns=("sum", "sum_noise"),
        rows=((-19, 0),),
    ),
    Case(
        id="noiseless:51",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT SUM(discount), diffix.sum_noise(discount) FROM test_customers_mixed",
        columns=("sum", "sum_noise"),
        rows=((2.5, 0),),
        note="test_customers_mixed.discount is double precision (real - numeric).",
    ),
    Case(
        id="noiseless:54",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql=(
            "SELECT city, SUM(discount::numeric), pg_typeof(SUM(discount::numeric)), diffix.sum_noise(discount::numeric)\n"
            "FROM test_customers\n"
            "GROUP BY 1"
        ),
        columns=("city", "sum", "pg_typeof", "sum_noise"),
        rows=(
            ("*", None, "numeric", None),
            ("Rome", 4.83333333333333, "numeric", 0),
            ("Berlin", 9, "numeric", 0),
        ),
        suppress_bin_rows=1,
        note="sum of numeric stays numeric; pg_typeof is evaluated after anonymization.",
    ),
    Case(
        id="noiseless:62",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql=(
            "SELECT city, AVG(discount), diffix.avg_noise(discount) FROM test_customers GROUP BY 1\n"
            "EXCEPT\n"
            "SELECT city, SUM(discount) / COUNT(discount), diffix.sum_noise(discount) / COUNT(discount) FROM test_customers GROUP BY 1"
        ),
        columns=("city", "avg", "avg_noise"),
        rows=(),
        note="avg = sum / count and avg_noise = sum_noise / count: EXCEPT leaves no row.",
    ),
    Case(
        id="noiseless:66",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql=(
            "SELECT city, AVG(id), diffix.avg_noise(id) FROM test_customers GROUP BY 1\n"
            "EXCEPT\n"
            "SELECT city, SUM(id)::float8 / COUNT(id), diffix.sum_noise(id) / COUNT(id) FROM test_customers GROUP BY 1"
        ),
        columns=("city", "avg", "avg_noise"),
        rows=(),
    ),
    Case(
        id="noiseless:74",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT 1 FROM test_patients",
        columns=("?column?",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
        ),
        note="Implicit grouping on a constant: one bin, repeated count(*) times.",
    ),
    Case(
        id="noiseless:75",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT cast(1 as real) FROM test_patients",
        columns=("float4",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
        ),
    ),
    Case(
        id="noiseless:76",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT 1, COUNT(*) FROM test_patients",
        columns=("?column?", "count"),
        rows=((1, 11),),
    ),
    Case(
        id="noiseless:77",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT 1, city FROM test_customers",
        columns=("?column?", "city"),
        rows=(
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
            (1, "Berlin"),
        ),
        suppress_bin_rows=3,
    ),
    Case(
        id="noiseless:78",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city, 'aaaa' FROM test_customers",
        columns=("city", "?column?"),
        rows=(
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
            ("Berlin", "aaaa"),
        ),
        suppress_bin_rows=3,
    ),
    Case(
        id="noiseless:84",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city FROM test_patients GROUP BY 1",
        columns=("city",),
        rows=(
            ("Rome",),
            ("Berlin",),
        ),
    ),
    Case(
        id="noiseless:86",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM test_patients",
        columns=("count", "count", "count"),
        rows=((11, 11, 2),),
    ),
    Case(
        id="noiseless:92",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city FROM test_customers",
        columns=("city",),
        rows=(
            ("*",),
            ("*",),
            ("*",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
            ("Berlin",),
        ),
        suppress_bin_rows=3,
    ),
    Case(
        id="noiseless:94",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city FROM test_customers GROUP BY 1 HAVING length(city) <> 4",
        columns=("city",),
        rows=(
            ("*",),
            ("Berlin",),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="noiseless:96",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM test_customers WHERE city = 'London'",
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="noiseless:102",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM empty_test_customers",
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="noiseless:109",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT COUNT(DISTINCT planet) FROM test_customers",
        columns=("count",),
        rows=((1,),),
        note="Global aggregate: no minimum applies, count(DISTINCT planet) = 1.",
    ),
    Case(
        id="noiseless:112",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT city, COUNT(DISTINCT city) FROM test_customers GROUP BY 1",
        columns=("city", "count"),
        rows=(
            ("*", 3),
            ("Rome", 3),
            ("Berlin", 3),
        ),
        suppress_bin_rows=1,
        note=(
            "Each city has one distinct city, yet a bin that passed the low-count filter never "
            "reports fewer than low_count_min_threshold (default 3 here)."
        ),
    ),
    Case(
        id="noiseless:113",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="SELECT discount, COUNT(DISTINCT id) FROM test_customers GROUP BY 1",
        columns=("discount", "count"),
        rows=(
            (None, 4),
            (0.5, 4),
            (1, 6),
            (2, 4),
        ),
        suppress_bin_rows=1,
        note=(
            "The leading NULL-discount row is the suppress bin: the only customer with a NULL "
            "discount is suppressed, together with 0.0 (1 user) and 1.5 (2 users)."
        ),
    ),
    Case(
        id="noiseless:120",
        source="noiseless.sql",
        level=TRUSTED,
        settings=_S_NOISELESS,
        sql="EXECUTE prepared_floor_by(2.0)",
        prepare="PREPARE prepared_floor_by(numeric) AS SELECT diffix.floor_by(discount, $1), count(*) FROM test_customers GROUP BY 1",
        sql_inlined="SELECT diffix.floor_by(discount, 2.0::numeric), count(*) FROM test_customers GROUP BY 1",
        columns=("floor_by", "count"),
        rows=(
            (0, 13),
            (2, 4),
        ),
        tags=frozenset({"prepared"}),
    ),
    # --- noisy.sql -----------------------------------------------------------------------
    Case(
        id="noisy:14",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_trusted",),),
    ),
    Case(
        id="noisy:20",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*) FROM test_customers",
        columns=("count",),
        rows=((4,),),
    ),
    Case(
        id="noisy:21",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*) FROM test_purchases",
        columns=("count",),
        rows=((23,),),
    ),
    Case(
        id="noisy:23",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(city), COUNT(DISTINCT city) FROM test_customers",
        columns=("count", "count"),
        rows=((4, 1),),
    ),
    Case(
        id="noisy:25",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(DISTINCT cid) FROM test_purchases",
        columns=("count",),
        rows=((9,),),
    ),
    Case(
        id="noisy:27",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city, COUNT(DISTINCT id) FROM test_customers GROUP BY 1",
        columns=("city", "count"),
        rows=(
            ("*", 16),
            ("Rome", 8),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:29",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*) FROM test_customers WHERE planet = 'Earth'",
        columns=("count",),
        rows=((17,),),
    ),
    Case(
        id="noisy:35",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT SUM(id), diffix.sum_noise(id) FROM test_customers",
        columns=("sum", "sum_noise"),
        rows=((34, 58),),
    ),
    Case(
        id="noisy:36",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT SUM(discount), diffix.sum_noise(discount) FROM test_customers",
        columns=("sum", "sum_noise"),
        rows=((7.8854094, 8),),
    ),
    Case(
        id="noisy:37",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city, SUM(id), diffix.sum_noise(id) FROM test_customers GROUP BY 1",
        columns=("city", "sum", "sum_noise"),
        rows=(
            ("*", 122, 54),
            ("Rome", 64, 60),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:38",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city, SUM(discount), diffix.sum_noise(discount) FROM test_customers GROUP BY 1",
        columns=("city", "sum", "sum_noise"),
        rows=(
            ("*", 12.012415, 9.5),
            ("Rome", 4.601863, 4.4),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:44",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "SELECT city, AVG(discount), diffix.avg_noise(discount) FROM test_customers GROUP BY 1\n"
            "EXCEPT\n"
            "SELECT city, SUM(discount) / COUNT(discount), diffix.sum_noise(discount) / COUNT(discount) FROM test_customers GROUP BY 1"
        ),
        columns=("city", "avg", "avg_noise"),
        rows=(),
    ),
    Case(
        id="noisy:48",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "SELECT city, AVG(id), diffix.avg_noise(id) FROM test_customers GROUP BY 1\n"
            "EXCEPT\n"
            "SELECT city, SUM(id)::float8 / COUNT(id), diffix.sum_noise(id) / COUNT(id) FROM test_customers GROUP BY 1"
        ),
        columns=("city", "avg", "avg_noise"),
        rows=(),
    ),
    Case(
        id="noisy:56",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT diffix.count_noise(*), diffix.count_noise(city), diffix.count_noise(DISTINCT city) FROM test_customers",
        columns=("count_noise", "count_noise", "count_noise"),
        rows=((7, 6.800000000000001, 0),),
        note="count_noise(city) prints as 6.800000000000001 (float8).",
    ),
    Case(
        id="noisy:62",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT 1 FROM test_patients",
        columns=("?column?",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
        ),
    ),
    Case(
        id="noisy:63",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT cast(1 as real) FROM test_patients",
        columns=("float4",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
        ),
    ),
    Case(
        id="noisy:64",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT 1, COUNT(*) FROM test_patients",
        columns=("?column?", "count"),
        rows=((1, 4),),
    ),
    Case(
        id="noisy:65",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT 1, city FROM test_customers",
        columns=("?column?", "city"),
        rows=(
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "*"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
            (1, "Rome"),
        ),
        suppress_bin_rows=16,
    ),
    Case(
        id="noisy:66",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city, 'aaaa' FROM test_customers",
        columns=("city", "?column?"),
        rows=(
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("*", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
            ("Rome", "aaaa"),
        ),
        suppress_bin_rows=16,
    ),
    Case(
        id="noisy:72",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city FROM test_patients GROUP BY 1",
        columns=("city",),
        rows=(("*",),),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:74",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM test_patients",
        columns=("count", "count", "count"),
        rows=((4, 4, 0),),
    ),
    Case(
        id="noisy:80",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city FROM test_customers",
        columns=("city",),
        rows=(
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("*",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
            ("Rome",),
        ),
        suppress_bin_rows=16,
    ),
    Case(
        id="noisy:82",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT city FROM test_customers GROUP BY 1 HAVING length(city) <> 4",
        columns=("city",),
        rows=(("*",),),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:84",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM test_customers WHERE city = 'London'",
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="noisy:87",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT diffix.floor_by(age, 30), COUNT(*) FROM test_patients GROUP BY 1",
        columns=("floor_by", "count"),
        rows=((None, 23),),
        suppress_bin_rows=1,
        note=(
            "noisy:87 and noisy:88 group the same patients differently; the low-count threshold"
            " is not seeded by the bin labels, so both suppress everything and only the "
            "suppress bin remains (its count noise differs)."
        ),
    ),
    Case(
        id="noisy:88",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT diffix.floor_by(age, 30), diffix.floor_by(age, 106), COUNT(*) FROM test_patients GROUP BY 1, 2",
        columns=("floor_by", "floor_by", "count"),
        rows=((None, None, 9),),
        suppress_bin_rows=1,
    ),
    Case(
        id="noisy:94",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql="SELECT COUNT(*), COUNT(city), COUNT(DISTINCT city) FROM empty_test_customers",
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="noisy:101",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "(SELECT count(*) FROM test_customers GROUP BY city HAVING city = 'Berlin')\n"
            "UNION\n"
            "(SELECT count(*) FROM test_customers WHERE city = 'Berlin')"
        ),
        columns=("count",),
        rows=((17,),),
        note=(
            "UNION of equal answers leaves one row: grouping + HAVING on the label and "
            "filtering with WHERE produce the same noisy count."
        ),
    ),
    Case(
        id="noisy:105",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "(SELECT count(*) FROM test_customers GROUP BY city, diffix.round_by(discount, 2)\n"
            "  HAVING city = 'Berlin' AND diffix.round_by(discount, 2) = 0)\n"
            "UNION\n"
            "(SELECT count(*) FROM test_customers WHERE city = 'Berlin' AND diffix.round_by(discount, 2) = 0)"
        ),
        columns=("count",),
        rows=((7,),),
    ),
    Case(
        id="noisy:110",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "(SELECT count(*) FROM test_customers WHERE diffix.round_by(discount, 2) = 0 GROUP BY city HAVING city = 'Berlin')\n"
            "UNION\n"
            "(SELECT count(*) FROM test_customers WHERE city = 'Berlin' AND diffix.round_by(discount, 2) = 0)"
        ),
        columns=("count",),
        rows=((7,),),
    ),
    Case(
        id="noisy:119",
        source="noisy.sql",
        level=TRUSTED,
        settings=_S_NOISY,
        sql=(
            "(SELECT COUNT(*) FROM test_customers AS c JOIN test_purchases ON c.id = cid WHERE city = 'Berlin')\n"
            "UNION\n"
            "(SELECT COUNT(*) FROM test_purchases JOIN test_customers AS c ON cid = c.id WHERE city = 'Berlin')"
        ),
        columns=("count",),
        rows=((44,),),
        note="Join order does not change the answer: UNION leaves one row.",
    ),
    # --- star_bucket.sql -----------------------------------------------------------------
    Case(
        id="star_bucket:81",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM star_bucket_base\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="star_bucket:85",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM star_bucket\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("*", "*", "*", 3),
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
        suppress_bin_rows=1,
    ),
    Case(
        id="star_bucket:89",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=(
            "SELECT dept, gender, title, count(*)\nFROM star_bucket_suppressed_1\nGROUP BY 1, 2, 3"
        ),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="star_bucket:93",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=(
            "SELECT dept, gender, title, count(*)\nFROM star_bucket_suppressed_2\nGROUP BY 1, 2, 3"
        ),
        columns=("dept", "gender", "title", "count"),
        rows=(
            ("math", "m", "prof", 4),
            ("history", "m", "prof", 4),
            ("math", "f", "prof", 4),
            ("history", "f", "prof", 4),
        ),
    ),
    Case(
        id="star_bucket:97",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM star_bucket_empty\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(),
    ),
    Case(
        id="star_bucket:101",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title, count(*)\nFROM star_bucket_only\nGROUP BY 1, 2, 3"),
        columns=("dept", "gender", "title", "count"),
        rows=(("*", "*", "*", 5),),
        suppress_bin_rows=1,
    ),
    Case(
        id="star_bucket:109",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title\nFROM star_bucket"),
        columns=("dept", "gender", "title"),
        rows=(
            ("*", "*", "*"),
            ("*", "*", "*"),
            ("*", "*", "*"),
            ("math", "m", "prof"),
            ("math", "m", "prof"),
            ("math", "m", "prof"),
            ("math", "m", "prof"),
            ("history", "m", "prof"),
            ("history", "m", "prof"),
            ("history", "m", "prof"),
            ("history", "m", "prof"),
            ("math", "f", "prof"),
            ("math", "f", "prof"),
            ("math", "f", "prof"),
            ("math", "f", "prof"),
            ("history", "f", "prof"),
            ("history", "f", "prof"),
            ("history", "f", "prof"),
            ("history", "f", "prof"),
        ),
        suppress_bin_rows=3,
    ),
    Case(
        id="star_bucket:112",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT 1\nFROM star_bucket"),
        columns=("?column?",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
        ),
    ),
    Case(
        id="star_bucket:115",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title\nFROM star_bucket_empty"),
        columns=("dept", "gender", "title"),
        rows=(),
    ),
    Case(
        id="star_bucket:118",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT 1\nFROM star_bucket_empty"),
        columns=("?column?",),
        rows=(),
    ),
    Case(
        id="star_bucket:121",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT dept, gender, title\nFROM star_bucket_only"),
        columns=("dept", "gender", "title"),
        rows=(
            ("*", "*", "*"),
            ("*", "*", "*"),
            ("*", "*", "*"),
            ("*", "*", "*"),
            ("*", "*", "*"),
        ),
        suppress_bin_rows=5,
    ),
    Case(
        id="star_bucket:124",
        source="star_bucket.sql",
        level=TRUSTED,
        settings=_S_LED,
        sql=("SELECT 1\nFROM star_bucket_only"),
        columns=("?column?",),
        rows=(
            (1,),
            (1,),
            (1,),
            (1,),
            (1,),
        ),
    ),
    # --- stress.sql ----------------------------------------------------------------------
    Case(
        id="stress:19",
        source="stress.sql",
        level=TRUSTED,
        superuser=True,
        settings=_S_STRESS,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_trusted",),),
        note="Run by the suite as a superuser session lowered to anonymized_trusted.",
    ),
    Case(
        id="stress:20",
        source="stress.sql",
        level=TRUSTED,
        superuser=True,
        settings=_S_STRESS,
        sql="SELECT COUNT(*) FROM test_stress",
        columns=("count",),
        rows=((50000,),),
        note=(
            "The suite filled test_stress with random values; the count depends only on the "
            "50000 distinct AIDs."
        ),
    ),
    # --- validation.sql ------------------------------------------------------------------
    Case(
        id="validation:29",
        source="validation.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.mark_personal('superclass', 'x')",
        error="[PG_DIFFIX] Anonymization over tables using inheritance is not supported.",
        note=(
            "Tables taking part in inheritance cannot be labelled; the setup labels them before"
            " ALTER TABLE ... INHERIT."
        ),
    ),
    Case(
        id="validation:30",
        source="validation.sql",
        level=DIRECT,
        kind="statement",
        superuser=True,
        sql="CALL diffix.mark_personal('subclass', 'y')",
        error="[PG_DIFFIX] Anonymization over tables using inheritance is not supported.",
    ),
    Case(
        id="validation:39",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_trusted",),),
    ),
    Case(
        id="validation:46",
        source="validation.sql",
        level=TRUSTED,
        sql=("SELECT COUNT(*) FROM test_validation\n  GROUP BY substring(city, 1, 1)"),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:49",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY width_bucket(id, 0, 1000, 10), width_bucket(id::float, 0.0, 1000.0, 10)"
        ),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:52",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY round(id::float, -1), round(id::numeric, -1)"
        ),
        error="function round(double precision, integer) does not exist",
        tags=frozenset({"postgres-error"}),
        note="Refused by PostgreSQL's function resolution, not by the anonymization checks.",
    ),
    Case(
        id="validation:55",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY round(id::float), ceil(id::float), ceiling(id::float), floor(id::float)"
        ),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:58",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY round(id::numeric), ceil(id::numeric), ceiling(id::numeric), floor(id::numeric)"
        ),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:61",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY round(id::integer), ceil(id::integer), ceiling(id::integer), floor(id::integer)"
        ),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:64",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation\n"
            "  GROUP BY round(id::bigint), ceil(id::bigint), ceiling(id::bigint), floor(id::bigint)"
        ),
        columns=("count",),
        rows=(),
    ),
    Case(
        id="validation:67",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT\n"
            "  diffix.round_by(id::numeric, 5),\n"
            "  diffix.round_by(id::double precision, 5),\n"
            "  COUNT(*)\n"
            "FROM test_validation\n"
            "GROUP BY 1, 2"
        ),
        columns=("round_by", "round_by", "count"),
        rows=(),
    ),
    Case(
        id="validation:74",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT\n"
            "  diffix.ceil_by(id::numeric, 5),\n"
            "  diffix.ceil_by(id::double precision, 5),\n"
            "  COUNT(*)\n"
            "FROM test_validation\n"
            "GROUP BY 1, 2"
        ),
        columns=("ceil_by", "ceil_by", "count"),
        rows=(),
    ),
    Case(
        id="validation:81",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT\n"
            "  diffix.floor_by(id::numeric, 5),\n"
            "  diffix.floor_by(id::double precision, 5),\n"
            "  COUNT(*)\n"
            "FROM test_validation\n"
            "GROUP BY 1, 2"
        ),
        columns=("floor_by", "floor_by", "count"),
        rows=(),
    ),
    Case(
        id="validation:88",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT\n"
            "  substring(cast(last_seen AS text), 1, 3),\n"
            "  substring(cast(last_seen_tz AS text), 1, 3),\n"
            "  substring(cast(birthday AS text), 2, 3),\n"
            "  substring(cast(lunchtime AS varchar), 1, 4)\n"
            "FROM test_validation\n"
            "GROUP BY 1, 2, 3, 4"
        ),
        columns=("substring", "substring", "substring", "substring"),
        rows=(),
    ),
    Case(
        id="validation:97",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT\n"
            "  date_trunc('year', last_seen),\n"
            "  date_trunc('year', last_seen_tz),\n"
            "  date_trunc('year', birthday),\n"
            "  extract(month from last_seen) as extract,\n"
            "  extract(month from last_seen_tz) as extract,\n"
            "  extract(month from birthday) as extract,\n"
            "  date_part('month', last_seen) as date_part,\n"
            "  date_part('month', last_seen_tz) as date_part,\n"
            "  date_part('month', birthday) as date_part\n"
            "FROM test_validation\n"
            "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"
        ),
        columns=(
            "date_trunc",
            "date_trunc",
            "date_trunc",
            "extract",
            "extract",
            "extract",
            "date_part",
            "date_part",
            "date_part",
        ),
        rows=(),
    ),
    Case(
        id="validation:111",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 2 * length(city) FROM test_validation GROUP BY city",
        columns=("?column?",),
        rows=(),
    ),
    Case(
        id="validation:114",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city, count(*), diffix.is_suppress_bin(*) from test_validation GROUP BY 1",
        columns=("city", "count", "is_suppress_bin"),
        rows=(),
    ),
    Case(
        id="validation:117",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE city = 'London'",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:118",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE substring(city, 1, 1) = 'L' AND discount = 10.0 AND discount = 20.0",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:121",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city FROM test_validation EXCEPT SELECT city FROM test_validation",
        columns=("city",),
        rows=(),
    ),
    Case(
        id="validation:122",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city FROM test_validation UNION SELECT city FROM test_validation",
        columns=("city",),
        rows=(),
    ),
    Case(
        id="validation:125",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT EXISTS (SELECT city FROM test_validation)",
        columns=("exists",),
        rows=((False,),),
    ),
    Case(
        id="validation:126",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 1 WHERE EXISTS (SELECT city FROM test_validation)",
        columns=("?column?",),
        rows=(),
    ),
    Case(
        id="validation:127",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 'London' IN (SELECT city FROM test_validation)",
        columns=("?column?",),
        rows=((False,),),
    ),
    Case(
        id="validation:130",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM ( SELECT COUNT(*) FROM test_validation ) x",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:132",
        source="validation.sql",
        level=TRUSTED,
        sql=("SELECT COUNT(city)\nFROM (\n  SELECT city FROM test_validation\n  GROUP BY 1\n) x"),
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:138",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*), COUNT(x.city), COUNT(DISTINCT x.city)\n"
            "FROM (\n"
            "  SELECT name, city, discount, birthday, lunchtime, last_seen FROM test_validation\n"
            ") x"
        ),
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="validation:143",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(DISTINCT x.modified_name) FROM ( SELECT name AS modified_name FROM test_validation ) x",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:145",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*), COUNT(x.city), COUNT(DISTINCT x.user_name)\n"
            "FROM (\n"
            "  SELECT y.city as city, y.name as user_name\n"
            "  FROM ( SELECT name, city, discount, birthday, lunchtime, last_seen FROM test_validation ) y\n"
            ") x"
        ),
        columns=("count", "count", "count"),
        rows=((0, 0, 0),),
    ),
    Case(
        id="validation:151",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM (SELECT name FROM test_validation) x, (SELECT city FROM test_validation) y",
        columns=("name", "city"),
        rows=(),
    ),
    Case(
        id="validation:153",
        source="validation.sql",
        level=TRUSTED,
        sql="WITH c AS (SELECT city FROM test_validation) SELECT * FROM c",
        columns=("city",),
        rows=(),
        note=(
            "A referenced CTE is accepted (it is inlined like a subquery) while an unreferenced"
            " one is refused (validation:197)."
        ),
    ),
    Case(
        id="validation:155",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT (SELECT city FROM test_validation)",
        columns=("city",),
        rows=((None,),),
        note="A scalar subquery over an empty anonymized result yields NULL.",
    ),
    Case(
        id="validation:164",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT EXISTS (SELECT FROM PG_Catalog.pg_tables WHERE schemaname='public' AND tablename='test_customers')",
        columns=("exists",),
        rows=((True,),),
        tags=frozenset({"catalog"}),
    ),
    Case(
        id="validation:165",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT EXISTS (SELECT FROM Information_Schema.tables WHERE table_schema='public' AND table_name='test_customers')",
        columns=("exists",),
        rows=((True,),),
        tags=frozenset({"catalog"}),
    ),
    Case(
        id="validation:169",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM diffix.show_labels() WHERE objname LIKE 'public.empty_test_customers%'",
        columns=("objtype", "objname", "label"),
        rows=(
            ("table", "public.empty_test_customers", "personal"),
            ("column", "public.empty_test_customers.id", "aid"),
        ),
        tags=frozenset({"show-labels"}),
        note="Anonymized users may list labels.",
    ),
    Case(
        id="validation:173",
        source="validation.sql",
        level=TRUSTED,
        sql="EXECUTE prepared(1.0)",
        prepare="PREPARE prepared(float) AS SELECT discount, count(*) FROM empty_test_customers WHERE discount = $1 GROUP BY 1",
        sql_inlined="SELECT discount, count(*) FROM empty_test_customers WHERE discount = 1.0::float GROUP BY 1",
        columns=("discount", "count"),
        rows=(),
        tags=frozenset({"prepared"}),
        note="Prepared statement with a float parameter used as a filter constant.",
    ),
    Case(
        id="validation:176",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation AS c\n  INNER JOIN test_purchases ON c.id = cid"
        ),
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:179",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(*) FROM test_validation AS t1\n"
            "  INNER JOIN test_validation AS t2 ON t1.name = t2.name AND t1.city = t2.city"
        ),
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:182",
        source="validation.sql",
        level=TRUSTED,
        sql=(
            "SELECT COUNT(c.city), COUNT(p.name) FROM test_validation AS c\n"
            "  LEFT JOIN test_purchases ON c.id = cid\n"
            "  LEFT JOIN test_products AS p ON pid = p.id"
        ),
        columns=("count", "count"),
        rows=((0, 0),),
    ),
    Case(
        id="validation:186",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation NATURAL JOIN test_patients",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:187",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation JOIN test_patients USING (name)",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:194",
        source="validation.sql",
        level=TRUSTED,
        sql="INSERT INTO test_validation VALUES (NULL, NULL,NULL)",
        error="[PG_DIFFIX] Feature 'non-select query' is not currently supported.",
    ),
    Case(
        id="validation:197",
        source="validation.sql",
        level=TRUSTED,
        sql="WITH c AS (SELECT 1 FROM test_validation) SELECT 1 FROM test_validation",
        error="[PG_DIFFIX] Feature 'WITH' is not currently supported.",
        note="See validation:153.",
    ),
    Case(
        id="validation:200",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city FROM test_validation GROUP BY GROUPING SETS ((city), ())",
        error="[PG_DIFFIX] Feature 'GROUPING SETS' is not currently supported.",
    ),
    Case(
        id="validation:201",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city FROM test_validation GROUP BY CUBE ((city))",
        error="[PG_DIFFIX] Feature 'GROUPING SETS' is not currently supported.",
    ),
    Case(
        id="validation:204",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT generate_series(1,4) FROM test_validation",
        error="[PG_DIFFIX] Feature 'SRF functions' is not currently supported.",
    ),
    Case(
        id="validation:207",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city, (SELECT 1 FROM test_validation) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Feature 'SubLinks' is not currently supported.",
    ),
    Case(
        id="validation:210",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT DISTINCT city FROM test_validation",
        error="[PG_DIFFIX] Feature 'DISTINCT' is not currently supported.",
    ),
    Case(
        id="validation:213",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT avg(discount) OVER (PARTITION BY city) FROM test_validation",
        error="[PG_DIFFIX] Feature 'window functions' is not currently supported.",
    ),
    Case(
        id="validation:216",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT SUM(distinct id) FROM test_validation",
        error="[PG_DIFFIX] Unsupported distinct qualifier at aggregate argument.",
    ),
    Case(
        id="validation:217",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT SUM(id + 5) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:218",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT AVG(distinct id) FROM test_validation",
        error="[PG_DIFFIX] Unsupported distinct qualifier at aggregate argument.",
    ),
    Case(
        id="validation:219",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT AVG(id + 5) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:220",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.avg_noise(distinct id) FROM test_validation",
        error="[PG_DIFFIX] Unsupported distinct qualifier at aggregate argument.",
    ),
    Case(
        id="validation:221",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.avg_noise(id + 5) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:222",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT MIN(id) + MAX(id) FROM test_validation",
        error="[PG_DIFFIX] Unsupported aggregate in query.",
    ),
    Case(
        id="validation:223",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city FROM test_validation GROUP BY 1 ORDER BY AVG(LENGTH(city))",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:224",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(city ORDER BY city) FROM test_validation",
        error="[PG_DIFFIX] Feature 'ORDER BY clauses in aggregate expressions' is not currently supported.",
    ),
    Case(
        id="validation:225",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(*) FILTER (WHERE true) FROM test_validation",
        error="[PG_DIFFIX] Feature 'FILTER clauses in aggregate expressions' is not currently supported.",
    ),
    Case(
        id="validation:226",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(distinct id + 5) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:227",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(distinct least(id, 5)) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:228",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(id + 5) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:229",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(least(id, 5)) FROM test_validation",
        error="[PG_DIFFIX] Unsupported expression as aggregate argument.",
    ),
    Case(
        id="validation:230",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.count_histogram(city) FROM test_validation",
        error="[PG_DIFFIX] count_histogram argument must be an AID column.",
    ),
    Case(
        id="validation:231",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.sum_noise(last_seen) FROM test_validation",
        error="[PG_DIFFIX] Unsupported aggregate in query.",
    ),
    Case(
        id="validation:232",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.avg_noise(last_seen::date) FROM test_validation",
        error="[PG_DIFFIX] Unsupported aggregate in query.",
    ),
    Case(
        id="validation:235",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY LENGTH(city)",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:236",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY city || 'xxx'",
        error="[PG_DIFFIX] Use of operators for generalization is not supported.",
    ),
    Case(
        id="validation:237",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT LENGTH(city) FROM test_validation",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:238",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT city, 'aaaa' FROM test_validation GROUP BY 1, 2",
        error="[PG_DIFFIX] Simple constants are not allowed as generalization expressions.",
    ),
    Case(
        id="validation:240",
        source="validation.sql",
        level=TRUSTED,
        sql="EXECUTE prepared_param_as_label('aaaa')",
        prepare="PREPARE prepared_param_as_label(text) AS SELECT city, $1 FROM test_validation GROUP BY 1, 2",
        sql_inlined="SELECT city, 'aaaa'::text FROM test_validation GROUP BY 1, 2",
        error="[PG_DIFFIX] Simple constants are not allowed as generalization expressions.",
        tags=frozenset({"prepared"}),
        note="A parameter used as a selected constant is refused at EXECUTE.",
    ),
    Case(
        id="validation:241",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY round(floor(id))",
        error="[PG_DIFFIX] Primary argument for a generalization function has to be a simple column reference.",
    ),
    Case(
        id="validation:242",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY floor(cast(discount AS integer))",
        error="[PG_DIFFIX] Primary argument for a generalization function has to be a simple column reference.",
    ),
    Case(
        id="validation:243",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY substr(city, 1, id)",
        error="[PG_DIFFIX] Non-primary arguments for a generalization function have to be simple constants.",
    ),
    Case(
        id="validation:244",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation GROUP BY substr('aaaa', 1, 2)",
        error="[PG_DIFFIX] Primary argument for a generalization function has to be a simple column reference.",
    ),
    Case(
        id="validation:247",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT date_trunc('year', lunchtime) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:248",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT extract(hour from lunchtime) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:251",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT  date_trunc('year', last_seen_tz, 'EST') FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:254",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COALESCE(discount, 20) FROM test_validation",
        error="[PG_DIFFIX] Unsupported generalization expression.",
    ),
    Case(
        id="validation:255",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT NULLIF(discount, 20) FROM test_validation",
        error="[PG_DIFFIX] Unsupported generalization expression.",
    ),
    Case(
        id="validation:256",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT GREATEST(discount, 20) FROM test_validation",
        error="[PG_DIFFIX] Unsupported generalization expression.",
    ),
    Case(
        id="validation:257",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT LEAST(discount, 20) FROM test_validation",
        error="[PG_DIFFIX] Unsupported generalization expression.",
    ),
    Case(
        id="validation:260",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation JOIN test_purchases ON id != cid",
        error="[PG_DIFFIX] Only equalities are allowed in pre-anonymization filters.",
    ),
    Case(
        id="validation:261",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation JOIN test_purchases ON id = cid OR cid = id",
        error="[PG_DIFFIX] Only equalities are allowed in pre-anonymization filters.",
    ),
    Case(
        id="validation:262",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation JOIN test_purchases ON true",
        error="[PG_DIFFIX] Only equalities are allowed in pre-anonymization filters.",
    ),
    Case(
        id="validation:263",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation, test_purchases",
        error="[PG_DIFFIX] Feature 'CROSS JOIN in anonymizing queries' is not currently supported.",
    ),
    Case(
        id="validation:266",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE city <> 'London'",
        error="[PG_DIFFIX] Only equalities are allowed in pre-anonymization filters.",
    ),
    Case(
        id="validation:267",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE city = 'London' OR discount = 10",
        error="[PG_DIFFIX] Only equalities are allowed in pre-anonymization filters.",
    ),
    Case(
        id="validation:268",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE diffix.round_by(id, 5) = 0",
        error="[PG_DIFFIX] AID columns can't be referenced by pre-anonymization filters.",
    ),
    Case(
        id="validation:269",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE city = CONCAT('Lon', 'don')",
        error="[PG_DIFFIX] Generalization expressions can only be matched against constants or params in pre-anonymization filters.",
    ),
    Case(
        id="validation:272",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT cast(id AS text) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Unsupported cast destination type name.",
    ),
    Case(
        id="validation:273",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT cast(id AS varchar) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Unsupported cast destination type name.",
    ),
    Case(
        id="validation:274",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT substring(cast(id AS text), 1, 1) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Primary argument for a generalization function has to be a simple column reference.",
    ),
    Case(
        id="validation:275",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT substring(cast(id AS varchar), 1, 1) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Primary argument for a generalization function has to be a simple column reference.",
    ),
    Case(
        id="validation:278",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM (SELECT length(city) FROM test_validation) x",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:279",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT EXISTS (SELECT length(city) FROM test_validation)",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:280",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 1 WHERE EXISTS (SELECT length(city) FROM test_validation)",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:281",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 1 UNION SELECT length(city) FROM test_validation",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:282",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM (SELECT 1) t1, (SELECT length(city) FROM test_validation) t2",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:283",
        source="validation.sql",
        level=TRUSTED,
        sql="WITH c AS (SELECT length(city) FROM test_validation) SELECT * FROM c",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:284",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT (SELECT length(city) FROM test_validation)",
        error="[PG_DIFFIX] Unsupported function used for generalization.",
    ),
    Case(
        id="validation:287",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM pg_stats LIMIT 10",
        error="permission denied for schema pg_catalog",
        tags=frozenset({"postgres-error"}),
        note="Statistics views are refused by PostgreSQL privileges for non-superusers.",
    ),
    Case(
        id="validation:288",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM pg_statistic LIMIT 10",
        error="permission denied for table pg_statistic",
        tags=frozenset({"postgres-error"}),
    ),
    Case(
        id="validation:289",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM pg_stat_user_functions LIMIT 10",
        error="permission denied for schema pg_catalog",
        tags=frozenset({"postgres-error"}),
    ),
    Case(
        id="validation:290",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM pg_stat_user_indexes LIMIT 10",
        error="permission denied for schema pg_catalog",
        tags=frozenset({"postgres-error"}),
    ),
    Case(
        id="validation:291",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM pg_stat_activity LIMIT 10",
        error="permission denied for schema pg_catalog",
        tags=frozenset({"postgres-error"}),
    ),
    Case(
        id="validation:294",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT x, y FROM subclass",
        error="[PG_DIFFIX] Feature 'Inheritance in anonymizing queries' is not currently supported.",
    ),
    Case(
        id="validation:295",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT x FROM superclass",
        error="[PG_DIFFIX] Feature 'Inheritance in anonymizing queries' is not currently supported.",
    ),
    Case(
        id="validation:298",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT ctid FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:299",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT tableoid FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:300",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(ctid) FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:301",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(tableoid) FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:302",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(distinct ctid) FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:303",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT count(distinct tableoid) FROM test_validation",
        error="[PG_DIFFIX] System columns are not allowed in this context.",
    ),
    Case(
        id="validation:306",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT id FROM test_validation",
        error="[PG_DIFFIX] Selecting or grouping by an AID column will result in a fully censored output.",
    ),
    Case(
        id="validation:307",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT 1 FROM test_validation GROUP BY id",
        error="[PG_DIFFIX] Selecting or grouping by an AID column will result in a fully censored output.",
    ),
    Case(
        id="validation:308",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT * FROM (SELECT id FROM test_validation) z",
        error="[PG_DIFFIX] Selecting or grouping by an AID column will result in a fully censored output.",
    ),
    Case(
        id="validation:311",
        source="validation.sql",
        level=TRUSTED,
        sql="SELECT diffix.floor_by(id, 2), count(*) FROM test_validation GROUP BY 1",
        columns=("floor_by", "count"),
        rows=(),
        note="floor_by over the AID column is accepted at the trusted level.",
    ),
    Case(
        id="validation:318",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.access_level()",
        columns=("access_level",),
        rows=(("anonymized_untrusted",),),
    ),
    Case(
        id="validation:321",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT substring(city, 1, 2) from test_validation",
        columns=("substring",),
        rows=(),
    ),
    Case(
        id="validation:322",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT floor(discount) from test_validation",
        columns=("floor",),
        rows=(),
    ),
    Case(
        id="validation:323",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT round(discount) from test_validation",
        columns=("round",),
        rows=(),
    ),
    Case(
        id="validation:324",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT discount from test_validation",
        columns=("discount",),
        rows=(),
    ),
    Case(
        id="validation:325",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 2) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:326",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.round_by(discount, 2) from test_validation",
        columns=("round_by",),
        rows=(),
    ),
    Case(
        id="validation:327",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 20) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:328",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 2.0) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:329",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 0.2) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:330",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 20.0) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:331",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 50.0) from test_validation",
        columns=("floor_by",),
        rows=(),
    ),
    Case(
        id="validation:332",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.count_histogram(id, 5) from test_validation",
        columns=("count_histogram",),
        rows=(([],),),
        note="count_histogram over an empty table: one row holding an empty array.",
    ),
    Case(
        id="validation:333",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT count(*) FROM test_validation WHERE discount = 3",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:336",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT substring(city, 2, 2) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:337",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 3) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:338",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 3.0) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:339",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.floor_by(discount, 5000000000.1) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:340",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.count_histogram(id, 3) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:343",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT width_bucket(discount, 2, 200, 5) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:344",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT ceil(discount) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:345",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT diffix.ceil_by(discount, 2) from test_validation",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
    ),
    Case(
        id="validation:348",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE substring(cast(birthday as text), 4) = '2000'",
        error="[PG_DIFFIX] Column marked `not_filterable` can't be referenced by pre-anonymization filters in untrusted-mode.",
        note="birthday is not_filterable; last_seen was marked and cleared again (validation:350).",
    ),
    Case(
        id="validation:350",
        source="validation.sql",
        level=UNTRUSTED,
        sql="SELECT COUNT(*) FROM test_validation WHERE substring(cast(last_seen as text), 4) = '2000'",
        columns=("count",),
        rows=((0,),),
    ),
    Case(
        id="validation:353",
        source="validation.sql",
        level=UNTRUSTED,
        sql="EXECUTE prepared_floor_by(2.0)",
        prepare="PREPARE prepared_floor_by(numeric) AS SELECT diffix.floor_by(discount, $1) FROM test_validation GROUP BY 1",
        sql_inlined="SELECT diffix.floor_by(discount, 2.0::numeric) FROM test_validation GROUP BY 1",
        columns=("floor_by",),
        rows=(),
        tags=frozenset({"prepared"}),
    ),
    Case(
        id="validation:354",
        source="validation.sql",
        level=UNTRUSTED,
        sql="EXECUTE prepared_floor_by(2.1)",
        prepare="PREPARE prepared_floor_by(numeric) AS SELECT diffix.floor_by(discount, $1) FROM test_validation GROUP BY 1",
        sql_inlined="SELECT diffix.floor_by(discount, 2.1::numeric) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
        tags=frozenset({"prepared"}),
        note="Parameters are checked against the untrusted-level rules at EXECUTE.",
    ),
    Case(
        id="validation:356",
        source="validation.sql",
        level=UNTRUSTED,
        sql="EXECUTE prepared_substring(1, 2)",
        prepare="PREPARE prepared_substring(int, int) AS SELECT substring(city, $1, $2) FROM test_validation GROUP BY 1",
        sql_inlined="SELECT substring(city, 1::int, 2::int) FROM test_validation GROUP BY 1",
        columns=("substring",),
        rows=(),
        tags=frozenset({"prepared"}),
    ),
    Case(
        id="validation:357",
        source="validation.sql",
        level=UNTRUSTED,
        sql="EXECUTE prepared_substring(2, 3)",
        prepare="PREPARE prepared_substring(int, int) AS SELECT substring(city, $1, $2) FROM test_validation GROUP BY 1",
        sql_inlined="SELECT substring(city, 2::int, 3::int) FROM test_validation GROUP BY 1",
        error="[PG_DIFFIX] Used generalization expression is not allowed in untrusted access level.",
        tags=frozenset({"prepared"}),
        note="See validation:354.",
    ),
)

SKIPPED: tuple[Skipped, ...] = (
    Skipped(
        id="misc:41",
        source="misc.sql",
        sql=(
            "EXPLAIN SELECT age, count(*)\n"
            "FROM test_patients\n"
            "GROUP BY age\n"
            "HAVING (age IS NULL OR age > 65) AND count(*) > 5"
        ),
        reason="EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan node places HAVING/WHERE filters); pldiffix plans differently",
    ),
    Skipped(
        id="misc:46",
        source="misc.sql",
        sql=(
            "EXPLAIN SELECT *\n"
            "FROM (\n"
            "  SELECT age, count(*)\n"
            "  FROM test_patients\n"
            "  GROUP BY age\n"
            ") x\n"
            "WHERE (x.age IS NULL OR x.age > 65) AND x.count > 5"
        ),
        reason="EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan node places HAVING/WHERE filters); pldiffix plans differently",
    ),
    Skipped(
        id="misc:54",
        source="misc.sql",
        sql=(
            "EXPLAIN SELECT *\n"
            "FROM (\n"
            "  SELECT age, count(*)\n"
            "  FROM test_patients\n"
            "  GROUP BY age\n"
            "  HAVING age < 65\n"
            ") x\n"
            "WHERE x.age > 15"
        ),
        reason="EXPLAIN: expected output is pg_diffix's plan tree (where its BucketScan node places HAVING/WHERE filters); pldiffix plans differently",
    ),
    Skipped(
        id="misc:67",
        source="misc.sql",
        sql=("DO $$\nBEGIN\n  PERFORM count(*) FROM test_customers;\nEND;\n$$"),
        reason="PL/pgSQL DO block running an anonymizing PERFORM: no result to compare, and query_json is pldiffix's only entry point",
    ),
    Skipped(
        id="misc:85",
        source="misc.sql",
        sql="EXPLAIN SELECT city FROM test_customers LIMIT 4",
        reason="EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)",
    ),
    Skipped(
        id="misc:86",
        source="misc.sql",
        sql="EXPLAIN (COSTS false) SELECT city FROM test_customers LIMIT 4",
        reason="EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)",
    ),
    Skipped(
        id="misc:93",
        source="misc.sql",
        sql="EXPLAIN SELECT name FROM test_products LIMIT 4",
        reason="EXPLAIN of a public-table query: PostgreSQL's own plan and costs, nothing of pg_diffix",
    ),
    Skipped(
        id="misc:94",
        source="misc.sql",
        sql="EXPLAIN (ANALYZE, SUMMARY false, TIMING false, COSTS true) SELECT name FROM test_products LIMIT 4",
        reason="EXPLAIN ANALYZE of a public-table query: PostgreSQL's own plan and costs, nothing of pg_diffix",
    ),
    Skipped(
        id="misc:97",
        source="misc.sql",
        sql="EXPLAIN SELECT city FROM test_customers ORDER BY 1",
        reason="EXPLAIN: expected output is pg_diffix's censored plan tree (BucketScan)",
    ),
    Skipped(
        id="misc:105",
        source="misc.sql",
        sql="EXPLAIN VERBOSE SELECT COUNT(*) FROM test_customers c JOIN test_purchases pur ON c.id = cid",
        reason="EXPLAIN VERBOSE: expected output names pg_diffix's internal aggregate (anon_count_star)",
    ),
    Skipped(
        id="stress:23",
        source="stress.sql",
        sql=(
            "DO $$\n"
            "BEGIN\n"
            "  FOR _ IN 1..3 LOOP\n"
            "    PERFORM COUNT(*), COUNT(t), COUNT(DISTINCT i) FROM test_stress;\n"
            "    PERFORM t, COUNT(r), COUNT(i) FROM test_stress GROUP BY 1;\n"
            "    PERFORM i, round(r), COUNT(*) FROM test_stress GROUP BY 1, 2;\n"
            "  END LOOP;\n"
            "END;\n"
            "$$"
        ),
        reason="PL/pgSQL DO loop over random data: no result to compare (a crash/performance check)",
    ),
    Skipped(
        id="validation:158",
        source="validation.sql",
        sql="\\dt empty_test_customers",
        reason="psql meta-command (client-side catalog listing)",
    ),
    Skipped(
        id="validation:159",
        source="validation.sql",
        sql="\\d empty_test_customers",
        reason="psql meta-command (client-side catalog listing)",
    ),
    Skipped(
        id="validation:160",
        source="validation.sql",
        sql="\\dt+ empty_test_customers",
        reason="psql meta-command (client-side catalog listing)",
    ),
    Skipped(
        id="validation:161",
        source="validation.sql",
        sql="\\d+ empty_test_customers",
        reason="psql meta-command (client-side catalog listing)",
    ),
    Skipped(
        id="validation:168",
        source="validation.sql",
        sql="SELECT * FROM diffix.show_settings() LIMIT 2",
        reason="show_settings() output is pg_diffix's own setting names and descriptions",
    ),
)
