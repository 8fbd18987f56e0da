"""What a person sees in the terminal: a progress line while a run goes, a table at the end."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from drivers.contract.durations import format_duration

_BAR_WIDTH = 30


class ProgressLine:
    """Redraws one line on a terminal; prints a plain line every 10 % when piped to a file."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._interactive = stream.isatty()
        self._started = time.perf_counter()
        self._last_decile = -1
        self._first_s: float | None = None  # a continued run starts later than 0

    def __call__(self, simulated_s: float, duration_s: float, ticks: int) -> None:
        fraction = min(simulated_s / duration_s, 1.0) if duration_s else 1.0
        wall_s = time.perf_counter() - self._started
        if self._first_s is None:
            self._first_s = simulated_s
        speed = (simulated_s - self._first_s) / wall_s if wall_s > 0 else 0.0
        filled = int(fraction * _BAR_WIDTH)
        text = (f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {fraction:6.1%}  "
                f"sim {format_duration(simulated_s)} / {format_duration(duration_s)}  "
                f"{ticks:,} ticks  {speed:,.0f}x real time")
        if self._interactive:
            self.stream.write("\r" + text)
            self.stream.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self.stream.write(text + "\n")

    def finish(self) -> None:
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()


class SweepProgressLine:
    """A sweep's progress: runs finished of the total, the last run's case and outcome, and the
    time left at the pace so far. Redrawn in place on a terminal; a plain line per run (each
    run takes seconds to minutes) when piped to a file."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self._interactive = stream.isatty()
        self._started = time.perf_counter()
        self._first: int | None = None  # runs already finished when this sweep began

    def __call__(self, finished: int, total: int, record: dict[str, Any]) -> None:
        if self._first is None:
            self._first = finished - (1 if record else 0)
        fraction = finished / total if total else 1.0
        filled = int(fraction * _BAR_WIDTH)
        wall_s = time.perf_counter() - self._started
        ran = finished - self._first
        left = f"  ~{format_duration(wall_s / ran * (total - finished))} left" if ran else ""
        last = (f"  last: {record['run_id']} {record['status']}" if record
                else "  (found finished in the output folder)")
        text = f"[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {finished}/{total} runs{left}{last}"
        if self._interactive:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()


def summary_table(summary: dict[str, Any]) -> str:
    """The end-of-run table: per reactor, each loop's band performance and the growth result."""
    resumed_s = summary.get("resumed_from_s", 0.0)
    span_s = summary["simulated_seconds"] - resumed_s
    continued = f" (continued from {format_duration(resumed_s)})" if resumed_s > 0 else ""
    lines = [
        f"run {summary['run_id']}  seed {summary['seed']}  stopped by: {summary['stopped_by']}",
        f"simulated {format_duration(summary['simulated_seconds'])}{continued} in "
        f"{summary['wall_seconds']:.1f} s wall ({summary['ticks']:,} ticks, "
        f"{span_s / max(summary['wall_seconds'], 1e-9):,.0f}x real time)",
        f"records: {summary['db']}",
    ]
    header = f"  {'loop':<12}{'setpoint':>10}{'band':>8}{'in band':>9}{'IAE':>12}{'max |e|':>10}"
    for reactor_id, reactor in summary["reactors"].items():
        fold = reactor["fold_expansion"]
        viable = reactor["viable_cells_per_ml_final"]
        lines += ["", f"reactor {reactor_id} ({reactor['device']})", header]
        for name, loop in reactor["loops"].items():
            fraction = loop["within_band_fraction"]
            in_band = "n/a" if fraction is None else f"{fraction:.1%}"
            lines.append(
                f"  {name:<12}{loop['setpoint']:>10.3g}{loop['band']:>8.3g}"
                f"{in_band:>9}{loop['iae']:>12.4g}{loop['max_abs_error']:>10.3g}"
            )
        growth = f"  fold expansion {fold:.1f}x" if fold is not None else "  fold expansion n/a"
        if viable is not None:
            growth += f", final viable density {viable:.3g} cells/mL"
        lines.append(growth)
        recipe = reactor.get("recipe")
        if recipe is not None:
            phases = " > ".join(p["name"] for p in recipe["phases"]) or "none run"
            lines.append(f"  recipe {recipe['name']}: {recipe['state']} (phases {phases})")
        errors = reactor["errors"]
        if any(errors.values()):
            lines.append(f"  errors: {errors}")
    return "\n".join(lines)
