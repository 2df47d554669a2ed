"""The benchmark's pure side: row counts, ratios, text tables, the result records, JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

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


@dataclass
class SynthesisResult:
    rows: int
    build_seconds: float
    scan_ms: float  # the source's GROUP BY of one column, for scale
    synthesize_seconds: float | None = None
    twin_rows: int | None = None
    error: str | None = None


def format_synthesis(result: SynthesisResult) -> str:
    if result.error:
        return f"== synthesis of {format_rows(result.rows)} rows: {result.error}"
    return (
        f"== synthesis of {format_rows(result.rows)} rows x 8 columns (epsilon 1, delta 1e-6): "
        f"{_fmt(result.synthesize_seconds, 2)} s for {result.twin_rows} synthetic rows "
        f"(one GROUP BY over the source: {_fmt(result.scan_ms)} ms; table built in "
        f"{result.build_seconds:.0f} s)"
    )
