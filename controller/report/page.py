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


def _reactor_html(fig: Figures) -> str:
    notes = "".join(f"<p class='note'>{_e(n)}</p>" for n in fig.notes)
    marks = f"<h3>Alarms and interlocks</h3>{_marks_html(fig.marks)}"
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


def render_html(run: Run, figures: Sequence[Figures], events: Events) -> str:
    reactors = [(f.reactor_id, f.device_url) for f in figures]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>Run {_e(run.run_id)}</title><style>{_CSS}</style></head><body>"
        f"<h1>Run {_e(run.run_id)}</h1>{_run_html(run, reactors)}"
        f"<h2>Summary</h2>{_summary_html(run, [r for r, _ in reactors])}"
        + "".join(_reactor_html(f) for f in figures)
        + f"<h2>Events</h2>{_events_html(events)}</body></html>\n"
    )


def write_report(db_path: Path, out_dir: Path) -> Path:
    """Write `index.html` and its PNGs into `out_dir` (created if needed); return the page's path.

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
    return page
