"""`make bench`: plain SQL vs. diffix.query_json (and pg_diffix when the server has it).

The issue 4 workload: N customers and 3N transactions, five queries, each timed plain as a
direct-level role and anonymized as an anonymized_trusted role. Warm-up run, then best of
--repeat. The server backend's private memory is sampled from /proc while the queries run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.cluster import EmbeddedCluster

# Server settings for the reference machine (2 cores, 24 GiB RAM). Documented in
# docs/benchmarks.md; --setting KEY=VALUE overrides any of them.
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "6GB",  # a quarter of RAM: the 10M data set (~2.5 GB) stays cached
    "effective_cache_size": "16GB",
    "work_mem": "256MB",  # hash aggregates over 1M-10M groups stay in memory
    "maintenance_work_mem": "1GB",
    "max_worker_processes": "4",
    "max_parallel_workers": "2",  # two cores
    "max_parallel_workers_per_gather": "2",
    "jit": "off",  # JIT compile time is noise at these sizes, and varies run to run
    "autovacuum": "off",  # the benchmark runs VACUUM ANALYZE itself; nothing runs behind it
    "wal_level": "minimal",  # bulk loads skip WAL; nothing replicates a throwaway cluster
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}

ROLE_DIRECT = "bench_direct"
ROLE_ANONYMIZED = "bench_anonymized"
ROLE_PG_DIFFIX = "bench_pg_diffix_trusted"
ROLE_DP = "bench_dp"
ROLE_PERTURBED = "bench_perturbed"
DB_DATA = "bench_data"
DB_PLDIFFIX = "bench_pldiffix"
DB_PG_DIFFIX = "bench_pg_diffix"


@dataclass(frozen=True)
class Query:
    name: str
    sql: str
    setup: str = ""  # run by the administrator before the query is measured (DP metadata)


QUERIES: tuple[Query, ...] = (
    Query("count by city", "SELECT city, count(*) FROM customers GROUP BY 1"),
    Query("count by age, city", "SELECT age, city, count(*) FROM customers GROUP BY 1, 2"),
    Query("count tx", "SELECT count(*) FROM tx"),
    Query(
        "floor_by(age), sum",
        "SELECT diffix.floor_by(age, 10), count(*), sum(amount) FROM customers GROUP BY 1",
    ),
    Query(
        "tx by kind, distinct",
        "SELECT kind, count(*), count(DISTINCT cid), sum(amount) FROM tx GROUP BY 1",
    ),
)

# Differentially private queries (docs/dp.md), as an anonymized_dp role with a budget that does
# not run out, against the same queries in plain SQL. customers gets a primary key first: one row
# per person, which the DP planner trusts instead of bounding contributions. tx has about 15
# rows per person over 50 kinds: its contributions are bounded, in all (max_contributions 20)
# or per kind (20 kinds per person, 5 rows per kind).
TOTAL_BOUND = "CALL diffix.set_dp_max_contributions('tx', 20)"
PER_KIND_BOUNDS = "CALL diffix.set_dp_bounds_per_partition('tx', 20, 5)"
TX_BY_KIND = "SELECT kind, count(*), sum(amount) FROM tx GROUP BY kind"
DP_QUERIES: tuple[Query, ...] = (
    Query("DP count by city", "SELECT city, count(*) FROM customers GROUP BY city"),
    Query("DP sum by city", "SELECT city, sum(amount) FROM customers GROUP BY city"),
    Query("DP tx count, sum by kind (k 20)", TX_BY_KIND, TOTAL_BOUND),
    Query("DP tx count, sum by kind (L0 20, Linf 5)", TX_BY_KIND, PER_KIND_BOUNDS),
    Query(
        "DP tx by floor_by(kind, 10) (L0 20, Linf 5)",
        "SELECT diffix.floor_by(kind, 10), count(*), sum(amount) FROM tx GROUP BY 1",
        PER_KIND_BOUNDS,
    ),
    Query(
        "DP tx count, sum (L0 20, Linf 5)", "SELECT count(*), sum(amount) FROM tx", PER_KIND_BOUNDS
    ),
    Query(
        "DP tx median by kind (L0 20, Linf 5)",
        "SELECT kind, percentile_cont(0.5) WITHIN GROUP (ORDER BY amount) FROM tx GROUP BY kind",
        PER_KIND_BOUNDS,
    ),
)
# Each run asks a fresh epsilon in (0.999, 1] (dp_max_epsilon is 1): an identical query would be
# a free replay of the stored answer (docs/dp.md, "Free replays"), which is not what is measured.
DP_CALL = "SELECT diffix.dp_query_json(%s, 1.0 - pg_catalog.random() / 1000, 1e-6)"
DP_SETUP = f"""
CALL diffix.set_dp_bounds('customers', 'amount', 0, 1000);
CALL diffix.set_dp_bounds('tx', 'amount', 0, 1000);
CREATE ROLE {ROLE_DP} LOGIN;
CALL diffix.mark_role('{ROLE_DP}', 'anonymized_dp');
CALL diffix.set_privacy_budget('{ROLE_DP}', 1e9, 0.5);
"""

# The workload of issue 4, scaled: {n} customers, {tx} = 3n transactions.
DATA_SQL = """
CREATE TABLE customers AS SELECT i AS id,
  (ARRAY['Berlin','Rome','London','Paris','Madrid','Vienna','Oslo','Lisbon'])[1 + (i % 8)] AS city,
  18 + (hashint4(i) & 2147483647) % 70 AS age,
  ((hashint4(i+7) & 2147483647) % 100000) / 100.0 AS amount
  FROM generate_series(1, {n}) i;
CREATE TABLE tx AS SELECT (1 + (hashint4(j) & 2147483647) % {tx_customers}) AS cid,
  (j % 50) AS kind, ((hashint4(j+3) & 2147483647) % 10000) / 10.0 AS amount
  FROM generate_series(1, {tx}) j;
CREATE TABLE cities (name text, country text);
INSERT INTO cities VALUES ('Berlin', 'DE'), ('Rome', 'IT'), ('London', 'GB'), ('Paris', 'FR'),
  ('Madrid', 'ES'), ('Vienna', 'AT'), ('Oslo', 'NO'), ('Lisbon', 'PT');
"""
PUBLIC_QUERY = "SELECT name, country FROM cities"
# Row-level perturbation (docs/perturbation.md): every customer read through the perturbed view
# (age and amount noisy) by a perturbed role, against the base table read by the direct role.
PERTURBATION = """
CALL diffix.mark_perturbed('customers', 'id');
CALL diffix.perturb_column('customers', 'age', 'uniform', '{"a": 2, "min": 18}');
CALL diffix.perturb_column('customers', 'amount', 'gaussian', '{"sd_fraction": 0.05, "min": 0}');
"""
PERTURBED_READ = Query("read every customer", "SELECT * FROM customers")
PERTURBED_VIEW_SQL = "SELECT * FROM diffix_perturbed.customers"


# --- pure helpers ---------------------------------------------------------------------------

_SUFFIXES = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_rows(text: str) -> int:
    """'2000', '100k', '1M', '2.5M', '1_000_000' -> a positive number of rows."""
    match = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise ValueError(f"not a row count: {text!r} (examples: 2000, 100k, 1M, 2.5M)")
    value = float(match.group(1).replace("_", "")) * _SUFFIXES[match.group(2).lower()]
    if value < 1 or value != int(value):
        raise ValueError(f"not a whole positive row count: {text!r}")
    return int(value)


def parse_scales(text: str) -> list[int]:
    """'1M,10M' -> [1000000, 10000000]."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("empty scale list")
    return [parse_rows(part) for part in parts]


def format_rows(count: int) -> str:
    """1000000 -> '1M', 100000 -> '100k', 2500 -> '2500'."""
    for suffix, factor in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{suffix}"
    return str(count)


def geomean(values: Sequence[float | None]) -> float | None:
    """Geometric mean of the positive values; None when there are none."""
    usable = [v for v in values if v is not None and v > 0]
    if not usable:
        return None
    return math.exp(sum(math.log(v) for v in usable) / len(usable))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> str:
    """Text table; columns whose index is in `right` are right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(values: Sequence[str]) -> str:
        cells = [
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return ("  " + " | ".join(cells)).rstrip()

    separator = "  " + "-+-".join("-" * w for w in widths)
    return "\n".join([line(headers), separator, *(line(row) for row in rows)])


def _short_error(message: str | None, limit: int = 70) -> str:
    if not message:
        return ""
    first = message.strip().splitlines()[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


# --- results ----------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One query on one path: best wall-clock time and the backend's memory."""

    best_ms: float | None = None
    runs_ms: list[float] = field(default_factory=list)
    warmup_ms: float | None = None
    error: str | None = None
    rows: int | None = None
    backend_pid: int | None = None
    start_private_kib: int | None = None  # RssAnon after connecting, before the query
    peak_private_kib: int | None = None  # highest RssAnon sampled during warm-up and runs
    peak_rss_kib: int | None = None  # VmHWM: includes the shared buffers the backend touched


@dataclass
class QueryResult:
    name: str
    sql: str
    plain: Measurement
    anonymized: Measurement
    pg_diffix_plain: Measurement | None = None  # plain, in pg_diffix's database, as superuser
    pg_diffix: Measurement | None = None

    @property
    def ratio(self) -> float | None:
        return ratio(self.anonymized.best_ms, self.plain.best_ms)

    @property
    def pg_diffix_ratio(self) -> float | None:
        if self.pg_diffix is None or self.pg_diffix_plain is None:
            return None
        return ratio(self.pg_diffix.best_ms, self.pg_diffix_plain.best_ms)


@dataclass
class FirstCall:
    """Latency of a fresh session's first and second calls (median over sessions)."""

    sessions: int = 0
    connect_ms: float | None = None
    access_level_first_ms: float | None = None
    access_level_second_ms: float | None = None
    query_json_public_first_ms: float | None = None
    query_json_public_second_ms: float | None = None
    private_kib_after_import: int | None = None
    error: str | None = None


@dataclass
class ScaleResult:
    customers: int
    transactions: int
    build_seconds: float
    queries: list[QueryResult]
    first_call: FirstCall
    pg_diffix_note: str | None = None
    dp: list[QueryResult] = field(default_factory=list)  # `anonymized` is the DP answer
    # plain: the base table as the direct role; anonymized: the perturbed view (target: 3x)
    perturbed_read: QueryResult | None = None

    @property
    def geomean(self) -> float | None:
        return geomean([q.ratio for q in self.queries])

    @property
    def pg_diffix_geomean(self) -> float | None:
        return geomean([q.pg_diffix_ratio for q in self.queries])


def _mib(kib: int | None) -> float | None:
    return None if kib is None else kib / 1024


def format_scale(result: ScaleResult) -> str:
    """The results table of one scale, geometric means and notes."""
    with_pg_diffix = any(q.pg_diffix is not None for q in result.queries)
    headers = ["query", "plain ms", "anonymized ms", "ratio", "anon peak MiB"]
    if with_pg_diffix:
        headers += ["pg_diffix plain ms", "pg_diffix ms", "pg_diffix ratio"]
    headers.append("notes")
    rows = []
    for q in result.queries:
        row = [
            q.name,
            _fmt(q.plain.best_ms),
            "error" if q.anonymized.error else _fmt(q.anonymized.best_ms),
            _fmt(q.ratio, 2, "x"),
            _fmt(_mib(q.anonymized.peak_private_kib)),
        ]
        notes = []
        if q.plain.error:
            notes.append(f"plain: {_short_error(q.plain.error)}")
        if q.anonymized.error:
            notes.append(f"anonymized: {_short_error(q.anonymized.error)}")
        if with_pg_diffix:
            pgd_plain = q.pg_diffix_plain or Measurement(error="not run")
            pgd = q.pg_diffix or Measurement(error="not run")
            row += [
                "error" if pgd_plain.error else _fmt(pgd_plain.best_ms),
                "error" if pgd.error else _fmt(pgd.best_ms),
                _fmt(q.pg_diffix_ratio, 2, "x"),
            ]
            if pgd_plain.error:
                notes.append(f"pg_diffix plain: {_short_error(pgd_plain.error)}")
            if pgd.error:
                notes.append(f"pg_diffix: {_short_error(pgd.error)}")
        row.append("; ".join(notes))
        rows.append(row)
    summary = ["geomean", "", "", _fmt(result.geomean, 2, "x"), ""]
    if with_pg_diffix:
        summary += ["", "", _fmt(result.pg_diffix_geomean, 2, "x")]
    summary.append("")
    rows.append(summary)
    right = [1, 2, 3, 4] + ([5, 6, 7] if with_pg_diffix else [])
    title = (
        f"== {format_rows(result.customers)} customers, {format_rows(result.transactions)} "
        f"transactions (built in {result.build_seconds:.0f} s)"
    )
    lines = [title, render_table(headers, rows, right)]
    if result.dp:
        dp_rows = [
            [
                q.name,
                _fmt(q.plain.best_ms),
                "error" if q.anonymized.error else _fmt(q.anonymized.best_ms),
                _fmt(q.ratio, 2, "x"),
                _fmt(_mib(q.anonymized.peak_private_kib)),
                _short_error(q.anonymized.error or q.plain.error),
            ]
            for q in result.dp
        ]
        dp_headers = ["DP query (epsilon 1, delta 1e-6)", "plain ms", "DP ms", "ratio"]
        dp_headers += ["DP peak MiB", "notes"]
        lines.append(render_table(dp_headers, dp_rows, [1, 2, 3, 4]))
    read = result.perturbed_read
    if read is not None:
        error = read.plain.error or read.anonymized.error
        lines.append(
            f"  perturbed view ({read.name}): base table {_fmt(read.plain.best_ms)} ms, "
            f"perturbed view {_fmt(read.anonymized.best_ms)} ms, ratio {_fmt(read.ratio, 2, 'x')}"
            + (f" ({_short_error(error)})" if error else "")
        )
    if result.pg_diffix_note:
        lines.append(f"  pg_diffix: {result.pg_diffix_note}")
    fc = result.first_call
    if fc.error:
        lines.append(f"  first call of a new session: {fc.error}")
    else:
        lines.append(
            f"  new session (median of {fc.sessions}): connect {_fmt(fc.connect_ms)} ms, "
            f"first diffix.access_level() {_fmt(fc.access_level_first_ms)} ms "
            f"(then {_fmt(fc.access_level_second_ms, 2)} ms), first query_json on a public "
            f"table {_fmt(fc.query_json_public_first_ms)} ms "
            f"(then {_fmt(fc.query_json_public_second_ms, 2)} ms), backend private memory "
            f"after import {_fmt(_mib(fc.private_kib_after_import))} MiB"
        )
    return "\n".join(lines)


def format_scaling(results: Sequence[ScaleResult]) -> str | None:
    """How each ratio changed from the first scale to the others (target: within 20%)."""
    if len(results) < 2:
        return None
    base = results[0]
    headers = ["query"] + [
        f"{format_rows(r.customers)} vs {format_rows(base.customers)}" for r in results[1:]
    ]
    rows = []
    for index, query in enumerate(base.queries):
        row = [query.name]
        for other in results[1:]:
            change = ratio(other.queries[index].ratio, query.ratio)
            row.append(_fmt(None if change is None else (change - 1) * 100, 0, "%"))
        rows.append(row)
    return "== change of anonymized/plain ratio with scale\n" + render_table(
        headers, rows, right=range(1, len(headers))
    )


def to_json(results: Sequence[ScaleResult], meta: dict[str, Any]) -> dict[str, Any]:
    scales = []
    for r in results:
        queries = []
        for q in r.queries:
            entry = asdict(q)
            entry["ratio"] = q.ratio
            entry["pg_diffix_ratio"] = q.pg_diffix_ratio
            queries.append(entry)
        scales.append(
            {
                "customers": r.customers,
                "transactions": r.transactions,
                "build_seconds": r.build_seconds,
                "geomean_ratio": r.geomean,
                "pg_diffix_geomean_ratio": r.pg_diffix_geomean,
                "pg_diffix_note": r.pg_diffix_note,
                "first_call": asdict(r.first_call),
                "queries": queries,
                "dp": [asdict(q) | {"ratio": q.ratio} for q in r.dp],
                "perturbed_read": None
                if r.perturbed_read is None
                else {**asdict(r.perturbed_read), "ratio": r.perturbed_read.ratio},
            }
        )
    return {**meta, "scales": scales}


# --- arguments --------------------------------------------------------------------------------


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _rows_arg(text: str) -> int:
    try:
        return parse_rows(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _scales_arg(text: str) -> list[int]:
    try:
        return parse_scales(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pldiffix_tools.bench",
        description="pldiffix benchmark: plain SQL vs. diffix.query_json (issue 4 workload)",
    )
    parser.add_argument(
        "--rows", type=_rows_arg, default=1_000_000, help="customers (tx = 3x); default 1M"
    )
    parser.add_argument(
        "--scale", type=_scales_arg, help="comma-separated customer counts, e.g. 1M,10M"
    )
    parser.add_argument("--repeat", type=_positive, default=5, help="timed runs (best of N)")
    parser.add_argument(
        "--sessions", type=_positive, default=5, help="fresh sessions for first-call latency"
    )
    parser.add_argument("--json", type=Path, help="write machine-readable results here")
    parser.add_argument(
        "--dsn", help="superuser DSN of an existing server (default: a throwaway cluster)"
    )
    parser.add_argument(
        "--setting",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a server setting of the throwaway cluster (repeatable)",
    )
    parser.add_argument(
        "--pldiffix-setting",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a pldiffix setting (diffix.configure), e.g. max_pass_mb=64 (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="statement timeout in seconds per run"
    )
    parser.add_argument("--no-pg-diffix", action="store_true", help="skip pg_diffix")
    parser.add_argument(
        "--synthesis",
        type=_scales_arg,
        metavar="ROWS",
        help="only time diffix.synthesize on an 8-column table of these sizes, e.g. 100k,300k",
    )
    parser.add_argument(
        "--only-dp", action="store_true", help="time the DP queries only (implies --no-pg-diffix)"
    )
    args = parser.parse_args(argv)
    args.no_pg_diffix = args.no_pg_diffix or args.only_dp
    args.scales = args.scale or [args.rows]
    return args


# --- measuring --------------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon... of a local process in KiB; empty when unreadable."""
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            values[key] = int(parts[0])
    return values


def _reset_peak(pid: int) -> None:
    """Resets VmHWM (needs the right to write /proc/<pid>/clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class MemorySampler:
    """Samples a process's private memory (RssAnon) in a thread and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.005):
        self.pid = pid
        self.interval = interval
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        value = _proc_status(self.pid).get("RssAnon")
        if value is not None and (self.peak is None or value > self.peak):
            self.peak = value

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _error_text(error: Exception) -> str:
    if isinstance(error, psycopg.Error) and error.diag.message_primary:
        return error.diag.message_primary
    return str(error).strip() or type(error).__name__


def _run_once(conn: psycopg.Connection, query: str, params: Sequence[Any] | None) -> int:
    with conn.cursor() as cur:
        cur.execute(query, params, prepare=False)
        return len(cur.fetchall())


def measure(
    dsn: str, query: str, params: Sequence[Any] | None, repeat: int, timeout: float
) -> Measurement:
    """Fresh session; warm-up run, then best of `repeat`; never raises."""
    result = Measurement()
    try:
        conn = psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as error:
        result.error = f"cannot connect: {_error_text(error)}"
        return result
    with conn:
        try:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            result.backend_pid = pid
            result.start_private_kib = _proc_status(pid).get("RssAnon")
            _reset_peak(pid)
            with MemorySampler(pid) as sampler:
                start = time.perf_counter()
                result.rows = _run_once(conn, query, params)
                result.warmup_ms = (time.perf_counter() - start) * 1000
                for _ in range(repeat):
                    start = time.perf_counter()
                    _run_once(conn, query, params)
                    result.runs_ms.append((time.perf_counter() - start) * 1000)
            result.peak_private_kib = sampler.peak
            result.peak_rss_kib = _proc_status(pid).get("VmHWM")
            result.best_ms = min(result.runs_ms)
        except Exception as error:  # the benchmark reports every failure and goes on
            result.error = _error_text(error)
    return result


def first_call_latency(dsn: str, sessions: int) -> FirstCall:
    """Fresh sessions of the anonymized role: the import of the deployed code on first call."""
    samples: dict[str, list[float]] = {
        "connect_ms": [],
        "access_level_first_ms": [],
        "access_level_second_ms": [],
        "query_json_public_first_ms": [],
        "query_json_public_second_ms": [],
        "private_kib_after_import": [],
    }

    def timed(conn: psycopg.Connection, query: str, params: Any = None) -> float:
        start = time.perf_counter()
        conn.execute(query, params).fetchall()
        return (time.perf_counter() - start) * 1000

    try:
        for _ in range(sessions):
            start = time.perf_counter()
            with psycopg.connect(dsn, autocommit=True) as conn:
                samples["connect_ms"].append((time.perf_counter() - start) * 1000)
                samples["access_level_first_ms"].append(timed(conn, "SELECT diffix.access_level()"))
                samples["access_level_second_ms"].append(
                    timed(conn, "SELECT diffix.access_level()")
                )
            with psycopg.connect(dsn, autocommit=True) as conn:
                pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                query = "SELECT diffix.query_json(%s)"
                samples["query_json_public_first_ms"].append(timed(conn, query, (PUBLIC_QUERY,)))
                samples["query_json_public_second_ms"].append(timed(conn, query, (PUBLIC_QUERY,)))
                private = _proc_status(pid).get("RssAnon")
                if private is not None:
                    samples["private_kib_after_import"].append(private)
    except Exception as error:
        return FirstCall(sessions=sessions, error=_error_text(error))
    medians: dict[str, Any] = {
        key: statistics.median(values) if values else None for key, values in samples.items()
    }
    if medians["private_kib_after_import"] is not None:
        medians["private_kib_after_import"] = int(medians["private_kib_after_import"])
    return FirstCall(sessions=sessions, **medians)


# --- setting up -------------------------------------------------------------------------------


def _connect(dsn: str, dbname: str, user: str | None = None) -> psycopg.Connection:
    extra = {"user": user} if user else {}
    return psycopg.connect(make_conninfo(dsn, dbname=dbname, **extra), autocommit=True)


def _drop_everything(dsn: str) -> None:
    with _connect(dsn, "postgres") as admin:
        for db in (DB_PLDIFFIX, DB_PG_DIFFIX, DB_DATA):
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db))
            )
        for role in (ROLE_DIRECT, ROLE_ANONYMIZED, ROLE_PG_DIFFIX, ROLE_DP, ROLE_PERTURBED):
            admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


def build_data(dsn: str, customers: int) -> float:
    """The workload in a template database; returns seconds taken."""
    start = time.perf_counter()
    with _connect(dsn, "postgres") as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB_DATA)))
    with _connect(dsn, DB_DATA) as conn:
        conn.execute(
            DATA_SQL.format(n=customers, tx=3 * customers, tx_customers=max(1, customers // 5))
        )
        conn.execute("VACUUM (FREEZE, ANALYZE) customers, tx, cities")
    return time.perf_counter() - start


def _clone(dsn: str, name: str) -> None:
    with _connect(dsn, "postgres") as admin:
        admin.execute(
            pgsql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                pgsql.Identifier(name), pgsql.Identifier(DB_DATA)
            )
        )


# The same labels in both systems: both offer pg_diffix's admin procedures.
LABELS = (
    "CALL diffix.mark_personal('customers', 'id'); CALL diffix.mark_personal('tx', 'cid'); "
    "CALL diffix.mark_public('cities');"
)


def setup_pldiffix(dsn: str, configure: Sequence[tuple[str, str]] = ()) -> None:
    """pldiffix with its labels, a direct role, an anonymized_trusted role and the settings
    `configure` (name, value)."""
    _clone(dsn, DB_PLDIFFIX)
    install.install(make_conninfo(dsn, dbname=DB_PLDIFFIX), out=io.StringIO())
    with _connect(dsn, DB_PLDIFFIX) as conn:
        conn.execute(
            f"""
            {LABELS}
            CREATE ROLE {ROLE_DIRECT} LOGIN;
            CREATE ROLE {ROLE_ANONYMIZED} LOGIN;
            CALL diffix.mark_role('{ROLE_DIRECT}', 'direct');
            CALL diffix.mark_role('{ROLE_ANONYMIZED}', 'anonymized_trusted');
            GRANT SELECT ON customers, tx, cities TO {ROLE_DIRECT};
            GRANT SELECT ON cities TO {ROLE_ANONYMIZED};
            """
        )
        for name, value in configure:
            conn.execute("CALL diffix.configure(%s, %s)", (name, value))
        conn.execute(DP_SETUP)


def setup_perturbation(dsn: str) -> None:
    """The customers table perturbed row by row, and a role at the perturbed level."""
    with _connect(dsn, DB_PLDIFFIX) as conn:
        conn.execute(PERTURBATION)
        conn.execute(f"CREATE ROLE {ROLE_PERTURBED} LOGIN")
        conn.execute(f"CALL diffix.mark_role('{ROLE_PERTURBED}', 'perturbed')")


def pg_diffix_available(dsn: str) -> str | None:
    """None when the server offers pg_diffix, else why not."""
    try:
        with _connect(dsn, "postgres") as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_diffix'"
            ).fetchone()
    except psycopg.Error as error:
        return _error_text(error)
    return None if row else "the server does not offer the pg_diffix extension"


def setup_pg_diffix(dsn: str) -> None:
    """pg_diffix in its own database with the same data, labels and a trusted role."""
    _clone(dsn, DB_PG_DIFFIX)
    with _connect(dsn, DB_PG_DIFFIX) as conn:
        conn.execute("CREATE EXTENSION pg_diffix")
        conn.execute(
            pgsql.SQL("ALTER DATABASE {} SET session_preload_libraries TO 'pg_diffix'").format(
                pgsql.Identifier(DB_PG_DIFFIX)
            )
        )
    with _connect(dsn, DB_PG_DIFFIX) as conn:  # a new session loads the library
        conn.execute(
            f"""
            {LABELS}
            CREATE ROLE {ROLE_PG_DIFFIX} LOGIN;
            GRANT SELECT ON customers, tx, cities TO {ROLE_PG_DIFFIX};
            CALL diffix.mark_role('{ROLE_PG_DIFFIX}', 'anonymized_trusted');
            """
        )


def run_scale(
    dsn: str, customers: int, args: argparse.Namespace, pg_diffix_reason: str | None
) -> ScaleResult:
    _drop_everything(dsn)
    print(f"== building {format_rows(customers)} customers, {format_rows(3 * customers)} tx ...")
    build_seconds = build_data(dsn, customers)
    setup_pldiffix(dsn, args.pldiffix_setting)
    note = pg_diffix_reason
    if note is None:
        try:
            setup_pg_diffix(dsn)
        except Exception as error:
            note = f"setup failed, continuing without it: {_error_text(error)}"
    if note:
        print(f"   pg_diffix: {note}")
    with _connect(dsn, "postgres") as admin:
        admin.execute(pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(DB_DATA)))
    direct = make_conninfo(dsn, dbname=DB_PLDIFFIX, user=ROLE_DIRECT)
    anonymized = make_conninfo(dsn, dbname=DB_PLDIFFIX, user=ROLE_ANONYMIZED)
    pg_diffix = make_conninfo(dsn, dbname=DB_PG_DIFFIX, user=ROLE_PG_DIFFIX)
    pg_diffix_direct = make_conninfo(dsn, dbname=DB_PG_DIFFIX)
    results = []
    if args.only_dp:
        dp_results = measure_dp(dsn, direct, args)
        return ScaleResult(
            customers, 3 * customers, build_seconds, results, FirstCall(), note, dp_results
        )
    for query in QUERIES:
        print(f"   {query.name} ...", flush=True)
        plain = measure(direct, query.sql, None, args.repeat, args.timeout)
        anon = measure(
            anonymized, "SELECT diffix.query_json(%s)", (query.sql,), args.repeat, args.timeout
        )
        pgd_plain = pgd = None
        if note is None:
            pgd_plain = measure(pg_diffix_direct, query.sql, None, args.repeat, args.timeout)
            pgd = measure(pg_diffix, query.sql, None, args.repeat, args.timeout)
        results.append(QueryResult(query.name, query.sql, plain, anon, pgd_plain, pgd))
    dp_results = measure_dp(dsn, direct, args)
    read = measure_perturbed_read(dsn, direct, args)
    first = first_call_latency(anonymized, args.sessions)
    return ScaleResult(
        customers, 3 * customers, build_seconds, results, first, note, dp_results, read
    )


def measure_dp(dsn: str, direct: str, args: argparse.Namespace) -> list[QueryResult]:
    with _connect(dsn, DB_PLDIFFIX) as conn:
        conn.execute("ALTER TABLE customers ADD PRIMARY KEY (id)")
        conn.execute("ANALYZE customers")
    dp = make_conninfo(dsn, dbname=DB_PLDIFFIX, user=ROLE_DP)
    results = []
    for query in DP_QUERIES:
        print(f"   {query.name} ...", flush=True)
        if query.setup:
            with _connect(dsn, DB_PLDIFFIX) as conn:
                conn.execute(query.setup)
        plain = measure(direct, query.sql, None, args.repeat, args.timeout)
        answer = measure(dp, DP_CALL, (query.sql,), args.repeat, args.timeout)
        results.append(QueryResult(query.name, query.sql, plain, answer))
    return results


def measure_perturbed_read(dsn: str, direct: str, args: argparse.Namespace) -> QueryResult:
    print(f"   perturbed view: {PERTURBED_READ.name} ...", flush=True)
    setup_perturbation(dsn)
    perturbed = make_conninfo(dsn, dbname=DB_PLDIFFIX, user=ROLE_PERTURBED)
    read = QueryResult(
        PERTURBED_READ.name,
        PERTURBED_READ.sql,
        measure(direct, PERTURBED_READ.sql, None, args.repeat, args.timeout),
        measure(perturbed, PERTURBED_VIEW_SQL, None, args.repeat, args.timeout),
    )
    return read


def _meta(dsn: str, settings: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "repeat": args.repeat,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "platform": platform.platform(),
        },
        "settings": settings,
        "pldiffix_settings": dict(args.pldiffix_setting),
    }
    with contextlib.suppress(psycopg.Error), _connect(dsn, "postgres") as conn:
        meta["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    return meta


def run(dsn: str, settings: dict[str, str], args: argparse.Namespace) -> list[ScaleResult]:
    reason = "skipped (--no-pg-diffix)" if args.no_pg_diffix else pg_diffix_available(dsn)
    meta = _meta(dsn, settings, args)
    print(
        f"== server {meta.get('server_version', '?')}, {meta['machine']['cpus']} cpus, "
        f"{meta['machine']['memory_gib']} GiB; best of {args.repeat} after a warm-up run"
    )
    results = []
    try:
        for customers in args.scales:
            result = run_scale(dsn, customers, args, reason)
            results.append(result)
            print(format_scale(result), flush=True)
    finally:
        with contextlib.suppress(psycopg.Error):
            _drop_everything(dsn)
    scaling = format_scaling(results)
    if scaling:
        print(scaling)
    if args.json:
        args.json.write_text(json.dumps(to_json(results, meta), indent=2) + "\n")
        print(f"== results written to {args.json}")
    return results


# --- synthesis (docs/synthetic.md) --------------------------------------------------------------

DB_SYNTH = "bench_synth"
SYNTH_SQL = """
CREATE TABLE people (id bigint PRIMARY KEY, age integer, income numeric(12, 2), city text,
                     gender text, score double precision, joined date, active boolean);
INSERT INTO people
SELECT i, 18 + (h % 70), round((20000 + (h % 70) * 900 + (h >> 8) % 30000)::numeric, 2),
       'city_' || ((h >> 4) % 20), CASE WHEN (h >> 12) % 2 = 0 THEN 'f' ELSE 'm' END,
       ((h >> 16) % 1000) / 10.0 + (h % 70) / 2.0, DATE '2000-01-01' + ((h >> 20) % 8000),
       (h >> 24) % 3 <> 0
FROM (SELECT i, abs(hashint8(i)) AS h FROM generate_series(1, {rows}) i) g;
ANALYZE people;
CALL diffix.mark_personal('people', 'id');
CALL diffix.set_dp_bounds('people', 'age', 0, 100);
CALL diffix.set_dp_bounds('people', 'income', 0, 200000);
CALL diffix.set_dp_bounds('people', 'score', 0, 150);
CALL diffix.set_dp_domain('people', 'city', string_to_array(
  'city_0 city_1 city_2 city_3 city_4 city_5 city_6 city_7 city_8 city_9 city_10 city_11 '
  || 'city_12 city_13 city_14 city_15 city_16 city_17 city_18 city_19', ' '));
CALL diffix.set_dp_domain('people', 'gender', ARRAY['f', 'm']);
CALL diffix.set_privacy_budget(current_user, 1000, 0.5);
"""
SYNTH_CALL = (
    "CALL diffix.synthesize('people', 1.0, 1e-6, 'people_twin', options => "
    '\'{"bins": {"joined": ["2000-01-01", "2005-01-01", "2010-01-01", '
    '"2015-01-01", "2022-01-01"]}}\')'
)


@dataclass
class SynthesisResult:
    rows: int
    build_seconds: float
    scan_ms: float  # the source's GROUP BY of one column, for scale
    synthesize_seconds: float | None = None
    twin_rows: int | None = None
    error: str | None = None


def measure_synthesis(dsn: str, rows: int) -> SynthesisResult:
    """diffix.synthesize of an 8-column personal table of `rows` rows (7 modeled columns: 28
    two-way marginals for selection, 13 measured), after a warm-up synthesis that loads the
    modules; wall-clock time of the CALL."""
    with _connect(dsn, "postgres") as admin:
        admin.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(DB_SYNTH))
        )
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB_SYNTH)))
    install.install(make_conninfo(dsn, dbname=DB_SYNTH), out=io.StringIO())
    try:
        with _connect(dsn, DB_SYNTH) as conn:
            start = time.perf_counter()
            conn.execute(SYNTH_SQL.format(rows=rows))
            build = time.perf_counter() - start
            start = time.perf_counter()
            conn.execute("SELECT city, count(*) FROM people GROUP BY city").fetchall()
            result = SynthesisResult(rows, build, (time.perf_counter() - start) * 1000)
            try:
                conn.execute(SYNTH_CALL.replace("people_twin", "warm_up"))
                start = time.perf_counter()
                conn.execute(SYNTH_CALL)
                result.synthesize_seconds = time.perf_counter() - start
                result.twin_rows = conn.execute(
                    "SELECT count(*) FROM diffix_synthetic.people_twin"
                ).fetchone()[0]
            except psycopg.Error as error:
                result.error = _error_text(error)
    finally:
        with _connect(dsn, "postgres") as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    pgsql.Identifier(DB_SYNTH)
                )
            )
    return result


def format_synthesis(result: SynthesisResult) -> str:
    if result.error:
        return f"== synthesis of {format_rows(result.rows)} rows: {result.error}"
    return (
        f"== synthesis of {format_rows(result.rows)} rows x 8 columns (epsilon 1, delta 1e-6): "
        f"{_fmt(result.synthesize_seconds, 2)} s for {result.twin_rows} synthetic rows "
        f"(one GROUP BY over the source: {_fmt(result.scan_ms)} ms; table built in "
        f"{result.build_seconds:.0f} s)"
    )


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, str]]]:
    if args.dsn:
        yield args.dsn, {}
        return
    settings = SERVER_SETTINGS | dict(args.setting)
    print("== starting a throwaway PostgreSQL cluster")
    with EmbeddedCluster(settings=settings) as cluster:
        yield cluster.dsn, settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with _server(args) as (dsn, settings):
        if args.synthesis:
            for rows in args.synthesis:
                print(format_synthesis(measure_synthesis(dsn, rows)), flush=True)
        else:
            run(dsn, settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
