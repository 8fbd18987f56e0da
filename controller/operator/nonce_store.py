"""The nonces of accepted commands, kept on disk so a restarted controller or a new run of the
same reactor still refuses a command captured from the one before.

Why its own file and not the audit trail: the audit trail lives in one run's historian file
(a new run has a new one, anywhere `--db` says) and is written later, by the historian's
writer process, so a crash can lose a nonce that was already acted on. This store is one small
SQLite file beside the runs (`runs/replay_nonces.sqlite` by default), keyed by reactor id,
shared by every run of that folder, and a nonce is committed before its command is queued.

It is small by construction: only authenticated, fresh commands reach it, and rows older than
`RETENTION_S` (the largest `max_skew_s` a config may set) are deleted as new ones arrive.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RETENTION_S = 3600.0
"""How long a nonce is kept after its command's `ts`: the largest `max_skew_s` the config
allows, so a later run with a wider window still finds every nonce it could be replayed with."""

FILE_NAME = "replay_nonces.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (reactor_id TEXT NOT NULL, nonce TEXT NOT NULL,
    ts REAL NOT NULL, PRIMARY KEY (reactor_id, nonce)) WITHOUT ROWID;
"""


class NonceStoreError(Exception):
    """The store cannot be read or written (a full disk, a read-only folder, a corrupt file)."""


class NonceStore:
    """One reactor's accepted nonces in a SQLite file. Each call opens, commits and closes:
    commands are rare, and no connection is left behind by a run that dies."""

    def __init__(self, path: Path, reactor_id: str) -> None:
        self.path = Path(path)
        self.reactor_id = reactor_id

    def load(self, since_wall_s: float) -> list[tuple[str, float]]:
        """(nonce, ts) of this reactor's commands signed at or after `since_wall_s`."""
        with _connected(self.path) as con:
            rows = con.execute("SELECT nonce, ts FROM nonces WHERE reactor_id = ? AND ts >= ?",
                               (self.reactor_id, since_wall_s)).fetchall()
        return [(str(nonce), float(ts)) for nonce, ts in rows]

    def add(self, nonce: str, ts: float, now_wall_s: float) -> None:
        """Record `nonce` durably (committed on return), and forget the expired ones."""
        with _connected(self.path) as con:
            con.execute("INSERT OR IGNORE INTO nonces (reactor_id, nonce, ts) VALUES (?, ?, ?)",
                        (self.reactor_id, nonce, ts))
            con.execute("DELETE FROM nonces WHERE ts < ?", (now_wall_s - RETENTION_S,))


@contextmanager
def _connected(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that commits on success, rolls back on error and always closes; every
    SQLite or file error becomes a NonceStoreError naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=5.0)
    except (OSError, sqlite3.Error) as exc:
        raise NonceStoreError(f"nonce store {path}: {exc}") from None
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(SCHEMA)
        with con:
            yield con
    except sqlite3.Error as exc:
        raise NonceStoreError(f"nonce store {path}: {exc}") from None
    finally:
        con.close()
