"""Matching a ``diffix.query_json`` document against a conformance case's expected answer.

Rules (see README.md):

* column names must be equal, in order;
* the number of rows must be equal;
* the first ``case.suppress_bin_rows`` rows are compared in place (the suppress bin comes first);
* the remaining rows are compared in place if ``case.ordered``, otherwise as a multiset;
* values: None only matches None, booleans only booleans, strings exactly, lists element-wise,
  numbers (int or float, JSON does not keep the difference) within ``REL_TOL`` relative
  (``ABS_TOL`` absolute near zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .cases import Case

REL_TOL = 1e-6
ABS_TOL = 1e-9


def values_equal(expected: Any, actual: Any) -> bool:
    """Whether one expected value matches one value of a query_json row."""
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(expected, list | tuple) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(
            values_equal(e, a) for e, a in zip(expected, actual, strict=True)
        )
    if isinstance(expected, str) and isinstance(actual, str):
        return expected == actual
    return False


def rows_equal(expected: Sequence[Any], actual: Sequence[Any]) -> bool:
    return len(expected) == len(actual) and all(
        values_equal(e, a) for e, a in zip(expected, actual, strict=True)
    )


def mismatches(case: Case, document: Mapping[str, Any]) -> list[str]:
    """Differences between ``document`` ({"columns": [...], "rows": [[...]]}) and ``case``.

    An empty list means the answer conforms. Only for cases with an expected answer.
    """
    if case.columns is None or case.rows is None:
        raise ValueError(f"{case.id} has no expected answer")
    problems: list[str] = []
    columns = list(document.get("columns", []))
    if columns != list(case.columns):
        problems.append(f"columns {columns!r} != expected {list(case.columns)!r}")
    actual = [list(row) for row in document.get("rows", [])]
    expected = [list(row) for row in case.rows]
    if len(actual) != len(expected):
        problems.append(f"{len(actual)} rows != expected {len(expected)}")
        return problems

    fixed = len(expected) if case.ordered else case.suppress_bin_rows
    for i in range(fixed):
        if not rows_equal(expected[i], actual[i]):
            problems.append(f"row {i}: {actual[i]!r} != expected {expected[i]!r}")

    unmatched = actual[fixed:]
    for row in expected[fixed:]:
        for j, candidate in enumerate(unmatched):
            if rows_equal(row, candidate):
                del unmatched[j]
                break
        else:
            problems.append(f"expected row {row!r} not found")
    problems.extend(f"unexpected row {row!r}" for row in unmatched)
    return problems
