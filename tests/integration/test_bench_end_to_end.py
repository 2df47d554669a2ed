"""The benchmark end to end on a tiny scale: the structure of its output, never its timings."""

from __future__ import annotations

import json

import pytest

from pldiffix_tools import bench
from pldiffix_tools.bench_server import connect

pytestmark = pytest.mark.db


def test_bench_runs_end_to_end_on_a_tiny_scale(server_dsn, tmp_path, capsys):
    report = tmp_path / "bench.json"
    argv = [
        "--dsn",
        server_dsn,
        "--rows",
        "2000",
        "--repeat",
        "1",
        "--sessions",
        "1",
        "--no-pg-diffix",
        "--pldiffix-setting",
        "max_pass_mb=1",
    ]
    assert bench.main([*argv, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "== 2k customers, 6k transactions" in out
    assert "geomean" in out and "new session (median of 1)" in out
    for query in bench.QUERIES:
        assert query.name in out

    doc = json.loads(report.read_text())
    assert doc["repeat"] == 1 and doc["server_version"]
    assert doc["pldiffix_settings"] == {"max_pass_mb": "1"}
    [scale] = doc["scales"]
    assert scale["customers"] == 2000 and scale["transactions"] == 6000
    assert [q["sql"] for q in scale["queries"]] == [q.sql for q in bench.QUERIES]
    for query in scale["queries"]:
        plain = query["plain"]
        assert plain["error"] is None and plain["best_ms"] > 0 and len(plain["runs_ms"]) == 1
        anonymized = query["anonymized"]
        assert anonymized["error"] is None, anonymized["error"]
        assert anonymized["best_ms"] > 0 and query["ratio"] > 0
    assert [q["name"] for q in scale["dp"]] == [q.name for q in bench.DP_QUERIES]
    for query in scale["dp"]:
        assert query["plain"]["error"] is None and query["anonymized"]["error"] is None, query
        assert query["ratio"] > 0
    assert "DP query (epsilon 1, delta 1e-6)" in out
    read = scale["perturbed_read"]
    assert read["plain"]["error"] is None and read["anonymized"]["error"] is None
    assert read["plain"]["rows"] == read["anonymized"]["rows"] == 2000 and read["ratio"] > 0
    assert "perturbed view (read every customer): base table" in out
    first = scale["first_call"]
    assert first["error"] is None, first["error"]
    assert first["access_level_first_ms"] > 0 and first["query_json_public_first_ms"] > 0
    with connect(server_dsn, "postgres") as conn:  # the benchmark cleans up after itself
        left = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'"
        ).fetchall()
    assert left == []
