"""The DP side by side end to end on a tiny scale, pldiffix only (the peers are the bench
extra): the structure of its output, never its figures."""

from __future__ import annotations

import json

import pytest

from pldiffix_tools import bench_dp_peers as peers

pytestmark = pytest.mark.db


def test_the_side_by_side_runs_on_a_tiny_scale(server_dsn, tmp_path, capsys):
    report = tmp_path / "peers.json"
    argv = ["--dsn", server_dsn, "--error-rows", "3000", "--runs", "2", "--time-rows", "2000"]
    argv += ["--time-runs", "1", "--systems", "pldiffix", "--json", str(report)]
    assert peers.main(argv) == 0
    out = capsys.readouterr().out
    assert "== 3k people, 9k tx" in out and "== 2k people, 6k tx" in out
    assert "target undeclared keys" not in out  # no OpenDP figure to compare with
    assert "target median <= 2x Tumult's 0.98" in out
    document = json.loads(report.read_text())
    for case in peers.CASES:
        timed = document[f"{case.name} / pldiffix"]
        assert timed["note"] is None and timed["time_ms"] > 0
        for output in case.outputs:
            assert document[f"{output} / pldiffix"]["error"] >= 0
    with peers.psycopg.connect(server_dsn, autocommit=True) as conn:  # cleaned up after itself
        assert conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (peers.DB,)
        ).fetchone() == (0,)
