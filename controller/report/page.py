"""The report's HTML page, and `write_report`, which reads a run file, plots it and writes the
page beside its PNGs."""
from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from controller.report.plots import DAY_S, Figures, plot_reactor, run_time_text
from controller.report.run_db import (
    Events,
    Mark,
    RecipeTimeline,
    Run,
    as_mapping,
    open_run_db,
    read_events,
    read_reactors,
    read_run,
)

MARK_LIMIT = 500
"""Alarm and interlock rows listed per reactor; a chattering alarm is counted, not listed."""


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1040px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 1em 0; }
.note { color: #a60; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, fmt: str = ".4g") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a" if value is None else _e(value)
    return "n/a" if math.isnan(value) else format(value, fmt)


def _table(header: Iterable[str] | None, rows: Iterable[Iterable[str]], numeric: set[int]) -> str:
    """An HTML table of cells that are already escaped; `numeric` columns align right."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table>{head}{body}</table>"


def _run_html(run: Run, reactors: Sequence[tuple[str, str]]) -> str:
    rows = [("run id", _e(run.run_id)), ("started (wall clock)", _e(run.started_wall_iso)),
            ("seed", _e(run.seed)), ("control period", f"{_num(run.control_period_s)} s"),
            ("reactors", _e(", ".join(r for r, _ in reactors)))]
    if run.summary:
        for key, label in (("stopped_by", "stopped by"), ("ticks", "ticks per reactor")):
            if key in run.summary:
                rows.append((label, _e(run.summary[key])))
        if "simulated_seconds" in run.summary:
            simulated_s = float(run.summary["simulated_seconds"])
            rows.append(("simulated", _e(run_time_text(simulated_s))))
    return _table(None, rows, set())


def _summary_html(run: Run, reactor_ids: Sequence[str]) -> str:
    if not run.summary:
        return "<p class='note'>No summary recorded (the run did not close cleanly).</p>"
    per_reactor = as_mapping(run.summary.get("reactors"))
    parts = [f"<h3>{_e(r)}</h3>{_reactor_summary_html(per_reactor[r])}"
             for r in reactor_ids if isinstance(per_reactor.get(r), Mapping)]
    return "".join(parts) or _reactor_summary_html(run.summary)  # a one-reactor summary


def _reactor_summary_html(part: Mapping[str, Any]) -> str:
    loops = part.get("loops") if isinstance(part.get("loops"), Mapping) else {}
    rows = [
        (_e(name), _num(s.get("setpoint")), _num(s.get("band")),
         _percent(s.get("within_band_fraction")), _num(s.get("iae")),
         _num(s.get("max_abs_error")))
        for name, s in loops.items() if isinstance(s, Mapping)
    ]
    html_ = _table(("loop", "setpoint", "band ±", "within band", "IAE", "max |error|"), rows,
                   {1, 2, 3, 4, 5}) if rows else ""
    growth = [f"fold expansion: <b>{_num(part.get('fold_expansion'), '.4g')}</b>"]
    if part.get("viable_cells_per_ml_final") is not None:
        growth.append(f"final viable density: {_num(part['viable_cells_per_ml_final'], '.3g')} "
                      "cells/mL")
    errors = part.get("errors")
    if isinstance(errors, Mapping) and any(errors.values()):
        growth.append(f"errors: {_e(json.dumps(errors, sort_keys=True))}")
    return html_ + "<p>" + "; ".join(growth) + "</p>"


def _percent(fraction: Any) -> str:
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
        return f"{100 * fraction:.1f} %"
    return _num(fraction)


def _marks_html(marks: Sequence[Mark]) -> str:
    """Every alarm and interlock change of a reactor, with the time to find it on the plots."""
    if not marks:
        return "<p>No alarm raised and no interlock tripped.</p>"
    rows = [(run_time_text(m.t_s), f"{m.t_s / DAY_S:.3f}", _e(m.kind), _e(m.name),
             _e(m.detail), _e(m.priority or "")) for m in marks[:MARK_LIMIT]]
    table = _table(("time", "day", "kind", "name", "what", "priority"), rows, {1})
    rest = len(marks) - MARK_LIMIT
    more = f"<p class='note'>… and {rest} more not shown.</p>" if rest > 0 else ""
    return table + more


def _recipe_html(recipe: RecipeTimeline | None) -> str:
    """The recipe's phases, what ended each, and when it was held: the key to the shading."""
    if not recipe:
        return ""
    rows = [(_e(p.name), run_time_text(p.start_s), run_time_text(p.end_s),
             _e(p.ended_by) if p.ended_by is not None else "(still running at the end)")
            for p in recipe.phases]
    held = ", ".join(f"{run_time_text(start)} to {run_time_text(end)}"
                     for start, end in recipe.held)
    return ("<h3>Recipe</h3>"
            + (_table(("phase", "started", "ended", "ended by"), rows, set()) if rows else "")
            + f"<p>Held (hatched on the plots): {held or 'never'}.</p>")


def _reactor_html(fig: Figures) -> str:
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in fig.notes)
    marks = _recipe_html(fig.recipe) + f"<h3>Alarms and interlocks</h3>{_marks_html(fig.marks)}"
    images = "".join(
        f"<figure><img src='{_e(quote(name))}' alt='{_e(fig.reactor_id)}: {_e(caption)}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for name, caption in fig.images)
    return (f"<h2>Reactor {_e(fig.reactor_id)} <small>{_e(fig.device_url)}</small></h2>"
            f"{notes}{marks}{images}")


def _events_html(events: Events) -> str:
    if not events.total:
        return "<p>No events recorded.</p>"
    counts = ", ".join(f"{_e(kind)} {n}" for kind, n in events.by_kind.items())
    rows = [(_e(r), run_time_text(t), _e(kind), _e(message), _e(data or ""))
            for r, t, kind, message, data in events.rows]
    table = _table(("reactor", "time", "kind", "message", "data"), rows, set())
    rest = events.total - len(events.rows)
    more = f"<p class='note'>… and {rest} more events not shown.</p>" if rest > 0 else ""
    return f"<p>{events.total} events by kind: {counts}</p>{table}{more}"


PRODUCT_PAGE = "product.html"

_PRODUCT_ROWS = (
    ("product", "total_fold_expansion", "total fold expansion", ".4g"),
    ("product", "cd34_fraction", "CD34+ share at the end", "%"),
    ("product", "cd34_fold_expansion", "CD34+ fold expansion", ".4g"),
    ("product", "primitive_fold_expansion", "primitive (CD34+CD90+) fold expansion", ".4g"),
    ("soft_sensor", "growth_rate_rmse_per_d", "soft sensor: growth-rate RMSE [1/d]", ".3g"),
    ("soft_sensor", "viable_density_mape", "soft sensor: viable-density MAPE [%]", ".3g"),
    ("soft_sensor", "inhibitor_mape", "soft sensor: inhibitor MAPE [%]", ".3g"),
)


def _product_table(part: Mapping[str, Any]) -> str:
    rows = []
    for block, key, label, fmt in _PRODUCT_ROWS:
        section = part.get(block)
        if isinstance(section, Mapping) and key in section:
            value = section[key]
            rows.append((_e(label), _percent(value) if fmt == "%" else _num(value, fmt)))
    return _table(("quantity", "value"), rows, {1}) if rows else (
        "<p class='note'>No product-quality figures in the summary (not an emulated run, or "
        "the run did not close cleanly).</p>")


def _restandardised_html(fig: Figures) -> str:
    if not fig.restandardised:
        return "<p>No probe was re-standardised.</p>"
    rows = [(run_time_text(t_s), f"{t_s / DAY_S:.3f}", _e(probe), _num(correction, "+.4g"))
            for t_s, probe, correction in fig.restandardised]
    return _table(("time", "day", "probe", "correction now"), rows, {1, 3})


def render_product_html(run: Run, figures: Sequence[Figures]) -> str:
    """The product-quality page: what the culture yields of primitive cells, how the at-line
    assays saw it, and how well the soft sensor followed it between samples."""
    per_reactor = as_mapping(run.summary.get("reactors")) if run.summary else {}
    sections = []
    for fig in figures:
        part = as_mapping(per_reactor.get(fig.reactor_id))
        image = (f"<figure><img src='{_e(quote(fig.product_image))}' alt='{_e(fig.reactor_id)}: "
                 "product quality'><figcaption>populations, CD34+ and primitive shares, growth "
                 "rate and inhibitor: truth dashed (emulated runs), at-line points, soft-sensor "
                 "estimates with +-2 SD bands, re-standardisations dotted</figcaption></figure>"
                 if fig.product_image else "<p class='note'>Nothing to plot.</p>")
        sections.append(f"<h2>Reactor {_e(fig.reactor_id)}</h2>{_product_table(part)}{image}"
                        f"<h3>Probe re-standardisations</h3>{_restandardised_html(fig)}")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {_e(run.run_id)}: product quality</title><style>{_CSS}</style></head>"
        f"<body><h1>Run {_e(run.run_id)}: product quality</h1>"
        "<p><a href='index.html'>back to the run</a></p>" + "".join(sections)
        + "</body></html>\n")


def render_html(run: Run, figures: Sequence[Figures], events: Events) -> str:
    reactors = [(f.reactor_id, f.device_url) for f in figures]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {_e(run.run_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Run {_e(run.run_id)}</h1>{_run_html(run, reactors)}"
        f"<p><a href='{PRODUCT_PAGE}'>Product quality</a>: populations, cytometry, soft-sensor "
        "estimates, probe re-standardisations</p>"
        f"<h2>Summary</h2>{_summary_html(run, [r for r, _ in reactors])}"
        + "".join(_reactor_html(f) for f in figures)
        + f"<h2>Events</h2>{_events_html(events)}</body></html>\n"
    )


def write_report(db_path: Path, out_dir: Path) -> Path:
    """Write `index.html`, `product.html` and their PNGs into `out_dir` (created if needed);
    return the index page's path.

    Raises FileNotFoundError naming `db_path` if there is no such file, ValueError if it is not a
    run database.
    """
    out_dir = Path(out_dir)
    con = open_run_db(Path(db_path))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        run = read_run(con)
        figures = [plot_reactor(con, Path(db_path), run, reactor_id, device_url, out_dir)
                   for reactor_id, device_url in read_reactors(con)]
        events = read_events(con)
    finally:
        con.close()
    page = out_dir / "index.html"
    page.write_text(render_html(run, figures, events), encoding="utf-8")
    (out_dir / PRODUCT_PAGE).write_text(render_product_html(run, figures), encoding="utf-8")
    return page
