"""The row estimate of a partitioned table, read from EXPLAIN (FORMAT JSON)."""

from __future__ import annotations

import json

import pytest

from pldiffix.diffix.shards import plan_rows


def test_plan_rows_reads_the_top_node() -> None:
    document = [{"Plan": {"Node Type": "Append", "Plan Rows": 3000, "Plans": []}}]
    assert plan_rows(document) == 3000.0
    assert plan_rows(json.dumps(document)) == 3000.0


@pytest.mark.parametrize("document", [[], [{}], [{"Plan": {}}], [{"Plan": {"Plan Rows": -1}}]])
def test_plan_rows_without_an_estimate(document: object) -> None:
    assert plan_rows(document) is None
