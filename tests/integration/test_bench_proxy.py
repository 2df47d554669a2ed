"""The proxy benchmark end to end on a tiny scale: its output's structure, never its timings."""

from __future__ import annotations

import json

import pytest

from pldiffix_tools import bench_proxy

pytestmark = pytest.mark.db


def test_bench_proxy_runs_end_to_end(server_dsn, tmp_path, capsys):
    report = tmp_path / "proxy.json"
    argv = ["--dsn", server_dsn, "--runs", "3", "--clients", "3", "--queries", "4"]
    assert bench_proxy.main([*argv, "--json", str(report), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "== proxy overhead per query" in out
    assert "== load: 3 clients x 4 queries" in out and "0 errors" in out
    doc = json.loads(report.read_text())
    assert [c["name"] for c in doc["comparisons"]] == [
        "relay: SELECT 1",
        "anonymized, simple protocol",
        "anonymized, extended protocol",
        "anonymized, simple, new texts",
    ]
    for comparison in doc["comparisons"]:
        assert comparison["direct_ms"] > 0 and comparison["proxy_ms"] > 0
    assert doc["load"]["errors"] == 0 and doc["load"]["leaked_connections"] == 0


@pytest.mark.parametrize("bad", [["--runs", "0"], ["--clients", "-1"], ["--queries", "x"]])
def test_bench_proxy_refuses_bad_arguments(bad):
    with pytest.raises(SystemExit) as exit_:
        bench_proxy.parse_args(bad)
    assert exit_.value.code == 2
