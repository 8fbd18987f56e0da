"""The sweep's summary page: for each axis, every metric's distribution per axis value (a box
and the runs as points), the failed runs with their errors, and the table. Drawn like the run
report (controller/report/): matplotlib's Agg canvas, no pyplot, the same stylesheet."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from controller.report.html import CSS, escape, html_table, num
from controller.sweep.groups import alarms_text, group_over_seeds, markdown, spread_text
from controller.sweep.metrics import BAND_PREFIX, PRODUCT_COLUMNS
from controller.sweep.spec import Sweep
from controller.sweep.store import CSV, PARQUET, table_rows, write_whole
from controller.sweep.task import OK
from drivers.contract.durations import format_duration

PAGE = "index.html"
OVER_SEEDS = "over_seeds.md"
TABLE_ROW_LIMIT = 500
"""Rows listed on the page; a larger sweep's table is in results.csv and results.parquet."""
_COUNTS = ("alarms_raised", "interlocks_tripped", "medium_ml")
_PANEL_COLUMNS = 3


def metric_columns(columns: Sequence[str]) -> list[str]:
    """The numeric metrics worth a distribution, in the table's order."""
    wanted = [*PRODUCT_COLUMNS, *(c for c in columns if c.startswith(BAND_PREFIX)), *_COUNTS]
    return [c for c in wanted if c in columns]


def write_page(out: Path, sweep: Sweep, records: list[dict[str, Any]],
               columns: list[str]) -> Path:
    """index.html and one PNG per swept axis in `out`; the page's path."""
    rows = table_rows(sweep.axes, records)
    ok_rows = [r for r in rows if r["status"] == OK]
    metrics = metric_columns(columns)
    figures = []
    for axis in sweep.axes:
        values = list(dict.fromkeys(r[axis] for r in ok_rows))
        if len(values) > 1 and metrics:
            figures.append((axis, _plot_axis(out, axis, values, ok_rows, metrics)))
    grouped = group_over_seeds(rows, sweep.axes, metrics)
    over_seeds = ""
    if grouped is not None:
        text = markdown(*grouped, metrics)
        write_whole(out / OVER_SEEDS, lambda partial: partial.write_text(text, encoding="utf-8"))
        over_seeds = _over_seeds_html(*grouped, metrics)
    page = out / PAGE
    html = _html(sweep, rows, columns, figures, over_seeds)
    write_whole(page, lambda partial: partial.write_text(html, encoding="utf-8"))
    return page


def _plot_axis(out: Path, axis: str, values: list[Any], rows: list[dict[str, Any]],
               metrics: list[str]) -> str:
    panels = len(metrics)
    grid_rows = math.ceil(panels / _PANEL_COLUMNS)
    height = 2.6 * grid_rows + 0.6
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.98, top=1 - 0.75 / height, bottom=0.5 / height,
                        hspace=0.55, wspace=0.3)
    fig.suptitle(f"by {axis}")
    axes = fig.subplots(grid_rows, _PANEL_COLUMNS, squeeze=False).ravel()
    labels = [_short(v) for v in values]
    rng = np.random.default_rng(0)  # the points' horizontal jitter: the same picture each time
    for ax, metric in zip(axes, metrics, strict=False):
        groups = [np.array([r[metric] for r in rows if r[axis] == v and r.get(metric)
                            is not None], dtype=float) for v in values]
        ax.boxplot([g if g.size else [np.nan] for g in groups], tick_labels=labels,
                   showfliers=False, widths=0.5)
        for i, g in enumerate(groups, start=1):
            ax.plot(i + rng.uniform(-0.12, 0.12, g.size), g, "o", ms=3, alpha=0.6,
                    color="tab:blue")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[panels:]:
        ax.set_visible(False)
    name = f"by_{''.join(c if c.isalnum() else '_' for c in axis)}.png"
    write_whole(out / name, lambda partial: fig.savefig(partial, format="png"))
    return name


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _over_seeds_html(axes: list[str], groups: list[Any], metrics: list[str]) -> str:
    table = html_table([*(escape(a) for a in axes), "runs", *(escape(m) for m in metrics),
                        "recipe completed", "alarms raised (runs)"],
                       ([*(escape(v) for v in g.values), escape(g.runs),
                         *(escape(spread_text(g.spreads[m])) for m in metrics),
                         escape(f"{g.completed}/{g.runs}"), escape(alarms_text(g.alarms))]
                        for g in groups), set())
    return (f"<h2>Over seeds</h2><p>Mean (min-max) over the seeds of each combination of the "
            f"other axes (also as Markdown: <a href='{OVER_SEEDS}'>{OVER_SEEDS}</a>).</p>"
            + table)


def _html(sweep: Sweep, rows: list[dict[str, Any]], columns: list[str],
          figures: list[tuple[str, str]], over_seeds: str) -> str:
    runs = list(dict.fromkeys(r["run_id"] for r in rows))
    failed = [r for r in rows if r["status"] != OK]
    about = html_table(None, [
        ("sweep file", escape(sweep.path)),
        ("duration", escape(format_duration(sweep.duration_s))),
        ("axes", escape(", ".join(sweep.axes))), ("cases", escape(len(sweep.cases))),
        ("runs recorded", escape(len(runs))), ("failed", escape(len(failed))),
        ("tables", f"<a href='{CSV}'>{CSV}</a>, <a href='{PARQUET}'>{PARQUET}</a>")], set())
    plots = "".join(f"<figure><img src='{escape(quote(name))}' alt='metrics by {escape(axis)}'>"
                    f"<figcaption>each metric's distribution per value of {escape(axis)}: "
                    "box (quartiles, whiskers to 1.5 IQR) and every run as a point"
                    "</figcaption></figure>" for axis, name in figures)
    if not figures:
        plots = "<p class='note'>No axis has two values with finished runs: nothing to plot.</p>"
    errors = html_table(["run id", *sweep.axes, "status", "error"], (
        [escape(r["run_id"]), *(escape(r[a]) for a in sweep.axes), escape(r["status"]),
         escape(r["error"])] for r in failed), set()) if failed else "<p>None.</p>"
    shown = rows[:TABLE_ROW_LIMIT]
    numeric = {i for i, c in enumerate(columns)
               if any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                      for r in shown)}
    table = html_table([escape(c) for c in columns], (
        [num(r.get(c)) if i in numeric else escape("" if r.get(c) is None else r.get(c))
         for i, c in enumerate(columns)] for r in shown), numeric)
    more = (f"<p class='note'>The first {TABLE_ROW_LIMIT} of {len(rows)} rows; all are in "
            f"{CSV}.</p>" if len(rows) > TABLE_ROW_LIMIT else "")
    title = f"Sweep {escape(sweep.path.name)}"
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{title}</title><style>{CSS}</style></head><body><h1>{title}</h1>{about}"
            f"{over_seeds}<h2>Metrics by axis</h2>{plots}<h2>Failed runs</h2>{errors}"
            f"<h2>Results</h2>{more}{table}</body></html>\n")
