"""The run historian: one SQLite file per run holding every sample, setpoint, output and event.

The control tick only appends tuples to in-memory batches (cheap); `flush()` hands the batches to
a writer *process* that owns the SQLite connection, so the tick never waits on the disk. A process
rather than a thread because binding a million rows holds the GIL: a writer thread would take
that time from the control loop (measured: 7.5 us of every 1 s tick), a process runs on the other
core. `close()` drains everything, so what was measured is recorded even on a signal-driven
shutdown; if the controller dies, the writer still commits every batch it was handed. If the
writer dies (or fails, or hangs), the run goes on: another writer is started and sent every
batch not yet committed (controller/runtime/writer_child.py).

`in_process=True` writes each batch in the caller's own process instead, one transaction a
flush: for a sweep worker, where the other workers already keep every core busy, so the writer
child has no idle core to run on, and handing it the rows costs more than writing them (one
two-day run: pickling 0.3 s, unpickling in the writer 1.35 s, the inserts 0.7 s). The records
are the same; a killed worker loses the rows not yet flushed, and a write that fails raises
HistorianError (the sweep's row for that run says so).

The schema, and the writer process's side, are in controller/runtime/record_writer.py.
"""
from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog

from controller.clock import Clock
from controller.operator import audit
from controller.runtime.record_writer import (
    INPUT_NAMES,
    INSERTS,
    OUTPUT_NAMES,
    SAMPLED_INDEX,
    RecordWriter,
    RunInfo,
)
from controller.runtime.writer_child import HistorianError, WriterChild
from drivers.contract.reading import Quality, Reading

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

_MISSING = Reading(float("nan"), "", float("nan"), Quality.BAD)
_QUALITY_CODE = {quality: quality.value for quality in Quality}


FLUSH_TICK_ROWS = 250
"""A batch goes to the writer once it holds this many tick rows, even before the run's flush
period: a fleet of 1,000 reactors makes 60,000 rows a minute, and the hand-off (pickling and
sending) is done inside the tick of whichever reactor's row crossed the mark, holding the event
loop meanwhile. At 1,000 rows it took ~10 ms once a second, and every reactor of that group and
the next was that late; at 250, four hand-offs of ~2.5 ms a second (docs/benchmarks.md,
"Smaller tick groups and record hand-offs"). A single reactor at 1 s never gets here (60 rows
a minute)."""


class Historian:
    """Batched SQLite recorder for one run, written by a child process (or in process)."""

    def __init__(self, path: Path, run: RunInfo, *, lock_fd: int | None = None,
                 in_process: bool = False,
                 wall_monotonic: Callable[[], float] = Clock.wall_monotonic) -> None:
        """`lock_fd`: an open file holding the run's lock (runtime/recovery.py), handed to
        the writer so the lock lasts until the last record is committed, even when the
        controller itself was killed. `in_process`: write in this process, no writer child
        (see the module's docstring). `wall_monotonic`: the writer child's supervision
        times its backoff and silence by it."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in INSERTS}
        self._inputs_of = operator.itemgetter(*INPUT_NAMES)
        self._error: str | None = None
        """Why the in-process writer failed (a writer child's failures are its own)."""
        self.rows_written = 0
        self._writer: RecordWriter | None = None
        self._child: WriterChild | None = None
        if in_process:
            self._writer = self._write_here(lambda: RecordWriter(str(self.path), run))
            return
        try:
            self._child = WriterChild(self.path, run, lock_fd=lock_fd,
                                      wall_monotonic=wall_monotonic)
        except OSError as exc:
            raise HistorianError(f"historian {self.path}: writer not started: {exc}") from exc

    @property
    def writer(self) -> WriterChild | None:
        """The writer child, supervised (None in process): its failures, for the alarm."""
        return self._child

    # --- called on the tick: append only ----------------------------------------------------
    def record_tick(
        self, reactor_id: str, t_s: float, readings: Mapping[str, Reading],
        outputs: Mapping[str, float],
    ) -> None:
        try:
            inputs = self._inputs_of(readings)
        except KeyError:  # a device that did not return every channel: record the gaps as bad
            inputs = tuple(readings.get(name, _MISSING) for name in INPUT_NAMES)
        ticks = self._batches["ticks"]
        ticks.append((
            reactor_id, t_s,
            *[r.value for r in inputs],
            # A plain int binds 2x faster than an IntEnum in the writer; the dict gets it 3x
            # faster than `.value` (an enum property) here.
            *[_QUALITY_CODE[r.quality] for r in inputs],
            *[inputs[i].timestamp_s for i in SAMPLED_INDEX],
            *[outputs.get(name) for name in OUTPUT_NAMES],
        ))
        if len(ticks) >= FLUSH_TICK_ROWS:
            self.flush()

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

    def record_estimates(self, reactor_id: str, t_s: float,
                         rows: Mapping[str, tuple[float, float]]) -> None:
        """The soft sensor's estimates (value and standard deviation) at one filter update."""
        self._batches["estimates"].extend(
            (reactor_id, t_s, name, value, sd) for name, (value, sd) in rows.items())

    def record_audit(self, record: audit.AuditRecord) -> None:
        """Append one audit row and hand it to the writer at once, not at the next flush:
        commands are rare, and an accepted command must be on record even if the controller
        dies a second later."""
        self._batches["audit"].append(record.as_row())
        self.flush()

    def record_checkpoint(self, reactor_id: str, t_s: float, wall_time: float,
                          state: Mapping[str, Any], *, urgent: bool = True) -> None:
        """Replace the reactor's checkpoint. An urgent one (a feed-ledger change, a command) is
        handed to the writer at once, with everything recorded before it: once the writer has
        it, a kill of the controller cannot lose it. A routine one goes with the next flush."""
        self._batches["checkpoints"].append((reactor_id, t_s, wall_time, json.dumps(state)))
        if urgent:
            self.flush()

    # --- off the tick -----------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the current batches to the writer child, never waiting on the disk (or, in
        process, write them in one transaction). A writer child that died is started again
        here, and nothing raises for it (controller/runtime/writer_child.py)."""
        batches = {table: rows for table, rows in self._batches.items() if rows}
        child = self._child
        if child is not None:
            child.take_replies()
            if batches:
                child.send(batches)
        elif batches:
            writer = self._writer
            assert writer is not None
            self._write_here(lambda: writer.write([batches]))
            while writer.rescued:  # (a sweep's run: said in its log)
                log.error("historian file removed or moved", path=str(self.path),
                          message=writer.rescued.pop(0))
        if batches:
            self._batches = {table: [] for table in INSERTS}

    def drain(self) -> None:
        """Hand over what is pending and wait until the writer has committed it: before a
        fleet starts ticking, so the start's records (a thousand reactors' start events) are
        not still being written when the first ticks' checkpoints come, which filled the pipe
        and held the ticks for 20-45 ms (benchmarks/fleet_in_process.py). HistorianError if
        the writer fails here: a run whose records cannot be written does not start."""
        self.flush()
        if self._child is not None:
            self._child.sync()

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Write everything still pending (and the run summary), then stop the writer;
        HistorianError if that cannot be done."""
        self.flush()
        summary_json = json.dumps(summary, sort_keys=True) if summary else None
        if self._child is not None:
            self.rows_written = self._child.close(summary_json)
            return
        writer = self._writer
        assert writer is not None
        self.rows_written = self._write_here(lambda: writer.close(summary_json))

    def _write_here(self, write: Callable[[], _T]) -> _T:
        """`write` here; its failure the same error as the writer child's."""
        if self._error is not None:
            raise HistorianError(f"historian {self.path} failed: {self._error}")
        try:
            return write()
        except (sqlite3.Error, OSError) as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            raise HistorianError(f"historian {self.path} failed: {self._error}") from exc
