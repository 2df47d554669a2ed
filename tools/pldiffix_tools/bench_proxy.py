"""`make bench` (second part): what the wire-protocol front costs.

- Relay: `SELECT 1` straight to the server vs. through the front (the front asks
  diffix.proxy_plan first, which passes it without starting Python).
- Anonymized: the analyst's diffix.query call straight to the server vs. the same plain SQL
  through the front, in the simple and the extended protocol, and in the simple protocol with a
  new text each run on both sides (routing keeps parsed texts per session). Target: under
  2 ms per query.
- Load: N concurrent clients x M queries through the front, with no error and no server
  connection left behind.

Latencies are medians over many runs on loopback, after a warm-up. Direct and proxied queries
alternate, and the overhead is the median of their paired differences, so that load from other
processes on the machine falls on both sides alike.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import itertools
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.cluster import EmbeddedCluster
from pldiffix_tools.proxy_process import running_proxy

DATABASE = "pldiffix_bench_proxy"
ANALYST = "bench_proxy_analyst"
TARGET_MS = 2.0
DATA = f"""
CREATE TABLE customers (id integer, city text, age integer);
INSERT INTO customers
  SELECT i, (ARRAY['Berlin', 'Rome', 'Oslo', 'Lima'])[1 + i % 4], 20 + i % 45
  FROM generate_series(1, 2000) i;
GRANT SELECT ON customers TO PUBLIC;
CALL diffix.mark_personal('customers', 'id');
CREATE ROLE {ANALYST} LOGIN;
CALL diffix.mark_role('{ANALYST}', 'anonymized_trusted');
"""
QUERY = "SELECT city, count(*) FROM customers GROUP BY city"


def direct_query(query: str) -> str:
    """`query` (no quotes in it) asked of diffix.query straight."""
    return f"SELECT * FROM diffix.query('{query}') AS t(city text, count bigint)"


DIRECT_QUERY = direct_query(QUERY)
LOAD_QUERIES = [
    QUERY,
    "SELECT diffix.floor_by(age, 10), count(*) FROM customers GROUP BY 1",
    "SELECT count(*) FROM customers WHERE city = 'Rome'",
    "SELECT count(DISTINCT id) FROM customers",
]


# The analyst's own connections, and the ledger's loopback connections its sessions opened.
LEFT_BEHIND = (
    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s OR usename = 'diffix_ledger_'"
    " || (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@dataclass
class Comparison:
    name: str
    direct_ms: float
    proxy_ms: float
    overhead_ms: float  # the median of paired differences, not the difference of medians


@dataclass
class Load:
    clients: int
    queries_per_client: int
    seconds: float
    errors: int
    leaked_connections: int

    @property
    def queries_per_second(self) -> float:
        return self.clients * self.queries_per_client / self.seconds if self.seconds else 0.0


def _elapsed_ms(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return (time.perf_counter() - started) * 1000


def paired_ms(
    name: str, direct: Callable[[], object], proxied: Callable[[], object], runs: int
) -> Comparison:
    """Medians of `direct` and `proxied` run alternately, and of their differences."""
    for _ in range(min(20, runs)):  # warm-up: plans, the server's Python, caches
        direct()
        proxied()
    pairs = [(_elapsed_ms(direct), _elapsed_ms(proxied)) for _ in range(runs)]
    return Comparison(
        name,
        statistics.median(d for d, _ in pairs),
        statistics.median(p for _, p in pairs),
        statistics.median(p - d for d, p in pairs),
    )


def compare(direct_dsn: str, proxy_dsn: str, runs: int) -> list[Comparison]:
    cases = [
        ("relay: SELECT 1", "SELECT 1", "SELECT 1", False),
        ("anonymized, simple protocol", DIRECT_QUERY, QUERY, False),
        ("anonymized, extended protocol", DIRECT_QUERY, QUERY, True),
    ]
    with (
        psycopg.connect(direct_dsn, autocommit=True) as direct,
        psycopg.connect(proxy_dsn, autocommit=True) as proxied,
    ):
        comparisons = [
            paired_ms(
                name,
                lambda d=direct_sql, p=prepare: direct.execute(d, prepare=p).fetchall(),
                lambda q=proxy_sql, p=prepare: proxied.execute(q, prepare=p).fetchall(),
                runs,
            )
            for name, direct_sql, proxy_sql, prepare in cases
        ]
        # Routing keeps parsed texts per session: a comment numbered per run makes every text
        # new, as a stream of distinct queries would be. Both sides get new texts (the gate's
        # work on a new text is not the front's).
        numbers = itertools.count()
        comparisons.append(
            paired_ms(
                "anonymized, simple, new texts",
                lambda: direct.execute(direct_query(f"/* {next(numbers)} */ {QUERY}")).fetchall(),
                lambda: proxied.execute(f"/* {next(numbers)} */ {QUERY}").fetchall(),
                runs,
            )
        )
        return comparisons


def load(
    admin: psycopg.Connection, proxy_dsn: str, clients: int, per_client: int, progress: bool
) -> Load:
    done = 0

    def client(n: int) -> int:
        nonlocal done
        errors = 0
        with psycopg.connect(proxy_dsn, autocommit=True) as conn:
            for i in range(per_client):
                try:
                    sql = LOAD_QUERIES[(n + i) % len(LOAD_QUERIES)]
                    conn.execute(sql, prepare=bool(i % 2)).fetchall()
                except psycopg.Error:
                    errors += 1
                done += 1
        return errors

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, n) for n in range(clients)]
        while progress and not all(f.done() for f in futures):
            time.sleep(2)
            print(f"   load: {done}/{clients * per_client} queries", flush=True)
        errors = sum(f.result() for f in futures)
    seconds = time.perf_counter() - started
    leaked = 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        leaked = admin.execute(LEFT_BEHIND, (ANALYST,)).fetchone()[0]
        if leaked == 0:
            break
        time.sleep(0.1)
    return Load(clients, per_client, seconds, errors, leaked)


def render(comparisons: Sequence[Comparison], result: Load) -> str:
    lines = [
        "== proxy overhead per query (medians, loopback; overhead: median of paired differences)",
        f"   {'':32} {'direct ms':>10} {'proxy ms':>10} {'overhead':>10}",
    ]
    for c in comparisons:
        mark = "" if c.overhead_ms < TARGET_MS else f"  (over the {TARGET_MS:g} ms target)"
        lines.append(
            f"   {c.name:32} {c.direct_ms:10.2f} {c.proxy_ms:10.2f} {c.overhead_ms:10.2f}{mark}"
        )
    lines.append(
        f"== load: {result.clients} clients x {result.queries_per_client} queries in "
        f"{result.seconds:.1f} s ({result.queries_per_second:.0f} queries/s), "
        f"{result.errors} errors, {result.leaked_connections} server connections left"
    )
    return "\n".join(lines)


@contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    with EmbeddedCluster() as cluster:
        yield cluster.dsn


def _drop(server: str) -> None:
    """The benchmark's database, its analyst, and the ledger login its install created."""
    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"DROP ROLE IF EXISTS {ANALYST}")
        if row:
            conn.execute(f"DROP ROLE IF EXISTS diffix_ledger_{row[0]}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    with _database(args.dsn) as server:
        _drop(server)
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        dsn = make_conninfo(server, dbname=DATABASE)
        try:
            install.install(dsn, out=io.StringIO())
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(DATA)
                with running_proxy(dsn) as port:
                    direct_dsn = make_conninfo(dsn, user=ANALYST)
                    proxy_dsn = make_conninfo(direct_dsn, host="127.0.0.1", port=port)
                    print(f"== pldiffix proxy on 127.0.0.1:{port}; {args.runs} runs per figure")
                    comparisons = compare(direct_dsn, proxy_dsn, args.runs)
                    result = load(admin, proxy_dsn, args.clients, args.queries, args.progress)
        finally:
            _drop(server)
    print(render(comparisons, result))
    return {
        "runs": args.runs,
        "target_ms": TARGET_MS,
        "comparisons": [asdict(c) for c in comparisons],
        "load": asdict(result) | {"queries_per_second": result.queries_per_second},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pldiffix_tools.bench_proxy", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dsn", help="superuser DSN of an existing server (default: throwaway)")
    parser.add_argument("--runs", type=int, default=500, help="timed queries per figure")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients under load")
    parser.add_argument("--queries", type=int, default=200, help="queries per client under load")
    parser.add_argument("--json", type=Path, help="write machine-readable results here")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if min(args.runs, args.clients, args.queries) < 1:
        parser.error("--runs, --clients and --queries must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = report["load"]["errors"] or report["load"]["leaked_connections"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
