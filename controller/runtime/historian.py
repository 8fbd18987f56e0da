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

Schema (documented in docs/architecture.md):
- runs(run_id, started_wall_iso, seed, control_period_s, config_toml, summary_json)
- reactors(reactor_id, device_url)
- ticks(reactor_id, t_s, <input>..., <input>_q..., <sampled input>_t_s..., <output>...): one
  row per control tick: what the controller saw (value and quality code; for sampled inputs,
  when the sample was drawn) and what it commanded.
- setpoints(reactor_id, t_s, loop, pv, mv, setpoint, mode): one row per change.
- events(reactor_id, t_s, kind, message, data_json)
- diagnostics(reactor_id, t_s, name, value): a device's ground truth, when it has one.
- audit(reactor_id, t_s, wall_iso, operator, action, params_json, old_json, new_json, reason,
  outcome, nonce, cmd_ts, message, prev_hash, hash): every operator command, applied or
  refused (see controller/operator/audit.py). Append-only: no UPDATE or DELETE path here, and
  triggers refuse both. Hash-chained: the writer process links each row to the one before it
  (audit.AuditChain, continued across batches and from an existing file's last row), and
  `audit.verify_audit()` / `bioreactor audit verify` recompute the chain (docs/audit.md).
- checkpoints(reactor_id, t_s, wall_time, state_json): the latest checkpoint of each reactor
  (controller/runtime/recovery.py), replaced in the same transaction as the rows recorded with
  it, so the feed ledger's events and the checkpoint that counts them can never disagree.
- handovers(session, batch): the number of the last batch committed for each historian (a
  controller process), in the same transaction as its rows: a writer started after one died
  skips what its predecessor committed, so a batch sent again is written once
  (controller/runtime/writer_child.py).

A run continued after a crash opens its file again: the run and reactor rows are kept, the
rest is appended.
"""
from __future__ import annotations

import contextlib
import json
import operator
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from controller.clock import Clock
from controller.operator import audit
from controller.runtime.writer_child import HistorianError, WriterChild
from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind
from drivers.contract.reading import Quality, Reading

_T = TypeVar("_T")
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
CREATE TABLE IF NOT EXISTS estimates (reactor_id TEXT NOT NULL, t_s REAL NOT NULL,
    name TEXT NOT NULL, value REAL, sd REAL);
CREATE TABLE IF NOT EXISTS checkpoints (reactor_id TEXT PRIMARY KEY, t_s REAL NOT NULL,
    wall_time REAL NOT NULL, state_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS handovers (session TEXT PRIMARY KEY, batch INTEGER NOT NULL);
{audit.SCHEMA}"""

_INSERT = {
    "ticks": f"INSERT INTO ticks VALUES ({', '.join('?' * (2 + len(tick_columns())))})",
    "setpoints": "INSERT INTO setpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
    "events": "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
    "diagnostics": "INSERT INTO diagnostics VALUES (?, ?, ?, ?)",
    "estimates": "INSERT INTO estimates VALUES (?, ?, ?, ?, ?)",
    "audit": audit.INSERT,
    "checkpoints": "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
}

_MISSING = Reading(float("nan"), "", float("nan"), Quality.BAD)
_QUALITY_CODE = {quality: quality.value for quality in Quality}


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_wall_iso: str
    seed: int
    control_period_s: float
    config_toml: str
    reactors: Sequence[tuple[str, str]]
    """(reactor_id, device_url) pairs."""


FLUSH_TICK_ROWS = 1000
"""A batch goes to the writer once it holds this many tick rows, even before the run's flush
period: a fleet of 1,000 reactors makes 60,000 rows a minute, and pickling and sending those
at once would hold the event loop for a tenth of a second, making every tick behind it late.
A single reactor at 1 s never gets here (60 rows a minute)."""


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
        self._batches: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERT}
        self._inputs_of = operator.itemgetter(*_INPUT_NAMES)
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
            inputs = tuple(readings.get(name, _MISSING) for name in _INPUT_NAMES)
        ticks = self._batches["ticks"]
        ticks.append((
            reactor_id, t_s,
            *[r.value for r in inputs],
            # A plain int binds 2x faster than an IntEnum in the writer; the dict gets it 3x
            # faster than `.value` (an enum property) here.
            *[_QUALITY_CODE[r.quality] for r in inputs],
            *[inputs[i].timestamp_s for i in _SAMPLED_INDEX],
            *[outputs.get(name) for name in _OUTPUT_NAMES],
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
        if batches:
            self._batches = {table: [] for table in _INSERT}

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


class RecordWriter:
    """The SQLite side of a historian: opens (or continues) the run's file and writes batches,
    one transaction a `write`. Run in the writer child, or in the caller's process."""

    def __init__(self, path: str, run: RunInfo) -> None:
        self._run_id = run.run_id
        self.rows = 0
        # One thread at a time, but not always the same one: a run closes its historian in a
        # worker thread (asyncio.to_thread) so the loop is free while the last rows are written.
        self._con = sqlite3.connect(path, check_same_thread=False)
        con = self._con
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.executescript(_SCHEMA)
        with con:
            con.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, NULL)",
                (run.run_id, run.started_wall_iso, run.seed, run.control_period_s,
                 run.config_toml),
            )
            con.executemany("INSERT OR IGNORE INTO reactors VALUES (?, ?)", run.reactors)
        self._chain = audit.AuditChain(con)  # audit rows are linked here, where written in order

    def write(self, batches: Iterable[dict[str, list[tuple[Any, ...]]]]) -> None:
        """Every batch of `batches` (taken as they come) in one transaction."""
        with self._con:
            for batch in batches:
                self.rows += _insert_batch(self._con, self._chain, batch)

    def committed(self, session: str) -> int:
        """The number of the last batch of `session` committed to the file (0: none)."""
        row = self._con.execute("SELECT batch FROM handovers WHERE session = ?",
                                (session,)).fetchone()
        return 0 if row is None else int(row[0])

    def write_numbered(self, session: str,
                       batches: Iterable[tuple[int, dict[str, list[tuple[Any, ...]]]]]) -> int:
        """The batches of `session` numbered past the last committed, in one transaction with
        the new last number (returned): a batch sent again after a writer died is skipped."""
        last = self.committed(session)
        with self._con:
            for number, batch in batches:
                if number > last:
                    self.rows += _insert_batch(self._con, self._chain, batch)
                    last = number
            self._con.execute("INSERT OR REPLACE INTO handovers VALUES (?, ?)", (session, last))
        return last

    def close(self, summary_json: str | None) -> int:
        """The run's summary and the ticks' index written, the file closed; the rows written."""
        with self._con:
            if summary_json is not None:
                self._con.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?",
                                  (summary_json, self._run_id))
            self._con.execute(
                "CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (reactor_id, t_s)")
        self._con.close()
        return self.rows


def _write_forever(pipe: Connection) -> None:
    """The writer process: commit each numbered batch as it arrives and confirm it, until
    `close` or the parent dies (controller/runtime/writer_child.py is the parent's side)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        path, run, session = pipe.recv()
        writer = RecordWriter(path, run)
        waiting: list[tuple[str, Any]] = []

        def batches_waiting(first: tuple[int, Any]) -> Iterator[tuple[int, Any]]:
            # Batches that already wait go into the same transaction: a fleet's urgent
            # checkpoints come a thousand at once, and a commit each would let the pipe
            # fill and block the controller's send, and with it every tick.
            yield first
            for _ in range(MAX_BATCHES_PER_COMMIT - 1):
                if not pipe.poll(0):
                    return
                kind, payload = _receive_or_close(pipe)
                if kind != "batch":
                    waiting.append((kind, payload))
                    return
                yield payload

        while True:
            kind, payload = waiting.pop() if waiting else _receive_or_close(pipe)
            if kind == "batch":
                last = writer.write_numbered(session, batches_waiting(payload))
                _send_quietly(pipe, ("committed", last))
                continue
            if kind == "batches":  # what waited for a new writer: one transaction
                _send_quietly(pipe, ("committed", writer.write_numbered(session, payload)))
                continue
            if kind == "sync":
                _send_quietly(pipe, ("synced", writer.rows))
                continue
            rows = writer.close(payload)
            _send_quietly(pipe, ("closed", rows))
            return
    except Exception as exc:
        _send_quietly(pipe, ("error", f"{type(exc).__name__}: {exc}"))


MAX_BATCHES_PER_COMMIT = 256
"""Bounds a transaction (and so what a crash of the writer could take back) under a flood."""


def _receive_or_close(pipe: Connection) -> tuple[str, Any]:
    try:
        return pipe.recv()  # type: ignore[no-any-return]
    except EOFError:  # the controller died: keep what was committed, add the index
        return "close", None


def _insert_batch(con: sqlite3.Connection, chain: audit.AuditChain,
                  batches: dict[str, list[tuple[Any, ...]]]) -> int:
    rows = 0
    for table, batch in batches.items():
        if table == "audit":
            batch = chain.link_all(batch)
        con.executemany(_INSERT[table], batch)
        rows += len(batch)
    return rows


def _send_quietly(pipe: Connection, message: tuple[str, Any]) -> None:
    with contextlib.suppress(OSError):
        pipe.send(message)


if __name__ == "__main__":
    _write_forever(Connection(int(sys.argv[1])))
