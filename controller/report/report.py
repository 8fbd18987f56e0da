"""The run report: a static HTML page with plots, built from one historian SQLite file.

A 14-day run at 1 s ticks holds 1.2 million tick rows per reactor, so no plot reads the rows
themselves: SQLite folds them into about 2000 time buckets (min, max and mean per bucket) in one
pass per reactor, and a plot draws the min-max envelope so a one-tick spike stays visible.
At-line assays repeat their last result on every tick; only the distinct (sample time, value)
pairs are read. Plots use matplotlib's object-oriented API on the Agg canvas: no pyplot, no
global state, safe to call from any thread.

Public API: `write_report(db_path, out_dir) -> Path` (of index.html). The readers
(`open_run_db`, `bucket_ticks`, `bucket_ticks_parallel`, `read_samples`, ...) are public too, for
notebooks and tests.
"""
from __future__ import annotations

import errno
import html
import json
import math
import os
import re
import sqlite3
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind, channel
from drivers.contract.reading import Quality

N_BUCKETS = 2000
"""Time buckets per plot: about two per horizontal pixel of a 1000 px wide figure."""

EVENT_LIMIT = 200
"""Events listed on the page; the rest are counted, so a chatty run keeps a readable page."""

DEFAULT_BANDS = {"temperature": 0.1, "do": 2.0, "ph": 0.05}
"""+- band per loop name, used only when neither the summary nor the run's config gives one."""

WORKERS = min(8, os.cpu_count() or 1)
"""Threads (and read-only connections) folding one reactor's ticks."""

DAY_S = 86400.0

_CONTINUOUS = tuple(c.name for c in INPUTS if c.kind is Kind.CONTINUOUS)
_SAMPLED = tuple(c.name for c in INPUTS if c.kind is Kind.SAMPLED)
_OUTPUTS = tuple(c.name for c in OUTPUTS)
_CELL_TRUTH = ("viable_cells_per_ml", "dead_cells_per_ml")
_METABOLITE_TRUTH = ("glucose_mm", "glutamine_mm", "lactate_mm", "ammonia_mm")
_PUMPS = ("feed_ml_per_h", "harvest_ml_per_h", "base_ml_per_h")
_COLORS = {
    "viable_cells_per_ml": "tab:green", "dead_cells_per_ml": "tab:gray",
    "total_cells_per_ml": "tab:blue", "glucose_mm": "tab:blue", "lactate_mm": "tab:red",
    "glutamine_mm": "tab:purple", "ammonia_mm": "tab:brown", "feed_ml_per_h": "tab:green",
    "harvest_ml_per_h": "tab:orange", "base_ml_per_h": "tab:purple", "volume_ml": "black",
}


# --- data read from the run database --------------------------------------------------------
@dataclass(frozen=True)
class Envelope:
    """One column folded into buckets; NaN where a bucket held no usable value."""

    minimum: np.ndarray
    maximum: np.ndarray
    mean: np.ndarray
    not_good: np.ndarray | None
    """Ticks per bucket whose quality code was not GOOD (inputs only; outputs have no code)."""


@dataclass(frozen=True)
class Buckets:
    """Tick columns folded into time buckets; `t_s` is each bucket's mean tick time."""

    t_s: np.ndarray
    columns: dict[str, Envelope]


@dataclass(frozen=True)
class Series:
    t_s: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class LoopHistory:
    """A control loop's setpoint history: a step function starting at its first row."""

    name: str
    pv: str
    mv: str
    t_s: np.ndarray
    setpoint: np.ndarray


@dataclass(frozen=True)
class Run:
    run_id: str
    started_wall_iso: str
    seed: int
    control_period_s: float
    config: dict[str, Any]
    summary: dict[str, Any] | None


def open_run_db(db_path: Path) -> sqlite3.Connection:
    """Open read-only: a report must never create or alter a run file (sqlite would create one)."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "run database not found", str(db_path))
    con = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = {"runs", "reactors", "ticks", "setpoints", "events"} - tables
    if missing:
        con.close()
        raise ValueError(f"{db_path} is not a run database: no table {', '.join(sorted(missing))}")
    return con


def read_run(con: sqlite3.Connection) -> Run:
    row = con.execute(
        "SELECT run_id, started_wall_iso, seed, control_period_s, config_toml, summary_json "
        "FROM runs LIMIT 1").fetchone()
    if row is None:
        raise ValueError("the run database has no row in `runs`: the historian never started")
    run_id, started, seed, period, config_toml, summary_json = row
    return Run(run_id, started, seed, period, _parse_toml(config_toml), _parse_json(summary_json))


def _parse_toml(text: str | None) -> dict[str, Any]:
    """The run's config as raw TOML; only used to look up loop bands, so a bad one is ignored."""
    try:
        return tomllib.loads(text or "")
    except tomllib.TOMLDecodeError:
        return {}


def _parse_json(text: str | None) -> dict[str, Any] | None:
    """The summary; NULL when the run did not close, and a non-object is treated the same."""
    try:
        value = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def read_reactors(con: sqlite3.Connection) -> list[tuple[str, str]]:
    return con.execute("SELECT reactor_id, device_url FROM reactors ORDER BY rowid").fetchall()


def tick_span(con: sqlite3.Connection, reactor_id: str) -> tuple[float, float] | None:
    """First and last tick time; two queries so each is a single index lookup."""
    first = con.execute("SELECT MIN(t_s) FROM ticks WHERE reactor_id = ?", (reactor_id,))
    last = con.execute("SELECT MAX(t_s) FROM ticks WHERE reactor_id = ?", (reactor_id,))
    t0, t1 = first.fetchone()[0], last.fetchone()[0]
    return None if t0 is None else (float(t0), float(t1))


def table_columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})")}


def bucket_ticks(
    con: sqlite3.Connection, reactor_id: str, columns: Sequence[str],
    span: tuple[float, float], n_buckets: int = N_BUCKETS, part: range | None = None,
) -> Buckets:
    """Fold tick columns into `n_buckets` equal time buckets over `span`, in one SQL pass.

    Min and max per bucket keep every excursion, however short, while Python only ever sees
    `n_buckets` rows. An input column (one with a `<name>_q` quality code) contributes only its
    GOOD values, so a sensor fault does not pose as a process excursion; its non-GOOD ticks are
    counted per bucket instead. `part` restricts the pass to a range of bucket indices, so
    threads can share the work (`bucket_ticks_parallel`). Empty buckets are left out. Column
    names must be real `ticks` columns: they go into the SQL.
    """
    known = table_columns(con, "ticks")
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise KeyError(f"no such tick column(s): {', '.join(unknown)}")
    graded = [c for c in columns if f"{c}_q" in known]
    select = ["AVG(t_s)"]
    for c in columns:
        value = f"CASE WHEN {c}_q = {int(Quality.GOOD)} THEN {c} END" if c in graded else c
        select += [f"MIN({value})", f"MAX({value})", f"AVG({value})"]
        if c in graded:
            select.append(f"SUM({c}_q <> {int(Quality.GOOD)})")
    t0, t1 = span
    width = max((t1 - t0) / n_buckets, 1e-9)
    part = range(n_buckets) if part is None else part
    bucket = "MIN(CAST((t_s - :t0) / :w AS INTEGER), :last)"  # the end tick joins the last bucket
    rows = con.execute(
        f"SELECT {', '.join(select)} FROM ticks WHERE reactor_id = :r "
        f"AND t_s BETWEEN :lo_t AND :hi_t AND {bucket} BETWEEN :lo AND :hi "
        f"GROUP BY {bucket} ORDER BY 1",
        {"r": reactor_id, "t0": t0, "w": width, "last": n_buckets - 1,
         "lo": part.start, "hi": part.stop - 1,
         # the same range in time, a bucket wider on each side: lets SQLite use the index
         "lo_t": max(t0, t0 + (part.start - 1) * width),
         "hi_t": min(t1, t0 + (part.stop + 1) * width)},
    ).fetchall()
    data = np.array(rows, dtype=float).reshape(len(rows), len(select))
    return Buckets(data[:, 0], _split_envelopes(data[:, 1:], columns, graded))


def bucket_ticks_parallel(
    db_path: Path, reactor_id: str, columns: Sequence[str], span: tuple[float, float],
    n_buckets: int = N_BUCKETS, workers: int = WORKERS,
) -> Buckets:
    """`bucket_ticks`, with the buckets split between threads, each with its own connection.

    The pass is CPU-bound inside SQLite, which releases the GIL, so on a multi-core machine
    this divides the slowest step of a long run's report by about the number of cores.
    """
    step = -(-n_buckets // max(workers, 1))
    parts = [range(lo, min(lo + step, n_buckets)) for lo in range(0, n_buckets, step)]

    def one_part(part: range) -> Buckets:
        con = open_run_db(db_path)
        try:
            return bucket_ticks(con, reactor_id, columns, span, n_buckets, part)
        finally:
            con.close()

    with ThreadPoolExecutor(len(parts)) as pool:
        results = list(pool.map(one_part, parts))
    return Buckets(
        np.concatenate([r.t_s for r in results]),
        {c: Envelope(*(np.concatenate([getattr(r.columns[c], f) for r in results])
                       if getattr(results[0].columns[c], f) is not None else None
                       for f in ("minimum", "maximum", "mean", "not_good")))
         for c in columns},
    )


def _split_envelopes(data: np.ndarray, columns: Sequence[str], graded: Sequence[str]
                     ) -> dict[str, Envelope]:
    envelopes, i = {}, 0
    for c in columns:
        not_good = data[:, i + 3] if c in graded else None
        envelopes[c] = Envelope(data[:, i], data[:, i + 1], data[:, i + 2], not_good)
        i += 4 if c in graded else 3
    return envelopes


def read_samples(con: sqlite3.Connection, reactor_id: str, names: Sequence[str]
                 ) -> dict[str, Series]:
    """Each at-line assay's results at the times their samples were drawn.

    A result repeats on every tick until the next one, so one DISTINCT pass over all assays
    together leaves a few hundred rows. Missing values (NULL/NaN, e.g. before the first result
    or on a comm error, whose timestamp is meaningless) and results graded worse than STALE
    (a repeated assay result is stale by nature) are dropped.
    """
    if not names:
        return {}
    select = ", ".join(
        f"{n}_t_s, CASE WHEN {n}_q <= {int(Quality.STALE)} THEN {n} END" for n in names)
    rows = con.execute(f"SELECT DISTINCT {select} FROM ticks WHERE reactor_id = ?",
                       (reactor_id,)).fetchall()
    data = np.array(rows, dtype=float).reshape(len(rows), 2 * len(names))
    return {n: _unique_points(data[:, 2 * i], data[:, 2 * i + 1]) for i, n in enumerate(names)}


def _unique_points(t_s: np.ndarray, value: np.ndarray) -> Series:
    keep = ~(np.isnan(t_s) | np.isnan(value))
    points = np.unique(np.column_stack([t_s[keep], value[keep]]), axis=0)  # sorted by time
    return Series(points[:, 0], points[:, 1])


def read_diagnostics(con: sqlite3.Connection, reactor_id: str, names: Sequence[str]
                     ) -> dict[str, Series]:
    """The device's ground truth (an emulator has it; real hardware usually not: empty)."""
    if "diagnostics" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}:
        return {}
    marks = ", ".join("?" * len(names))
    rows = con.execute(
        f"SELECT name, t_s, value FROM diagnostics WHERE reactor_id = ? AND name IN ({marks}) "
        "AND value IS NOT NULL ORDER BY name, t_s", (reactor_id, *names))
    points: dict[str, list[tuple[float, float]]] = {}
    for name, t_s, value in rows:
        points.setdefault(name, []).append((t_s, value))
    return {name: Series(*np.array(p, dtype=float).T) for name, p in points.items()}


def read_loops(con: sqlite3.Connection, reactor_id: str) -> list[LoopHistory]:
    """Every loop of a reactor with its setpoint changes, in the order the loops were set up."""
    rows = con.execute(
        "SELECT loop, pv, mv, t_s, setpoint FROM setpoints WHERE reactor_id = ? "
        "ORDER BY t_s, rowid", (reactor_id,)).fetchall()
    by_name: dict[str, list[tuple[str, str, float, float]]] = {}
    for name, pv, mv, t_s, setpoint in rows:
        by_name.setdefault(name, []).append((pv, mv, t_s, setpoint))
    return [
        LoopHistory(name, changes[-1][0], changes[-1][1],
             np.array([c[2] for c in changes], dtype=float),
             np.array([c[3] for c in changes], dtype=float))
        for name, changes in by_name.items()
    ]


@dataclass(frozen=True)
class Events:
    rows: list[tuple[str, float, str, str, str | None]]
    """The first events in time order: (reactor_id, t_s, kind, message, data_json)."""
    by_kind: dict[str, int]
    """Every event counted by kind, so a capped list cannot hide that an error happened."""

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def read_events(con: sqlite3.Connection, limit: int = EVENT_LIMIT) -> Events:
    rows = con.execute(
        "SELECT reactor_id, t_s, kind, message, data_json FROM events ORDER BY t_s, rowid LIMIT ?",
        (limit,)).fetchall()
    by_kind = dict(con.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind"))
    return Events(rows, by_kind)


@dataclass(frozen=True)
class Mark:
    """An alarm raised or returned, an interlock tripped or reset: a moment to see on the plots."""

    t_s: float
    kind: str
    """`alarm` or `interlock`."""
    name: str
    on: bool
    """Raised / tripped (True), or returned / reset (False)."""
    priority: str | None
    detail: str


MARK_LIMIT = 500
"""Alarm and interlock rows listed per reactor; a chattering alarm is counted, not listed."""


def read_marks(con: sqlite3.Connection, reactor_id: str) -> list[Mark]:
    """Every alarm activation and return, and every interlock trip and reset, in time order.

    Read apart from the event list (which is capped), so a long run's page still lists them
    all. Alarm-board transitions (`alarm_state`) mark when an alarm became active (-> unack,
    shelved ones excluded: nobody was told) and when its condition cleared; alarms raised
    outside the board (`alarm`: comm loss, a lost gas supply) carry their own flag.
    """
    rows = con.execute(
        "SELECT t_s, kind, message, data_json FROM events WHERE reactor_id = ? AND kind IN "
        "('alarm_state', 'alarm', 'interlock') ORDER BY t_s, rowid", (reactor_id,))
    marks = []
    for t_s, kind, message, data_json in rows:
        data = _mapping(_parse_json(data_json))
        if kind == "interlock" and isinstance(data.get("interlock"), str):
            tripped = bool(data.get("tripped"))
            marks.append(Mark(float(t_s), "interlock", data["interlock"], tripped, None,
                              "tripped" if tripped else "reset"))
        elif kind == "alarm" and isinstance(data.get("alarm"), str):
            active = bool(data.get("active"))
            priority = data.get("priority")
            marks.append(Mark(float(t_s), "alarm", data["alarm"], active,
                              priority if isinstance(priority, str) else None,
                              "raised" if active else "cleared"))
        elif kind == "alarm_state" and isinstance(data.get("alarm"), str):
            to, before = data.get("to"), data.get("from")
            if data["alarm"] == "flood" or before == "shelved" or to == before:
                continue
            priority = data.get("priority") if isinstance(data.get("priority"), str) else None
            if to == "unack":
                marks.append(Mark(float(t_s), "alarm", data["alarm"], True, priority, "raised"))
            elif to in ("rtn_unack", "latched") or (to == "normal" and before == "acked"):
                marks.append(Mark(float(t_s), "alarm", data["alarm"], False, priority,
                                  "condition cleared"))
    return marks


def loop_band(run: Run, reactor_id: str, loop: str) -> float | None:
    """The band the run scored the loop against: its summary's, else its config's, else a default.

    The run's own band is preferred so the shaded area is what "within band" was counted
    against; the defaults only cover runs without either (e.g. killed before the summary, with a
    config written elsewhere).
    """
    scored = _mapping(_mapping(_reactor_summary(run.summary, reactor_id).get("loops")).get(loop))
    reactors = run.config.get("reactor")
    configs = [r for r in reactors if isinstance(r, Mapping)] if isinstance(reactors, list) else []
    configured = next((_mapping(_mapping(r.get("loops")).get(loop))
                       for r in configs if r.get("id") == reactor_id), {})
    for source in (scored, configured):
        band = source.get("band")
        if isinstance(band, (int, float)) and not isinstance(band, bool) and band > 0:
            return float(band)
    return DEFAULT_BANDS.get(loop)


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else empty: the summary and config are free-form JSON/TOML."""
    return value if isinstance(value, Mapping) else {}


def _reactor_summary(summary: Mapping[str, Any] | None, reactor_id: str) -> Mapping[str, Any]:
    """A reactor's part of the summary; a summary without `reactors` is one reactor's."""
    if not summary:
        return {}
    reactors = summary.get("reactors")
    if isinstance(reactors, Mapping):
        part = reactors.get(reactor_id)
        return part if isinstance(part, Mapping) else {}
    return summary


# --- plots ----------------------------------------------------------------------------------
def _new_figure(rows: int = 1, height: float = 4.5) -> tuple[Figure, list[Axes]]:
    """Fixed margins: a layout engine would draw every figure twice, doubling the render time."""
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.91, top=1 - 0.35 / height, bottom=0.5 / height,
                        hspace=0.08)
    ratios = [3, 1.4] if rows == 2 else [1]
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False, height_ratios=ratios)[:, 0]
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _label(name: str) -> str:
    try:
        return f"{name} [{channel(name).unit}]"
    except KeyError:
        return name


def _days(t_s: np.ndarray) -> np.ndarray:
    return np.asarray(t_s, dtype=float) / DAY_S


def _draw_envelope(ax: Axes, t_s: np.ndarray, env: Envelope, color: str, label: str) -> None:
    """Min-max band plus its edges as thin lines (a one-bucket spike is a line, not a sliver)."""
    t = _days(t_s)
    ax.fill_between(t, env.minimum, env.maximum, color=color, alpha=0.25, linewidth=0)
    ax.plot(t, env.maximum, color=color, linewidth=0.5, alpha=0.8)
    ax.plot(t, env.minimum, color=color, linewidth=0.5, alpha=0.8)
    ax.plot(t, env.mean, color=color, linewidth=1.0, label=label)


def _mark_not_good(ax: Axes, t_s: np.ndarray, env: Envelope) -> None:
    """Red ticks along the bottom of the axes where the sensor reported a non-GOOD quality."""
    if env.not_good is None or not np.any(env.not_good > 0):
        return
    where = env.not_good > 0
    ax.plot(_days(t_s[where]), np.full(int(where.sum()), 0.02), "|", color="red",
            markersize=8, transform=ax.get_xaxis_transform(), label="quality not GOOD")


_MARK_STYLE = {"interlock": ("tab:red", "-"), "alarm": ("darkorange", "--")}
MARK_LABELS = 12
"""Labelled marks per plot; more (a chattering alarm) are drawn but not labelled."""


def first_marks(marks: Sequence[Mark]) -> list[Mark]:
    """What the plots mark: each alarm's first activation and each interlock's trips and
    resets (a limit cycling on and off shows as such), in time order."""
    seen: set[str] = set()
    out = []
    for mark in marks:
        if mark.kind == "interlock":
            out.append(mark)
        elif mark.on and mark.name not in seen:
            seen.add(mark.name)
            out.append(mark)
    return out


def _draw_marks(axes: Sequence[Axes], marks: Sequence[Mark]) -> str:
    """A vertical line per mark through every axes (alarms orange dashed, interlock trips red,
    resets grey dotted), explained in a legend of their own in the top left corner: name and
    time, since marks minutes apart fall on the same pixel of a two-week plot. The top axes get
    headroom for it; returns where the plot's own legend should go (top right, or `best`)."""
    if not marks:
        return "best"
    _headroom(axes[0], 0.7)
    handles, labels = [], []
    for mark in marks:
        color, style = _MARK_STYLE[mark.kind]
        if mark.kind == "interlock" and not mark.on:
            color, style = "tab:gray", ":"
        day = mark.t_s / DAY_S
        for ax in axes:
            line = ax.axvline(day, color=color, linestyle=style, linewidth=1.0, alpha=0.9,
                              zorder=1)
        if len(handles) < MARK_LABELS:
            what = f"{mark.kind} {mark.detail}" if mark.kind == "interlock" else "alarm"
            handles.append(line)  # labelled here only: the axes' own legend leaves it out
            labels.append(f"{_clock(mark.t_s)}  {mark.name} ({what})")
    title = "alarms and interlocks" + (f" (first {MARK_LABELS} of {len(marks)})"
                                       if len(marks) > MARK_LABELS else "")
    top = axes[0]
    legend = top.legend(handles, labels, loc="upper left", fontsize=7, title=title,
                        title_fontsize=7, framealpha=0.85)
    top.add_artist(legend)  # kept when _finish draws the axes' own legend
    return "upper right"


def _headroom(ax: Axes, fraction: float) -> None:
    """Raise the top of the y axis by `fraction` of its span (in decades on a log axis)."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log" and low > 0:
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + (high - low) * fraction)


def _finish(axes: Sequence[Axes], t_end_s: float, title: str, legend: bool = True,
            legend_loc: str = "best") -> None:
    axes[0].set_title(title)
    axes[-1].set_xlabel("time [days]")
    axes[-1].set_xlim(0, max(t_end_s, 1.0) / DAY_S)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(loc=legend_loc, fontsize="small")


def plot_loop(path: Path, reactor_id: str, loop: LoopHistory, band: float | None, buckets: Buckets,
              t_end_s: float, marks: Sequence[Mark] = (), truth: Series | None = None) -> Path:
    """PV envelope against the setpoint step function and its band; the output below. With
    the device's ground truth of the PV (an emulator's), that too: where the sensor reads out
    of range or bad, only the truth shows how far the process went."""
    fig, (ax, ax_mv) = _new_figure(rows=2, height=6)
    t_sp = np.append(_days(loop.t_s), max(t_end_s, loop.t_s[-1]) / DAY_S)
    sp = np.append(loop.setpoint, loop.setpoint[-1])
    if band is not None:
        ax.fill_between(t_sp, sp - band, sp + band, step="post", color="tab:green", alpha=0.15,
                        linewidth=0, label=f"band ±{band:g}")
    ax.step(t_sp, sp, where="post", color="tab:green", linewidth=1.2, label="setpoint")
    _draw_envelope(ax, buckets.t_s, buckets.columns[loop.pv], "tab:blue", loop.pv)
    _mark_not_good(ax, buckets.t_s, buckets.columns[loop.pv])
    if truth is not None and len(truth.t_s):
        ax.plot(_days(truth.t_s), truth.value, color="navy", linewidth=1, linestyle="--",
                label=f"{loop.pv} (truth)")
    ax.set_ylabel(_label(loop.pv))
    _draw_envelope(ax_mv, buckets.t_s, buckets.columns[loop.mv], "tab:orange", loop.mv)
    ax_mv.set_ylabel(_label(loop.mv))
    _finish([ax, ax_mv], t_end_s, f"{reactor_id}: loop {loop.name}",
            legend_loc=_draw_marks([ax, ax_mv], marks))
    return _save(fig, path)


def plot_cells(path: Path, reactor_id: str, buckets: Buckets, samples: Mapping[str, Series],
               truth: Mapping[str, Series], t_end_s: float, marks: Sequence[Mark] = ()) -> Path:
    """Optical total density, at-line viable counts and, if known, the true live and dead cells."""
    fig, (ax,) = _new_figure()
    if "total_cells_per_ml" in buckets.columns:
        _draw_envelope(ax, buckets.t_s, buckets.columns["total_cells_per_ml"],
                       _COLORS["total_cells_per_ml"], "total (optical)")
    for name in _CELL_TRUTH:
        if name in truth:
            ax.plot(_days(truth[name].t_s), truth[name].value, color=_COLORS[name],
                    linewidth=1, linestyle="--", label=f"{name} (truth)")
    if "viable_cells_per_ml" in samples:
        _draw_samples(ax, samples["viable_cells_per_ml"], "viable_cells_per_ml", "viable (at-line)")
    _log_if_positive(ax)
    ax.set_ylabel("cells/mL")
    _finish([ax], t_end_s, f"{reactor_id}: cells", legend_loc=_draw_marks([ax], marks))
    return _save(fig, path)


def plot_metabolites(path: Path, reactor_id: str, samples: Mapping[str, Series],
                     truth: Mapping[str, Series], t_end_s: float,
                     marks: Sequence[Mark] = ()) -> Path:
    """At-line glucose and lactate at their sample times, over the true concentrations if known."""
    fig, (ax,) = _new_figure()
    for name in _METABOLITE_TRUTH:
        if name in truth:
            ax.plot(_days(truth[name].t_s), truth[name].value, color=_COLORS[name],
                    linewidth=1, linestyle="--", label=f"{name} (truth)")
    for name in ("glucose_mm", "lactate_mm"):
        if name in samples:
            _draw_samples(ax, samples[name], name, f"{name} (at-line)")
    ax.set_ylabel("mM")
    _finish([ax], t_end_s, f"{reactor_id}: metabolites", legend_loc=_draw_marks([ax], marks))
    return _save(fig, path)


def plot_feeds(path: Path, reactor_id: str, buckets: Buckets, t_end_s: float,
               marks: Sequence[Mark] = ()) -> Path:
    """Pump rates, with the culture volume they produce on a second axis."""
    fig, (ax,) = _new_figure()
    for name in _PUMPS:
        if name in buckets.columns:
            _draw_envelope(ax, buckets.t_s, buckets.columns[name], _COLORS[name], name)
    ax.set_ylabel("mL/h")
    if "volume_ml" in buckets.columns:
        ax_vol = ax.twinx()
        _draw_envelope(ax_vol, buckets.t_s, buckets.columns["volume_ml"], _COLORS["volume_ml"],
                       "volume_ml")
        ax_vol.set_ylabel(_label("volume_ml"))
    if marks and len(fig.axes) > 1:  # the volume axes is drawn over the rates: mark on it
        _headroom(ax, 0.7)
    legend_loc = _draw_marks(fig.axes[::-1], marks)
    _finish([ax], t_end_s, f"{reactor_id}: feeds", legend=False)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
    if handles:  # one legend for both axes, on the top one so no line crosses it
        fig.axes[-1].legend(handles=handles, loc=legend_loc, fontsize="small")
    return _save(fig, path)


def _draw_samples(ax: Axes, series: Series, name: str, label: str) -> None:
    ax.plot(_days(series.t_s), series.value, "o", color=_COLORS[name], markersize=4,
            markeredgecolor="black", markeredgewidth=0.5, label=label)


def _log_if_positive(ax: Axes) -> None:
    """Log scale needs a positive value to anchor; an empty plot stays linear rather than warn."""
    positive = [line.get_ydata() for line in ax.get_lines()]
    if any(np.any(np.asarray(y, dtype=float) > 0) for y in positive):
        ax.set_yscale("log")


# --- one reactor: read, plot ----------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    """A reactor's section of the page: its plots (file names) and anything worth a note."""

    reactor_id: str
    device_url: str
    images: list[tuple[str, str]]
    """(file name, caption) pairs."""
    notes: list[str]
    marks: list[Mark] = field(default_factory=list)
    """Alarms and interlocks, for the page's table (the plots mark `first_marks` of them)."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "_"


def plot_reactor(con: sqlite3.Connection, db_path: Path, run: Run, reactor_id: str,
                 device_url: str, out_dir: Path) -> Figures:
    """Every plot of one reactor: one pass over its ticks, one over its assays, then drawing."""
    span = tick_span(con, reactor_id)
    if span is None:
        return Figures(reactor_id, device_url, [], ["no ticks recorded"])
    known = table_columns(con, "ticks")
    loops, notes = _plottable_loops(read_loops(con, reactor_id), known)
    wanted = dict.fromkeys([*_CONTINUOUS, *_OUTPUTS, *(c for lp in loops for c in (lp.pv, lp.mv))])
    start = min(0.0, span[0])  # plots start at the run's start, not at the first tick
    buckets = bucket_ticks_parallel(db_path, reactor_id, [c for c in wanted if c in known],
                                    (start, span[1]))
    samples = read_samples(con, reactor_id,
                           [n for n in _SAMPLED if {n, f"{n}_t_s", f"{n}_q"} <= known])
    truth = read_diagnostics(con, reactor_id, [*_CELL_TRUTH, *_METABOLITE_TRUTH,
                                               *(loop.pv for loop in loops)])
    marks = read_marks(con, reactor_id)
    shown = first_marks(marks)
    if not truth:
        notes.append("no ground-truth diagnostics recorded")
    prefix, t_end = _slug(reactor_id), span[1]
    images = [
        (plot_loop(out_dir / f"{prefix}-loop-{_slug(loop.name)}.png", reactor_id, loop,
                   loop_band(run, reactor_id, loop.name), buckets, t_end, shown,
                   truth.get(loop.pv)).name,
         f"loop {loop.name}: {loop.pv} → {loop.mv}")
        for loop in loops
    ]
    images.append((plot_cells(out_dir / f"{prefix}-cells.png", reactor_id, buckets, samples,
                              truth, t_end, shown).name, "cells"))
    images.append((plot_metabolites(out_dir / f"{prefix}-metabolites.png", reactor_id, samples,
                                    truth, t_end, shown).name, "metabolites"))
    images.append((plot_feeds(out_dir / f"{prefix}-feeds.png", reactor_id, buckets, t_end,
                              shown).name, "feeds and volume"))
    return Figures(reactor_id, device_url, images, notes, marks)


def _plottable_loops(loops: list[LoopHistory], known: set[str]) -> tuple[list[LoopHistory], list[str]]:
    """Loops whose PV and MV are tick columns; the names go into SQL, so nothing else passes."""
    usable = [loop for loop in loops if {loop.pv, loop.mv} <= known]
    notes = [f"loop {loop.name} not plotted: {loop.pv}/{loop.mv} not in the ticks table"
             for loop in loops if not {loop.pv, loop.mv} <= known]
    return usable, notes


# --- the page -------------------------------------------------------------------------------
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


def _clock(t_s: float) -> str:
    """Simulated time as `3 d 04:12:05`: days for the run, clock time to find it in a log."""
    days, rest = divmod(int(t_s), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


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
            rows.append(("simulated", _e(_clock(float(run.summary["simulated_seconds"])))))
    return _table(None, rows, set())


def _summary_html(run: Run, reactor_ids: Sequence[str]) -> str:
    if not run.summary:
        return "<p class='note'>No summary recorded (the run did not close cleanly).</p>"
    per_reactor = _mapping(run.summary.get("reactors"))
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
    rows = [(_clock(m.t_s), f"{m.t_s / DAY_S:.3f}", _e(m.kind), _e(m.name), _e(m.detail),
             _e(m.priority or "")) for m in marks[:MARK_LIMIT]]
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
    rows = [(_e(r), _clock(t), _e(kind), _e(message), _e(data or ""))
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
