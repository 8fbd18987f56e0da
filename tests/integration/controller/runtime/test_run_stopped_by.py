"""A run's `stopped_by`, and the safe state's record, say how it really ended."""
from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from plugins.configs import load_default, run_config

from controller.runtime.reactor import Reactor


def _ending(db: Path) -> tuple[list[str], str]:
    """The safe-state events and the summary's stopped_by, from the run's records."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        events = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'safe_state' ORDER BY rowid")]
        (summary,) = con.execute("SELECT summary_json FROM runs").fetchone()
    return events, json.loads(summary)["stopped_by"]


def test_a_run_cancelled_in_its_start_up_is_interrupted_not_completed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C in the start-up (before the run's own signal handlers) reaches asyncio's
    runner, which cancels the run, as here once the reactor has started: its records said
    `safe state: completed`, and so did the summary."""
    started = Reactor.start

    async def start_then_cancelled(self: Reactor, *args: object) -> None:
        await started(self, *args)  # type: ignore[arg-type]
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    monkeypatch.setattr(Reactor, "start", start_then_cancelled)
    db = tmp_path / "run.sqlite"
    with pytest.raises(asyncio.CancelledError):
        run_config(load_default(), db, duration="1h")
    assert _ending(db) == (["safe state: interrupted"], "interrupted")


def test_a_run_to_its_end_is_completed(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    assert run_config(load_default(), db, duration="10m")["stopped_by"] == "completed"
    assert _ending(db) == (["safe state: completed"], "completed")
