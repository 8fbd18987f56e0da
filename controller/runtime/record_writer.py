"""The historian's writer process, and the schema it writes: run as
`python -m controller.runtime.record_writer FD` by the controller's supervision of it
(controller/runtime/writer_child.py), or used in the caller's own process (a sweep's runs).

Its own module, with light imports, because the controller waits for a new writer at the start
(`Historian.drain`): importing the controller's side too (structlog, the clock's asyncio) made
each writer start 100 ms later, and a run's first tick with it.

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

A file removed from disk under the writer (`rm`, or a cleaner of old files such as
systemd-tmpfiles under /tmp, ten days into a fourteen-day culture) is written back from the
writer's open copy before its next transaction (`RecordWriter.rescued` says so): before, every
record of the run went with it, silently, when the writer closed it. If it cannot be written back
(the disk full), the open copy is written to meanwhile and the write-back tried again 1 s later,
then 2 s, 4 s, ... up to `WRITE_BACK_RETRY_MAX_S` apart, and at the close.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from controller.operator import audit
from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind
from drivers.wire.backoff import Backoff

SAMPLED = tuple(c.name for c in INPUTS if c.kind is Kind.SAMPLED)
INPUT_NAMES = tuple(c.name for c in INPUTS)
OUTPUT_NAMES = tuple(c.name for c in OUTPUTS)
SAMPLED_INDEX = tuple(INPUT_NAMES.index(name) for name in SAMPLED)


def tick_columns() -> list[str]:
    """Column order of the `ticks` table after reactor_id and t_s."""
    return [
        *INPUT_NAMES,
        *(f"{name}_q" for name in INPUT_NAMES),
        *(f"{name}_t_s" for name in SAMPLED),
        *OUTPUT_NAMES,
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

INSERTS = {
    "ticks": f"INSERT INTO ticks VALUES ({', '.join('?' * (2 + len(tick_columns())))})",
    "setpoints": "INSERT INTO setpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
    "events": "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
    "diagnostics": "INSERT INTO diagnostics VALUES (?, ?, ?, ?)",
    "estimates": "INSERT INTO estimates VALUES (?, ?, ?, ?, ?)",
    "audit": audit.INSERT,
    "checkpoints": "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
}


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_wall_iso: str
    seed: int
    control_period_s: float
    config_toml: str
    reactors: Sequence[tuple[str, str]]
    """(reactor_id, device_url) pairs."""


class RecordWriter:
    """The SQLite side of a historian: opens (or continues) the run's file and writes batches,
    one transaction a `write`. Run in the writer child, or in the caller's process."""

    def __init__(self, path: str, run: RunInfo,
                 alive: Callable[[], None] | None = None, *,
                 now: Callable[[], float] = time.monotonic) -> None:
        """`alive`: called now and then while the file is being written back after it was
        removed (seconds, for a long run's file), so the writer is not taken for hung. `now`:
        monotonic seconds, for when a failed write-back is tried again. (Not the controller's
        Clock: importing it brings asyncio into the writer child, which starts it later.)"""
        self._path = path
        self._run = run
        self._alive = alive
        self._now = now
        self.rows = 0
        self.rescued: list[str] = []
        """What was written back, one message each, for the caller to report (and clear)."""
        self._write_back_failed = False
        self._retries = Backoff(WRITE_BACK_RETRY_FIRST_S, WRITE_BACK_RETRY_MAX_S)
        self._retry_at_s = 0.0
        """When a failed write-back may be tried again (`now`'s seconds)."""
        self._open()

    def _open(self) -> None:
        run = self._run
        # One thread at a time, but not always the same one: a run closes its historian in a
        # worker thread (asyncio.to_thread) so the loop is free while the last rows are written.
        self._con = sqlite3.connect(self._path, check_same_thread=False)
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
        # The file's links, to notice it removed; opened after SQLite's own (closing it first
        # would drop SQLite's locks: POSIX locks are per process and file).
        self._file = open(self._path, "rb")  # noqa: SIM115 (closed after the connection)

    def _keep_on_disk(self, *, last_chance: bool = False) -> None:
        """The file written back at its path from the open copy if it is no longer there:
        removed from disk, or moved (renamed away, or replaced by another file). If that
        cannot be done now (the disk full, the folder not writable), the open copy is kept and
        written to: this process may hold the run's only copy of its records, so it must
        neither fail nor lose it. It is tried again before a transaction 1 s after the failure,
        then 2 s, 4 s, ... up to `WRITE_BACK_RETRY_MAX_S` apart, not before each one: each try
        copies the whole file (a long run's, GB), and a full disk was filled with it and
        emptied again every second, for weeks. At the close (`last_chance`) it is tried whether
        the next try is due or not: the open copy goes with the writer."""
        opened = os.fstat(self._file.fileno())
        if opened.st_nlink and _same_file(opened, self._path):
            return
        if not (last_chance or self._write_back_due()):
            return
        gone = ("was removed from disk while open" if not opened.st_nlink else
                f"was moved away while open (to {self._moved_to()}, which keeps the records "
                f"up to now)")
        removed = self._path
        try:
            target = self._write_back()
        except (sqlite3.Error, OSError) as exc:
            self._write_back_put_off(f"the run's records file {removed} {gone}", exc)
            return
        self._write_back_failed = False
        self._retries.reset()
        self.rescued.append(f"the run's records file {removed} {gone}; written back from the "
                            f"writer's copy to {target}")

    def _write_back_due(self) -> bool:
        """Whether a write-back may be tried now: none failed, or its retry is due."""
        return not self._write_back_failed or self._now() >= self._retry_at_s

    def _write_back_put_off(self, what: str, exc: BaseException) -> None:
        """The next try after a failed write-back put off (twice as long as the last time, up
        to the cap); the first failure said, once."""
        self._retry_at_s = self._now() + self._retries.next_delay_s()
        if self._write_back_failed:
            return
        self._write_back_failed = True
        self.rescued.append(
            f"{what}, and could not be written back ({type(exc).__name__}: {exc}): the "
            f"records are kept in the writer's open copy and written back as soon as it can")

    def _moved_to(self) -> str:
        """Where the open file now is (Linux names it under /proc), for the message."""
        try:
            return os.readlink(f"/proc/self/fd/{self._file.fileno()}")
        except OSError:
            return "another name"

    def _write_back(self) -> str:
        """The open copy put back on disk, and opened there in place of the removed file; its
        path (beside the removed file's if another file took the name meanwhile)."""
        rescue = f"{self._path}.rescue"
        # The -wal's frames into the old file first, and the -wal emptied: a moved file then
        # keeps everything committed to it, and no -wal of the old file is left at the path
        # for the copy to open. (SQLite checkpoints at close only a file still at its path.)
        with contextlib.suppress(sqlite3.Error):
            self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)  # (rm -r of the run's)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rescue)
        copy = sqlite3.connect(rescue)
        try:  # a life sign each step: killed as hung, this process would take the only copy
            self._con.backup(copy, pages=COPY_STEP_PAGES,
                             progress=lambda *_: self._alive and self._alive())
        except BaseException:
            copy.close()
            with contextlib.suppress(OSError):
                os.unlink(rescue)
            raise
        copy.close()
        target = self._path
        if os.path.exists(target):  # another file took its name: not overwritten
            target = f"{self._path}.rescued"
        os.replace(rescue, target)
        # Closed once the copy is in place, never before: until then it is the only copy. Its
        # last checkpoint goes to the removed file, and its -wal (by name, its own) is removed.
        self._con.close()
        self._file.close()
        self._path = target
        self._open()
        return target

    def write(self, batches: Iterable[dict[str, list[tuple[Any, ...]]]]) -> None:
        """Every batch of `batches` (taken as they come) in one transaction."""
        self._keep_on_disk()
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
        self._keep_on_disk()
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
        self._keep_on_disk(last_chance=True)
        moved_away = self._write_back_failed
        if moved_away and not os.fstat(self._file.fileno()).st_nlink:
            # Closed, the open copy goes: said, not reported written.
            raise OSError(f"the run's records file {self._path} was removed from disk and "
                          f"could not be written back: its records go with this writer")
        with self._con:
            if summary_json is not None:
                self._con.execute("UPDATE runs SET summary_json = ? WHERE run_id = ?",
                                  (summary_json, self._run.run_id))
            self._con.execute(
                "CREATE INDEX IF NOT EXISTS ticks_by_time ON ticks (reactor_id, t_s)")
        if moved_away:  # SQLite checkpoints at close only a file still at its path
            self._checkpoint_moved()
        self._con.close()
        self._file.close()
        if moved_away:
            self._remove_emptied_sidecars()
        return self.rows

    def _remove_emptied_sidecars(self) -> None:
        """The moved file's -wal, emptied into it, and its -shm, left at the old path by
        SQLite (it removes them at close only beside a file still at its path): removed, so a
        folder's listing shows no trace of a database that is not there. Not while a file
        is at the path again: they might be its own."""
        if os.path.lexists(self._path):
            return
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(f"{self._path}-wal") == 0:
                os.unlink(f"{self._path}-wal")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self._path}-shm")

    def _checkpoint_moved(self) -> None:
        """A file moved away, and not written back, keeps the run's records where it went:
        its -wal (still at the old path) emptied into it, or OSError (the records are not all
        there)."""
        where = self._moved_to()
        try:
            busy, _, _ = self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            raise OSError(f"the run's records file {self._path} was moved away to {where}, "
                          f"and its last records could not be written into it "
                          f"({type(exc).__name__}: {exc})") from exc
        if busy:
            raise OSError(f"the run's records file {self._path} was moved away to {where}, "
                          f"and its last records could not be written into it (busy)")


def _same_file(opened: os.stat_result, path: str) -> bool:
    """Whether `path` still names the open file (one `stat`: it runs before each transaction)."""
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    return (at_path.st_dev, at_path.st_ino) == (opened.st_dev, opened.st_ino)


def _write_forever(pipe: Connection) -> None:
    """The writer process: commit each numbered batch as it arrives and confirm it, until
    `close` or the parent dies (controller/runtime/writer_child.py is the parent's side)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        path, run, session = pipe.recv()
        writer = RecordWriter(path, run, alive=lambda: _send_quietly(pipe, ("writing", 0)))
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

        def batches_resent(count: int) -> Iterator[tuple[int, Any]]:
            # What waited for this writer, in one transaction: the controller dropped the
            # checkpoints superseded meanwhile, so a part of it alone could leave the file's
            # checkpoint older than its feed events. Cut short, it is rolled back.
            for _ in range(count):
                kind, payload = _receive_or_close(pipe)
                if kind != "batch":
                    raise _ResendCutShort
                yield payload

        while True:
            kind, payload = waiting.pop() if waiting else _receive_or_close(pipe)
            if kind == "batch":
                last = writer.write_numbered(session, _telling_progress(
                    pipe, batches_waiting(payload)))
                _telling(pipe, writer, ("committed", last))
                continue
            if kind == "resend":
                try:
                    last = writer.write_numbered(session, _telling_progress(
                        pipe, batches_resent(payload)))
                except _ResendCutShort:  # the controller died mid-way
                    writer.close(None)
                    return
                _telling(pipe, writer, ("committed", last))
                continue
            if kind == "sync":
                _send_quietly(pipe, ("synced", writer.rows))
                continue
            rows = writer.close(payload)
            _telling(pipe, writer, ("closed", rows))
            return
    except Exception as exc:
        _send_quietly(pipe, ("error", f"{type(exc).__name__}: {exc}"))


WRITE_BACK_RETRY_FIRST_S = 1.0
WRITE_BACK_RETRY_MAX_S = 300.0
"""[est] The longest wait between two tries to write back a removed records file that could
not be (the first 1 s after the failure, then twice as long each time): each try copies the
whole file, a long run's GB, so tried before each transaction (once a second) it filled a full
disk and emptied it again every second for as long as the culture ran, slowing all else on the
machine. Meanwhile the records are safe in the writer's open copy: once the disk has room, five
minutes more without them at their path is little against a culture of days, and a GB copy
(~5-10 s at 100-200 MB/s) then takes at most a few % of the disk's time."""

COPY_STEP_PAGES = 256
"""Pages (4 kB each) copied between two life signs while a removed file is written back: 1 MB,
well within the controller's 30 s silence limit even on a slow disk."""

MAX_BATCHES_PER_COMMIT = 256
"""Bounds a transaction (and so what a crash of the writer could take back) under a flood."""


class _ResendCutShort(Exception):
    """The controller's end closed in the middle of a resend."""


def _telling_progress(pipe: Connection,
                      numbered: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """`numbered`, with a `writing` message to the controller as each batch after the first is
    taken: a long transaction (a backlog on a slow disk) is then seen working, not hung."""
    for k, (number, batch) in enumerate(numbered):
        if k:
            _send_quietly(pipe, ("writing", number))
        yield number, batch


def _receive_or_close(pipe: Connection) -> tuple[str, Any]:
    try:
        return pipe.recv()
    except EOFError:  # the controller died: keep what was committed, add the index
        return "close", None


def _insert_batch(con: sqlite3.Connection, chain: audit.AuditChain,
                  batches: dict[str, list[tuple[Any, ...]]]) -> int:
    rows = 0
    for table, batch in batches.items():
        if table == "audit":
            batch = chain.link_all(batch)
        con.executemany(INSERTS[table], batch)
        rows += len(batch)
    return rows


def _send_quietly(pipe: Connection, message: tuple[str, Any]) -> None:
    with contextlib.suppress(OSError):
        pipe.send(message)


def _telling(pipe: Connection, writer: RecordWriter, message: tuple[str, Any]) -> None:
    """`message`, after any file written back meanwhile is reported (`RecordWriter.rescued`)."""
    while writer.rescued:
        _send_quietly(pipe, ("rescued", writer.rescued.pop(0)))
    _send_quietly(pipe, message)


if __name__ == "__main__":
    _write_forever(Connection(int(sys.argv[1])))
