"""A reactor's trends from its run's historian, for the reactor page's charts, as JSON.

The report's readers (controller/report/run_db.py) fold the ticks into time buckets in SQLite,
so a window of two weeks costs the browser `n_buckets` points, never a million rows. Each loop
carries its measurement (bucket mean, min and max), setpoint (the step function at each bucket),
band (the one the run is scored against) and output; the page appends live points after these.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from controller.operator.audit import read_audit
from controller.report.run_db import (
    bucket_ticks,
    loop_band,
    open_run_db,
    read_estimates,
    read_loops,
    read_recipe,
    read_run,
    read_samples,
    table_columns,
    tick_span,
)

N_BUCKETS = 600
"""Points per trend: about one per horizontal pixel of a laptop-wide chart."""


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON has no NaN: missing points are null (uPlot draws a gap)."""
    return [None if math.isnan(v) else round(float(v), 6) for v in values]


def _decimated(t_s: np.ndarray, lo: float, **columns: np.ndarray
               ) -> dict[str, list[float | None]]:
    """The points from `lo` on, every n-th so that at most N_BUCKETS remain (samples and
    estimates are sparse enough not to need the ticks' bucketing)."""
    keep = t_s >= lo
    step = max(1, -(-int(keep.sum()) // N_BUCKETS))
    return {"t_s": _floats(t_s[keep][::step]),
            **{name: _floats(values[keep][::step]) for name, values in columns.items()}}


def reactor_history(db_path: Path, reactor_id: str, window_s: float | None) -> dict[str, Any]:
    """The last `window_s` of the reactor's run (all of it when None); KeyError when the file has
    no ticks of this reactor."""
    con = open_run_db(db_path)
    try:
        span = tick_span(con, reactor_id)
        if span is None:
            raise KeyError(reactor_id)
        t0, t1 = span
        lo = t0 if window_s is None else max(t0, t1 - window_s)
        run = read_run(con)
        known = table_columns(con, "ticks")
        loops = [lp for lp in read_loops(con, reactor_id) if lp.pv in known and lp.mv in known]
        columns = list(dict.fromkeys([c for lp in loops for c in (lp.pv, lp.mv)]))
        buckets = bucket_ticks(con, reactor_id, columns, (lo, t1), N_BUCKETS)
        t = buckets.t_s
        body: dict[str, Any] = {"run_id": run.run_id, "reactor": reactor_id, "window_s": window_s,
                                "span_s": [t0, t1], "t_s": _floats(t), "loops": {}}
        for lp in loops:
            pv, mv = buckets.columns[lp.pv], buckets.columns[lp.mv]
            at = np.clip(np.searchsorted(lp.t_s, t, side="right") - 1, 0, len(lp.t_s) - 1)
            body["loops"][lp.name] = {
                "pv": lp.pv, "mv": lp.mv, "band": loop_band(run, reactor_id, lp.name),
                "measurement": _floats(pv.mean), "min": _floats(pv.minimum),
                "max": _floats(pv.maximum), "setpoint": _floats(lp.setpoint[at]),
                "output": _floats(mv.mean)}
        sampled = [c.removesuffix("_t_s") for c in known if c.endswith("_t_s")]
        body["samples"] = {name: _decimated(s.t_s, lo, value=s.value)
                           for name, s in read_samples(con, reactor_id, sampled).items()
                           if len(s.t_s)}
        body["estimates"] = {name: _decimated(est.t_s, lo, value=est.value, sd=est.sd)
                             for name, est in read_estimates(con, reactor_id).items()}
        body["phases"] = _phases(con, reactor_id, t1)
        return body
    finally:
        con.close()


def recent_audit(db_path: Path, reactor_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The reactor's latest audit rows, newest first (the historian's hash-chained trail)."""
    rows = [r for r in read_audit(db_path) if r.get("reactor_id") == reactor_id]
    return rows[-limit:][::-1]


def recent_events(db_path: Path, reactor_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The reactor's latest events from the historian, newest first."""
    con = open_run_db(db_path)
    try:
        rows = con.execute("SELECT t_s, kind, message FROM events WHERE reactor_id = ? "
                           "ORDER BY t_s DESC, rowid DESC LIMIT ?", (reactor_id, limit))
        return [{"t_s": t, "label": kind, "message": msg} for t, kind, msg in rows]
    finally:
        con.close()


def _phases(con: Any, reactor_id: str, end_s: float) -> list[dict[str, Any]]:
    return [{"name": p.name, "start_s": p.start_s, "end_s": p.end_s, "ended_by": p.ended_by}
            for p in read_recipe(con, reactor_id, end_s).phases]


def recent_phases(db_path: Path, reactor_id: str) -> list[dict[str, Any]]:
    """The reactor's recipe phases so far, in order (empty without a recipe or ticks)."""
    con = open_run_db(db_path)
    try:
        span = tick_span(con, reactor_id)
        return [] if span is None else _phases(con, reactor_id, span[1])
    finally:
        con.close()
