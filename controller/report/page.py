"""The report's HTML page, and `write_report`, which reads a run file, plots it and writes the
page beside its PNGs."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from controller.report.html import CSS, escape, html_table, num
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


def _run_html(run: Run, reactors: Sequence[tuple[str, str]]) -> str:
    rows = [("run id", escape(run.run_id)), ("started (wall clock)", escape(run.started_wall_iso)),
            ("seed", escape(run.seed)), ("control period", f"{num(run.control_period_s)} s"),
            ("reactors", escape(", ".join(r for r, _ in reactors)))]
    if run.summary:
        for key, label in (("stopped_by", "stopped by"), ("ticks", "ticks per reactor")):
            if key in run.summary:
                rows.append((label, escape(run.summary[key])))
        if "simulated_seconds" in run.summary:
            simulated_s = float(run.summary["simulated_seconds"])
            rows.append(("simulated", escape(run_time_text(simulated_s))))
    return html_table(None, rows, set())


def _summary_html(run: Run, reactor_ids: Sequence[str]) -> str:
    if not run.summary:
        return "<p class='note'>No summary recorded (the run did not close cleanly).</p>"
    per_reactor = as_mapping(run.summary.get("reactors"))
    parts = [f"<h3>{escape(r)}</h3>{_reactor_summary_html(per_reactor[r])}"
             for r in reactor_ids if isinstance(per_reactor.get(r), Mapping)]
    return "".join(parts) or _reactor_summary_html(run.summary)  # a one-reactor summary


def _reactor_summary_html(part: Mapping[str, Any]) -> str:
    loops = as_mapping(part.get("loops"))
    rows = [
        (escape(name), num(s.get("setpoint")), num(s.get("band")),
         _percent(s.get("within_band_fraction")), num(s.get("iae")),
         num(s.get("max_abs_error")))
        for name, s in loops.items() if isinstance(s, Mapping)
    ]
    html_ = html_table(("loop", "setpoint", "band ±", "within band", "IAE", "max |error|"), rows,
                   {1, 2, 3, 4, 5}) if rows else ""
    growth = [f"fold expansion: <b>{num(part.get('fold_expansion'), '.4g')}</b>"]
    if part.get("viable_cells_per_ml_final") is not None:
        growth.append(f"final viable density: {num(part['viable_cells_per_ml_final'], '.3g')} "
                      "cells/mL")
    errors = part.get("errors")
    if isinstance(errors, Mapping) and any(errors.values()):
        growth.append(f"errors: {escape(json.dumps(errors, sort_keys=True))}")
    return html_ + "<p>" + "; ".join(growth) + "</p>"


def _percent(fraction: Any) -> str:
    if isinstance(fraction, (int, float)) and not isinstance(fraction, bool):
        return f"{100 * fraction:.1f} %"
    return num(fraction)


def _marks_html(marks: Sequence[Mark]) -> str:
    """Every alarm and interlock change of a reactor, with the time to find it on the plots."""
    if not marks:
        return "<p>No alarm raised and no interlock tripped.</p>"
    rows = [(run_time_text(m.t_s), f"{m.t_s / DAY_S:.3f}", escape(m.kind), escape(m.name),
             escape(m.detail), escape(m.priority or "")) for m in marks[:MARK_LIMIT]]
    table = html_table(("time", "day", "kind", "name", "what", "priority"), rows, {1})
    rest = len(marks) - MARK_LIMIT
    more = f"<p class='note'>… and {rest} more not shown.</p>" if rest > 0 else ""
    return table + more


def _recipe_html(recipe: RecipeTimeline | None) -> str:
    """The recipe's phases, what ended each, and when it was held: the key to the shading."""
    if not recipe:
        return ""
    rows = [(escape(p.name), run_time_text(p.start_s), run_time_text(p.end_s),
             escape(p.ended_by) if p.ended_by is not None else "(still running at the end)")
            for p in recipe.phases]
    held = ", ".join(f"{run_time_text(start)} to {run_time_text(end)}"
                     for start, end in recipe.held)
    return ("<h3>Recipe</h3>"
            + (html_table(("phase", "started", "ended", "ended by"), rows, set()) if rows else "")
            + f"<p>Held (hatched on the plots): {held or 'never'}.</p>")


def _reactor_html(fig: Figures) -> str:
    notes = "".join(f"<p class='note'>{escape(n)}</p>" for n in fig.notes)
    marks = _recipe_html(fig.recipe) + f"<h3>Alarms and interlocks</h3>{_marks_html(fig.marks)}"
    images = "".join(
        f"<figure><img src='{escape(quote(name))}' "
        f"alt='{escape(fig.reactor_id)}: {escape(caption)}'>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
        for name, caption in fig.images)
    return (f"<h2>Reactor {escape(fig.reactor_id)} <small>{escape(fig.device_url)}</small></h2>"
            f"{notes}{marks}{images}")


def _events_html(events: Events) -> str:
    if not events.total:
        return "<p>No events recorded.</p>"
    counts = ", ".join(f"{escape(kind)} {n}" for kind, n in events.by_kind.items())
    rows = [(escape(r), run_time_text(t), escape(kind), escape(message), escape(data or ""))
            for r, t, kind, message, data in events.rows]
    table = html_table(("reactor", "time", "kind", "message", "data"), rows, set())
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
            rows.append((escape(label), _percent(value) if fmt == "%" else num(value, fmt)))
    return html_table(("quantity", "value"), rows, {1}) if rows else (
        "<p class='note'>No product-quality figures in the summary (not an emulated run, or "
        "the run did not close cleanly).</p>")


def _restandardised_html(fig: Figures) -> str:
    if not fig.restandardised:
        return "<p>No probe was re-standardised.</p>"
    rows = [(run_time_text(t_s), f"{t_s / DAY_S:.3f}", escape(probe), num(correction, "+.4g"))
            for t_s, probe, correction in fig.restandardised]
    return html_table(("time", "day", "probe", "correction now"), rows, {1, 3})


def render_product_html(run: Run, figures: Sequence[Figures]) -> str:
    """The product-quality page: what the culture yields of primitive cells, how the at-line
    assays saw it, and how well the soft sensor followed it between samples."""
    per_reactor = as_mapping(run.summary.get("reactors")) if run.summary else {}
    sections = []
    for fig in figures:
        part = as_mapping(per_reactor.get(fig.reactor_id))
        image = (f"<figure><img src='{escape(quote(fig.product_image))}' "
                 f"alt='{escape(fig.reactor_id)}: "
                 "product quality'><figcaption>populations, CD34+ and primitive shares, growth "
                 "rate and inhibitor: truth dashed (emulated runs), at-line points, soft-sensor "
                 "estimates with +-2 SD bands, re-standardisations dotted</figcaption></figure>"
                 if fig.product_image else "<p class='note'>Nothing to plot.</p>")
        sections.append(f"<h2>Reactor {escape(fig.reactor_id)}</h2>{_product_table(part)}{image}"
                        f"<h3>Probe re-standardisations</h3>{_restandardised_html(fig)}")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {escape(run.run_id)}: product quality</title><style>{CSS}</style></head>"
        f"<body><h1>Run {escape(run.run_id)}: product quality</h1>"
        "<p><a href='index.html'>back to the run</a></p>" + "".join(sections)
        + "</body></html>\n")


def render_html(run: Run, figures: Sequence[Figures], events: Events) -> str:
    reactors = [(f.reactor_id, f.device_url) for f in figures]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {escape(run.run_id)}</title><style>{CSS}</style></head><body>"
        f"<h1>Run {escape(run.run_id)}</h1>{_run_html(run, reactors)}"
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
