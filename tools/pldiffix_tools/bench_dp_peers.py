"""`make bench`, DP part: pldiffix next to SmartNoise SQL and OpenDP (issue 30's benchmark).

The same PostgreSQL data for all three: `people`, one row per person in 10 skewed groups (group
g holds half of what groups g - 1.. leave: N/2, N/4, ..., the last N/512), a value in [0, 1000);
`tx`, 3N rows of N/5 persons (exactly 15 each) over 10 kinds, an amount in [0, 1000). At
epsilon 1:

- count by group with undeclared keys (delta 1e-6: partition selection) and with declared keys;
- avg and median of the value (bounds [0, 1000]);
- tx: count and sum by kind, each person bounded to 20 rows (undeclared keys, delta 1e-6).

Error: the mean absolute error over --runs releases on the --error-rows data (a group a system
does not release counts as an error of its true value). Time: the median of --time-runs on the
--time-rows data, in a fresh session after one warm-up, wall clock on the client.

How each system gets the data: pldiffix as an anonymized_dp role (diffix.dp_query_json, a fresh
epsilon in (0.999, 1] each run, since an identical query would be a free replay); SmartNoise SQL
through its PostgreSQL reader over the same psycopg connection, epsilon / k for k noisy
aggregates; OpenDP (polars) on the rows read from PostgreSQL, the read counted in its time (tx:
15 rows per person by construction, so OpenDP's bound of 20, a promise it does not enforce,
holds). Tumult is not run: its figures are the issue's.
The peers are bench-only dependencies (pyproject.toml's `bench` extra), never in the server.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.conninfo import make_conninfo

from pldiffix_installer import install
from pldiffix_tools.bench_report import format_rows, parse_rows
from pldiffix_tools.bench_server import SERVER_SETTINGS, setting_arg
from pldiffix_tools.cluster import EmbeddedCluster

EPSILON = 1.0
DELTA = 1e-6
GROUPS = 10
BOUNDS = (0.0, 1000.0)
TX_CONTRIBUTIONS = 20
MEDIAN_CANDIDATES = [float(v) for v in range(0, 1001)]  # OpenDP's candidates: step 1
TUMULT_MEDIAN = 0.98  # issue 30's figure for Tumult 0.21 (not installed here)
DB = "bench_dp_peers"
ROLE = "bench_dp_peer"

DATA_SQL = """
CREATE TABLE people AS SELECT i AS id,
  'g' || LEAST({last}, floor(-log(2.0, 1 - (i - 0.5) / {n}))::int) AS grp,
  ((hashint4(i) & 2147483647) % 100000) / 100.0::float8 AS value
  FROM generate_series(1, {n}) i;
ALTER TABLE people ADD PRIMARY KEY (id);
CREATE TABLE tx AS SELECT (1 + j % {persons}) AS pid,
  'k' || ((hashint4(j) & 2147483647) % {groups}) AS kind,
  ((hashint4(j + 3) & 2147483647) % 10000) / 10.0::float8 AS amount
  FROM generate_series(0, {tx} - 1) j;
"""
PLDIFFIX_SQL = f"""
CALL diffix.mark_personal('people', 'id');
CALL diffix.mark_personal('tx', 'pid');
CALL diffix.set_dp_bounds('people', 'value', {BOUNDS[0]}, {BOUNDS[1]});
CALL diffix.set_dp_bounds('tx', 'amount', {BOUNDS[0]}, {BOUNDS[1]});
CALL diffix.set_dp_max_contributions('tx', {TX_CONTRIBUTIONS});
CREATE ROLE {ROLE} LOGIN;
CALL diffix.mark_role('{ROLE}', 'anonymized_dp');
CALL diffix.set_privacy_budget('{ROLE}', 1e12, 0.9);
"""
KEYS = [f"g{g}" for g in range(GROUPS)]
DECLARE_KEYS = "CALL diffix.set_dp_domain('people', 'grp', ARRAY[{}])".format(
    ", ".join(f"'{k}'" for k in KEYS)
)
FORGET_KEYS = "CALL diffix.set_dp_domain('people', 'grp', NULL::text[])"


@dataclass(frozen=True)
class Case:
    name: str
    sql: str  # the plain SQL: the truth, and what pldiffix and SmartNoise are asked
    outputs: tuple[str, ...]  # what the error rows call the aggregates, in order
    group: str | None = None  # the grouping column
    declared: bool = False  # the grouping keys are declared (no partition selection)


CASES: tuple[Case, ...] = (
    Case(
        "count by group, undeclared keys",
        "SELECT grp, count(*) FROM people GROUP BY grp",
        ("count by group, undeclared keys",),
        "grp",
    ),
    Case(
        "count by group, declared keys",
        "SELECT grp, count(*) FROM people GROUP BY grp",
        ("count by group, declared keys",),
        "grp",
        declared=True,
    ),
    Case("avg", "SELECT avg(value) FROM people", ("avg",)),
    Case(
        "median",
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY value) FROM people",
        ("median",),
    ),
    Case(
        "tx count, sum by kind",
        "SELECT kind, count(*), sum(amount) FROM tx GROUP BY kind",
        ("tx count by kind", "tx sum by kind"),
        "kind",
    ),
)
Values = tuple[float, ...]
Answer = dict[Any, Values] | Values  # per group, or the one row of a global aggregate


def _answer(case: Case, rows: Sequence[Sequence[Any]]) -> Answer:
    def values(row: Sequence[Any]) -> Values:
        return tuple(float("nan") if v is None else float(v) for v in row[-len(case.outputs) :])

    if case.group:
        return {row[0]: values(row) for row in rows}
    return values(rows[0])


# --- the systems ----------------------------------------------------------------------------


class Pldiffix:
    name = "pldiffix"

    def __init__(self, dsn: str, rows: int):
        self.conn = psycopg.connect(make_conninfo(dsn, dbname=DB, user=ROLE), autocommit=True)

    def release(self, case: Case) -> Answer:
        epsilon = EPSILON - random.random() / 1000  # a fresh query: no free replay
        answer = self.conn.execute(
            "SELECT diffix.dp_query_json(%s, %s, %s)",
            (case.sql, epsilon, 0.0 if case.declared else DELTA),
        ).fetchone()[0]
        return _answer(case, answer["rows"])

    def releases(self, case: Case) -> Callable[[], Answer]:
        return lambda: self.release(case)

    def close(self) -> None:
        self.conn.close()


class SmartNoise:
    """Its own PostgreSQL reader on a psycopg connection. Its epsilon is per noisy aggregate (an
    avg is a sum and a count: twice epsilon), so each query gets epsilon / k, k from its
    get_privacy_cost, and spends epsilon in all like the others. It has no declared keys:
    without `censor_dims` it releases every key it sees, with noisy counts."""

    name = "SmartNoise SQL"

    def __init__(self, dsn: str, rows: int):
        import snsql

        self.snsql = snsql
        self.rows = rows
        self.conn = psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True)

    def _reader(self, censor: bool, epsilon: float) -> Any:
        return self.snsql.from_connection(
            self.conn,
            engine="postgres",
            privacy=self.snsql.Privacy(epsilon=epsilon, delta=DELTA),
            metadata=_smartnoise_metadata(self.rows, censor),
        )

    def release(self, case: Case) -> Answer:
        return self.releases(case)()

    def releases(self, case: Case) -> Callable[[], Answer]:
        if case.name == "median":
            raise NotImplementedError("no median in SmartNoise SQL")
        statement = (
            case.sql.replace("count(*)", "COUNT(*) AS n")
            .replace("sum(amount)", "SUM(amount) AS s")
            .replace("FROM people", "FROM public.people")
            .replace("FROM tx", "FROM public.tx")
        )
        censor = case.group is not None and not case.declared
        spent = self._reader(censor, EPSILON).get_privacy_cost(statement)[0]
        reader = self._reader(censor, EPSILON * EPSILON / spent)
        return lambda: _answer(case, reader.execute(statement)[1:])

    def close(self) -> None:
        self.conn.close()


def _smartnoise_metadata(rows: int, censor: bool) -> dict[str, Any]:
    bounded = {"type": "float", "lower": BOUNDS[0], "upper": BOUNDS[1], "nullable": False}
    return {
        "": {
            "public": {
                "people": {
                    "max_ids": 1,
                    "censor_dims": censor,
                    "rows": rows,
                    "id": {"type": "int", "private_id": True},
                    "grp": {"type": "string"},
                    "value": bounded,
                },
                "tx": {
                    "max_ids": TX_CONTRIBUTIONS,
                    "censor_dims": censor,
                    "rows": 3 * rows,
                    "pid": {"type": "int", "private_id": True},
                    "kind": {"type": "string"},
                    "amount": bounded,
                },
            }
        }
    }


class OpenDP:
    """OpenDP's polars context over the rows read from PostgreSQL. A release is what a user
    runs: read, build the context (which searches for the noise scale), release. For the
    error runs the measurement is resolved once and applied again to the same frame: the same
    distribution, without the search each time."""

    name = "OpenDP"

    def __init__(self, dsn: str, rows: int):
        import opendp.prelude as dp

        dp.enable_features("contrib")
        self.dp = dp
        self.rows = rows
        self.conn = psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True)

    def _frame(self, case: Case) -> Any:
        import polars as pl

        names = ["kind", "amount"] if case.group == "kind" else ["grp", "value"]
        table = "tx" if case.group == "kind" else "people"
        with self.conn.cursor(binary=True) as cur:
            cur.execute(f"SELECT {', '.join(names)} FROM {table}")
            columns = list(zip(*cur.fetchall(), strict=True))
        return pl.LazyFrame(dict(zip(names, columns, strict=True)))

    def _query(self, case: Case, frame: Any) -> Any:
        import polars as pl

        dp = self.dp
        tx = case.group == "kind"
        margins = [dp.polars.Margin(by=[], max_length=3 * self.rows)]
        if case.group:
            margins.append(
                dp.polars.Margin(by=[case.group], max_length=3 * self.rows, max_groups=GROUPS)
            )
        context = dp.Context.compositor(
            data=frame,
            # tx: 15 rows per person by construction, so the promise of 20 holds
            privacy_unit=dp.unit_of(contributions=TX_CONTRIBUTIONS if tx else 1),
            privacy_loss=dp.loss_of(epsilon=EPSILON, delta=0.0 if case.declared else DELTA),
            split_evenly_over=1,
            margins=margins,
        )
        query = context.query()
        if case.group:
            measures = [dp.len()]
            if tx:
                measures.append(pl.col("amount").fill_null(0.0).dp.sum(BOUNDS))
            grouped = query.group_by(case.group).agg(measures)
            if case.declared:
                grouped = grouped.with_keys(pl.LazyFrame({case.group: KEYS}))
            return grouped
        value = pl.col("value").fill_null(0.0)
        if case.name == "avg":
            return query.select(value.dp.mean(BOUNDS))
        return query.select(value.dp.median(MEDIAN_CANDIDATES))

    def _released(self, case: Case, frame: Any) -> Answer:
        return _answer(case, list(frame.collect().iter_rows()))

    def release(self, case: Case) -> Answer:
        return self._released(case, self._query(case, self._frame(case)).release())

    def releases(self, case: Case) -> Callable[[], Answer]:
        frame = self._frame(case)
        measurement = self._query(case, frame).resolve()
        return lambda: self._released(case, measurement(frame))

    def close(self) -> None:
        self.conn.close()


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Figures:
    """One system on one case: the mean absolute error and the median time (ms)."""

    errors: list[float] = field(default_factory=list)
    times_ms: list[float] = field(default_factory=list)
    note: str | None = None

    @property
    def error(self) -> float | None:
        return statistics.fmean(self.errors) if self.errors else None

    @property
    def standard_error(self) -> float | None:
        """Of `error`: the spread of the runs' errors over the square root of their number."""
        if len(self.errors) < 2:
            return None
        return statistics.stdev(self.errors) / len(self.errors) ** 0.5

    @property
    def time_ms(self) -> float | None:
        return statistics.median(self.times_ms) if self.times_ms else None


def absolute_errors(case: Case, answer: Answer, truth: Answer) -> Values:
    """|answer - truth| of each output, averaged over the true groups; a group not released
    counts as 0."""
    if isinstance(truth, dict):
        assert isinstance(answer, dict)
        missing = (0.0,) * len(case.outputs)
        return tuple(
            statistics.fmean(abs(answer.get(key, missing)[i] - v[i]) for key, v in truth.items())
            for i in range(len(case.outputs))
        )
    assert isinstance(answer, tuple)
    return tuple(abs(a - t) for a, t in zip(answer, truth, strict=True))


def truths(dsn: str) -> dict[str, Answer]:
    with psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True) as conn:
        return {case.name: _answer(case, conn.execute(case.sql).fetchall()) for case in CASES}


def _set_keys(dsn: str, declared: bool) -> None:
    with psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True) as conn:
        conn.execute(DECLARE_KEYS if declared else FORGET_KEYS)


SYSTEMS = (Pldiffix, SmartNoise, OpenDP)


def _error_text(error: Exception) -> str:
    return " ".join(str(error).split())[:90] or type(error).__name__


def measure(
    dsn: str,
    rows: int,
    runs: int,
    figures: dict[tuple[str, str], Figures],
    *,
    timing: bool,
    systems: Sequence[type] = SYSTEMS,
) -> None:
    """Error runs (timing False) or timed runs after a warm-up (timing True) of every case.
    figures: by (output or case name, system name)."""
    truth = truths(dsn)
    for case in CASES:
        _set_keys(dsn, case.declared)
        for system_type in systems:
            name = system_type.name
            entries = [figures.setdefault((o, name), Figures()) for o in case.outputs]
            timed = figures.setdefault((case.name, name), Figures())
            if entries[0].note:
                continue
            print(f"   {'time' if timing else 'error'}: {case.name}, {name} ...", flush=True)
            try:
                system = system_type(dsn, rows)
            except ImportError as error:
                entries[0].note = f"not installed ({error.name}): make bench installs it"
                continue
            try:
                if timing:
                    system.release(case)  # warm-up
                    for _ in range(runs):
                        start = time.perf_counter()
                        system.release(case)
                        timed.times_ms.append((time.perf_counter() - start) * 1000)
                else:
                    release = system.releases(case)
                    for _ in range(runs):
                        errors = absolute_errors(case, release(), truth[case.name])
                        for entry, error in zip(entries, errors, strict=True):
                            entry.errors.append(error)
            except NotImplementedError as error:
                entries[0].note = str(error)
            except Exception as error:  # a peer's failure is reported, the run goes on
                entries[0].note = f"{case.name}: {_error_text(error)}"
            finally:
                system.close()


def build(dsn: str, rows: int) -> None:
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(DB))
        )
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(ROLE)))
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB)))
    install.install(make_conninfo(dsn, dbname=DB), out=io.StringIO())
    with psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True) as conn:
        conn.execute(
            DATA_SQL.format(
                n=rows, last=GROUPS - 1, persons=max(1, rows // 5), groups=GROUPS, tx=3 * rows
            )
        )
        conn.execute("VACUUM (FREEZE, ANALYZE) people, tx")
        conn.execute(PLDIFFIX_SQL)


def drop(dsn: str) -> None:
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(DB))
        )
        admin.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(ROLE)))


# --- reporting ------------------------------------------------------------------------------


def _cell(value: float | None, digits: int, suffix: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{suffix}"


def report(figures: dict[tuple[str, str], Figures], args: argparse.Namespace) -> str:
    names = [system.name for system in SYSTEMS]
    lines = [
        f"== DP side by side at epsilon {EPSILON:g}: mean absolute error over {args.runs} runs "
        f"at {format_rows(args.error_rows)} people, median time per query over "
        f"{args.time_runs} runs at {format_rows(args.time_rows)} people "
        f"({format_rows(3 * args.time_rows)} tx)",
        "| | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for output in [o for case in CASES for o in case.outputs]:
        cells = [_cell(figures.get((output, n), Figures()).error, 2) for n in names]
        lines.append(f"| {output}: error | " + " | ".join(cells) + " |")
    for case in CASES:
        cells = [_cell(figures.get((case.name, n), Figures()).time_ms, 0, " ms") for n in names]
        lines.append(f"| {case.name}: time | " + " | ".join(cells) + " |")
    notes = sorted({(system, f.note) for (_, system), f in figures.items() if f.note})
    lines += [f"   {system}: {note}" for system, note in notes]
    lines += targets(figures)
    return "\n".join(lines)


def targets(figures: dict[tuple[str, str], Figures]) -> list[str]:
    """Issue 30's targets: undeclared keys within 1.1x OpenDP, median within 2x Tumult's 0.98.
    The errors are shown with their standard errors: with few runs the ratio of two equal
    mechanisms' errors can land on either side of 1.1."""
    undeclared = "count by group, undeclared keys"
    ours = figures.get((undeclared, Pldiffix.name), Figures())
    theirs = figures.get((undeclared, OpenDP.name), Figures())
    median = figures.get(("median", Pldiffix.name), Figures()).error
    lines = []
    if ours.error is not None and theirs.error:
        verdict = "met" if ours.error <= 1.1 * theirs.error else "MISSED"
        lines.append(
            f"   target undeclared keys <= 1.1x OpenDP: {_with_error(ours)} vs "
            f"{_with_error(theirs)} ({ours.error / theirs.error:.2f}x): {verdict}"
        )
    if median is not None:
        verdict = "met" if median <= 2 * TUMULT_MEDIAN else "MISSED"
        lines.append(f"   target median <= 2x Tumult's {TUMULT_MEDIAN}: {median:.2f}: {verdict}")
    return lines


def _with_error(figures: Figures) -> str:
    spread = figures.standard_error
    return f"{figures.error:.2f}" + ("" if spread is None else f" ± {spread:.2f}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pldiffix_tools.bench_dp_peers",
        description="pldiffix, SmartNoise SQL and OpenDP side by side (issue 30's DP benchmark)",
    )
    parser.add_argument("--error-rows", type=parse_rows, default=100_000, help="default 100k")
    parser.add_argument("--runs", type=int, default=50, help="releases per error (default 50)")
    parser.add_argument("--time-rows", type=parse_rows, default=1_000_000, help="default 1M")
    parser.add_argument("--time-runs", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--dsn", help="superuser DSN of an existing server")
    parser.add_argument(
        "--setting",
        type=setting_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a server setting of the throwaway cluster (repeatable)",
    )
    parser.add_argument(
        "--systems",
        type=_systems_arg,
        default=SYSTEMS,
        help="comma-separated, of: pldiffix, smartnoise, opendp (default all)",
    )
    return parser.parse_args(argv)


def _systems_arg(text: str) -> list[type]:
    known = {system.name.split()[0].lower(): system for system in SYSTEMS}
    try:
        return [known[name.strip().lower()] for name in text.split(",")]
    except KeyError as error:
        raise argparse.ArgumentTypeError(f"unknown system {error.args[0]!r}") from None


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[str]:
    if args.dsn:
        yield args.dsn
        return
    print("== starting a throwaway PostgreSQL cluster")
    with EmbeddedCluster(settings=SERVER_SETTINGS | dict(args.setting)) as cluster:
        yield cluster.dsn


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    figures: dict[tuple[str, str], Figures] = {}
    with _server(args) as dsn:
        try:
            for rows, runs, timing in (
                (args.error_rows, args.runs, False),
                (args.time_rows, args.time_runs, True),
            ):
                if runs <= 0:
                    continue
                print(f"== {format_rows(rows)} people, {format_rows(3 * rows)} tx ...", flush=True)
                build(dsn, rows)
                measure(dsn, rows, runs, figures, timing=timing, systems=args.systems)
        finally:
            drop(dsn)
    print(report(figures, args), flush=True)
    if args.json:
        document = {
            f"{case} / {system}": {"error": f.error, "time_ms": f.time_ms, "note": f.note}
            for (case, system), f in figures.items()
        }
        with open(args.json, "w") as out:
            json.dump(document, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
