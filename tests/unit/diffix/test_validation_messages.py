# ruff: noqa: E501  (the exact texts of messages read better unwrapped)
"""The exact message, detail and hint of the refusals a new analyst meets first, per level.

The table is a health panel, as in the issue that reported the messages: `CASE` in GROUP BY,
`NOT col = value` in WHERE, a comma join on the AID, and hints that must offer only what the
caller's level accepts (trusted, untrusted, and DP, which validates its grouping and filters as
a trusted query held to the untrusted level's totality rules).
"""

from __future__ import annotations

import re

import pytest

from pldiffix.core.errors import UserError
from pldiffix.core.relations import (
    ColumnInfo,
    FunctionInfo,
    RelationInfo,
    RelationKind,
    StaticCatalog,
)
from pldiffix.diffix.validation import ValidationError, validate
from pldiffix.dp import query as dp_query

TRUSTED = "anonymized_trusted"
UNTRUSTED = "anonymized_untrusted"

PANEL_COLUMNS = [
    ("person_id", "integer"), ("year", "integer"), ("age", "integer"), ("female", "integer"),
    ("hhninc", "double precision"), ("city", "text"), ("visited", "date"), ("insured", "boolean"),
]  # fmt: skip


def panel_catalog(not_filterable: tuple[str, ...] = ()) -> StaticCatalog:
    columns = tuple(
        ColumnInfo(name, type_, name == "person_id", name in not_filterable)
        for name, type_ in PANEL_COLUMNS
    )
    panel = RelationInfo("public", "panel", RelationKind.PERSONAL, columns, False)
    functions = {
        ("diffix", n): FunctionInfo("diffix", n) for n in ("floor_by", "round_by", "ceil_by")
    }
    return StaticCatalog({("public", "panel"): panel}, functions)


CATALOG = panel_catalog()


def refusal(
    sql: str, level: str, catalog: StaticCatalog = CATALOG
) -> tuple[str, str | None, str | None]:
    with pytest.raises(ValidationError) as caught:
        validate(sql, catalog, level)
    error = caught.value
    return error.message, error.detail_text(), error.hint


def dp_refusal(sql: str) -> tuple[str, str | None, str | None]:
    with pytest.raises(UserError) as caught:
        dp_query.parse(sql, CATALOG)
    error = caught.value
    return error.message, error.detail_text(), error.hint


def accepted(sql: str, level: str) -> bool:
    try:
        validate(sql, CATALOG, level)
    except ValidationError:
        return False
    return True


CASE_SQL = "SELECT CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END AS age_group, count(*) FROM panel GROUP BY 1"
CASE_MESSAGE = "CASE cannot be used as a grouping expression of a query that reads personal tables"
CASE_DETAIL = "offending expression: CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END"
OUTER_SUM = "The outer sum adds up the noise of its buckets and leaves out the rows of buckets too small to be released, so it is less accurate than a count over one bucket."


def case_hint(size: int, alias: str = " AS age_group") -> str:
    return (
        f"Group by diffix.floor_by(age, {size}), whose buckets do not straddle the bounds of the CASE, and apply the CASE "
        f"to the anonymized buckets in an outer query: SELECT CASE WHEN age < 40 THEN 'under 40' ELSE '40+' END{alias}, "
        f"sum(n) FROM (SELECT diffix.floor_by(age, {size}) AS age, count(*) AS n FROM panel GROUP BY 1) t GROUP BY 1. "
        + OUTER_SUM
    )


@pytest.mark.parametrize(("level", "size"), [(TRUSTED, 40), (UNTRUSTED, 20)])
def test_case_in_group_by_names_case_and_suggests_a_bin_size_of_the_level(
    level: str, size: int
) -> None:
    assert refusal(CASE_SQL, level) == (CASE_MESSAGE, CASE_DETAIL, case_hint(size))


def test_case_in_group_by_at_the_dp_level() -> None:
    assert dp_refusal(CASE_SQL) == (CASE_MESSAGE, CASE_DETAIL, case_hint(40, alias=""))


@pytest.mark.parametrize("level", [TRUSTED, UNTRUSTED])
def test_the_suggested_case_rewrite_is_accepted_at_the_level(level: str) -> None:
    hint = refusal(CASE_SQL, level)[2]
    assert hint is not None
    rewrite = re.search(r"in an outer query: (SELECT .*GROUP BY 1)\. ", hint)
    assert rewrite is not None
    assert accepted(rewrite.group(1), level)


@pytest.mark.parametrize(
    ("case", "level", "size"),
    [
        ("CASE WHEN age <= 39 THEN 1 ELSE 2 END", TRUSTED, 40),
        ("CASE WHEN age > 29 AND age < 60 THEN 1 END", TRUSTED, 30),
        ("CASE WHEN age > 29 AND age < 60 THEN 1 END", UNTRUSTED, 10),
        ("CASE WHEN 65 <= age THEN 'old' END", TRUSTED, 65),
        ("CASE WHEN age < 65 THEN 'young' END", UNTRUSTED, 5),
        ("CASE WHEN age BETWEEN 18 AND 64 THEN 1 END", TRUSTED, 1),  # gcd(18, 65): group by age
        ("CASE WHEN age < 1e400 THEN 1 END", TRUSTED, None),  # no exact bound: floor_by(age, K)
        ("CASE WHEN age < 'NaN'::float8 THEN 1 END", TRUSTED, None),
    ],
)
def test_bin_size_divides_every_bound_of_the_case(case: str, level: str, size: int | None) -> None:
    hint = refusal(f"SELECT {case}, count(*) FROM panel GROUP BY 1", level)[2]
    assert hint is not None
    if size is None:
        assert hint.startswith("Group by diffix.floor_by(age, K) with a bin size K that divides")
    elif size == 1:
        assert hint.startswith("Group by age and apply the CASE")
    else:
        assert hint.startswith(f"Group by diffix.floor_by(age, {size}), whose buckets")


def test_case_rewrite_keeps_a_quoted_alias() -> None:
    sql = 'SELECT CASE WHEN p.age < 40 THEN 1 END AS "Age Group", count(*) FROM panel p GROUP BY 1'
    hint = refusal(sql, TRUSTED)[2]
    assert hint is not None
    assert (
        'SELECT CASE WHEN age < 40 THEN 1 END AS "Age Group", sum(n) FROM (SELECT diffix.floor_by(age, 40) AS age, count(*) AS n FROM panel AS p GROUP BY 1) t GROUP BY 1.'
        in hint
    )


@pytest.mark.parametrize(
    ("sql", "level", "start"),
    [
        (
            "SELECT CASE WHEN hhninc < 1000.5 THEN 1 END, count(*) FROM panel GROUP BY 1",
            TRUSTED,
            "Group by diffix.floor_by(hhninc, K) with a bin size K that divides the CASE's bounds, and apply",
        ),
        (
            "SELECT CASE WHEN hhninc <= 1000 THEN 1 END, count(*) FROM panel GROUP BY 1",
            UNTRUSTED,
            "Group by diffix.floor_by(hhninc, K) with a bin size K (1, 2 or 5 times a power of ten) that divides the CASE's bounds, and apply",
        ),
        (
            "SELECT CASE city WHEN 'Berlin' THEN 1 END, count(*) FROM panel GROUP BY 1",
            TRUSTED,
            "Group by city and apply the CASE to the anonymized buckets in an outer query: SELECT CASE city WHEN 'Berlin' THEN 1 END, sum(n) FROM (SELECT city, count(*) AS n FROM panel GROUP BY 1) t GROUP BY 1.",
        ),
    ],
)
def test_case_without_a_bin_size_on_its_bounds(sql: str, level: str, start: str) -> None:
    hint = refusal(sql, level)[2]
    assert hint is not None and hint.startswith(start) and hint.endswith(OUTER_SUM)


@pytest.mark.parametrize(
    ("level", "listed"),
    [
        (
            TRUSTED,
            "substring(col, start, length), floor(col), round(col), ceil(col), width_bucket(col, low, high, count), date_trunc('unit', col), extract(field FROM col), date_part('field', col), diffix.floor_by(col, K), diffix.round_by(col, K), diffix.ceil_by(col, K), and casts between numeric types or from date/time to text",
        ),
        (
            UNTRUSTED,
            "substring(col, 1, length), floor(col), round(col) and diffix.floor_by(col, K) with K 1, 2 or 5 times a power of ten",
        ),
    ],
)
def test_case_over_several_columns_lists_the_generalizations_of_the_level(
    level: str, listed: str
) -> None:
    sql = "SELECT CASE WHEN age < 40 AND female = 1 THEN 1 END, count(*) FROM panel GROUP BY 1"
    assert refusal(sql, level)[2] == (
        f"Group by the bare column or one of: {listed}; then apply CASE to the anonymized result in an outer query, "
        "e.g. SELECT CASE ... END, sum(n) FROM (SELECT col, count(*) AS n FROM ... GROUP BY col) t GROUP BY 1. "
        + OUTER_SUM
    )


@pytest.mark.parametrize("level", [TRUSTED, UNTRUSTED])
def test_coalesce_in_group_by_is_named(level: str) -> None:
    assert refusal("SELECT coalesce(city, '?'), count(*) FROM panel GROUP BY 1", level) == (
        "COALESCE cannot be used as a grouping expression of a query that reads personal tables",
        "offending expression: coalesce(city, '?')",
        "Group by city and apply the COALESCE to the anonymized buckets in an outer query: SELECT COALESCE(city, '?'), "
        "sum(n) FROM (SELECT city, count(*) AS n FROM panel GROUP BY 1) t GROUP BY 1. " + OUTER_SUM,
    )


NOT_MESSAGE = "NOT cannot be used in the WHERE clause of a query that reads personal tables: only equality conditions joined by AND are allowed"
NOT_HINT = (
    "Negations (NOT, <>) are not allowed in this WHERE clause. Write female = 0 if female holds only the values 0 and 1, "
    "or count per value and drop female = 1 in an outer query, where any condition works: "
    "SELECT female, n FROM (SELECT female, count(*) AS n FROM panel GROUP BY female) t WHERE female <> 1."
)


@pytest.mark.parametrize("level", [TRUSTED, UNTRUSTED])
def test_not_in_where_blames_the_not(level: str) -> None:
    assert refusal("SELECT count(*) FROM panel WHERE NOT female = 1", level) == (
        NOT_MESSAGE,
        "offending expression: NOT female = 1",
        NOT_HINT,
    )


def test_not_in_where_at_the_dp_level() -> None:
    assert dp_refusal("SELECT count(*) FROM panel WHERE NOT female = 1") == (
        NOT_MESSAGE,
        "offending expression: NOT female = 1",
        NOT_HINT,
    )


@pytest.mark.parametrize("level", [TRUSTED, UNTRUSTED])
def test_the_suggested_equality_and_outer_query_are_accepted(level: str) -> None:
    assert accepted("SELECT count(*) FROM panel WHERE female = 0", level)
    assert accepted(
        "SELECT female, n FROM (SELECT female, count(*) AS n FROM panel GROUP BY female) t WHERE female <> 1",
        level,
    )


def test_not_filterable_column_is_offered_only_the_outer_query_when_untrusted() -> None:
    catalog = panel_catalog(not_filterable=("female",))
    sql = "SELECT count(*) FROM panel WHERE year = 2000 AND NOT (female = 1)"
    outer = (
        "per value and drop female = 1 in an outer query, where any condition works: SELECT female, n FROM "
        "(SELECT female, count(*) AS n FROM panel WHERE year = 2000 GROUP BY female) t WHERE female <> 1."
    )
    assert refusal(sql, UNTRUSTED, catalog) == (
        NOT_MESSAGE,
        "offending expression: NOT (female = 1)",
        "Negations (NOT, <>) are not allowed in this WHERE clause. Count " + outer,
    )
    assert refusal(sql, TRUSTED, catalog)[2] == (
        "Negations (NOT, <>) are not allowed in this WHERE clause. Write female = 0 if female holds only the values "
        "0 and 1, or count " + outer
    )


@pytest.mark.parametrize(
    ("condition", "message_start", "hint_start"),
    [
        (
            "insured <> true",
            "<> cannot",
            "Negations (NOT, <>) are not allowed in this WHERE clause. Write insured = false, or count",
        ),
        (
            "NOT city = 'Berlin'",
            "NOT cannot",
            "Negations (NOT, <>) are not allowed in this WHERE clause. Write an equality for each value you want (city = ...), or count",
        ),
        ("NOT city <> 'Berlin'", "NOT cannot", "NOT ... <> is an equality: write city = 'Berlin'."),
        (
            "NOT (city = 'Berlin' AND year = 2000)",
            "NOT cannot",
            "Write the WHERE clause as `column = constant` conditions joined by AND",
        ),
    ],
)
def test_other_negations(condition: str, message_start: str, hint_start: str) -> None:
    message, _, hint = refusal(f"SELECT count(*) FROM panel WHERE {condition}", TRUSTED)
    assert message.startswith(message_start)
    assert hint is not None and hint.startswith(hint_start)


COMMA_JOIN = "SELECT count(*) FROM panel p1, panel p2 WHERE p1.person_id = p2.person_id"
COMMA_MESSAGE = "a join condition in WHERE (an implicit join of a comma-separated FROM list) is not allowed in queries that read personal tables"


@pytest.mark.parametrize("level", [TRUSTED, UNTRUSTED])
def test_comma_join_on_the_aid_suggests_join_on(level: str) -> None:
    assert refusal(COMMA_JOIN, level) == (
        COMMA_MESSAGE,
        "offending expression: p1.person_id = p2.person_id",
        "Join with JOIN ... ON instead: FROM panel p1 JOIN panel p2 ON p1.person_id = p2.person_id.",
    )
    assert accepted(
        "SELECT count(*) FROM panel p1 JOIN panel p2 ON p1.person_id = p2.person_id", level
    )


def test_comma_join_keeps_the_other_conditions_in_where() -> None:
    sql = "SELECT count(*) FROM panel a CROSS JOIN panel b, panel c WHERE a.year = 2000 AND b.person_id = a.person_id AND c.person_id = b.person_id"
    assert refusal(sql, TRUSTED) == (
        COMMA_MESSAGE,
        "offending expression: b.person_id = a.person_id",
        "Join with JOIN ... ON instead: FROM panel a JOIN panel b ON b.person_id = a.person_id "
        "JOIN panel c ON c.person_id = b.person_id WHERE a.year = 2000.",
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM panel p1, panel p2",
        "SELECT count(*) FROM panel a, panel b, panel c WHERE a.person_id = b.person_id",  # c unjoined
    ],
)
def test_comma_join_without_a_condition_for_every_table(sql: str) -> None:
    message, _, hint = refusal(sql, TRUSTED)
    assert (
        message
        == "CROSS JOIN and comma-separated FROM lists are not allowed in queries that read personal tables"
    )
    assert hint == "Join on equal columns instead: FROM a JOIN b ON a.col = b.col."


# Refusals whose hints list generalizations; at the untrusted level none may offer what it refuses.
GENERALIZATION_HINTS = [
    CASE_SQL,
    "SELECT CASE WHEN age < 40 AND female = 1 THEN 1 END, count(*) FROM panel GROUP BY 1",
    "SELECT CASE WHEN hhninc < 1000 THEN 1 END, count(*) FROM panel GROUP BY 1",
    "SELECT greatest(age, year), count(*) FROM panel GROUP BY 1",
    "SELECT abs(age), count(*) FROM panel GROUP BY 1",
    "SELECT age + 1, count(*) FROM panel GROUP BY 1",
    "SELECT age::text, count(*) FROM panel GROUP BY 1",
    "SELECT age::interval, count(*) FROM panel GROUP BY 1",
    "SELECT (hhninc * 2)::integer, count(*) FROM panel GROUP BY 1",
    "SELECT width_bucket(age + 1, 0, 100, 10), count(*) FROM panel GROUP BY 1",
    "SELECT diffix.round_by(age, 10), count(*) FROM panel GROUP BY 1",
    "SELECT hhninc::integer, count(*) FROM panel GROUP BY 1",
    "SELECT date_trunc('month', visited), count(*) FROM panel GROUP BY 1",
    "SELECT count(*) FROM panel WHERE NOT female = 1",
]
REFUSED_WHEN_UNTRUSTED = (
    "width_bucket",
    "round_by",
    "ceil_by",
    "ceil(",
    "date_trunc",
    "extract",
    "date_part",
    "CAST(",
    "::integer",
    "AS integer",
)


@pytest.mark.parametrize("sql", GENERALIZATION_HINTS)
def test_untrusted_hints_offer_only_what_the_level_accepts(sql: str) -> None:
    _, _, hint = refusal(sql, UNTRUSTED)
    assert hint is not None
    offered = [word for word in REFUSED_WHEN_UNTRUSTED if word in hint]
    assert offered == [], hint


def test_trusted_hints_still_offer_the_trusted_generalizations() -> None:
    hint = refusal("SELECT abs(age), count(*) FROM panel GROUP BY 1", TRUSTED)[2]
    assert (
        hint is not None
        and "width_bucket(col, low, high, count)" in hint
        and "diffix.ceil_by(col, K)" in hint
    )
    hint = refusal("SELECT age::text, count(*) FROM panel GROUP BY 1", TRUSTED)[2]
    assert (
        hint
        == "Group by the column itself, or generalize numbers with diffix.floor_by(col, K) or width_bucket(col, low, high, count)."
    )
    hint = refusal("SELECT hhninc::text, count(*) FROM panel GROUP BY 1", UNTRUSTED)[2]
    assert hint == (
        "Select the column without the cast and cast the anonymized result in an outer query, or generalize with "
        "substring(col, 1, length), floor(col), round(col) and diffix.floor_by(col, K) with K 1, 2 or 5 times a power of ten."
    )
