"""Synthetic data against SmartNoise Synth's MST, side by side (docs/benchmarks.md).

One 8-column personal table (3 categorical, 4 numeric/date binned, one unique string: the AID)
is synthesized by `diffix.synthesize` and by MST (smartnoise-synth 1.0.8) at the same epsilon
and delta, over the same cells: MST is given the table's cells (the synthesis's own binning, read
with its cell expressions) and its domain sizes. Both are timed, their peak memory measured (the
PostgreSQL backend's private memory; the MST process's maximum resident set), and the one-way and
two-way marginals of both twins compared with the real table's by total variation distance (mean
and max), on those cells.

MST runs in its own virtualenv (default .venv-mst, created and filled from PyPI on first use;
never the server's Python nor the main venv). Its torch-based siblings are not needed: the venv
gets smartnoise-synth without dependencies, then what its MST module imports. If that cannot be
installed, the bench says so and reports pldiffix alone.

MST's sampler in mbi 1.1.0 (the version smartnoise-synth 1.0.8 accepts) draws rows that do not
follow the fitted model. The bench therefore samples MST's fitted model with its own forward
sampler (`_junction_tree_sample`, below): the model's maximal cliques are joined into a junction
tree, each clique's marginal is read from the fitted model (`project`, exact inference), the
first clique is drawn jointly and every next one given its separator with the already drawn
columns, each by pldiffix's randomized rounding (`pldiffix.synth.model.draw`), as pldiffix samples
its own twin. The figures of mbi's own sampler are reported next to it.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EPSILON = 1.0
DELTA = 1e-6
MST_REQUIREMENTS = (
    "mbi>=1.1.0,<2",
    "disjoint-set>=0.9.0,<0.10.0",
    "smartnoise-sql>=1.0.10",
    "Faker>=17.0.0",
    "networkx",
    "scipy",
    "pandas",
)
MST_PACKAGE = "smartnoise-synth==1.0.8"
DB = "bench_synth_mst"
PLPYTHON = Path(__file__).resolve().parents[2] / "plpython"  # model.draw, for the MST worker
TABLE_SQL = """
CREATE TABLE people (person text PRIMARY KEY, city text, gender text, plan text, age integer,
                     income numeric(12, 2), score double precision, joined date);
INSERT INTO people
SELECT 'person_' || md5(i::text), 'city_' || ((h >> 4) % 20),
       CASE WHEN (h >> 12) % 2 = 0 THEN 'f' ELSE 'm' END,
       (ARRAY['basic', 'plus', 'pro', 'team', 'gold'])[1 + ((h % 70) / 20 + (h >> 28) % 2)],
       18 + (h % 70), round((20000 + (h % 70) * 900 + (h >> 8) % 30000)::numeric, 2),
       ((h >> 16) % 1000) / 10.0 + (h % 70) / 2.0, DATE '2000-01-01' + ((h >> 20) % 8000)
FROM (SELECT i, abs(hashint8(i)) AS h FROM generate_series(1, {rows}) i) g;
ANALYZE people;
CALL diffix.mark_personal('people', 'person');
CALL diffix.set_dp_bounds('people', 'age', 0, 100);
CALL diffix.set_dp_bounds('people', 'income', 0, 200000);
CALL diffix.set_dp_bounds('people', 'score', 0, 150);
CALL diffix.set_dp_domain('people', 'city', string_to_array(
  'city_0 city_1 city_2 city_3 city_4 city_5 city_6 city_7 city_8 city_9 city_10 city_11 '
  || 'city_12 city_13 city_14 city_15 city_16 city_17 city_18 city_19', ' '));
CALL diffix.set_dp_domain('people', 'gender', ARRAY['f', 'm']);
CALL diffix.set_dp_domain('people', 'plan', ARRAY['basic', 'plus', 'pro', 'team', 'gold']);
CALL diffix.set_privacy_budget(current_user, 1000, 0.5);
CREATE TABLE warm (person text PRIMARY KEY, gender text);
INSERT INTO warm SELECT 'w' || i, 'f' FROM generate_series(1, 100) i;
CALL diffix.mark_personal('warm', 'person');
CALL diffix.set_dp_domain('warm', 'gender', ARRAY['f', 'm']);
"""
SYNTH_CALL = (
    "CALL diffix.synthesize('people', %s, %s, 'people_twin', options => "
    '\'{"bins": {"joined": ["2000-01-01", "2005-01-01", "2010-01-01", '
    '"2015-01-01", "2022-01-01"]}}\')'
)


@dataclass
class Errors:
    """TVD of the one-way and two-way marginals against the real table's."""

    one_way_mean: float
    one_way_max: float
    two_way_mean: float
    two_way_max: float


@dataclass
class Run:
    name: str
    seconds: float | None = None
    peak_mib: float | None = None
    rows: int | None = None
    errors: Errors | None = None
    note: str = ""


@dataclass
class Comparison:
    rows: int
    epsilon: float
    delta: float
    cells: list[int] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


# --- measures (pure) ----------------------------------------------------------------------------


def total_variation(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Half the L1 distance of the two normalized count tables."""
    a, b = np.asarray(real, float), np.asarray(synthetic, float)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def marginal_errors(real: np.ndarray, synthetic: np.ndarray, sizes: Sequence[int]) -> Errors:
    """TVD of every one-way and every two-way marginal of two cell matrices (rows x columns,
    cell numbers below `sizes`)."""
    one = [
        total_variation(
            np.bincount(real[:, j], minlength=size), np.bincount(synthetic[:, j], minlength=size)
        )
        for j, size in enumerate(sizes)
    ]
    two = []
    for a, b in itertools.combinations(range(len(sizes)), 2):
        cells = sizes[a] * sizes[b]
        two.append(
            total_variation(
                np.bincount(real[:, a] * sizes[b] + real[:, b], minlength=cells),
                np.bincount(synthetic[:, a] * sizes[b] + synthetic[:, b], minlength=cells),
            )
        )
    return Errors(float(np.mean(one)), max(one), float(np.mean(two)), max(two))


def junction_tree_order(cliques: Sequence[Sequence[str]]) -> list[tuple[int, int | None]]:
    """(clique, parent) in an order where each clique follows its parent: a maximum spanning
    tree over the maximal cliques weighted by their shared columns (a junction tree when the
    cliques come from a decomposable model); None starts a component."""
    count = len(cliques)
    sets = [set(c) for c in cliques]
    order: list[tuple[int, int | None]] = []
    placed: set[int] = set()
    while len(placed) < count:
        start = min(set(range(count)) - placed)
        order.append((start, None))
        placed.add(start)
        while True:
            best = max(
                (
                    (len(sets[a] & sets[b]), b, a)
                    for a in placed
                    for b in range(count)
                    if b not in placed
                ),
                default=None,
            )
            if best is None or best[0] == 0:
                break
            order.append((best[1], best[2]))
            placed.add(best[1])
    return order


def forward_sample(
    marginals: Sequence[tuple[tuple[str, ...], np.ndarray]],
    sizes: dict[str, int],
    rows: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Rows drawn from the distribution whose (consistent) clique marginals are given: the
    cliques in junction tree order, each one's new columns drawn given the columns it shares
    with those already drawn, one draw per value of the shared columns (pldiffix's own
    randomized rounding, `model.draw`, so that both twins are sampled alike)."""
    from pldiffix.synth.model import draw

    drawn: dict[str, np.ndarray] = {}
    for index, _parent in junction_tree_order([c for c, _ in marginals]):
        clique, table = marginals[index]
        shared = [c for c in clique if c in drawn]
        new = [c for c in clique if c not in drawn]
        if not new:
            continue
        axes = [clique.index(c) for c in shared + new]
        joint = np.clip(np.transpose(np.asarray(table, float), axes), 0.0, None)
        shared_cells = int(np.prod([sizes[c] for c in shared], dtype=np.int64))
        joint = joint.reshape(shared_cells, -1)
        if shared:
            key = np.ravel_multi_index([drawn[c] for c in shared], [sizes[c] for c in shared])
        else:
            key = np.zeros(rows, dtype=np.int64)
        flat = np.empty(rows, dtype=np.int64)
        for value in np.unique(key):
            where = np.flatnonzero(key == value)
            weights = joint[value]
            if weights.sum() <= 0:
                weights = joint.sum(axis=0)  # a value of mass 0: the new columns' margin
            flat[where] = draw(weights, where.size, rng)
        for column, values in zip(
            new, np.unravel_index(flat, [sizes[c] for c in new]), strict=True
        ):
            drawn[column] = values.astype(np.int64)
    return drawn


# --- MST, in its own virtualenv -----------------------------------------------------------------


def ensure_mst_venv(venv: Path) -> str | None:
    """The venv's python with smartnoise-synth's MST importable, or None after saying why not."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import snsynth.mst.mst, mbi"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    print(f"== installing {MST_PACKAGE} into {venv} (first use; no torch)", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", MST_PACKAGE],
        [str(python), "-m", "pip", "install", "--quiet", *MST_REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            print(f"== MST cannot be installed ({' '.join(tail)}); pldiffix alone", flush=True)
            return None
    if subprocess.run(probe, capture_output=True).returncode != 0:
        print("== MST installed but does not import; pldiffix alone", flush=True)
        return None
    return str(python)


def mst_worker(source: Path, target: Path) -> None:
    """In the MST venv: fits MST on the cells in `source`, samples it with the forward sampler
    and with mbi's own, and writes both samples, the time and the peak memory to `target`."""
    import pandas as pd
    from mbi import Dataset, Domain
    from snsynth.mst.mst import MSTSynthesizer

    loaded = np.load(source)
    cells, sizes = loaded["cells"], [int(s) for s in loaded["sizes"]]
    epsilon, delta = float(loaded["epsilon"]), float(loaded["delta"])
    names = [f"c{j}" for j in range(len(sizes))]
    start = time.perf_counter()
    data = Dataset(pd.DataFrame(cells, columns=names), Domain(names, sizes))
    synthesizer = MSTSynthesizer(epsilon=epsilon, delta=delta)
    synthesizer.MST(data, epsilon, delta)
    fitted = synthesizer.synthesizer
    domain = {name: int(fitted.domain[name]) for name in fitted.domain.attrs}
    cliques = [tuple(c) for c in fitted.cliques]
    maximal = [c for c in cliques if not any(set(c) < set(o) for o in cliques)]
    marginals = [
        (c, np.asarray(fitted.project(c).datavector(flatten=False))) for c in dict.fromkeys(maximal)
    ]
    drawn = forward_sample(marginals, domain, len(cells), np.random.default_rng())
    sample = Dataset(pd.DataFrame({n: drawn[n] for n in names}), fitted.domain)
    corrected = synthesizer.undo_compress_fn(sample).df[names].to_numpy()
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    own = synthesizer.undo_compress_fn(fitted.synthetic_data(rows=len(cells))).df[names]
    own_seconds = time.perf_counter() - start
    np.savez(
        target,
        corrected=corrected,
        own=own.to_numpy(),
        seconds=seconds,
        own_seconds=own_seconds,
        peak_kib=peak_kib,
    )


def run_mst(python: str, cells: np.ndarray, sizes: Sequence[int]) -> list[Run]:
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch, "in.npz"), Path(scratch, "out.npz")
        np.savez(source, cells=cells, sizes=np.asarray(sizes), epsilon=EPSILON, delta=DELTA)
        done = subprocess.run(
            [python, __file__, "--mst-worker", str(source), str(target)],
            capture_output=True,
            text=True,
            env=os.environ | {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(PLPYTHON)},
        )
        if done.returncode != 0:
            tail = " ".join(done.stderr.strip().splitlines()[-2:])
            return [Run("MST", note=f"failed: {tail[:300]}")]
        out = np.load(target)
        corrected, own = out["corrected"].astype(np.int64), out["own"].astype(np.int64)
        return [
            Run(
                "MST (smartnoise-synth 1.0.8), corrected sampler",
                float(out["seconds"]),
                float(out["peak_kib"]) / 1024,
                len(corrected),
                marginal_errors(cells, corrected, sizes),
                "fit + forward sampler of this bench; peak: the whole MST process",
            ),
            Run(
                "MST, mbi 1.1.0's own sampler",
                float(out["own_seconds"]),
                None,
                len(own),
                marginal_errors(cells, own, sizes),
                "sampling time only",
            ),
        ]


# --- pldiffix ------------------------------------------------------------------------------------


def _cells(conn: Any, schema: str, table: str, columns: Sequence[Any]) -> np.ndarray:
    """Every row's cells (rows x modeled columns), by the synthesis's own cell expressions."""
    from pldiffix.core.sqltext import identifier, qualified

    items = ", ".join(c.cell_sql(f"t.{identifier(c.name)}") for c in columns)
    buffer = io.BytesIO()
    with conn.cursor().copy(
        f"COPY (SELECT {items} FROM {qualified(schema, table)} AS t) TO STDOUT"
    ) as copy:
        for chunk in copy:
            buffer.write(chunk)
    flat = np.array(buffer.getvalue().split(), dtype=np.int64)
    return flat.reshape(-1, len(columns))


def run_pldiffix(dsn: str, rows: int) -> tuple[Run, np.ndarray, list[int]]:
    """Builds the table, synthesizes it (after a warm-up on a small table that loads the
    modules) and returns the run, the real table's cells and the cells per column."""
    import psycopg
    from psycopg import sql as pgsql
    from psycopg.conninfo import make_conninfo

    from pldiffix.synth.engine import stored_columns
    from pldiffix_installer import install
    from pldiffix_tools.bench_server import MemorySampler, reset_peak

    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        admin.execute(
            pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(DB))
        )
        admin.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(DB)))
    install.install(make_conninfo(dsn, dbname=DB), out=io.StringIO())
    with psycopg.connect(make_conninfo(dsn, dbname=DB), autocommit=True) as conn:
        start = time.perf_counter()
        conn.execute(TABLE_SQL.format(rows=rows))
        print(f"== table of {rows} rows built in {time.perf_counter() - start:.0f} s", flush=True)
        conn.execute("CALL diffix.synthesize('warm', 1, 1e-6, 'warm_twin')")
        pid = conn.info.backend_pid
        reset_peak(pid)
        with MemorySampler(pid) as memory:
            start = time.perf_counter()
            conn.execute(SYNTH_CALL, (EPSILON, DELTA))
            seconds = time.perf_counter() - start
        document = conn.execute(
            "SELECT model FROM diffix.synthetic_tables WHERE name = 'people_twin'"
        ).fetchone()[0]
        modeled = [c for c in stored_columns(document) if c.modeled]
        real = _cells(conn, "public", "people", modeled)
        twin = _cells(conn, "diffix_synthetic", "people_twin", modeled)
    sizes = [c.cells for c in modeled]
    run = Run(
        "pldiffix diffix.synthesize",
        seconds,
        None if memory.peak is None else memory.peak / 1024,
        len(twin),
        marginal_errors(real, twin, sizes),
        "in the server; peak: the backend's private memory (RssAnon)",
    )
    return run, real, sizes


# --- report ---------------------------------------------------------------------------------------


def format_comparison(result: Comparison) -> str:
    header = (
        f"== synthesis of {result.rows} rows x 8 columns (3 categorical, 4 binned, 1 unique "
        f"string), epsilon {result.epsilon:g}, delta {result.delta:g}; cells per modeled "
        f"column {result.cells}"
    )
    lines = [
        header,
        f"{'':50} {'time s':>8} {'peak MiB':>9} {'1-way mean':>10} {'1-way max':>9} "
        f"{'2-way mean':>10} {'2-way max':>9}",
    ]
    for run in result.runs:
        if run.errors is None:
            lines.append(f"{run.name:50} {run.note}")
            continue
        e = run.errors
        seconds = "-" if run.seconds is None else f"{run.seconds:.1f}"
        peak = "-" if run.peak_mib is None else f"{run.peak_mib:.0f}"
        lines.append(
            f"{run.name:50} {seconds:>8} {peak:>9} {e.one_way_mean:>10.4f} {e.one_way_max:>9.4f} "
            f"{e.two_way_mean:>10.4f} {e.two_way_max:>9.4f}  ({run.note})"
        )
    return "\n".join(lines)


def _rows(text: str) -> int:
    from pldiffix_tools.bench_report import parse_rows

    try:
        return parse_rows(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pldiffix_tools.bench_synth",
        description="diffix.synthesize against SmartNoise Synth's MST, side by side",
    )
    parser.add_argument("--rows", type=_rows, default=1_000_000, help="table size, e.g. 200k")
    parser.add_argument("--dsn", help="a running server (default: a throwaway cluster)")
    parser.add_argument(
        "--mst-venv", type=Path, default=Path(".venv-mst"), help="MST's own virtualenv"
    )
    parser.add_argument("--no-mst", action="store_true", help="pldiffix alone")
    parser.add_argument("--json", type=Path, help="write machine-readable results here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from pldiffix_tools.bench_server import SERVER_SETTINGS
    from pldiffix_tools.cluster import EmbeddedCluster

    result = Comparison(args.rows, EPSILON, DELTA)
    if args.dsn:
        run, real, sizes = run_pldiffix(args.dsn, args.rows)
    else:
        print("== starting a throwaway PostgreSQL cluster", flush=True)
        with EmbeddedCluster(settings=SERVER_SETTINGS) as cluster:
            run, real, sizes = run_pldiffix(cluster.dsn, args.rows)
    result.cells = sizes
    result.runs.append(run)
    python = None if args.no_mst else ensure_mst_venv(args.mst_venv)
    if python is not None:
        result.runs += run_mst(python, real, sizes)
    elif not args.no_mst:
        result.runs.append(Run("MST", note="not installed (see above)"))
    print(format_comparison(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--mst-worker":
        mst_worker(Path(sys.argv[2]), Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
