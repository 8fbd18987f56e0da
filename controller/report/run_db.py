"""Reading a run's historian file for the report, read-only: the run, its reactors, their ticks
folded into time buckets, the at-line assays, the ground truth, setpoints, events and marks.

A 14-day run at 1 s ticks holds 1.2 million tick rows per reactor, so nothing here returns the
rows themselves: SQLite folds them into about 2000 time buckets (min, max and mean per bucket)
in one pass per reactor. At-line assays repeat their last result on every tick; only the
distinct (sample time, value) pairs are read. Public for notebooks and tests too.
"""
from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.contract.reading import Quality

N_BUCKETS = 2000
"""Time buckets per plot: about two per horizontal pixel of a 1000 px wide figure."""

EVENT_LIMIT = 200
"""Events listed on the page; the rest are counted, so a chatty run keeps a readable page."""

DEFAULT_BANDS = {"temperature": 0.1, "do": 2.0, "ph": 0.05}
"""+- band per loop name, used only when neither the summary nor the run's config gives one."""

WORKERS = min(8, os.cpu_count() or 1)
"""Threads (and read-only connections) folding one reactor's ticks."""


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

    def joined(column: str) -> Envelope:
        envelopes = [r.columns[column] for r in results]
        return Envelope(
            np.concatenate([e.minimum for e in envelopes]),
            np.concatenate([e.maximum for e in envelopes]),
            np.concatenate([e.mean for e in envelopes]),
            np.concatenate([e.not_good for e in envelopes])
            if envelopes[0].not_good is not None else None)

    return Buckets(np.concatenate([r.t_s for r in results]), {c: joined(c) for c in columns})


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
    for t_s, kind, _message, data_json in rows:
        data = as_mapping(_parse_json(data_json))
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
    scored_loops = as_mapping(_reactor_summary(run.summary, reactor_id).get("loops"))
    scored = as_mapping(scored_loops.get(loop))
    reactors = run.config.get("reactor")
    configs = [r for r in reactors if isinstance(r, Mapping)] if isinstance(reactors, list) else []
    configured = next((as_mapping(as_mapping(r.get("loops")).get(loop))
                       for r in configs if r.get("id") == reactor_id), {})
    for source in (scored, configured):
        band = source.get("band")
        if isinstance(band, (int, float)) and not isinstance(band, bool) and band > 0:
            return float(band)
    return DEFAULT_BANDS.get(loop)


def as_mapping(value: Any) -> Mapping[str, Any]:
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


@dataclass(frozen=True)
class Estimate:
    """One soft-sensor estimate over time, with its standard deviation at each update."""

    t_s: np.ndarray
    value: np.ndarray
    sd: np.ndarray


def read_estimates(con: sqlite3.Connection, reactor_id: str) -> dict[str, Estimate]:
    """The soft sensor's estimates by name (`est_*`); empty for a run without them."""
    if "estimates" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}:
        return {}
    rows = con.execute("SELECT name, t_s, value, sd FROM estimates WHERE reactor_id = ? "
                       "AND value IS NOT NULL ORDER BY name, t_s", (reactor_id,))
    points: dict[str, list[tuple[float, float, float]]] = {}
    for name, t_s, value, sd in rows:
        points.setdefault(name, []).append((t_s, value, math.nan if sd is None else sd))
    return {name: Estimate(*np.array(p, dtype=float).T) for name, p in points.items()}


def read_restandardisations(con: sqlite3.Connection, reactor_id: str
                            ) -> list[tuple[float, str, float]]:
    """Every re-standardisation of a probe: (t_s, probe, new correction), in time order."""
    rows = con.execute(
        "SELECT t_s, data_json FROM events WHERE reactor_id = ? AND kind = 'standardisation' "
        "ORDER BY t_s, rowid", (reactor_id,))
    out = []
    for t_s, data_json in rows:
        data = as_mapping(_parse_json(data_json))
        correction = data.get("correction")
        if data.get("restandardised") and isinstance(data.get("probe"), str) and isinstance(
                correction, (int, float)):
            out.append((float(t_s), data["probe"], float(correction)))
    return out


HELD_STATES = frozenset({"holding", "held"})
"""Procedure states in which the recipe's outputs are in their hold state (docs/recipes.md)."""


@dataclass(frozen=True)
class PhaseSpan:
    """One phase of a reactor's recipe, as its events recorded it."""

    name: str
    index: int | None
    start_s: float
    end_s: float
    """When it ended; for a phase still running when the run stopped, the last tick's time."""
    ended_by: str | None
    """The exit's condition or the command that ended it; None if the run stopped inside it."""


@dataclass(frozen=True)
class RecipeTimeline:
    """A reactor's recipe over the run: its phases and the spans it was held, both in time
    order. Empty for a reactor without a recipe, so its plots draw as they always did."""

    phases: list[PhaseSpan]
    held: list[tuple[float, float]]
    """(from, to) run times of each stretch in `holding` or `held`."""

    def __bool__(self) -> bool:
        return bool(self.phases or self.held)


def read_recipe(con: sqlite3.Connection, reactor_id: str, end_s: float) -> RecipeTimeline:
    """A reactor's phases and held spans from its `recipe` events; `end_s` (the last tick)
    closes a phase or a hold the run stopped inside.

    A phase runs from its `phase_started` to its `phase_ended`. A start repeated for the phase
    already open (a restarted controller announcing where it is) keeps the first; a new phase
    starting over an open one (its end lost with a killed process) closes that one there, ended
    by nothing known; an end with no start on record starts at its own `started_s`. A hold runs
    from the state event into `holding` or `held` to the next state event out of both.
    """
    rows = con.execute(
        "SELECT t_s, data_json FROM events WHERE reactor_id = ? AND kind = 'recipe' "
        "ORDER BY t_s, rowid", (reactor_id,))
    phases: list[PhaseSpan] = []
    held: list[tuple[float, float]] = []
    open_phase: tuple[str, int | None, float] | None = None
    held_since: float | None = None
    for t_s, data_json in rows:
        data = as_mapping(_parse_json(data_json))
        event, name, index = data.get("event"), data.get("phase"), data.get("index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        if event == "state" and isinstance(data.get("state"), str):
            if data["state"] in HELD_STATES and held_since is None:
                held_since = float(t_s)
            elif data["state"] not in HELD_STATES and held_since is not None:
                held.append((held_since, float(t_s)))
                held_since = None
        elif event == "phase_started" and isinstance(name, str):
            if open_phase is not None and open_phase[:2] == (name, index):
                continue
            if open_phase is not None:
                phases.append(PhaseSpan(*open_phase, float(t_s), None))
            open_phase = (name, index, float(t_s))
        elif event == "phase_ended" and isinstance(name, str):
            ended_by = data.get("ended_by")
            ended_by = ended_by if isinstance(ended_by, str) else None
            if open_phase is not None and open_phase[0] == name:
                phases.append(PhaseSpan(name, index, open_phase[2], float(t_s), ended_by))
                open_phase = None
            elif phases and phases[-1].name == name and phases[-1].ended_by is None:
                # the next phase's start was recorded first, at the same moment
                phases[-1] = PhaseSpan(name, index, phases[-1].start_s, phases[-1].end_s,
                                       ended_by)
            elif isinstance(data.get("started_s"), (int, float)):
                phases.append(PhaseSpan(name, index, float(data["started_s"]), float(t_s),
                                        ended_by))
    if open_phase is not None:
        phases.append(PhaseSpan(*open_phase, max(end_s, open_phase[2]), None))
    if held_since is not None:
        held.append((held_since, max(end_s, held_since)))
    return RecipeTimeline(sorted(phases, key=lambda phase: phase.start_s), held)
