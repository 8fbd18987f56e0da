"""The historian writes every row handed to it, off the caller's thread, and fails loudly."""
from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from plugins.waiting import wait_until

from controller.runtime.historian import FLUSH_TICK_ROWS, Historian, RunInfo
from controller.runtime.record_writer import tick_columns
from controller.runtime.writer_child import HistorianError
from drivers import CHANNELS, Quality, Reading

RUN = RunInfo("run-1", "2026-11-27T00:00:00+00:00", 5, 1.0, "[run]\n", [("r1", "sim://")])


def _readings(t: float) -> dict[str, Reading]:
    return {c.name: Reading(t + i, c.unit, t, Quality.GOOD)
            for i, c in enumerate(CHANNELS) if c.direction.value == "input"}


@pytest.mark.parametrize("in_process", [False, True], ids=["writer-child", "in-process"])
def test_every_row_is_written_in_order(tmp_path: Path, in_process: bool) -> None:
    historian = Historian(tmp_path / "h.sqlite", RUN, in_process=in_process)
    for t in range(2500):
        historian.record_tick("r1", float(t), _readings(float(t)), {"heater_pct": t % 100})
        if t % 1000 == 999:
            historian.flush()
    historian.record_setpoint("r1", 0.0, "temperature", "temperature_c", "heater_pct", 37.0,
                              "auto")
    historian.record_event("r1", 1.0, "run", "started", {"k": 1})
    historian.record_diagnostics("r1", 2.0, {"fold_expansion": 1.5})
    historian.close({"fold_expansion": 1.5})
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        rows = con.execute("SELECT t_s, temperature_c, heater_pct FROM ticks ORDER BY rowid")
        rows = rows.fetchall()
        summary = con.execute("SELECT summary_json, seed FROM runs").fetchone()
        columns = [r[1] for r in con.execute("PRAGMA table_info(ticks)")]
        event = con.execute("SELECT kind, message, data_json FROM events").fetchone()
        diag = con.execute("SELECT name, value FROM diagnostics").fetchone()
    assert [r[0] for r in rows] == [float(t) for t in range(2500)]
    assert rows[42] == (42.0, 42.0, 42.0)
    assert columns == ["reactor_id", "t_s", *tick_columns()]
    assert json.loads(summary[0]) == {"fold_expansion": 1.5} and summary[1] == 5
    assert event == ("run", "started", '{"k": 1}')
    assert diag == ("fold_expansion", 1.5)


@pytest.mark.parametrize("in_process", [False, True], ids=["writer-child", "in-process"])
def test_missing_readings_are_recorded_as_bad(tmp_path: Path, in_process: bool) -> None:
    historian = Historian(tmp_path / "h.sqlite", RUN, in_process=in_process)
    historian.record_tick("r1", 0.0, {}, {})
    historian.close()
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        (quality,) = con.execute("SELECT ph_q FROM ticks").fetchone()
    assert quality == Quality.BAD


def test_a_writer_that_cannot_open_the_file_fails_the_start(tmp_path: Path) -> None:
    """`drain` comes before a run's first tick: records that cannot be written at all stop
    the run from starting, with the reason (the CLI prints it; no traceback)."""
    target = tmp_path / "h.sqlite"
    target.mkdir()  # a directory where the database should be: sqlite cannot open it
    historian = Historian(target, RUN)
    with pytest.raises(HistorianError, match=r"historian .* failed: OperationalError"):
        historian.drain()


def test_an_in_process_writer_failure_is_the_same_error(tmp_path: Path) -> None:
    target = tmp_path / "h.sqlite"
    target.mkdir()
    with pytest.raises(HistorianError, match=r"historian .* failed: OperationalError"):
        Historian(target, RUN, in_process=True)


def test_in_process_each_flush_is_committed_at_once(tmp_path: Path) -> None:
    """What a killed sweep worker leaves: every row flushed before it, readable by another
    connection, with no writer child to wait for."""
    historian = Historian(tmp_path / "h.sqlite", RUN, in_process=True)
    for t in range(FLUSH_TICK_ROWS + 5):
        historian.record_tick("r1", float(t), _readings(float(t)), {})
    historian.record_checkpoint("r1", 5.0, 0.0, {"t": 5}, urgent=True)
    assert _ticks_on_disk(tmp_path / "h.sqlite") == FLUSH_TICK_ROWS + 5
    historian.record_event("r1", 6.0, "run", "ended")
    with ThreadPoolExecutor(1) as thread:  # a run closes it off the loop's thread
        thread.submit(historian.close).result()
    assert historian.rows_written == FLUSH_TICK_ROWS + 5 + 2


def _ticks_on_disk(path: Path) -> int:
    with sqlite3.connect(path) as con:
        try:
            return int(con.execute("SELECT count(*) FROM ticks").fetchone()[0])
        except sqlite3.OperationalError:  # the writer has not made the table yet
            return 0


def test_a_full_batch_of_tick_rows_goes_to_the_writer_without_waiting_for_a_flush(
        tmp_path: Path) -> None:
    historian = Historian(tmp_path / "h.sqlite", RUN)
    for t in range(FLUSH_TICK_ROWS - 1):
        historian.record_tick("r1", float(t), _readings(float(t)), {})
    assert historian._batches["ticks"], "one row short of a batch: still held"
    historian.record_tick("r1", float(FLUSH_TICK_ROWS), _readings(0.0), {})
    assert not historian._batches["ticks"]
    wait_until(lambda: _ticks_on_disk(tmp_path / "h.sqlite") == FLUSH_TICK_ROWS,
               timeout_s=30, what="the full batch committed by the writer")
    historian.close()


def test_a_flood_of_small_batches_is_written_whole_and_in_order(
        tmp_path: Path) -> None:
    """A fleet's urgent checkpoints arrive a thousand at once; the writer takes those that
    wait into one transaction and loses none, nor their order."""
    historian = Historian(tmp_path / "h.sqlite", RUN)
    for t in range(3000):
        historian.record_tick("r1", float(t), _readings(float(t)), {})
        historian.record_checkpoint("r1", float(t), 0.0, {"t": t}, urgent=True)
    historian.close()
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        ticks = [r[0] for r in con.execute("SELECT t_s FROM ticks ORDER BY rowid")]
        (checkpoint,) = con.execute("SELECT state_json FROM checkpoints").fetchone()
    assert ticks == [float(t) for t in range(3000)]
    assert json.loads(checkpoint) == {"t": 2999}


@pytest.mark.parametrize("in_process", [False, True], ids=["writer-child", "in-process"])
def test_drain_returns_once_everything_handed_over_is_committed(
        tmp_path: Path, in_process: bool) -> None:
    """Before a fleet ticks, the start's records are written out, so the first ticks'
    checkpoints meet an idle writer; and a second drain, or a close after it, is harmless."""
    historian = Historian(tmp_path / "h.sqlite", RUN, in_process=in_process)
    for k in range(300):
        historian.record_event("r1", float(k), "run", f"reactor {k} started", {"k": k})
    historian.drain()
    with sqlite3.connect(tmp_path / "h.sqlite") as con:  # another reader sees them at once
        (count,) = con.execute("SELECT COUNT(*) FROM events").fetchone()
    assert count == 300
    historian.drain()
    historian.close()
    assert historian.rows_written == 300
