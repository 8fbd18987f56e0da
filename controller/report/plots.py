"""The report's plots, one PNG each, and the reading and drawing of one reactor's section.

A plot draws a column's min-max envelope over its time buckets, so a one-tick spike stays
visible. matplotlib's object-oriented API on the Agg canvas: no pyplot, no global state, safe to
call from any thread.
"""
from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from controller.report.run_db import (
    Buckets,
    Envelope,
    Estimate,
    LoopHistory,
    Mark,
    RecipeTimeline,
    Run,
    Series,
    bucket_ticks_parallel,
    loop_band,
    read_diagnostics,
    read_estimates,
    read_loops,
    read_marks,
    read_recipe,
    read_restandardisations,
    read_samples,
    table_columns,
    tick_span,
)
from drivers.contract.datasheet import INPUTS, OUTPUTS, PUMPS, Kind, channel

DAY_S = 86400.0

_CONTINUOUS = tuple(c.name for c in INPUTS if c.kind is Kind.CONTINUOUS)
_SAMPLED = tuple(c.name for c in INPUTS if c.kind is Kind.SAMPLED)
_OUTPUTS = tuple(c.name for c in OUTPUTS)
_CELL_TRUTH = ("viable_cells_per_ml", "dead_cells_per_ml")
_METABOLITE_TRUTH = ("glucose_mm", "glutamine_mm", "lactate_mm", "ammonia_mm")
_POPULATION_TRUTH = ("primitive_cells_per_ml", "progenitor_cells_per_ml",
                     "differentiated_cells_per_ml")
_PRODUCT_TRUTH = (*_POPULATION_TRUTH, "viable_cells_per_ml", "cd34_fraction",
                  "primitive_fraction", "growth_rate_per_d", "inhibitor_ng_per_ml")
_CYTOMETRY = {"cd34_pct": "cd34_fraction", "cd34_cd90_pct": "primitive_fraction"}
"""At-line cytometry (percent) -> the truth it measures (a fraction)."""
_COLORS = {
    "viable_cells_per_ml": "tab:green", "dead_cells_per_ml": "tab:gray",
    "total_cells_per_ml": "tab:blue", "glucose_mm": "tab:blue", "lactate_mm": "tab:red",
    "glutamine_mm": "tab:purple", "ammonia_mm": "tab:brown", "feed_ml_per_h": "tab:green",
    "harvest_ml_per_h": "tab:orange", "base_ml_per_h": "tab:purple", "volume_ml": "black",
    "primitive_cells_per_ml": "tab:red", "progenitor_cells_per_ml": "tab:orange",
    "differentiated_cells_per_ml": "tab:gray", "cd34_fraction": "tab:orange",
    "primitive_fraction": "tab:red", "growth_rate_per_d": "tab:green",
    "inhibitor_ng_per_ml": "tab:purple",
}



def _new_figure(rows: int = 1, height: float = 4.5) -> tuple[Figure, list[Axes]]:
    """Fixed margins: a layout engine would draw every figure twice, doubling the render time."""
    fig = Figure(figsize=(10, height), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.09, right=0.91, top=1 - 0.35 / height, bottom=0.5 / height,
                        hspace=0.08)
    ratios = [3, 1.4] if rows == 2 else [1] * rows
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


_LegendLoc = Literal["best", "upper right"]
"""Where `_finish` puts the plot's own legend (what `_draw_marks` leaves free)."""


def _draw_marks(axes: Sequence[Axes], marks: Sequence[Mark]) -> _LegendLoc:
    """A vertical line per mark through every axes (alarms orange dashed, interlock trips red,
    resets grey dotted), explained in a legend of their own in the top left corner: name and
    time, since marks minutes apart fall on the same pixel of a two-week plot. The top axes get
    headroom for it; returns where the plot's own legend should go (top right, or `best`)."""
    if not marks:
        return "best"
    _headroom(axes[0], 0.7)
    handles: list[Artist] = []
    labels: list[str] = []
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
            labels.append(f"{run_time_text(mark.t_s)}  {mark.name} ({what})")
    title = "alarms and interlocks" + (f" (first {MARK_LABELS} of {len(marks)})"
                                       if len(marks) > MARK_LABELS else "")
    top = axes[0]
    legend = top.legend(handles, labels, loc="upper left", fontsize=7, title=title,
                        title_fontsize=7, framealpha=0.85)
    top.add_artist(legend)  # kept when _finish draws the axes' own legend
    return "upper right"


PHASE_GID = "recipe-phase"
HELD_GID = "recipe-held"
"""The artists' gids: what the recipe shading drew is found by them (tests, notebooks)."""
_PHASE_FILLS = ("tab:blue", "tab:olive")
HELD_HATCH = "//"


def _draw_recipe(axes: Sequence[Axes], recipe: RecipeTimeline | None) -> None:
    """The recipe's phases as alternating light fills through every axes, each named at the
    top of the first, and the spans it was held hatched, so a step in a plot can be read
    against the phase that caused it. Nothing at all for a reactor without a recipe."""
    if not recipe:
        return
    if recipe.phases:
        _headroom(axes[0], 0.12)
    for i, phase in enumerate(recipe.phases):
        start, end = phase.start_s / DAY_S, phase.end_s / DAY_S
        for ax in axes:
            ax.axvspan(start, end, color=_PHASE_FILLS[i % 2], alpha=0.08, linewidth=0,
                       zorder=0, gid=PHASE_GID)
        axes[0].text((start + end) / 2, 0.985, phase.name, transform=axes[0].get_xaxis_transform(),
                     ha="center", va="top", fontsize=7, color="dimgray", clip_on=True,
                     gid=PHASE_GID)
    for k, (start_s, end_s) in enumerate(recipe.held):
        for ax in axes:
            ax.axvspan(start_s / DAY_S, end_s / DAY_S, facecolor="none",
                       edgecolor=(0.4, 0.4, 0.4, 0.45), hatch=HELD_HATCH, linewidth=0,
                       zorder=0.5, gid=HELD_GID,
                       label="recipe held" if k == 0 and ax is axes[0] else None)


def _headroom(ax: Axes, fraction: float) -> None:
    """Raise the top of the y axis by `fraction` of its span (in decades on a log axis)."""
    low, high = ax.get_ylim()
    if ax.get_yscale() == "log" and low > 0:
        ax.set_ylim(low, high * (high / low) ** fraction)
    else:
        ax.set_ylim(low, high + (high - low) * fraction)


def _finish(axes: Sequence[Axes], t_end_s: float, title: str, legend: bool = True,
            legend_loc: _LegendLoc = "best") -> None:
    axes[0].set_title(title)
    axes[-1].set_xlabel("time [days]")
    axes[-1].set_xlim(0, max(t_end_s, 1.0) / DAY_S)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(loc=legend_loc, fontsize="small")


def plot_loop(path: Path, reactor_id: str, loop: LoopHistory, band: float | None, buckets: Buckets,
              t_end_s: float, marks: Sequence[Mark] = (), truth: Series | None = None,
              recipe: RecipeTimeline | None = None) -> Path:
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
    _draw_recipe([ax, ax_mv], recipe)
    _finish([ax, ax_mv], t_end_s, f"{reactor_id}: loop {loop.name}",
            legend_loc=_draw_marks([ax, ax_mv], marks))
    return _save(fig, path)


def plot_cells(path: Path, reactor_id: str, buckets: Buckets, samples: Mapping[str, Series],
               truth: Mapping[str, Series], t_end_s: float, marks: Sequence[Mark] = (),
               recipe: RecipeTimeline | None = None) -> Path:
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
        _draw_samples(ax, samples["viable_cells_per_ml"], "viable_cells_per_ml",
                      "viable (at-line)")
    _log_if_positive(ax)
    ax.set_ylabel("cells/mL")
    _draw_recipe([ax], recipe)
    _finish([ax], t_end_s, f"{reactor_id}: cells", legend_loc=_draw_marks([ax], marks))
    return _save(fig, path)


def plot_metabolites(path: Path, reactor_id: str, samples: Mapping[str, Series],
                     truth: Mapping[str, Series], t_end_s: float,
                     marks: Sequence[Mark] = (), recipe: RecipeTimeline | None = None) -> Path:
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
    _draw_recipe([ax], recipe)
    _finish([ax], t_end_s, f"{reactor_id}: metabolites", legend_loc=_draw_marks([ax], marks))
    return _save(fig, path)


def plot_feeds(path: Path, reactor_id: str, buckets: Buckets, t_end_s: float,
               marks: Sequence[Mark] = (), recipe: RecipeTimeline | None = None) -> Path:
    """Pump rates, with the culture volume they produce on a second axis."""
    fig, (ax,) = _new_figure()
    for name in PUMPS:
        if name in buckets.columns:
            _draw_envelope(ax, buckets.t_s, buckets.columns[name], _COLORS[name], name)
    ax.set_ylabel("mL/h")
    if "volume_ml" in buckets.columns:
        ax_vol = ax.twinx()
        _draw_envelope(ax_vol, buckets.t_s, buckets.columns["volume_ml"], _COLORS["volume_ml"],
                       "volume_ml")
        ax_vol.set_ylabel(_label("volume_ml"))
    _draw_recipe([ax], recipe)  # under both: the volume axes is transparent
    if recipe and recipe.phases and len(fig.axes) > 1:  # the phase names above the volume too
        _headroom(fig.axes[-1], 0.12)
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



def _draw_estimate(ax: Axes, estimate: Estimate, color: str, label: str,
                   scale: float = 1.0) -> None:
    """The soft sensor's estimate with its +-2 SD band (about 95 % if its SD is honest)."""
    t = _days(estimate.t_s)
    value, sd = estimate.value * scale, estimate.sd * scale
    ax.fill_between(t, value - 2 * sd, value + 2 * sd, color=color, alpha=0.18, linewidth=0)
    ax.plot(t, value, color=color, linewidth=1.2, label=f"{label} (estimate +-2 SD)")


def _draw_truth(ax: Axes, series: Series | None, color: str, label: str,
                scale: float = 1.0) -> None:
    if series is not None:
        ax.plot(_days(series.t_s), series.value * scale, color=color, linewidth=1,
                linestyle="--", label=f"{label} (truth)")


def plot_product(path: Path, reactor_id: str, truth: Mapping[str, Series],
                 samples: Mapping[str, Series], estimates: Mapping[str, Estimate],
                 restandardised: Sequence[tuple[float, str, float]], t_end_s: float,
                 recipe: RecipeTimeline | None = None) -> Path:
    """Product quality in three panels: the populations, the CD34+ and primitive shares
    (at-line cytometry points over the truth and the soft sensor's estimate), and the growth
    rate and inhibitor the soft sensor estimates between samples. Probe re-standardisations are
    marked through all three: a step in a loop's PV there is a correction, not the process."""
    fig, (ax_cells, ax_frac, ax_rate) = _new_figure(rows=3, height=10.0)
    for name in _POPULATION_TRUTH:
        _draw_truth(ax_cells, truth.get(name), _COLORS[name], name.removesuffix("_cells_per_ml"))
    if "est_viable_cells_per_ml" in estimates:
        _draw_estimate(ax_cells, estimates["est_viable_cells_per_ml"], "tab:green", "viable")
    _draw_truth(ax_cells, truth.get("viable_cells_per_ml"), "tab:green", "viable")
    if "viable_cells_per_ml" in samples:
        _draw_samples(ax_cells, samples["viable_cells_per_ml"], "viable_cells_per_ml",
                      "viable (at-line)")
    _log_if_positive(ax_cells)
    ax_cells.set_ylabel("cells/mL")
    for assay, share in _CYTOMETRY.items():
        _draw_truth(ax_frac, truth.get(share), _COLORS[share], share, scale=100.0)
        if assay in samples:
            ax_frac.plot(_days(samples[assay].t_s), samples[assay].value, "o",
                         color=_COLORS[share], markersize=4, markeredgecolor="black",
                         markeredgewidth=0.5, label=f"{assay} (cytometry)")
    if "est_primitive_fraction" in estimates:
        _draw_estimate(ax_frac, estimates["est_primitive_fraction"], _COLORS["primitive_fraction"],
                       "primitive share", scale=100.0)
    ax_frac.set_ylabel("% of viable cells")
    if "est_growth_rate_per_d" in estimates:
        _draw_estimate(ax_rate, estimates["est_growth_rate_per_d"], _COLORS["growth_rate_per_d"],
                       "growth rate")
    _draw_truth(ax_rate, truth.get("growth_rate_per_d"), _COLORS["growth_rate_per_d"],
                "growth rate")
    ax_rate.set_ylabel("net growth rate [1/d]")
    ax_inh = ax_rate.twinx()
    if "est_inhibitor_ng_per_ml" in estimates:
        _draw_estimate(ax_inh, estimates["est_inhibitor_ng_per_ml"],
                       _COLORS["inhibitor_ng_per_ml"], "inhibitor")
    _draw_truth(ax_inh, truth.get("inhibitor_ng_per_ml"), _COLORS["inhibitor_ng_per_ml"],
                "inhibitor")
    ax_inh.set_ylabel("inhibitor [ng/mL]")
    for i, (t_s, *_) in enumerate(restandardised):
        for ax in (ax_cells, ax_frac, ax_rate):
            ax.axvline(t_s / DAY_S, color="tab:cyan", linestyle=":", linewidth=1.0,
                       label="probe re-standardised" if i == 0 and ax is ax_cells else None)
    _draw_recipe([ax_cells, ax_frac, ax_rate], recipe)
    _finish([ax_cells, ax_frac, ax_rate], t_end_s, f"{reactor_id}: product quality")
    if ax_inh.get_legend_handles_labels()[0]:
        ax_inh.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def run_time_text(t_s: float) -> str:
    """Simulated time as `3 d 04:12:05`: days for the run, clock time to find it in a log."""
    days, rest = divmod(int(t_s), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours:02d}:{rest // 60:02d}:{rest % 60:02d}"



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
    product_image: str | None = None
    """The product-quality plot (for the product page), if the run has anything to show."""
    restandardised: list[tuple[float, str, float]] = field(default_factory=list)
    """Probe re-standardisations: (t_s, probe, new correction)."""
    recipe: RecipeTimeline | None = None
    """The recipe's phases and held spans, shaded on every plot; None without ticks."""


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
    recipe = read_recipe(con, reactor_id, span[1])
    if not truth:
        notes.append("no ground-truth diagnostics recorded")
    prefix, t_end = _slug(reactor_id), span[1]
    images = [
        (plot_loop(out_dir / f"{prefix}-loop-{_slug(loop.name)}.png", reactor_id, loop,
                   loop_band(run, reactor_id, loop.name), buckets, t_end, shown,
                   truth.get(loop.pv), recipe).name,
         f"loop {loop.name}: {loop.pv} → {loop.mv}")
        for loop in loops
    ]
    images.append((plot_cells(out_dir / f"{prefix}-cells.png", reactor_id, buckets, samples,
                              truth, t_end, shown, recipe).name, "cells"))
    images.append((plot_metabolites(out_dir / f"{prefix}-metabolites.png", reactor_id, samples,
                                    truth, t_end, shown, recipe).name, "metabolites"))
    images.append((plot_feeds(out_dir / f"{prefix}-feeds.png", reactor_id, buckets, t_end,
                              shown, recipe).name, "feeds and volume"))
    product_truth = read_diagnostics(con, reactor_id, _PRODUCT_TRUTH)
    estimates = read_estimates(con, reactor_id)
    restandardised = read_restandardisations(con, reactor_id)
    product_image = None
    if product_truth or estimates or any(len(samples[n].t_s) for n in _CYTOMETRY
                                         if n in samples):
        product_image = plot_product(out_dir / f"{prefix}-product.png", reactor_id,
                                     product_truth, samples, estimates, restandardised,
                                     t_end, recipe).name
    return Figures(reactor_id, device_url, images, notes, marks, product_image, restandardised,
                   recipe)


def _plottable_loops(loops: list[LoopHistory], known: set[str]
                     ) -> tuple[list[LoopHistory], list[str]]:
    """Loops whose PV and MV are tick columns; the names go into SQL, so nothing else passes."""
    usable = [loop for loop in loops if {loop.pv, loop.mv} <= known]
    notes = [f"loop {loop.name} not plotted: {loop.pv}/{loop.mv} not in the ticks table"
             for loop in loops if not {loop.pv, loop.mv} <= known]
    return usable, notes
