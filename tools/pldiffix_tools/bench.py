"""`make bench`: plain SQL vs. diffix.query_json (and pg_diffix when the server has it).

The issue 4 workload: N customers and 3N transactions, five queries, each timed plain as a
direct-level role and anonymized as an anonymized_trusted role. Warm-up run, then best of
--repeat. The server backend's private memory is sampled from /proc while the queries run.
This module is the workload, its set-up and the command line; bench_report.py formats the
results, bench_server.py runs the server and measures in it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.bench_report import (
    FirstCall,
    QueryResult,
    ScaleResult,
    SynthesisResult,
    format_rows,
    format_scale,
    format_scaling,
    format_synthesis,
    parse_rows,
    parse_scales,
    to_json,
)
from pldiffix_tools.bench_server import (
    connect,
    error_text,
    first_call_latency,
    measure,
    server,
    setting_arg,
)

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


# --- arguments --------------------------------------------------------------------------------


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
        type=setting_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a server setting of the throwaway cluster (repeatable)",
    )
    parser.add_argument(
        "--pldiffix-setting",
        type=setting_arg,
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


# --- setting up -------------------------------------------------------------------------------


def _drop_everything(dsn: str) -> None:
    with connect(dsn, "postgres") as admin:
        for db in (DB_PLDIFFIX, DB_PG_DIFFIX, DB_DATA):
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(db))
            )
        for role in (ROLE_DIRECT, ROLE_ANONYMIZED, ROLE_PG_DIFFIX, ROLE_DP, ROLE_PERTURBED):
            admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(role)))


def build_data(dsn: str, customers: int) -> float:
    """The workload in a template database; returns seconds taken."""
    start = time.perf_counter()
    with connect(dsn, "postgres") as admin:
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB_DATA)))
    with connect(dsn, DB_DATA) as conn:
        conn.execute(
            DATA_SQL.format(n=customers, tx=3 * customers, tx_customers=max(1, customers // 5))
        )
        conn.execute("VACUUM (FREEZE, ANALYZE) customers, tx, cities")
    return time.perf_counter() - start


def _clone(dsn: str, name: str) -> None:
    with connect(dsn, "postgres") as admin:
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
    with connect(dsn, DB_PLDIFFIX) as conn:
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
    with connect(dsn, DB_PLDIFFIX) as conn:
        conn.execute(PERTURBATION)
        conn.execute(f"CREATE ROLE {ROLE_PERTURBED} LOGIN")
        conn.execute(f"CALL diffix.mark_role('{ROLE_PERTURBED}', 'perturbed')")


def pg_diffix_available(dsn: str) -> str | None:
    """None when the server offers pg_diffix, else why not."""
    try:
        with connect(dsn, "postgres") as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_diffix'"
            ).fetchone()
    except psycopg.Error as error:
        return error_text(error)
    return None if row else "the server does not offer the pg_diffix extension"


def setup_pg_diffix(dsn: str) -> None:
    """pg_diffix in its own database with the same data, labels and a trusted role."""
    _clone(dsn, DB_PG_DIFFIX)
    with connect(dsn, DB_PG_DIFFIX) as conn:
        conn.execute("CREATE EXTENSION pg_diffix")
        conn.execute(
            pgsql.SQL("ALTER DATABASE {} SET session_preload_libraries TO 'pg_diffix'").format(
                pgsql.Identifier(DB_PG_DIFFIX)
            )
        )
    with connect(dsn, DB_PG_DIFFIX) as conn:  # a new session loads the library
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
            note = f"setup failed, continuing without it: {error_text(error)}"
    if note:
        print(f"   pg_diffix: {note}")
    with connect(dsn, "postgres") as admin:
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
    first = first_call_latency(anonymized, args.sessions, PUBLIC_QUERY)
    return ScaleResult(
        customers, 3 * customers, build_seconds, results, first, note, dp_results, read
    )


def measure_dp(dsn: str, direct: str, args: argparse.Namespace) -> list[QueryResult]:
    with connect(dsn, DB_PLDIFFIX) as conn:
        conn.execute("ALTER TABLE customers ADD PRIMARY KEY (id)")
        conn.execute("ANALYZE customers")
    dp = make_conninfo(dsn, dbname=DB_PLDIFFIX, user=ROLE_DP)
    results = []
    for query in DP_QUERIES:
        print(f"   {query.name} ...", flush=True)
        if query.setup:
            with connect(dsn, DB_PLDIFFIX) as conn:
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
    with contextlib.suppress(psycopg.Error), connect(dsn, "postgres") as conn:
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


def measure_synthesis(dsn: str, rows: int) -> SynthesisResult:
    """diffix.synthesize of an 8-column personal table of `rows` rows (7 modeled columns: 28
    two-way marginals for selection, 13 measured), after a warm-up synthesis that loads the
    modules; wall-clock time of the CALL."""
    with connect(dsn, "postgres") as admin:
        admin.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(DB_SYNTH))
        )
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB_SYNTH)))
    install.install(make_conninfo(dsn, dbname=DB_SYNTH), out=io.StringIO())
    try:
        with connect(dsn, DB_SYNTH) as conn:
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
                result.error = error_text(error)
    finally:
        with connect(dsn, "postgres") as admin:
            admin.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    pgsql.Identifier(DB_SYNTH)
                )
            )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with server(args.dsn, args.setting) as (dsn, settings):
        if args.synthesis:
            for rows in args.synthesis:
                print(format_synthesis(measure_synthesis(dsn, rows)), flush=True)
        else:
            run(dsn, settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
