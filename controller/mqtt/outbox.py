"""Durable store-and-forward queue between the control tick and the MQTT publisher.

Why SQLite: one local file, crash-safe transactions, no server. Cultures run for weeks and
brokers go away for hours; the outbox is bounded by the disk, never by a message count, so a
long outage loses nothing. When the disk (or a configured page cap) is full, `commit()` raises
OutboxFullError and the caller raises an alarm; the appended messages stay buffered in memory
so a later commit can still store them.

The tick only calls `append()` (a list append, no I/O) and `commit()` (one transaction per
batch). The publisher sends only committed messages, oldest first, and `ack()`s each after
the broker's PUBACK. Acks are written in batches: after a crash an acked message may be sent
again (at-least-once); consumers deduplicate by the payload's own `seq`.
"""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ACK_FLUSH_EVERY = 32
"""Acked rows are deleted in one transaction per this many (or at commit/close). Small, since
the deleting process holds the file's write lock meanwhile: with 512, a 1,000-reactor daemon's
commits waited on the publisher child's deletes (commit p99 9.3 ms; 64 rows: 5.7 ms, 32: 4.7)."""


class OutboxError(Exception):
    """Any failure of the outbox store."""


class OutboxFullError(OutboxError):
    """The disk (or the configured cap) is full: new messages cannot be made durable."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY,
    topic   TEXT    NOT NULL,
    payload BLOB    NOT NULL,
    qos     INTEGER NOT NULL,
    retain  INTEGER NOT NULL
)
"""


class Outbox:
    """A FIFO of MQTT messages in a SQLite file (WAL). Use from one thread (the event loop).

    Two processes may open one file: the controller appends and commits, its publisher child
    (publisher_process.py) peeks and acks. Each write is one short IMMEDIATE transaction, so
    the other waits (SQLite's busy timeout) for at most that, never for a deadlock."""

    def __init__(self, path: str | Path, *, max_page_count: int | None = None,
                 wal_checkpoints: bool = True) -> None:
        """Open or create `path` (and its folder); messages left by a previous process are
        sent first (see `inherited_through_seq`).

        `max_page_count` caps the file (SQLite pages); tests use it to simulate a full disk.
        `wal_checkpoints=False`: this connection's commits never copy the write-ahead log
        into the file (SQLite's automatic checkpoint, every 1,000 pages); another process
        sharing the file does it with `checkpoint_wal()`. For the controller's side, whose
        commits run between ticks: a 1,000-reactor fleet's commit that happened to checkpoint
        took up to 10 ms (the p99 of its commits halved without them).
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL: a committed transaction survives a process crash; a power cut may
        # lose the last commits but never corrupts the file.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        if not wal_checkpoints:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self.max_page_count = max_page_count
        if max_page_count is not None:
            self._db.execute(f"PRAGMA max_page_count={int(max_page_count)}")
        row = self._db.execute(
            "SELECT COALESCE(MAX(seq), 0), COUNT(*),"
            " COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM outbox"
        ).fetchone()
        self._next_seq: int = row[0] + 1
        self.inherited_through_seq: int = row[0] if row[1] else 0
        """Messages up to this seq were left unsent by an earlier process (0: none): the
        publisher sends them before this process's birth, so a consumer never sees an older
        run's messages after a newer run's birth."""
        self._stored_count: int = row[1]
        self._stored_bytes: int = row[2]
        self._buffer: list[tuple[int, str, bytes, int, int]] = []
        self._acked: dict[int, int] = {}  # seq -> size, acked but not yet deleted
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

    # -- producer side (the control tick) -------------------------------------------------
    def append(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int:
        """Buffer a message in memory (no I/O) and return its outbox sequence number."""
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos}")
        seq = self._next_seq
        self._next_seq += 1
        self._buffer.append((seq, topic, bytes(payload), qos, int(retain)))
        return seq

    def commit(self) -> int:
        """Make every appended message durable (one transaction); return how many.

        Raises OutboxFullError when the disk is full; the batch stays buffered for a retry.
        """
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        batch = self._buffer
        if not batch and not self._acked:
            return 0
        try:
            self._db.execute("BEGIN IMMEDIATE")
            if batch:
                self._db.executemany(_INSERT, batch)
            self._delete_acked()
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise self._commit_error(exc, len(batch)) from exc
        self._acked.clear()
        self._buffer = []
        self.counted_in(batch)
        return len(batch)

    # -- a commit in another thread (the node's: NodePresence.maybe_commit) ------------------
    def take_batch(self) -> list[tuple[int, str, bytes, int, int]]:
        """The appended messages, handed over for `BatchWriter.write` (the buffer starts
        afresh)."""
        if self._closed:
            raise OutboxError(f"outbox {self.path} is closed")
        batch, self._buffer = self._buffer, []
        return batch

    def restore_batch(self, batch: list[tuple[int, str, bytes, int, int]]) -> None:
        """A batch whose commit failed goes back before what was appended since, in order."""
        self._buffer[:0] = batch

    def counted_in(self, batch: list[tuple[int, str, bytes, int, int]]) -> None:
        """`batch` is committed (here or by a BatchWriter): count it and tell the publishers."""
        self._stored_count += len(batch)
        self._stored_bytes += sum(len(t) + len(p) for _, t, p, _, _ in batch)
        for listener in list(self._listeners):
            listener()

    def _commit_error(self, exc: sqlite3.OperationalError, batch_size: int) -> OutboxError:
        if _is_full(exc):
            return OutboxFullError(
                f"outbox {self.path} is full ({exc}); {batch_size} messages kept in memory, "
                f"{self._stored_count} stored: free disk space or the broker link must recover")
        return OutboxError(f"outbox {self.path}: commit failed: {exc}")

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback()` after each commit (the publisher's non-blocking notify)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def adopt(self, other_path: str | Path) -> int:
        """Move every message of another outbox file to the end of this one, in its order,
        and delete that file; return how many. For an older layout's outboxes (one per
        reactor): what a killed run left there goes out, before this process's birth, with the
        messages this file inherited. Call before anything is appended.

        At least once, like the rest: a crash between this commit and the delete sends those
        messages twice (the consumers deduplicate by `seq` and `run_id`).
        """
        other_path = Path(other_path)
        if self._buffer:
            raise OutboxError(f"outbox {self.path}: adopt {other_path} before appending")
        with Outbox(other_path) as other:
            messages = other.peek(other.committed_depth)
        for m in messages:
            self.append(m.topic, m.payload, m.qos, m.retain)
        self.commit()
        if messages:
            self.inherited_through_seq = self._next_seq - 1
        for suffix in ("", "-wal", "-shm"):
            Path(f"{other_path}{suffix}").unlink(missing_ok=True)
        return len(messages)

    # -- consumer side (the publisher) ----------------------------------------------------
    def peek(self, limit: int = 100, *, after: int = 0) -> list[OutboxMessage]:
        """Up to `limit` committed, unacked messages with seq > `after`, oldest first."""
        if limit <= 0:
            return []
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? ORDER BY seq"
            " LIMIT ?",
            (after, limit + len(self._acked)),
        ).fetchall()
        out = [OutboxMessage(s, t, bytes(p), q, bool(r))
               for s, t, p, q, r in rows if s not in self._acked]
        return out[:limit]

    def ack(self, seq: int) -> None:
        """The broker has the message: remove it (deleted in batches; see module doc)."""
        if seq in self._acked:
            return
        row = self._db.execute("SELECT LENGTH(payload) + LENGTH(topic) FROM outbox WHERE seq = ?",
                               (seq,)).fetchone()
        if row is None:
            return
        self._acked[seq] = row[0]
        if len(self._acked) >= ACK_FLUSH_EVERY:
            self.flush_acks()

    def flush_acks(self) -> None:
        """Delete acked rows now (one transaction)."""
        if not self._acked or self._closed:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._delete_acked()
            self._db.execute("COMMIT")
        except sqlite3.OperationalError:
            # Deleting can fail on a full disk too (WAL growth); keep the acks in memory:
            # the worst outcome is a duplicate after a crash.
            self._rollback()
            return
        self._acked.clear()

    def checkpoint_wal(self) -> tuple[int, int, int]:
        """Copy what the write-ahead log holds into the file, without waiting on (or holding
        up) a writer: SQLite's PASSIVE checkpoint. (busy, frames in the log, frames copied)."""
        if self._closed:
            return (0, 0, 0)
        busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, copied

    def _delete_acked(self) -> None:
        if not self._acked:
            return
        self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in self._acked])
        self._stored_count -= len(self._acked)
        self._stored_bytes -= sum(self._acked.values())

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.OperationalError):
            self._db.execute("ROLLBACK")
        self.recount()  # a rolled-back delete did not happen

    def recount(self) -> None:
        """Count the stored messages again: after a rollback, or after another process (the
        node's publisher child) deleted the acknowledged ones."""
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload) + LENGTH(topic)), 0) FROM outbox"
        ).fetchone()
        self._stored_count, self._stored_bytes = row

    # -- observability --------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages not yet acked: committed ones plus those still buffered."""
        return self._stored_count - len(self._acked) + len(self._buffer)

    @property
    def committed_depth(self) -> int:
        """Committed messages waiting to be sent or acked."""
        return self._stored_count - len(self._acked)

    @property
    def size_bytes(self) -> int:
        """Topic + payload bytes of the messages not yet acked (committed and buffered)."""
        buffered = sum(len(t) + len(p) for _, t, p, _, _ in self._buffer)
        return self._stored_bytes - sum(self._acked.values()) + buffered

    def close(self) -> None:
        """Flush acks and close. Uncommitted appends are dropped (they were never durable)."""
        if self._closed:
            return
        self.flush_acks()
        self._db.close()
        self._closed = True

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BatchWriter:
    """Commits an outbox's batches from one other thread, on a connection of its own (a
    sqlite3 connection must not be shared between threads). Build, `write` and `close` in that
    thread; the outbox counts each written batch (`Outbox.counted_in`) on its own thread."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox
        self._db = sqlite3.connect(str(outbox.path), isolation_level=None)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the publisher child's (see Outbox)
        if outbox.max_page_count is not None:
            self._db.execute(f"PRAGMA max_page_count={int(outbox.max_page_count)}")

    def write(self, batch: list[tuple[int, str, bytes, int, int]]) -> None:
        """One transaction; OutboxFullError on a full disk, OutboxError on another failure."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_INSERT, batch)
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.OperationalError):
                self._db.execute("ROLLBACK")
            raise self._outbox._commit_error(exc, len(batch)) from exc

    def close(self) -> None:
        self._db.close()


_INSERT = "INSERT INTO outbox (seq, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)"


def _is_full(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "full" in text or getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
