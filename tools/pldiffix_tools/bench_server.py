"""The benchmark's server side: the throwaway cluster and its settings, and timing a query in a
fresh server backend while sampling that backend's memory from /proc."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pldiffix_tools.bench_report import FirstCall, Measurement
from pldiffix_tools.cluster import EmbeddedCluster

# --- the server -------------------------------------------------------------------------------

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


def setting_arg(text: str) -> tuple[str, str]:
    """argparse type of --setting and --pldiffix-setting: 'KEY=VALUE' -> (KEY, VALUE)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name.strip(), value.strip()


def connect(dsn: str, dbname: str, user: str | None = None) -> psycopg.Connection:
    """An autocommit session in `dbname` of the server `dsn`, as `user` when given."""
    extra = {"user": user} if user else {}
    return psycopg.connect(make_conninfo(dsn, dbname=dbname, **extra), autocommit=True)


@contextlib.contextmanager
def server(
    dsn: str | None, overrides: Sequence[tuple[str, str]]
) -> Iterator[tuple[str, dict[str, str]]]:
    """(DSN, settings applied): `dsn` as it is, else a throwaway cluster with SERVER_SETTINGS
    and the `overrides` (name, value)."""
    if dsn:
        yield dsn, {}
        return
    settings = SERVER_SETTINGS | dict(overrides)
    print("== starting a throwaway PostgreSQL cluster")
    with EmbeddedCluster(settings=settings) as cluster:
        yield cluster.dsn, settings


# --- measuring --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
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


def reset_peak(pid: int) -> None:
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
        value = proc_status(self.pid).get("RssAnon")
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


def error_text(error: Exception) -> str:
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
        result.error = f"cannot connect: {error_text(error)}"
        return result
    with conn:
        try:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            result.backend_pid = pid
            result.start_private_kib = proc_status(pid).get("RssAnon")
            reset_peak(pid)
            with MemorySampler(pid) as sampler:
                start = time.perf_counter()
                result.rows = _run_once(conn, query, params)
                result.warmup_ms = (time.perf_counter() - start) * 1000
                for _ in range(repeat):
                    start = time.perf_counter()
                    _run_once(conn, query, params)
                    result.runs_ms.append((time.perf_counter() - start) * 1000)
            result.peak_private_kib = sampler.peak
            result.peak_rss_kib = proc_status(pid).get("VmHWM")
            result.best_ms = min(result.runs_ms)
        except Exception as error:  # the benchmark reports every failure and goes on
            result.error = error_text(error)
    return result


def first_call_latency(dsn: str, sessions: int, public_query: str) -> FirstCall:
    """Fresh sessions of the anonymized role: the import of the deployed code on first call
    (diffix.access_level(), then diffix.query_json of `public_query`, over public tables)."""
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
                samples["query_json_public_first_ms"].append(timed(conn, query, (public_query,)))
                samples["query_json_public_second_ms"].append(timed(conn, query, (public_query,)))
                private = proc_status(pid).get("RssAnon")
                if private is not None:
                    samples["private_kib_after_import"].append(private)
    except Exception as error:
        return FirstCall(sessions=sessions, error=error_text(error))
    medians: dict[str, Any] = {
        key: statistics.median(values) if values else None for key, values in samples.items()
    }
    if medians["private_kib_after_import"] is not None:
        medians["private_kib_after_import"] = int(medians["private_kib_after_import"])
    return FirstCall(sessions=sessions, **medians)
