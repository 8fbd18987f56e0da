"""The historian's writer process as the controller sees it: started, fed numbered batches, and
started again when it dies, with every batch it had not confirmed sent again.

Why: the records must never cost the culture its control. A writer killed by the kernel's
out-of-memory killer or a stray `kill -9`, or one whose disk failed, used to end the run: the
next flush raised, the reactors went to their safe state and the run stopped, weeks into a
culture. Now the run goes on and the records are kept:

- Each batch is numbered and kept here until the writer confirms its commit. A writer started
  after one died is sent every batch not confirmed, and skips those its predecessor committed
  but could not confirm (the number of the last batch committed is written in the same
  transaction as its rows: `RecordWriter.write_numbered`). So every row is written once.
- A writer that says nothing for WRITER_SILENT_LIMIT_S while batches wait is taken for hung
  (stopped, or on a disk that no longer answers): it is killed and started again. A slow one
  that still says something (a commit confirmed, or a batch of a long transaction written) is
  left to work: killing it would hand its successor an even longer transaction.
- A writer that is up but behind (a slow disk) has the new batches' bulk rows dropped, counted
  and alarmed, past MAX_WAITING_ROWS waiting rows, so the controller's memory stays bounded.
- Restarts back off: the first at once, then no sooner than 1, 2, 4 ... up to 60 s of wall time
  after the one before, until a writer catches up.
- While no writer takes them, batches wait here, and go to the next writer in one transaction
  (a `resend` header, then each batch as the bytes first sent). Meanwhile a reactor's older
  waiting checkpoints are dropped as newer ones come (superseded, not lost), and past
  MAX_WAITING_ROWS rows the oldest batches' bulk rows (ticks, diagnostics, estimates) are
  dropped and counted, never events, setpoints or audit rows, so a long outage cannot take the
  controller's memory.

The run raises the `historian_down` alarm from `failures`, `rows_dropped` and `caught_up`
(`DownAlarm`, used by controller/runtime/run.py).
"""
from __future__ import annotations

import contextlib
import itertools
import pickle
import secrets
import subprocess
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import structlog

from controller.child_process import PipeSender, start_child

log = structlog.get_logger(__name__)

Batch = dict[str, list[tuple[Any, ...]]]

SEND_BUFFER_BYTES = 4 << 20
"""What the controller may hand the writer before a send waits (the kernel caps it at
net.core.wmem_max): a fleet's first ticks send a thousand checkpoints within a second or two,
faster than the writer commits them, and a full pipe holds the ticks."""

WRITER_SILENT_LIMIT_S = 30.0
"""[est] Wall seconds a writer that owes a confirmation may say nothing before it is taken for
hung: a fleet's largest commit takes well under a second, and a long transaction tells its
progress batch by batch."""

READ_EVERY_WALL_S = 1.0
READ_AFTER_BATCHES = 32
"""The writer's confirmations are read once a wall second, or once this many batches wait,
not at every flush: a poll and a read at each of a run's flushes (every simulated minute in
virtual time) cost 7 % of a one-day run (profiled: 0.4 s of 9.5 s)."""

RESTART_BACKOFF_FIRST_S = 1.0
RESTART_BACKOFF_MAX_S = 60.0

MAX_WAITING_ROWS = 500_000
"""[est] Rows kept for a writer that is down, or behind, before bulk rows are dropped: 5.8
days of one reactor at 1 s, 8 minutes of 1,000. Measured: the controller peaked at 896 MB with
this many of one reactor's tick rows waiting (`benchmarks/slow_writer.py`, docs/benchmarks.md)."""

BULK_TABLES = ("ticks", "diagnostics", "estimates")
"""What may be dropped when batches wait too long: samples, not what happened or was done."""

CLOSE_ATTEMPTS = 2
CLOSE_TIMEOUT_S = 600.0
"""[est] How long the last commit and the index of a long run may take at the end."""


class HistorianError(RuntimeError):
    """The records could not be written (the message says which file and why)."""


@dataclass
class _Waiting:
    """A batch not yet confirmed: as rows while no writer takes it, else as the bytes sent
    (compact, and bytes are not tracked by the garbage collector, where a batch's tuples kept
    alive until their confirmation made it collect five times as often)."""

    number: int
    rows: int
    sent_s: float
    batch: Batch | None = None
    sent: bytes | None = None

    def keep_as_sent(self) -> bytes:
        """The batch kept as the bytes of its `batch` message (pickled now if need be)."""
        if self.sent is None:
            self.sent = pickle.dumps(("batch", (self.number, self.batch)),
                                     pickle.HIGHEST_PROTOCOL)
            self.batch = None
        return self.sent

    def rows_of(self) -> Batch:
        """The batch as rows, taken back from the bytes sent if need be (a writer failed)."""
        if self.batch is None:
            assert self.sent is not None
            self.batch = pickle.loads(self.sent)[1][1]
            self.sent = None
        return self.batch


class WriterChild:
    """The writer child of one historian, supervised."""

    def __init__(self, path: Path, run: object, *, lock_fd: int | None,
                 wall_monotonic: Callable[[], float]) -> None:
        """`run`: the run's description, handed to each writer started; `lock_fd`: the run's
        lock, inherited by each (docs/recovery.md); `wall_monotonic`: the clock's wall time,
        for the backoff and the silence limit."""
        self.path = path
        self._run = run
        self._lock_fd = lock_fd
        self._wall = wall_monotonic
        self._session = secrets.token_hex(8)
        """This historian's batches in the file's `handovers` table."""
        self._number = 0
        self._waiting: deque[_Waiting] = deque()
        self._waiting_rows = 0
        self._stripped = 0
        """The oldest waiting batches whose bulk rows are already dropped."""
        self._newest_checkpoint: dict[str, _Waiting] = {}
        """reactor id -> the waiting batch with its newest checkpoint, while no writer is up."""
        self._at_risk_until = 0
        """Batches up to this number were unconfirmed when a writer failed: caught up once
        they are all confirmed."""
        self._backoff_s = 0.0
        self._next_start_s = float("-inf")
        self._next_read_s = float("-inf")
        self._heard_s = float("-inf")
        """When the writer last said something (a confirmation, or a batch written)."""
        self.failures = 0
        """Writers that died, failed or hung, over the historian's life."""
        self.last_failure = ""
        self.rows_dropped = 0
        self.rescues: list[str] = []
        """Each time the file was removed from disk (or moved away) under a writer, and what
        became of it (the run raises FILE_ALARM for each, and clears the list)."""
        self._process: subprocess.Popen[bytes] | None = None
        self._dying: list[subprocess.Popen[bytes]] = []
        """Writers killed and not yet reaped."""
        self._pipe: Connection | None = None
        self._sender: PipeSender | None = None
        """Sends on the pipe: a writer that stops reading never holds a flush (PipeSender)."""
        self._start()

    @property
    def caught_up(self) -> bool:
        """A writer is up and has confirmed everything sent before the last failure."""
        return self._pipe is not None and not (
            self._waiting and self._waiting[0].number <= self._at_risk_until)

    @property
    def waiting_rows(self) -> int:
        return self._waiting_rows

    # --- the controller's side of the protocol ------------------------------------------------
    def send(self, batch: Batch) -> None:
        """Hand `batch` over (or keep it until a writer can take it); never raises. Call
        `take_replies` first."""
        self._number += 1
        rows = sum(len(r) for r in batch.values())
        waiting = _Waiting(self._number, rows, self._wall(), batch)
        self._waiting.append(waiting)
        self._waiting_rows += rows
        if self._pipe is None:
            self._supersede_checkpoints(waiting)
            self._limit_waiting()
            self._start_again()
            return
        if self._waiting_rows - rows > MAX_WAITING_ROWS:  # up, but behind: what is sent stays
            self._drop_samples(waiting)
        self._send_bytes(waiting.keep_as_sent())

    def take_replies(self) -> None:
        """Read the writer's confirmations without waiting; notice a writer that died, failed
        or hung, and start another when the backoff allows."""
        if self._dying:
            self._dying = [process for process in self._dying if process.poll() is None]
        if self._pipe is None:
            self._start_again()
            return
        if self._sender is not None and self._sender.error is not None:
            self._gone(_described(self._sender.error))
            return
        now = self._wall()
        if len(self._waiting) < READ_AFTER_BATCHES and now < self._next_read_s:
            return  # a send finds a dead writer at once (its end is closed)
        self._next_read_s = now + READ_EVERY_WALL_S
        pipe = self._pipe
        while True:
            try:
                if not pipe.poll():
                    break
                reply = pipe.recv()
            except (EOFError, OSError):
                self._failed(self._exit_reason())
                return
            if not self._handle(reply):
                return
        if not self._waiting:
            return
        owed_since_s = max(self._heard_s, self._waiting[0].sent_s)
        if now - owed_since_s > WRITER_SILENT_LIMIT_S:
            self._failed(f"writer hung: nothing written for {WRITER_SILENT_LIMIT_S:g} s")

    def sync(self) -> int:
        """Wait until the writer has committed everything sent; the rows it wrote. For the
        start, before the first tick: a writer that fails here is a run that cannot start."""
        reply = self._ask(("sync", None), "synced", timeout_s=CLOSE_TIMEOUT_S)
        if reply is None:
            raise HistorianError(f"historian {self.path} failed: {self.last_failure}")
        return int(reply)

    def close(self, summary_json: str | None) -> int:
        """Have everything written, the summary and the index, and stop the writer; the rows
        it wrote. A writer that is down, or fails meanwhile, is started again for it, backoff
        or not, CLOSE_ATTEMPTS times in all (the summary and the index are written again
        harmlessly, and batches already committed are skipped)."""
        reply = None
        for _ in range(CLOSE_ATTEMPTS):
            if self._pipe is None:
                self._next_start_s = float("-inf")
                self._start_again()
            reply = self._ask(("close", summary_json), "closed", timeout_s=CLOSE_TIMEOUT_S)
            if reply is not None:
                break
        if reply is None:
            raise HistorianError(
                f"historian {self.path} failed: {self.last_failure}; {self._waiting_rows} "
                f"rows not written ({self.rows_dropped} dropped before)")
        if self._process is not None:
            self._process.wait()
        self._close_pipe(abandon=False)
        return int(reply)

    # --- inside -------------------------------------------------------------------------------
    def _start(self) -> None:
        self._process, self._pipe = start_child(
            "controller.runtime.record_writer",
            pass_fds=[] if self._lock_fd is None else [self._lock_fd],
            send_buffer_bytes=SEND_BUFFER_BYTES)
        self._sender = PipeSender(self._pipe, "historian-writer-sender")
        self._heard_s = self._wall()
        self._send((str(self.path), self._run, self._session))

    def _start_again(self) -> None:
        """A new writer, sent every batch waiting, if the backoff allows one now."""
        now = self._wall()
        if self._pipe is not None or now < self._next_start_s:
            return
        self._backoff_s = min(RESTART_BACKOFF_MAX_S,
                              max(RESTART_BACKOFF_FIRST_S, 2.0 * self._backoff_s))
        self._next_start_s = now + self._backoff_s
        log.warning("historian writer started again", path=str(self.path),
                    batches_waiting=len(self._waiting), rows_waiting=self._waiting_rows)
        try:
            self._start()
        except OSError as exc:  # no process to be had (out of memory, out of processes)
            self._failed(f"writer could not be started: {exc}")
            return
        if self._pipe is None or not self._waiting:  # (it failed its first message already)
            return
        # In one transaction: checkpoints superseded meanwhile are gone from the older batches,
        # and the newest must land with every row recorded before it. Each batch goes as its
        # own `batch` message, those already sent as the bytes they were: unpickling and
        # pickling them again held the loop ~0.3 s at 1,000 reactors, and even one message of
        # them all is a copy of up to MAX_WAITING_ROWS rows.
        if not self._send(("resend", len(self._waiting))):
            return
        sender = self._sender
        assert sender is not None
        for waiting in self._waiting:
            waiting.sent_s = now
            sender.send_bytes(waiting.keep_as_sent())

    def _send(self, message: tuple[Any, ...]) -> bool:
        return self._send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _send_bytes(self, data: bytes) -> bool:
        """What `Connection.send` does, from bytes already pickled; False if the writer is
        found gone: exited, or its end closed under an earlier send."""
        sender = self._sender
        assert sender is not None
        exited = self._process is not None and self._process.poll() is not None
        if exited or sender.error is not None:
            self._gone("" if sender.error is None else _described(sender.error))
            return False
        sender.send_bytes(data)
        return True

    def _handle(self, reply: tuple[str, Any]) -> bool:
        """Take one reply; False if the writer failed with it."""
        kind, payload = reply
        self._heard_s = self._wall()
        if kind == "committed":
            waiting = self._waiting
            while waiting and waiting[0].number <= payload:
                self._waiting_rows -= waiting.popleft().rows
                self._stripped = max(0, self._stripped - 1)
            if not waiting:
                self._newest_checkpoint.clear()
            if self.caught_up:
                self._backoff_s = 0.0
                self._next_start_s = float("-inf")
        elif kind == "rescued":
            self.rescues.append(str(payload))
            log.error("historian file removed under the writer",
                      path=str(self.path), message=str(payload))
        elif kind == "error":
            self._failed(str(payload))
            return False
        return True

    def _ask(self, message: tuple[str, Any], answer: str, timeout_s: float) -> Any:
        """Send `message` and wait for `answer`'s payload (None if the writer failed)."""
        if self._pipe is None or not self._send(message):
            return None
        pipe = self._pipe
        while True:
            try:
                if not pipe.poll(timeout_s):
                    self._failed(f"writer gave no {answer!r} within {timeout_s:g} s")
                    return None
                kind, payload = pipe.recv()
            except (EOFError, OSError):
                self._failed(self._exit_reason())
                return None
            if kind == answer:
                return payload
            if not self._handle((kind, payload)):
                return None

    def _failed(self, reason: str) -> None:
        """The writer is gone (or made gone): count it, say so, keep what waits."""
        self.failures += 1
        self.last_failure = reason
        self._at_risk_until = self._number
        log.error("historian writer failed: the run goes on, its records wait for a new writer",
                  path=str(self.path), reason=reason, failures=self.failures,
                  batches_waiting=len(self._waiting))
        process = self._process
        if process is not None and process.poll() is None:
            # Killed, not waited for: this may run inside a tick, and a process stuck on its
            # disk can take seconds to go. Reaped by `take_replies` (a zombie meanwhile).
            process.kill()
            self._dying.append(process)
        self._process = None
        self._close_pipe(abandon=True)

    def _gone(self, fallback: str) -> None:
        """The writer exited, or its end closed under a send: its last words read first (an
        error it sent before it exited says why, where the send's own error says only "Broken
        pipe"; a commit it confirmed need not be sent again)."""
        pipe = self._pipe
        with contextlib.suppress(EOFError, OSError):
            while pipe is not None and pipe.poll():
                if not self._handle(pipe.recv()):
                    return
        self._failed(self._exit_reason(fallback))

    def _exit_reason(self, fallback: str = "") -> str:
        """Why the writer's end closed, without waiting for it."""
        code = None if self._process is None else self._process.poll()
        if code is None:
            return fallback or "writer closed its end of the pipe"
        return f"writer process exited with code {code}"

    def _close_pipe(self, *, abandon: bool) -> None:
        """Stop the sender (`abandon`: what it still holds is dropped) and close the pipe."""
        sender, self._sender = self._sender, None
        if sender is not None and not sender.stop(abandon=abandon):
            log.error("historian writer's sender thread did not stop", path=str(self.path))
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None

    def _supersede_checkpoints(self, newest: _Waiting) -> None:
        """While no writer takes them, a reactor's checkpoint in an older waiting batch goes
        once a newer one waits: only the latest is kept in the file anyway, and a fleet's
        checkpoints are most of the bytes that wait (1,000 reactors with soft sensors: ~30 MB
        a minute). Safe because the next writer gets every waiting batch in one transaction
        (`_start_again`): the newest checkpoint lands with every row recorded before it, or
        nothing does, so a restart never reads a checkpoint older than the feed events."""
        for row in newest.rows_of().get("checkpoints", ()):
            reactor_id = row[0]
            older = self._newest_checkpoint.get(reactor_id)
            self._newest_checkpoint[reactor_id] = newest
            if older is None or older is newest:
                continue
            batch = older.rows_of()
            rows = batch.get("checkpoints", [])
            kept = [r for r in rows if r[0] != reactor_id]
            batch["checkpoints"] = kept
            older.rows -= len(rows) - len(kept)
            self._waiting_rows -= len(rows) - len(kept)

    def _limit_waiting(self) -> None:
        """Past MAX_WAITING_ROWS, the oldest batches' bulk rows go (counted)."""
        for waiting in itertools.islice(self._waiting, self._stripped, None):
            if self._waiting_rows <= MAX_WAITING_ROWS:
                return
            self._drop_samples(waiting)
            self._stripped += 1

    def _drop_samples(self, waiting: _Waiting) -> None:
        """The bulk rows of a batch not yet sent go, counted."""
        for table in BULK_TABLES:
            rows = waiting.rows_of().pop(table, None)
            if rows:
                waiting.rows -= len(rows)
                self._waiting_rows -= len(rows)
                self.rows_dropped += len(rows)


def _described(error: OSError) -> str:
    return f"{type(error).__name__}: {error}"


FILE_ALARM = "records_file_removed"
"""One-shot: the run's records file was removed from disk, or moved away, while a writer had it
open; the message says whether it was written back from the writer's copy, and where
(controller/runtime/record_writer.py; docs/alarms.md)."""
ALARM = "historian_down"
"""Raised on every reactor of the run while its records wait for a writer (docs/alarms.md)."""
PRIORITY = "high"


class DownAlarm:
    """When `historian_down` changes: raised at each new failure of a writer (with why), or when
    sample rows start being dropped for a writer that is up but behind; cleared once a writer
    has committed everything that waited at the failure and is no longer behind."""

    def __init__(self) -> None:
        self._failures_seen = 0
        self._dropped_seen = 0
        self.active = False

    def change(self, writer: WriterChild) -> tuple[bool, str] | None:
        """(active, message) if the alarm changes now, else None."""
        dropped_more = writer.rows_dropped != self._dropped_seen
        self._dropped_seen = writer.rows_dropped
        if writer.failures != self._failures_seen:
            self._failures_seen = writer.failures
            self.active = True
            return True, (f"historian writer failed ({writer.last_failure}): control goes on, "
                          f"{writer.waiting_rows} records wait for a new writer "
                          f"({writer.failures} failures in this run)")
        if dropped_more and not self.active:
            self.active = True
            return True, (f"historian writer cannot keep up: {writer.waiting_rows} records "
                          f"wait, and sample rows are dropped ({writer.rows_dropped} so far)")
        if self.active and writer.caught_up and writer.waiting_rows <= MAX_WAITING_ROWS // 2:
            self.active = False
            dropped = (f"; {writer.rows_dropped} sample rows were dropped while it was down "
                       f"or behind" if writer.rows_dropped else "")
            return False, f"historian writer back: every record that waited is committed{dropped}"
        return None
