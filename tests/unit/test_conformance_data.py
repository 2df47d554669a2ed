"""Integrity of the conformance data in tests/conformance (no database needed)."""

from __future__ import annotations

import importlib
import random
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

cases_mod = importlib.import_module("conformance.cases")
compare = importlib.import_module("conformance.compare")
schema = importlib.import_module("conformance.schema")

CASES = cases_mod.CASES
SKIPPED = cases_mod.SKIPPED
README = TESTS_DIR / "conformance" / "README.md"

SOURCES = (
    "_setup.sql",
    "admin.sql",
    "count_histogram.sql",
    "datetime.sql",
    "led.sql",
    "misc.sql",
    "noiseless.sql",
    "noisy.sql",
    "star_bucket.sql",
    "stress.sql",
    "validation.sql",
)
KNOWN_TAGS = {"prepared", "translated", "postgres-error", "mutates-state", "show-labels", "catalog"}
KNOWN_SETTINGS = {
    "strict",
    "noise_layer_sd",
    "low_count_min_threshold",
    "low_count_mean_gap",
    "low_count_layer_sd",
    "outlier_count_min",
    "outlier_count_max",
    "top_count_min",
    "top_count_max",
    "compute_suppress_bin",
    "text_label_for_suppress_bin",
}
KNOWN_PG_SETTINGS = {name for name, _ in schema.SESSION_BASELINE}
ID_RE = re.compile(r"^(?P<stem>[a-z_]+):(?P<line>[1-9]\d*)$")
TABLE_RE = re.compile(
    r"\b(test_\w+|empty_test_customers|count_histogram_test|led_\w+|star_bucket\w*|superclass"
    r"|subclass)\b"
)


def ids(items: Any) -> list[str]:
    return [item.id for item in items]


def is_json_value(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        return all(is_json_value(v) for v in value)
    return False


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_case_is_well_formed(case: Any) -> None:
    match = ID_RE.match(case.id)
    assert match, case.id
    assert case.source == f"{match['stem']}.sql"
    assert case.source in SOURCES
    assert case.level in schema.LEVELS
    assert case.kind in ("query", "statement")
    assert case.sql.strip() == case.sql and case.sql, "sql must be trimmed and not empty"
    assert not case.sql.endswith(";")

    # exactly one expected outcome for a query; a statement may also just succeed
    if case.kind == "query":
        assert case.has_answer != case.rejected, "query needs an answer xor a rejection"
    else:
        assert not (case.has_answer and case.rejected)
    assert (case.columns is None) == (case.rows is None)
    if case.rejected:
        assert case.error.strip()
        assert case.suppress_bin_rows == 0 and not case.ordered

    if case.has_answer:
        assert isinstance(case.columns, tuple)
        assert all(isinstance(name, str) for name in case.columns)
        assert isinstance(case.rows, tuple)
        for row in case.rows:
            assert isinstance(row, tuple)
            assert len(row) == len(case.columns), row
            assert all(is_json_value(v) for v in row), row
        assert 0 <= case.suppress_bin_rows <= len(case.rows)
        for row in case.rows[: case.suppress_bin_rows]:
            # a suppress bin row shows its text labels as '*' and other labels as NULL
            assert "*" in row or None in row, row
    else:
        assert case.suppress_bin_rows == 0 and not case.ordered

    assert set(case.tags) <= KNOWN_TAGS
    assert ("translated" in case.tags) == (case.original_sql is not None)
    assert ("prepared" in case.tags) == (case.prepare is not None)
    assert (case.prepare is not None) == case.sql.startswith("EXECUTE ")
    assert (case.sql_inlined is not None) == (case.prepare is not None)
    if case.prepare is not None:
        name = re.match(r"EXECUTE (\w+)\(", case.sql)[1]
        assert case.prepare.startswith(f"PREPARE {name}(")

    names = [name for name, _ in case.settings]
    assert len(names) == len(set(names)), "a setting appears twice"
    assert set(names) <= KNOWN_SETTINGS
    assert all(isinstance(value, str) for _, value in case.settings)
    pg_names = [name for name, _ in case.pg_settings]
    assert len(pg_names) == len(set(pg_names))
    assert set(pg_names) <= KNOWN_PG_SETTINGS

    if case.superuser and case.level != schema.DIRECT:
        assert case.source == "stress.sql"  # the only file that never switches role


def test_ids_are_unique_and_in_file_order() -> None:
    all_ids = ids(CASES) + ids(SKIPPED)
    assert len(all_ids) == len(set(all_ids))
    position = {}
    for case in CASES:
        stem, line = case.id.split(":")
        position.setdefault(stem, []).append(int(line))
    for stem, lines in position.items():
        assert lines == sorted(lines), stem
    sources = [c.source for c in CASES]
    assert sources == sorted(sources, key=SOURCES.index)


def test_skipped_are_well_formed() -> None:
    for item in SKIPPED:
        match = ID_RE.match(item.id)
        assert match, item.id
        assert item.source == f"{match['stem']}.sql"
        assert item.sql and item.reason


def test_cases_only_use_tables_of_the_schema() -> None:
    tables = set(schema.table_names())
    for case in CASES:
        for text in (case.sql, case.prepare or "", case.sql_inlined or ""):
            for name in TABLE_RE.findall(text):
                assert name in tables, (case.id, name)


def test_schema() -> None:
    assert set(schema.ROLE_FOR_LEVEL) == set(schema.LEVELS)
    statements = schema.setup_statements()
    assert statements and all(not s.rstrip().endswith(";") for s in statements)
    assert f"CALL diffix.configure('salt', '{schema.SALT}')" in statements
    names = schema.table_names()
    assert len(names) == len(set(names))
    for name in names:
        assert any(re.match(rf"CREATE TABLE {name}\b", s) for s in statements), name
    # inheritance only after both tables are labelled
    inherit = statements.index("ALTER TABLE subclass INHERIT superclass")
    assert statements.index("CALL diffix.mark_personal('subclass', 'y')") < inherit
    assert statements.index("CALL diffix.mark_personal('superclass', 'x')") < inherit
    assert schema.setup_sql().count(";\n") == len(statements)
    assert sum(n for _, n in schema.COUNT_HISTOGRAM_CONTRIBUTIONS) == len(
        schema.COUNT_HISTOGRAM_TEST.rows
    )


def _readme_counts() -> dict[str, tuple[int, ...]]:
    counts = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and (cells[0] in SOURCES or cells[0] == "total"):
            counts[cells[0]] = tuple(int(c) for c in cells[1:])
    return counts


def test_counts_match_readme() -> None:
    actual: Counter[tuple[str, str]] = Counter()
    for case in CASES:
        if case.kind == "query":
            column = "rejected_q" if case.rejected else "answered"
        else:
            column = "rejected_s" if case.rejected else "accepted"
        actual[(case.source, column)] += 1
    for item in SKIPPED:
        actual[(item.source, "skipped")] += 1

    columns = ("answered", "rejected_q", "accepted", "rejected_s", "skipped")
    expected = _readme_counts()
    assert set(expected) == {*SOURCES, "total"}
    for source in SOURCES:
        assert expected[source] == tuple(actual[(source, c)] for c in columns), source
    assert expected["total"] == tuple(sum(actual[(s, c)] for s in SOURCES) for c in columns)
    assert sum(expected["total"][:4]) == len(CASES)
    assert expected["total"][4] == len(SKIPPED)


ANSWERED = [c for c in CASES if c.has_answer]


@pytest.mark.parametrize("case", ANSWERED, ids=ids(ANSWERED))
def test_expected_answer_matches_itself(case: Any) -> None:
    rows = [list(r) for r in case.rows]
    document = {"columns": list(case.columns), "rows": rows}
    assert compare.mismatches(case, document) == []
    if not case.ordered:
        head, tail = rows[: case.suppress_bin_rows], rows[case.suppress_bin_rows :]
        random.Random(case.id).shuffle(tail)
        assert compare.mismatches(case, {"columns": list(case.columns), "rows": head + tail}) == []


def test_compare_rules() -> None:
    case = next(c for c in CASES if c.id == "noiseless:48")
    good = {"columns": ["city", "sum", "sum_noise"], "rows": [list(r) for r in case.rows]}
    assert compare.mismatches(case, good) == []
    # float4 widened to float8 stays within tolerance
    widened = [["*", None, None], ["Berlin", 9.0, 0.0], ["Rome", 4.833333492279053, 0]]
    assert compare.mismatches(case, {**good, "rows": widened}) == []
    # the suppress bin must come first
    moved = [good["rows"][1], good["rows"][0], good["rows"][2]]
    assert compare.mismatches(case, {**good, "rows": moved})
    # a value off by more than the tolerance
    off = [["*", None, None], ["Rome", 4.84, 0], ["Berlin", 9, 0]]
    assert compare.mismatches(case, {**good, "rows": off})
    # NULL is not zero, booleans are not numbers
    assert not compare.values_equal(None, 0)
    assert not compare.values_equal(False, 0)
    assert compare.values_equal([None, 3], [None, 3.0])
    with pytest.raises(ValueError):
        compare.mismatches(next(c for c in CASES if c.rejected), good)
