"""The run historian: one SQLite file per run holding every sample, setpoint, output and event.

The control tick only appends tuples to in-memory batches (cheap); `flush()` hands a batch to a
writer thread that owns the SQLite connection, so the tick never waits on the disk. `close()`
drains everything, so what was measured is recorded even on a signal-driven shutdown.

Schema (documented in docs/architecture.md):
- runs(run_id, started_wall_iso, seed, control_period_s, config_toml, summary_json)
- reactors(reactor_id, device_url)
- ticks(reactor_id, t_s, <input>..., <input>_q..., <sampled input>_t_s..., <output>...): one
  row per control tick: what the controller saw (value and quality code; for sampled inputs,
  when the sample was drawn) and what it commanded.
- setpoints(reactor_id, t_s, loop, pv, mv, setpoint, mode): one row per change.
- events(reactor_id, t_s, kind, message, data_json)
- diagnostics(reactor_id, t_s, name, value): a device's ground truth, when it has one.
"""
from __future__ import annotations

import json
import operator
import queue
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.datasheet import INPUTS, OUTPUTS, Kind
from drivers.reading import Quality, Reading

_SAMPLED = tuple(c.name for c in INPUTS if c.kind is Kind.SAMPLED)
_INPUT_NAMES = tuple(c.name for c in INPUTS)
_OUTPUT_NAMES = tuple(c.name for c in OUTPUTS)
_SAMPLED_INDEX = tuple(_INPUT_NAMES.index(name) for name in _SAMPLED)


def tick_columns() -> list[str]:
    """Column order of the `ticks` table after reactor_id and t_s."""
    return [
        *_INPUT_NAMES,
        *(f"{name}_q" for name in _INPUT_NAMES),
        *(f"{name}_t_s" for name in _SAMPLED),
        *_OUTPUT_NAMES,
    ]


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_wall_iso TEXT NOT NULL, seed INTEGER NOT NULL,
    control_period_s REAL NOT NULL, config_toml TEXT NOT NULL, summary_json TEXT);
CREATE TABLE IF NOT EXISTS reactors (reactor_id TEXT PRIMARY KEY, device_url TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ticks (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    {", ".join(f"{c} {'INTEGER' if c.endswith('_q') else 'REAL'}" for c in tick_columns())});
CREATE TABLE IF NOT EXISTS setpoints (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    loop TEXT NOT NULL, pv TEXT NOT NULL, mv TEXT NOT NULL, setpoint REAL NOT NULL,
    mode TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    kind TEXT NOT NULL, message TEXT NOT NULL, data_json TEXT);
CREATE TABLE IF NOT EXISTS diagnostics (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    name TEXT NOT NULL, value REAL);
"""

_INSERT = {
    "ticks": f"INSERT INTO ticks VALUES ({', '.join('?' * (2 + len(tick_columns())))})",
    "setpoints": "INSERT INTO setpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
    "events": "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
    "diagnostics": "INSERT INTO diagnostics VALUES (?, ?, ?, ?)",
}

_MISSING = Reading(float("nan"), "", float("nan"), Quality.BAD)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_wall_iso: str
    seed: int
    control_period_s: float
    config_toml: str
    reactors: Sequence[tuple[str, str]]
    """(reactor_id, device_url) pairs."""


class Historian:
    """Batched, thread-backed SQLite recorder for one run."""

    def __init__(self, path: Path, run: RunInfo) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERT}
        self._inputs_of = operator.itemgetter(*_INPUT_NAMES)
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self.rows_written = 0
        self._thread = threading.Thread(
            target=self._writer, args=(run,), name=f"historian-{run.run_id}", daemon=True
        )
        self._thread.start()

    # --- called on the tick: append only ----------------------------------------------------
    def record_tick(
        self, reactor_id: str, t_s: float, readings: Mapping[str, Reading],
        outputs: Mapping[str, float],
    ) -> None:
        try:
            inputs = self._inputs_of(readings)
        except KeyError:  # a device that did not return every channel: record the gaps as bad
            inputs = tuple(readings.get(name, _MISSING) for name in _INPUT_NAMES)
        self._batches["ticks"].append((
            reactor_id, t_s,
            *[r.value for r in inputs],
            *[r.quality for r in inputs],
            *[inputs[i].timestamp_s for i in _SAMPLED_INDEX],
            *[outputs.get(name) for name in _OUTPUT_NAMES],
        ))

    def record_setpoint(
        self, reactor_id: str, t_s: float, loop: str, pv: str, mv: str, setpoint: float, mode: str
    ) -> None:
        self._batches["setpoints"].append((reactor_id, t_s, loop, pv, mv, setpoint, mode))

    def record_event(
        self, reactor_id: str, t_s: float, kind: str, message: str,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        data_json = json.dumps(dict(data), sort_keys=True) if data else None
        self._batches["events"].append((reactor_id, t_s, kind, message, data_json))

    def record_diagnostics(self, reactor_id: str, t_s: float, values: Mapping[str, float]) -> None:
        self._batches["diagnostics"].extend(
            (reactor_id, t_s, name, float(value)) for name, value in values.items()
        )

    # --- off the tick -----------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the current batches to the writer thread; never blocks on the disk."""
        self._raise_writer_error()
        for table, rows in self._batches.items():
            if rows:
                self._queue.put((table, rows))
                self._batches[table] = []

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Write everything still pending (and the run summary), then stop the writer."""
        self.flush()
        if summary is not None:
            self._queue.put(("summary", json.dumps(summary, sort_keys=True)))
        self._queue.put(None)
        self._thread.join()
        self._raise_writer_error()

    @property
    def pending_batches(self) -> int:
        return self._queue.qsize()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"historian {self.path} failed: {self._error}") from self._error

    def _writer(self, run: RunInfo) -> None:
        try:
            con = sqlite3.connect(self.path)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.executescript(_SCHEMA)
            with con:
                con.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL)",
                    (run.run_id, run.started_wall_iso, run.seed, run.control_period_s,
                     run.config_toml),
                )
                con.executemany("INSERT INTO reactors VALUES (?, ?)", run.reactors)
            while (item := self._queue.get()) is not None:
                table, payload = item
                with con:
                    if table == "summary":
                        con.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?",
                                    (payload, run.run_id))
                    else:
                        con.executemany(_INSERT[table], payload)
                        self.rows_written += len(payload)
            with con:
                con.execute("CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (reactor_id, t_s)")
            con.close()
        except BaseException as exc:  # surfaced to the loop by flush()/close()
            self._error = exc
