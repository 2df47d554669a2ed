"""A sharded personal table against the same rows in a local one (docs/benchmarks.md,
docs/scale-out.md).

Three throwaway clusters on this host: a coordinator with pldiffix and two shards. `tx` (aid,
kind, amount; three rows per AID on average) is hash-partitioned on its AID over two postgres_fdw
foreign partitions, one per shard (`async_capable`; analyzed on the coordinator rather than
`use_remote_estimate`, which would cost remote EXPLAINs at every planning); `local_copy.tx` holds
the same rows in one plain table. Each query is answered over both, as an anonymized analyst,
best of `--repeat` after a warm-up, and the answers compared (Diffix: equal; DP: noisy, so only
timed). The leaf statements' plans (auto_explain of the statements the engine runs, those with a
Remote SQL) are printed for the first query of each kind, showing what ships to the shards.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SHARDS = 2
# Small servers: three clusters share the host.
SETTINGS = {"shared_buffers": "256MB", "work_mem": "128MB", "max_parallel_workers": "2",
            "autovacuum": "off"}  # fmt: skip
ROWS_SQL = """
SELECT 1 + (i % {units}) AS aid, (ARRAY['card', 'cash', 'wire', 'fee'])[1 + (i * 7) % 4] AS kind,
       ((i % 997) * 1.25 + i / 7.0)::float8 AS amount
FROM generate_series(1, {rows}) i
"""
QUERIES = [  # (kind, SQL over {t})
    ("diffix", "SELECT kind, count(*) FROM {t} GROUP BY kind"),
    ("diffix", "SELECT kind, count(*), count(DISTINCT aid), sum(amount) FROM {t} GROUP BY kind"),
    ("diffix", "SELECT count(*) FROM {t}"),
    ("dp", "SELECT kind, count(*), sum(amount) FROM {t} GROUP BY kind"),
]


@dataclass
class Timing:
    kind: str
    sql: str
    local_s: float
    sharded_s: float
    same_answer: bool | None  # None for DP (noisy)

    @property
    def ratio(self) -> float:
        return self.sharded_s / self.local_s


@dataclass
class Result:
    rows: int
    timings: list[Timing] = field(default_factory=list)
    plans: dict[str, list[str]] = field(default_factory=dict)


def _shard(conn: Any, reader: str, password: str) -> None:
    from psycopg import sql

    conn.execute("CREATE ROLE pldiffix_password_users NOLOGIN")
    conn.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pldiffix_password_users").format(
            sql.Identifier(reader), sql.Literal(password)
        )
    )
    conn.execute("CREATE TABLE tx (aid integer, kind text, amount float8)")
    conn.execute(sql.SQL("GRANT SELECT, INSERT ON tx TO {}").format(sql.Identifier(reader)))


def build(conn: Any, shards: Sequence[Any], rows: int, reader: str, password: str) -> str:
    """The sharded and the local table, their DP metadata and an analyst; returns its name."""
    from psycopg import sql

    conn.execute("CREATE EXTENSION postgres_fdw")
    conn.execute("CREATE TABLE tx (aid integer, kind text, amount float8) PARTITION BY HASH (aid)")
    for index, cluster in enumerate(shards):
        server = sql.Identifier(f"shard{index}")
        conn.execute(
            sql.SQL(
                "CREATE SERVER {} FOREIGN DATA WRAPPER postgres_fdw "
                "OPTIONS (host {}, port {}, dbname 'postgres', async_capable 'true', "
                "batch_size '1000')"
            ).format(server, sql.Literal(str(cluster.root)), sql.Literal(str(cluster.port)))
        )
        for role in ("diffix_engine", "CURRENT_USER"):  # CURRENT_USER only to load the rows
            conn.execute(
                sql.SQL("CREATE USER MAPPING FOR {} SERVER {} OPTIONS (user {}, password {})")
                .format(sql.SQL(role), server, sql.Literal(reader), sql.Literal(password))
            )  # fmt: skip
        conn.execute(
            f"CREATE FOREIGN TABLE tx_p{index} PARTITION OF tx "
            f"FOR VALUES WITH (MODULUS {len(shards)}, REMAINDER {index}) SERVER shard{index} "
            "OPTIONS (table_name 'tx')"
        )
    rows_sql = ROWS_SQL.format(rows=rows, units=max(1, rows // 3))
    conn.execute(f"INSERT INTO tx {rows_sql}")
    conn.execute("CREATE SCHEMA local_copy")
    conn.execute(f"CREATE TABLE local_copy.tx AS {rows_sql}")
    conn.execute("VACUUM (FREEZE, ANALYZE) local_copy.tx")
    # statistics of the foreign partitions sampled once, here: planning asks the shards nothing
    conn.execute("ANALYZE tx")
    for index in range(len(shards)):
        conn.execute(f"DROP USER MAPPING FOR CURRENT_USER SERVER shard{index}")
    analyst = f"bench_shards_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(analyst)))
    for table in ("tx", "local_copy.tx"):
        conn.execute("CALL diffix.mark_personal(%s, 'aid')", (table,))
        conn.execute("CALL diffix.set_dp_bounds(%s, 'amount', 0, 1500)", (table,))
        conn.execute("CALL diffix.set_dp_max_contributions(%s, 3)", (table,))
        conn.execute(
            "CALL diffix.set_dp_domain(%s, 'kind', ARRAY['card', 'cash', 'wire', 'fee'])",
            (table,),
        )
    conn.execute("GRANT USAGE ON SCHEMA local_copy TO diffix_engine, PUBLIC")
    conn.execute("CALL diffix.mark_role(%s, 'anonymized_trusted')", (analyst,))
    conn.execute("CALL diffix.configure('dp_max_epsilon', '100')")
    conn.execute("CALL diffix.set_privacy_budget(%s, 1000000, 0)", (analyst,))
    return analyst


def _answer(conn: Any, kind: str, sql: str, run: int = 0) -> Any:
    if kind == "dp":
        # an identical DP query is replayed (answered from the store): another epsilon each run
        epsilon = 1.0 + run / 1000
        return conn.execute("SELECT diffix.dp_query_json(%s, %s, 0)", (sql, epsilon)).fetchone()[0]
    return conn.execute("SELECT diffix.query_json(%s)", (sql,)).fetchone()[0]


def _best(conn: Any, kind: str, sql: str, repeat: int) -> tuple[float, Any]:
    answer = _answer(conn, kind, sql)  # warm-up: plans, caches
    best = float("inf")
    for run in range(1, repeat + 1):
        start = time.perf_counter()
        answer = _answer(conn, kind, sql, run)
        best = min(best, time.perf_counter() - start)
    return best, answer


def leaf_plans(conn: Any, analyst: str, kind: str, sql: str) -> list[str]:
    """The plans (auto_explain, VERBOSE) of the statements with a Remote SQL the engine runs
    for `sql` over the sharded table. `conn` is a superuser's session (auto_explain's settings
    are a superuser's), acting as `analyst` for the query."""
    from psycopg import sql as pgsql

    plans: list[str] = []

    def keep(diagnostic: Any) -> None:
        text = diagnostic.message_primary or ""
        if "Remote SQL" in text:
            plans.append(text)

    conn.execute("LOAD 'auto_explain'")
    for name, value in (("log_min_duration", "0"), ("log_nested_statements", "on"),
                        ("log_verbose", "on")):  # fmt: skip
        conn.execute(f"SET auto_explain.{name} = {value}")
    conn.add_notice_handler(keep)
    conn.execute("SET client_min_messages = log")
    conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(analyst)))
    try:
        _answer(conn, kind, sql, -1)
    finally:
        conn.execute("RESET ROLE")
        conn.execute("RESET client_min_messages")
        conn.execute("RESET auto_explain.log_min_duration")
        conn.remove_notice_handler(keep)
    return plans


def run(dsn: str, shards: Sequence[Any], rows: int, repeat: int, plans: bool) -> Result:
    import psycopg
    from psycopg import sql

    reader, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    for cluster in shards:
        with psycopg.connect(cluster.dsn, autocommit=True) as shard:
            _shard(shard, reader, password)
    with psycopg.connect(dsn, autocommit=True) as conn:
        start = time.perf_counter()
        analyst = build(conn, shards, rows, reader, password)
        print(f"== {rows} rows built in {time.perf_counter() - start:.0f} s", flush=True)
        result = Result(rows)
        for kind, query in QUERIES:
            if plans and kind not in result.plans:
                result.plans[kind] = leaf_plans(conn, analyst, kind, query.format(t="tx"))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(analyst)))
            local_s, local = _best(conn, kind, query.format(t="local_copy.tx"), repeat)
            sharded_s, sharded = _best(conn, kind, query.format(t="tx"), repeat)
            conn.execute("RESET ROLE")
            same = None if kind == "dp" else _rows(local) == _rows(sharded)
            result.timings.append(Timing(kind, query, local_s, sharded_s, same))
    return result


def _rows(document: Any) -> list[Any]:
    return sorted(document["rows"], key=repr)


def format_result(result: Result) -> str:
    lines = [f"== sharded vs local, {result.rows} rows, {SHARDS} shards on this host"]
    for kind, plans in result.plans.items():
        lines.append(f"-- {kind}: leaf statements' plans ({len(plans)})")
        lines.extend(plans)
    lines.append(f"{'query':80} {'local s':>8} {'sharded s':>9} {'ratio':>6} answers")
    for t in result.timings:
        same = "noisy (DP)" if t.same_answer is None else ("equal" if t.same_answer else "DIFFER")
        lines.append(
            f"{t.kind + ': ' + t.sql:80} {t.local_s:>8.3f} {t.sharded_s:>9.3f} {t.ratio:>6.2f} "
            f"{same}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from pldiffix_tools.bench_report import parse_rows

    parser = argparse.ArgumentParser(
        prog="python -m pldiffix_tools.bench_shards",
        description="a personal table sharded over postgres_fdw against a local copy",
    )
    parser.add_argument("--rows", type=parse_rows, default=300_000, help="rows, e.g. 1M")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--no-plans", action="store_true", help="do not print leaf plans")
    parser.add_argument("--json", type=Path, help="write machine-readable results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from pldiffix_installer import install
    from pldiffix_tools.cluster import EmbeddedCluster

    print(f"== starting a coordinator and {SHARDS} shard clusters", flush=True)
    clusters = [EmbeddedCluster(settings=SETTINGS) for _ in range(SHARDS + 1)]
    try:
        for cluster in clusters:
            cluster.start()
        coordinator, shards = clusters[0], clusters[1:]
        install.install(coordinator.dsn, out=io.StringIO())
        result = run(coordinator.dsn, shards, args.rows, args.repeat, not args.no_plans)
    finally:
        for cluster in clusters:
            cluster.stop()
    print(format_result(result), flush=True)
    if args.json:
        document = asdict(result) | {"ratios": [t.ratio for t in result.timings]}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(t.same_answer is not False for t in result.timings) else 1


if __name__ == "__main__":
    sys.exit(main())
