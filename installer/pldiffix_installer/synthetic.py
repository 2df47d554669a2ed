"""`pldiffix synthetic-report`: a synthetic twin's utility and risk figures against its source,
printed, and with --html written as a page with one plot per modeled column (its marginal in the
real table and in the twin, as inline SVG: no plotting library)."""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import psycopg

from pldiffix_installer.install import InstallError, connect
from pldiffix_installer.tables import format_table

Row = Sequence[Any]  # (metric, column_name, other_column, real, synthetic, value)
_BAR = 14  # px per cell and series
_PLOT_WIDTH = 360
_LABEL_WIDTH = 200


def report(dsn: str, name: str, out: TextIO | None = None, html_file: Path | None = None) -> None:
    """Prints diffix.synthetic_report(name) (administrators only), the per-cell marginals
    left out; with `html_file`, also writes the HTML page."""
    out = out or sys.stdout
    with connect(dsn) as conn:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT * FROM diffix.synthetic_report(%s)", (name,))
                rows = cur.fetchall()
                headers = [column.name for column in cur.description or []]
        except psycopg.Error as error:
            hint = f" ({error.diag.message_hint})" if error.diag.message_hint else ""
            raise InstallError((error.diag.message_primary or str(error).strip()) + hint) from None
    print(f"Synthetic data report for diffix_synthetic.{name}:", file=out)
    print(format_table(headers, [r for r in rows if r[0] != "marginal"]), file=out)
    if html_file is not None:
        try:
            html_file.write_text(render_html(name, rows), encoding="utf-8")
        except OSError as error:
            raise InstallError(f"cannot write {html_file}: {error.strerror}") from None
        print(f"HTML report written to {html_file}", file=out)


def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def column_plot(column: str, cells: Sequence[Row]) -> str:
    """A horizontal bar chart (SVG) of one column's marginal: per cell, the share of the real
    table's rows and of the twin's."""
    real_total = sum(r[3] or 0 for r in cells) or 1.0
    synthetic_total = sum(r[4] or 0 for r in cells) or 1.0
    shares = [((r[3] or 0) / real_total, (r[4] or 0) / synthetic_total) for r in cells]
    largest = max((max(pair) for pair in shares), default=0.0) or 1.0
    height = len(cells) * (2 * _BAR + 8) + 24
    width = _LABEL_WIDTH + _PLOT_WIDTH + 60
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{_text(column)}: real and synthetic marginal">'
    ]
    for i, (row, (real, synthetic)) in enumerate(zip(cells, shares, strict=True)):
        top = 20 + i * (2 * _BAR + 8)
        parts.append(
            f'<text x="{_LABEL_WIDTH - 6}" y="{top + _BAR + 4}" text-anchor="end" '
            f'font-size="12">{_text(row[2])}</text>'
        )
        for offset, share, colour in ((0, real, "#4c72b0"), (_BAR, synthetic, "#dd8452")):
            length = share / largest * _PLOT_WIDTH
            parts.append(
                f'<rect x="{_LABEL_WIDTH}" y="{top + offset}" width="{length:.1f}" '
                f'height="{_BAR - 2}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{_LABEL_WIDTH + length + 4:.1f}" y="{top + offset + _BAR - 4}" '
                f'font-size="10">{share:.3f}</text>'
            )
    parts.append(
        '<text x="0" y="12" font-size="11"><tspan fill="#4c72b0">real</tspan> / '
        '<tspan fill="#dd8452">synthetic</tspan> share of rows</text></svg>'
    )
    return "".join(parts)


def render_html(name: str, rows: Sequence[Row]) -> str:
    """The page: the summary (rows, TVDs, correlations, exact-match share) as tables and one plot
    per modeled column. Every name and value is escaped."""
    columns: dict[str, list[Row]] = {}
    for row in rows:
        if row[0] == "marginal":
            columns.setdefault(row[1], []).append(row)
    one_way = {r[1]: r[5] for r in rows if r[0] == "tvd" and r[2] is None}
    summary = [
        "<tr>"
        + "".join(f"<td>{_text(v)}</td>" for v in (r[0], r[1], r[2]))
        + "".join(f"<td>{_number(v)}</td>" for v in (r[3], r[4], r[5]))
        + "</tr>"
        for r in rows
        if r[0] != "marginal"
    ]
    sections = [
        f"<section><h2>{_text(column)}</h2>"
        f"<p>Total variation distance of the marginal: {_number(one_way.get(column))}</p>"
        f"{column_plot(column, cells)}</section>"
        for column, cells in columns.items()
    ]
    title = _text(f"Synthetic data report: diffix_synthetic.{name}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head><body>"
        f"<h1>{title}</h1>"
        "<p>Exact figures from the source table (administrators only): not differentially "
        "private. Do not publish this page with the twin.</p>"
        "<table><thead><tr><th>metric</th><th>column</th><th>other column</th><th>real</th>"
        "<th>synthetic</th><th>value</th></tr></thead><tbody>"
        + "".join(summary)
        + "</tbody></table>"
        + "".join(sections)
        + "</body></html>\n"
    )
