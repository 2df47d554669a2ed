"""The benchmark's pure helpers: row counts, geometric mean, tables, arguments, JSON."""

from __future__ import annotations

import json
import math

import pytest

from pldiffix_tools import bench, bench_report, bench_server
from pldiffix_tools.bench_report import FirstCall, Measurement, QueryResult, ScaleResult


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ("2000", 2000),
        ("100k", 100_000),
        ("100K", 100_000),
        ("1M", 1_000_000),
        ("2.5M", 2_500_000),
        ("1_000_000", 1_000_000),
        (" 10m ", 10_000_000),
        ("1G", 1_000_000_000),
    ],
)
def test_parse_rows(text, rows):
    assert bench_report.parse_rows(text) == rows


@pytest.mark.parametrize("text", ["", "0", "-5", "1.5", "1.0001k", "ten", "1T", "1e6"])
def test_parse_rows_rejects(text):
    with pytest.raises(ValueError):
        bench_report.parse_rows(text)


def test_parse_scales():
    assert bench_report.parse_scales("1M,10M") == [1_000_000, 10_000_000]
    assert bench_report.parse_scales("2000, 4k,") == [2000, 4000]
    with pytest.raises(ValueError):
        bench_report.parse_scales(" , ")


@pytest.mark.parametrize(
    ("rows", "text"), [(1_000_000, "1M"), (100_000, "100k"), (2500, "2500"), (1500, "1500")]
)
def test_format_rows(rows, text):
    assert bench_report.format_rows(rows) == text
    assert bench_report.parse_rows(text) == rows


def test_geomean():
    assert bench_report.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert bench_report.geomean([22.7, 19.9, 30.4, 19.6, 15.6]) == pytest.approx(21.1, abs=0.05)
    assert bench_report.geomean([3.0, None, 0.0, 3.0]) == pytest.approx(
        3.0
    )  # unusable values skipped
    assert bench_report.geomean([]) is None
    assert bench_report.geomean([None]) is None


def test_ratio():
    assert bench_report.ratio(10.0, 4.0) == 2.5
    assert bench_report.ratio(None, 4.0) is None
    assert bench_report.ratio(1.0, 0.0) is None


def test_render_table_aligns_columns():
    text = bench_report.render_table(["name", "ms"], [["a", "1.0"], ["longer", "10.5"]], right=[1])
    lines = text.splitlines()
    assert lines[0] == "  name   |   ms"
    assert lines[1] == "  -------+-----"
    assert lines[2] == "  a      |  1.0"
    assert lines[3] == "  longer | 10.5"


def _measurement(ms: float | None, error: str | None = None, peak: int | None = None):
    return Measurement(best_ms=ms, runs_ms=[ms] if ms else [], error=error, peak_private_kib=peak)


def _scale(customers: int, anonymized_ms: float, with_pg_diffix: bool = True) -> ScaleResult:
    queries = [
        QueryResult(
            "count by city",
            "SELECT 1",
            _measurement(10.0),
            _measurement(anonymized_ms, peak=2048),
            _measurement(10.0) if with_pg_diffix else None,
            _measurement(200.0) if with_pg_diffix else None,
        ),
        QueryResult(
            "count tx",
            "SELECT 2",
            _measurement(20.0),
            _measurement(None, error="not available in this version\nsecond line"),
            _measurement(20.0) if with_pg_diffix else None,
            _measurement(None, error="boom") if with_pg_diffix else None,
        ),
    ]
    first = FirstCall(sessions=3, connect_ms=5.0, access_level_first_ms=200.0)
    return ScaleResult(customers, 3 * customers, 12.0, queries, first)


def test_format_scale_shows_ratios_errors_and_geomean():
    result = _scale(1_000_000, 40.0)
    assert result.geomean == pytest.approx(4.0)
    assert result.pg_diffix_geomean == pytest.approx(20.0)
    text = bench_report.format_scale(result)
    assert text.startswith("== 1M customers, 3M transactions (built in 12 s)")
    header = text.splitlines()[1]
    for column in ("query", "plain ms", "anonymized ms", "ratio", "anon peak MiB", "pg_diffix ms"):
        assert column in header
    assert "4.00x" in text and "20.00x" in text and "2.0" in text
    assert "anonymized: not available in this version" in text
    assert "second line" not in text
    assert "pg_diffix: boom" in text
    assert "geomean" in text
    assert "first diffix.access_level() 200.0 ms" in text


def test_format_scale_without_pg_diffix_and_with_first_call_error():
    result = _scale(2000, 40.0, with_pg_diffix=False)
    result.pg_diffix_note = "the server does not offer the pg_diffix extension"
    result.first_call = FirstCall(sessions=1, error="no such function")
    text = bench_report.format_scale(result)
    assert "pg_diffix ms" not in text
    assert "pg_diffix: the server does not offer" in text
    assert "first call of a new session: no such function" in text


def test_format_scaling_compares_ratios_with_the_first_scale():
    assert bench_report.format_scaling([_scale(1_000_000, 40.0)]) is None
    text = bench_report.format_scaling([_scale(1_000_000, 40.0), _scale(10_000_000, 46.0)])
    assert "10M vs 1M" in text
    assert "15%" in text


def test_to_json_is_serializable():
    doc = bench_report.to_json([_scale(2000, 40.0)], {"repeat": 1})
    text = json.dumps(doc)
    back = json.loads(text)
    scale = back["scales"][0]
    assert back["repeat"] == 1
    assert scale["customers"] == 2000 and scale["transactions"] == 6000
    assert math.isclose(scale["geomean_ratio"], 4.0)
    assert scale["queries"][0]["ratio"] == 4.0
    assert scale["queries"][1]["anonymized"]["error"].startswith("not available")
    assert scale["first_call"]["sessions"] == 3


def test_parse_args_defaults_and_overrides(tmp_path):
    args = bench.parse_args([])
    assert args.scales == [1_000_000] and args.repeat == 5 and args.json is None
    assert not args.no_pg_diffix and args.setting == []
    args = bench.parse_args(
        [
            "--rows",
            "2000",
            "--repeat",
            "1",
            "--json",
            str(tmp_path / "r.json"),
            "--setting",
            "work_mem=64MB",
            "--pldiffix-setting",
            "max_pass_mb=64",
        ]
    )
    assert args.scales == [2000] and args.repeat == 1 and args.setting == [("work_mem", "64MB")]
    assert args.pldiffix_setting == [("max_pass_mb", "64")]
    assert bench.parse_args(["--rows", "5k", "--scale", "1M,10M"]).scales == [
        1_000_000,
        10_000_000,
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--rows", "lots"],
        ["--repeat", "0"],
        ["--scale", ","],
        ["--setting", "novalue"],
        ["--pldiffix-setting", "novalue"],
    ],
)
def test_parse_args_rejects(argv, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert "error" in capsys.readouterr().err


def test_proc_status_of_this_process_and_of_a_missing_one():
    import os

    status = bench_server.proc_status(os.getpid())
    if status:  # Linux
        assert status["VmRSS"] > 0
    assert bench_server.proc_status(2**31 - 1) == {}
