"""Crash recovery: what a run keeps on disk to be continued after `kill -9`, and how it is found.

A culture outlives its controller. When the controller dies (power cut, OOM kill, a bug) the
device goes to its own safe state within its comm timeout and the cells wait; restarting the
controller with the same run id must carry on where it stopped, never giving a feed twice and
never dropping one.

What is kept: each reactor's latest checkpoint (`Reactor.checkpoint_state`: the feed
ledger, loop setpoints/modes/outputs/statistics, alarm and interlock states, counters) in the
historian's `checkpoints` table. It is written in the same transaction as the records that
go with it (a feed's `started`/`done` event and the ledger that counts it), at once on every
ledger change, operator command, alarm transition and interlock trip, and otherwise every
`run.checkpoint_interval_s`.

Who may write: one controller per run. `RunLock` is an exclusive `flock` on `<db>.lock`, held by
the controller and inherited by its historian writer, so it is free only once the last record
of a killed controller has been committed: a restart waits for that, then reads the checkpoint,
and a second controller started on a live run is refused instead of fighting over the device.

Time: a continued run's clock starts at the checkpoint's time plus the wall time since, times
the speed, so the schedule sees the outage as time that passed (a bolus due in it is given late,
the perfusion profile is where it should be).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.config import ConfigError, ReactorConfig

RECORDS_FILES = ("", "-wal", "-shm", "-journal")
"""A run's records file and the files SQLite keeps beside it (suffixes of its name)."""

LOCK_WAIT_S = 15.0
"""How long a restart waits for a killed controller's writer to commit its last records."""


class RunLock:
    """The exclusive right to run one run id: an `flock` on `<db>.lock`."""

    def __init__(self, db_path: Path, *, wait_s: float = LOCK_WAIT_S) -> None:
        self.path = Path(db_path).with_name(Path(db_path).name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    raise ConfigError(
                        f"{db_path} is still being written by another controller (lock "
                        f"{self.path} held for {wait_s:g} s): one controller per run") from None
                time.sleep(0.02)

    def release(self) -> None:
        """Idempotent: a second call must not close a descriptor number reused since."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def remove_records(db_path: Path) -> None:
    """A run's records file gone, with SQLite's files beside it, to start its run id over.
    Call it holding the `RunLock`: never under a controller still writing the file."""
    for suffix in RECORDS_FILES:
        with contextlib.suppress(FileNotFoundError):
            db_path.with_name(db_path.name + suffix).unlink()


@dataclass(frozen=True)
class ReactorCheckpoint:
    reactor_id: str
    t_s: float
    wall_time: float
    state: dict[str, Any]


@dataclass(frozen=True)
class Recovery:
    """A run found on disk, to be continued."""

    run_id: str
    previous_stop: str | None
    """How the previous process ended: None if it was killed, else its `stopped_by`."""
    checkpoints: dict[str, ReactorCheckpoint]

    def start_s(self, wall_now: float, speed: float) -> float:
        """Where the run's clock stands now: the newest checkpoint plus the outage."""
        return max(c.t_s + max(wall_now - c.wall_time, 0.0) * speed
                   for c in self.checkpoints.values())


def schedule_fingerprint(reactor: ReactorConfig) -> str:
    """The feed ledger indexes boluses by their place in the schedule, and the recipe's position
    by its phases: a continued run must have the schedule and the recipe it started with."""
    feeds = reactor.schedule.model_dump(mode="json")
    if reactor.recipe is not None:
        feeds = {"schedule": feeds, "recipe": reactor.recipe.model_dump(mode="json")}
    text = json.dumps(feeds, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_recovery(db_path: Path, run_id: str) -> Recovery | None:
    """The run `run_id` recorded in `db_path`, if it exists and may be continued.

    Call it holding the `RunLock`. A completed run is never continued (a new run needs a new
    run id); nor is a file of another run.
    """
    if not Path(db_path).exists():
        return None
    if not Path(db_path).is_file():
        raise ConfigError(f"{db_path}: not a run file (a folder or a device, not a file)")
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT run_id, summary_json FROM runs").fetchall()
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        checkpoints = (con.execute(
            "SELECT reactor_id, t_s, wall_time, state_json FROM checkpoints").fetchall()
            if "checkpoints" in tables else [])
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{db_path}: not a readable run file ({exc})") from None
    finally:
        con.close()
    if not rows or not checkpoints:
        return None  # died before its first checkpoint: no tick ran, no feed was given
    if [r[0] for r in rows] != [run_id]:
        raise ConfigError(f"{db_path} holds run {rows[0][0]!r}, not {run_id!r}")
    previous_stop = json.loads(rows[0][1])["stopped_by"] if rows[0][1] else None
    if previous_stop == "completed":
        raise ConfigError(f"run {run_id} already completed ({db_path}); a new run needs a new "
                          "run id")
    return Recovery(run_id, previous_stop, {
        reactor_id: ReactorCheckpoint(reactor_id, t_s, wall_time, json.loads(state_json))
        for reactor_id, t_s, wall_time, state_json in checkpoints
    })


def check_continuable(recovery: Recovery, reactors: list[ReactorConfig],
                      in_process: list[bool]) -> None:
    """Refuse, naming the reason, a restart that could not honour the checkpoint."""
    for index, (reactor, local) in enumerate(zip(reactors, in_process, strict=True)):
        if local:
            raise ConfigError(
                f"reactor[{index}].device = {reactor.device!r} is in-process: its chamber died "
                f"with the controller, so run {recovery.run_id} cannot be continued. Start a "
                "new run, or serve the chamber with `bioreactor emulate` (or real hardware) so "
                "it outlives a controller crash")
        checkpoint = recovery.checkpoints.get(reactor.id)
        if checkpoint is None:
            raise ConfigError(f"reactor[{index}].id = {reactor.id!r} has no checkpoint in run "
                              f"{recovery.run_id} (reactors there: "
                              f"{sorted(recovery.checkpoints)})")
        if checkpoint.state["schedule_fingerprint"] != schedule_fingerprint(reactor):
            raise ConfigError(
                f"reactor[{index}].schedule or .recipe differs from the one run "
                f"{recovery.run_id} started with: its feed ledger and recipe cannot be "
                "continued (restart with the same config)")
