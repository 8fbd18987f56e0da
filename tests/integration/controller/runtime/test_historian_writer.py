"""The historian's writer child killed, hung or unable to write: the caller never sees an error,
and every row ends up in the file exactly once (controller/runtime/writer_child.py).

Real writer processes, killed with real signals; the supervision's wall time is a counter the
test advances, so the backoff and the silence limit are met without waiting them out.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from plugins.waiting import wait_until

from controller.child_process import start_child
from controller.runtime import writer_child
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.record_writer import WRITE_BACK_RETRY_MAX_S, RecordWriter, tick_columns
from controller.runtime.writer_child import DownAlarm, WriterChild
from drivers import CHANNELS, Quality, Reading

RUN = RunInfo("run-1", "2026-11-27T00:00:00+00:00", 5, 1.0, "[run]\n", [("r1", "sim://")])


class WallClock:
    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


def _readings(t: float) -> dict[str, Reading]:
    return {c.name: Reading(t, c.unit, t, Quality.GOOD)
            for c in CHANNELS if c.direction.value == "input"}


def _record(historian: Historian, start: int, stop: int) -> None:
    for t in range(start, stop):
        historian.record_tick("r1", float(t), _readings(float(t)), {"heater_pct": 1.0})
    historian.record_event("r1", float(stop), "run", f"ticks to {stop}")


def _writer(historian: Historian) -> WriterChild:
    writer = historian.writer
    assert writer is not None
    return writer


def _pid(historian: Historian) -> int:
    process = _writer(historian)._process
    assert process is not None
    return process.pid


def _kill(historian: Historian, sig: signal.Signals = signal.SIGKILL) -> None:
    os.kill(_pid(historian), sig)
    if sig is signal.SIGKILL:
        process = _writer(historian)._process
        assert process is not None
        process.wait(timeout=30)


def _on_disk(path: Path) -> tuple[list[float], list[str]]:
    with sqlite3.connect(path) as con:
        ticks = [t for (t,) in con.execute("SELECT t_s FROM ticks ORDER BY rowid")]
        events = [m for (m,) in con.execute("SELECT message FROM events ORDER BY rowid")]
    return ticks, events


def _caught_up(historian: Historian) -> bool:
    """A flush a wall second after the last: the writer's confirmations are read."""
    wall = _writer(historian)._wall
    assert isinstance(wall, WallClock)
    wall.t_s += writer_child.READ_EVERY_WALL_S
    historian.flush()
    return _writer(historian).caught_up


def test_a_writer_killed_between_flushes_is_replaced_and_nothing_is_lost(
        tmp_path: Path) -> None:
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    _record(historian, 0, 100)
    historian.drain()
    _kill(historian)
    _record(historian, 100, 200)
    historian.flush()  # finds the writer dead: another is started and sent the batch
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    assert _writer(historian).failures == 1
    assert "exited with code -9" in _writer(historian).last_failure
    historian.close()
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert ticks == [float(t) for t in range(200)]
    assert events == ["ticks to 100", "ticks to 200"]


def test_batches_a_writer_never_read_are_sent_again_to_the_next(tmp_path: Path) -> None:
    """Stopped, then killed, with three batches in its pipe: the next writer gets them all."""
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    historian.drain()
    _kill(historian, signal.SIGSTOP)
    for k in range(3):
        _record(historian, 100 * k, 100 * (k + 1))
        historian.flush()
    assert _writer(historian).waiting_rows == 303  # none confirmed: the writer is stopped
    _kill(historian)
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    historian.close()
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert ticks == [float(t) for t in range(300)]
    assert events == ["ticks to 100", "ticks to 200", "ticks to 300"]


def test_a_hung_writer_is_killed_after_the_silence_limit_and_replaced(tmp_path: Path) -> None:
    wall = WallClock()
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=wall)
    historian.drain()
    hung = _pid(historian)
    _kill(historian, signal.SIGSTOP)  # a disk that stopped answering, as far as we can tell
    _record(historian, 0, 50)
    historian.flush()
    wall.t_s += writer_child.WRITER_SILENT_LIMIT_S - 1.0
    historian.flush()
    assert _writer(historian).failures == 0  # not yet: a slow commit is not a hung writer
    wall.t_s += 2.0
    historian.flush()
    assert _writer(historian).failures == 1
    assert "hung" in _writer(historian).last_failure
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    assert _pid(historian) != hung
    wait_until(lambda: (historian.flush(), not _writer(historian)._dying)[1], timeout_s=30,
               what="the hung writer reaped")
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # killed and reaped, not left stopped
    historian.close()
    assert _on_disk(tmp_path / "h.sqlite")[0] == [float(t) for t in range(50)]


def test_while_no_writer_can_write_the_records_wait_and_only_samples_are_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's folder moved away under it: each new writer fails to open the file, the
    restarts back off, the waiting rows are bounded by dropping the oldest tick rows (never an
    event); once the folder is back, the next writer writes everything left, once."""
    monkeypatch.setattr(writer_child, "MAX_WAITING_ROWS", 150)
    monkeypatch.setattr(writer_child, "READ_EVERY_WALL_S", 0.0)  # the backoff's clock stands
    wall = WallClock()
    folder = tmp_path / "run"
    historian = Historian(folder / "h.sqlite", RUN, wall_monotonic=wall)
    _record(historian, 0, 10)
    historian.drain()
    _kill(historian)
    folder.rename(tmp_path / "away")
    folder.write_text("not a folder")  # sqlite cannot open run/h.sqlite now
    _record(historian, 10, 110)
    historian.flush()  # a new writer at once: it fails to open the file
    wait_until(lambda: (historian.flush(), _writer(historian).failures)[1] == 2,
               timeout_s=30, what="the second writer's failure")
    assert "unable to open" in _writer(historian).last_failure
    _record(historian, 110, 210)
    historian.flush()  # within the backoff: no writer started, the rows wait
    assert _writer(historian).failures == 2
    assert _writer(historian).rows_dropped == 100  # the oldest batch's ticks, not its event
    assert _writer(historian).waiting_rows == 102
    folder.unlink()
    (tmp_path / "away").rename(folder)
    wall.t_s += writer_child.RESTART_BACKOFF_MAX_S
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="a writer caught up")
    historian.close()
    ticks, events = _on_disk(folder / "h.sqlite")
    assert ticks == [float(t) for t in [*range(10), *range(110, 210)]]
    assert events == ["ticks to 10", "ticks to 110", "ticks to 210"]


def test_a_batch_committed_but_not_confirmed_is_skipped_by_the_next_writer(
        tmp_path: Path) -> None:
    """The writer died between its commit and its confirmation: the batch comes again, and
    the file's `handovers` row says it is already there."""
    path = str(tmp_path / "h.sqlite")
    first = RecordWriter(path, RUN)
    batch = {"events": [("r1", 1.0, "run", "one", None)]}
    assert first.write_numbered("session-a", [(1, batch)]) == 1
    second = RecordWriter(path, RUN)
    later = {"events": [("r1", 2.0, "run", "two", None)]}
    assert second.write_numbered("session-a", [(1, batch), (2, later)]) == 2
    assert second.write_numbered("session-b", [(1, batch)]) == 1  # another controller's 1
    second.close(None)
    assert _on_disk(Path(path))[1] == ["one", "two", "one"]


def test_the_alarm_rises_with_each_failure_and_clears_once_caught_up(tmp_path: Path) -> None:
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    alarm = DownAlarm()
    assert alarm.change(_writer(historian)) is None
    historian.drain()
    _kill(historian)
    _record(historian, 0, 10)
    historian.flush()
    # The send is the sender thread's: on a loaded machine it may not have met the closed
    # pipe yet when the flush returns. The next flushes notice it.
    wait_until(lambda: historian.flush() or _writer(historian).failures, timeout_s=30,
               what="the dead writer noticed")
    active, message = alarm.change(_writer(historian)) or (None, "")
    assert active is True and "exited with code -9" in message
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    assert alarm.change(_writer(historian)) == (
        False, "historian writer back: every record that waited is committed")
    assert alarm.change(_writer(historian)) is None
    historian.close()


def test_a_writer_killed_while_closing_the_run_is_replaced_for_the_close(
        tmp_path: Path) -> None:
    """The worst moment: the last rows and the run's summary handed over, the writer killed
    before it confirms. `close` starts another and asks again."""
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    historian.drain()
    _kill(historian, signal.SIGSTOP)
    _record(historian, 0, 100)
    with ThreadPoolExecutor(1) as thread:  # a run closes its historian off the loop's thread
        closing = thread.submit(historian.close, {"fold_expansion": 2.0})
        _kill(historian)
        closing.result(timeout=60)
    assert _writer(historian).failures == 1
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert ticks == [float(t) for t in range(100)] and events == ["ticks to 100"]
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        (summary,) = con.execute("SELECT summary_json FROM runs").fetchone()
    assert summary == '{"fold_expansion": 2.0}'


def test_while_no_writer_can_write_only_each_reactors_newest_checkpoint_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet's checkpoints are most of the bytes that wait: an older one goes once a newer
    one of the same reactor waits; every event stays, and the file ends with the newest."""
    monkeypatch.setattr(writer_child, "READ_EVERY_WALL_S", 0.0)  # the backoff's clock stands
    wall = WallClock()
    folder = tmp_path / "run"
    historian = Historian(folder / "h.sqlite", RUN, wall_monotonic=wall)
    historian.drain()
    _kill(historian)
    folder.rename(tmp_path / "away")
    folder.write_text("not a folder")
    historian.flush()  # finds the writer dead; the new one cannot open the file
    wait_until(lambda: (historian.flush(), _writer(historian).failures)[1] == 2,
               timeout_s=30, what="the second writer's failure")
    for t in range(1, 4):
        historian.record_event("r1", float(t), "feed", f"bolus {t} started")
        historian.record_checkpoint("r1", float(t), 0.0, {"boluses_started": t})
        historian.record_checkpoint("r2", float(t), 0.0, {"boluses_started": 0})
    assert _writer(historian).waiting_rows == 3 + 2  # three events, one checkpoint each
    folder.unlink()
    (tmp_path / "away").rename(folder)
    wall.t_s += writer_child.RESTART_BACKOFF_MAX_S
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="a writer caught up")
    historian.close()
    with sqlite3.connect(folder / "h.sqlite") as con:
        checkpoints = con.execute(
            "SELECT reactor_id, t_s, state_json FROM checkpoints ORDER BY reactor_id").fetchall()
    assert checkpoints == [("r1", 3.0, '{"boluses_started": 3}'),
                           ("r2", 3.0, '{"boluses_started": 0}')]
    assert _on_disk(folder / "h.sqlite")[1] == [f"bolus {t} started" for t in range(1, 4)]
    assert _writer(historian).rows_dropped == 0  # superseded, not lost


def test_confirmations_are_read_once_a_second_or_once_enough_batches_wait(
        tmp_path: Path) -> None:
    """Not at every flush (that cost 7 % of a run), yet what waits stays bounded."""
    wall = WallClock()
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=wall)
    historian.drain()
    wall.t_s += writer_child.READ_EVERY_WALL_S  # the drain's read was just now
    most = 0
    for k in range(3 * writer_child.READ_AFTER_BATCHES):
        _record(historian, k, k + 1)
        historian.flush()
        wait_until(lambda k=k: len(_on_disk(tmp_path / "h.sqlite")[1]) == k + 1, timeout_s=30,
                   what="the batch committed")
        most = max(most, len(_writer(historian)._waiting))
    assert most == writer_child.READ_AFTER_BATCHES  # the clock stood: read when that many waited
    wall.t_s += writer_child.READ_EVERY_WALL_S
    historian.flush()
    assert not _writer(historian)._waiting  # a second later: every confirmation read
    historian.close()


def test_a_writer_that_stops_reading_never_holds_the_flush(tmp_path: Path) -> None:
    """A writer stuck on its disk (here stopped) while more than the pipe's buffers hold is
    handed over: a fleet's ~6 s of rows. The flushes must not wait on it, so that the silence
    limit, which runs between them, can find it hung, replace it and hand everything over."""
    wall = WallClock()
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=wall)
    historian.drain()
    _kill(historian, signal.SIGSTOP)
    message = "x" * (64 << 10)
    batches = 2 * writer_child.SEND_BUFFER_BYTES // len(message)  # twice what the pipe holds
    stopped = _pid(historian)
    thread = ThreadPoolExecutor(1)  # a flush that waits fails the test, not hangs it
    try:
        for k in range(batches):
            historian.record_event("r1", float(k), "run", f"{k} {message}")
            thread.submit(historian.flush).result(timeout=10)
        assert _writer(historian).failures == 0
        wall.t_s += writer_child.WRITER_SILENT_LIMIT_S + 1.0
        thread.submit(historian.flush).result(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)  # frees a flush still waiting, if one does
        thread.shutdown()
    assert _writer(historian).failures == 1
    assert "hung" in _writer(historian).last_failure
    wait_until(lambda: _caught_up(historian), timeout_s=60, what="the new writer caught up")
    historian.close()
    events = _on_disk(tmp_path / "h.sqlite")[1]
    assert [int(e.split()[0]) for e in events] == list(range(batches))


def test_a_writer_heard_from_is_not_hung_however_long_the_batch_it_owes_has_waited(
        tmp_path: Path) -> None:
    """A disk slower than the run's rows: the writer confirms, but the oldest batch it owes
    has waited longer than the silence limit. Killing it would hand the next writer a longer
    transaction still, so the limit counts from when the writer was last heard from."""
    wall = WallClock()
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=wall)
    historian.drain()
    pipe = _writer(historian)._pipe
    assert pipe is not None
    _record(historian, 0, 10)
    historian.flush()  # batch 1, at 1000 s
    wait_until(pipe.poll, timeout_s=30, what="batch 1 confirmed (not yet read)")
    _kill(historian, signal.SIGSTOP)
    _record(historian, 10, 20)
    historian.flush()  # batch 2, at 1000 s: it waits, the writer is stopped
    wall.t_s += writer_child.WRITER_SILENT_LIMIT_S - 5.0
    historian.flush()  # batch 1's confirmation read: heard from at 1025 s
    wall.t_s += 15.0
    historian.flush()  # batch 2 has waited 40 s, but the writer spoke 15 s ago
    assert _writer(historian).failures == 0
    wall.t_s += 16.0
    historian.flush()  # 31 s of silence
    assert _writer(historian).failures == 1
    assert "nothing written for 30 s" in _writer(historian).last_failure
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    historian.close()
    assert _on_disk(tmp_path / "h.sqlite")[0] == [float(t) for t in range(20)]


def test_a_writer_up_but_behind_has_the_new_samples_dropped_counted_and_alarmed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that is up but cannot keep up (stopped here, within the silence limit): what
    waits for it is bounded as for a writer that is down, by dropping the bulk rows of the
    batches not yet sent, never an event; the alarm says so and clears once it caught up."""
    monkeypatch.setattr(writer_child, "MAX_WAITING_ROWS", 150)
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    alarm = DownAlarm()
    historian.drain()
    _kill(historian, signal.SIGSTOP)
    for k in range(4):
        _record(historian, 100 * k, 100 * (k + 1))
        historian.flush()
    writer = _writer(historian)
    assert writer.failures == 0
    assert writer.rows_dropped == 200  # the ticks of batches 3 and 4, not their events
    assert writer.waiting_rows == 204
    active, message = alarm.change(writer) or (None, "")
    assert active is True
    assert message == ("historian writer cannot keep up: 204 records wait, and sample rows "
                       "are dropped (200 so far)")
    os.kill(_pid(historian), signal.SIGCONT)
    wait_until(lambda: _caught_up(historian) and not writer.waiting_rows, timeout_s=30,
               what="the writer caught up")
    assert alarm.change(writer) == (
        False, "historian writer back: every record that waited is committed; 200 sample rows "
               "were dropped while it was down or behind")
    historian.close()
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert ticks == [float(t) for t in range(200)]
    assert events == ["ticks to 100", "ticks to 200", "ticks to 300", "ticks to 400"]


@contextlib.contextmanager
def _throttled(pid: int, stopped_s: float, running_s: float) -> Iterator[None]:
    """The process stopped and continued in turn, as one whose disk answers slowly: it makes
    progress, a little at a time."""
    done = threading.Event()

    def cycle() -> None:
        with contextlib.suppress(ProcessLookupError):
            while not done.is_set():
                os.kill(pid, signal.SIGSTOP)
                done.wait(stopped_s)
                os.kill(pid, signal.SIGCONT)
                done.wait(running_s)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_a_writer_on_a_slow_disk_keeps_writing_with_bounded_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a writer at a twentieth of its speed, fed faster than that, for several times
    the silence limit (scaled down to 1 s here, the waiting rows to 5,000). Before, the oldest
    unconfirmed batch aged past the limit, the progressing writer was killed as hung, and its
    successor got the whole backlog in one transaction it could not finish in time either;
    meanwhile the backlog grew without bound. Now it is never taken for hung, the waiting
    rows stay bounded, and everything not counted as dropped is on disk once."""
    monkeypatch.setattr(writer_child, "WRITER_SILENT_LIMIT_S", 1.0)
    monkeypatch.setattr(writer_child, "MAX_WAITING_ROWS", 5_000)
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=time.monotonic)
    historian.drain()
    writer = _writer(historian)
    most_waiting = 0
    t = 0
    with _throttled(_pid(historian), stopped_s=0.095, running_s=0.005):
        started_s = time.monotonic()
        while not (writer.rows_dropped and time.monotonic() - started_s > 4.0):
            assert time.monotonic() - started_s < 120, "the writer kept up: no rows dropped"
            _record(historian, t, t + 100)
            historian.flush()
            t += 100
            most_waiting = max(most_waiting, writer.waiting_rows)
            time.sleep(0.002)  # the run's pace: ~40,000 rows a second at most
        assert writer.failures == 0, writer.last_failure
    assert most_waiting < 5_500  # 5,000 rows, a batch, and the events of batches stripped
    historian.close()
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert len(ticks) + writer.rows_dropped == t
    assert len(set(ticks)) == len(ticks)
    assert events == [f"ticks to {k}" for k in range(100, t + 1, 100)]


def test_a_resend_tells_its_progress_and_is_rolled_back_if_cut_short(tmp_path: Path) -> None:
    """The writer's side of a resend (controller/runtime/record_writer.py), over its real pipe:
    a `writing` message as each batch after the first is taken, then one commit; a resend cut
    short by the controller's death commits nothing of it (its checkpoints were superseded)."""
    def batch(number: int) -> bytes:
        rows = {"events": [("r1", float(number), "run", f"batch {number}", None)]}
        return pickle.dumps(("batch", (number, rows)))

    process, pipe = start_child("controller.runtime.record_writer")
    pipe.send((str(tmp_path / "h.sqlite"), RUN, "session-a"))
    pipe.send(("resend", 3))
    for number in (1, 2, 3):
        pipe.send_bytes(batch(number))
    assert [pipe.recv() for _ in range(3)] == [("writing", 2), ("writing", 3), ("committed", 3)]
    pipe.send(("resend", 2))
    pipe.send_bytes(batch(4))
    pipe.close()  # the controller is gone, batch 5 never sent
    assert process.wait(timeout=30) == 0
    assert _on_disk(tmp_path / "h.sqlite")[1] == ["batch 1", "batch 2", "batch 3"]


def test_a_writer_whose_disk_fills_mid_transaction_is_replaced_and_nothing_is_lost(
        tmp_path: Path) -> None:
    """The disk full in the middle of a commit (the writer's file size limit set just above
    what it has written: its next writes fail with EFBIG, as on a full disk). The transaction
    is rolled back, the writer fails, and the next one is sent every batch not confirmed:
    every row on disk once, and the file intact. The failure says why, in the writer's own
    words: before, it said "Broken pipe", met by the next send after the writer had exited."""
    historian = Historian(tmp_path / "h.sqlite", RUN, wall_monotonic=WallClock())
    _record(historian, 0, 100)
    historian.drain()
    written = sum(p.stat().st_size for p in tmp_path.glob("h.sqlite*"))
    resource.prlimit(_pid(historian), resource.RLIMIT_FSIZE, (written, written))
    for k in range(1, 6):
        _record(historian, 100 * k, 100 * (k + 1))
        historian.flush()
    wait_until(lambda: (historian.flush(), _writer(historian).failures)[1] == 1, timeout_s=30,
               what="the writer failed on its full disk")
    assert _writer(historian).last_failure == "OperationalError: disk I/O error"
    wait_until(lambda: _caught_up(historian), timeout_s=30, what="the new writer caught up")
    historian.close()
    ticks, events = _on_disk(tmp_path / "h.sqlite")
    assert ticks == [float(t) for t in range(600)]
    assert events == [f"ticks to {100 * k}" for k in range(1, 7)]
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("removed", [("h.sqlite",), ("h.sqlite", "h.sqlite-wal", "h.sqlite-shm"),
                                     ("h.sqlite", "h.sqlite-wal", "h.sqlite-shm", ".")],
                         ids=["the file", "the file and its -wal and -shm", "its folder"])
def test_a_records_file_removed_under_the_writer_is_written_back_whole(
        tmp_path: Path, removed: tuple[str, ...]) -> None:
    """`rm` by hand, or a cleaner of old files under /tmp ten days into a culture. Before, the
    writer went on writing to the removed file, `close` reported every row written, and the
    whole run's records were gone with it when it closed. Now the writer's open copy is
    written back before its next transaction: every row on disk once, the audit chain whole,
    and the controller told, for the one-shot alarm."""
    folder = tmp_path / "run"
    path = folder / "h.sqlite"
    historian = Historian(path, RUN, wall_monotonic=WallClock())
    _record(historian, 0, 100)
    historian.drain()
    for name in removed:
        (folder.rmdir if name == "." else (folder / name).unlink)()
    _record(historian, 100, 200)
    historian.drain()
    assert path.exists()
    writer = _writer(historian)
    assert writer.failures == 0
    assert writer.rescues == [f"the run's records file {path} was removed from disk while "
                              f"open; written back from the writer's copy to {path}"]
    _record(historian, 200, 300)
    historian.close({"fold_expansion": 2.0})
    assert sorted(p.name for p in folder.iterdir()) == ["h.sqlite"]  # no stale -wal left
    ticks, events = _on_disk(path)
    assert ticks == [float(t) for t in range(300)]
    assert events == ["ticks to 100", "ticks to 200", "ticks to 300"]
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT summary_json FROM runs").fetchone() == (
            '{"fold_expansion": 2.0}',)


def test_a_records_file_removed_and_its_name_taken_is_written_back_beside_it(
        tmp_path: Path) -> None:
    """Another file put in its place is not overwritten: the run's records go beside it."""
    path = tmp_path / "h.sqlite"
    writer = RecordWriter(str(path), RUN)
    writer.write([{"events": [("r1", 1.0, "run", "one", None)]}])
    path.unlink()
    path.write_text("someone else's")
    writer.write([{"events": [("r1", 2.0, "run", "two", None)]}])
    writer.close(None)
    assert path.read_text() == "someone else's"
    assert writer.rescued == [f"the run's records file {path} was removed from disk while "
                              f"open; written back from the writer's copy to {path}.rescued"]
    assert _on_disk(tmp_path / "h.sqlite.rescued")[1] == ["one", "two"]


@pytest.mark.parametrize("moved", [("h.sqlite",), ("h.sqlite", "h.sqlite-wal", "h.sqlite-shm")],
                         ids=["the file", "the file and its -wal and -shm"])
def test_a_records_file_moved_away_under_the_writer_is_written_back_at_its_path(
        tmp_path: Path, moved: tuple[str, ...]) -> None:
    """`mv` by hand, or a rotation of old files, mid-culture. Before, the writer went on
    writing to the moved file with nothing said: the run's path held no records, its report
    and a continued run found none. Now the records are written back at the path, the
    controller is told where the moved file went, and that file keeps what it had."""
    path = tmp_path / "h.sqlite"
    archive = tmp_path / "archive"
    archive.mkdir()
    historian = Historian(path, RUN, wall_monotonic=WallClock())
    _record(historian, 0, 100)
    historian.drain()
    for name in moved:
        (tmp_path / name).rename(archive / name)
    _record(historian, 100, 200)
    historian.drain()
    writer = _writer(historian)
    assert writer.failures == 0
    assert writer.rescues == [
        f"the run's records file {path} was moved away while open (to {archive / 'h.sqlite'}, "
        f"which keeps the records up to now); written back from the writer's copy to {path}"]
    _record(historian, 200, 300)
    historian.close({"fold_expansion": 2.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive", "h.sqlite"]
    assert _on_disk(path) == ([float(t) for t in range(300)],
                              ["ticks to 100", "ticks to 200", "ticks to 300"])
    # The moved file: everything committed before the move was noticed, consistent.
    assert _on_disk(archive / "h.sqlite") == ([float(t) for t in range(100)], ["ticks to 100"])
    for file in (path, archive / "h.sqlite"):
        with sqlite3.connect(file) as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_records_file_moved_away_and_its_name_taken_is_written_back_beside_it(
        tmp_path: Path) -> None:
    """Moved, then another file put at its path: that file is not overwritten."""
    path = tmp_path / "h.sqlite"
    writer = RecordWriter(str(path), RUN)
    writer.write([{"events": [("r1", 1.0, "run", "one", None)]}])
    path.rename(tmp_path / "old.sqlite")
    path.write_text("someone else's")
    writer.write([{"events": [("r1", 2.0, "run", "two", None)]}])
    writer.write([{"events": [("r1", 3.0, "run", "three", None)]}])
    writer.close(None)
    assert path.read_text() == "someone else's"
    assert writer.rescued == [
        f"the run's records file {path} was moved away while open (to {tmp_path / 'old.sqlite'}, "
        f"which keeps the records up to now); written back from the writer's copy to "
        f"{path}.rescued"]
    assert _on_disk(tmp_path / "h.sqlite.rescued")[1] == ["one", "two", "three"]
    assert _on_disk(tmp_path / "old.sqlite")[1] == ["one"]


def test_a_sweep_runs_records_file_removed_is_written_back_too(tmp_path: Path) -> None:
    """The same in a sweep's run, whose historian writes in its own process."""
    path = tmp_path / "h.sqlite"
    historian = Historian(path, RUN, in_process=True)
    _record(historian, 0, 100)
    historian.flush()
    path.unlink()
    _record(historian, 100, 200)
    historian.close()
    assert _on_disk(path) == ([float(t) for t in range(200)], ["ticks to 100", "ticks to 200"])


def test_a_removed_file_that_cannot_be_written_back_yet_is_kept_open_until_it_can(
        tmp_path: Path) -> None:
    """The disk too full for the copy (this process's file size limit below the file's size,
    its writes failing with EFBIG). The writer must not fail: its open copy may be the run's
    only one. It keeps writing there, says so once, and writes it back when it can."""
    path = tmp_path / "h.sqlite"
    clock = WallClock()
    writer = RecordWriter(str(path), RUN, now=clock)
    columns = len(tick_columns())
    writer.write([{"ticks": [("r1", float(t), *[1.0] * columns) for t in range(2000)]}])
    writer._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the rows in the file, the -wal empty
    assert path.stat().st_size > 128 << 10  # twice the limit below
    path.unlink()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, limit[1]))
    try:
        writer.write([{"events": [("r1", 1.0, "run", "while full", None)]}])
        with pytest.raises(OSError, match="could not be written back: its records go with"):
            writer.close(None)  # never reported written
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    assert not path.exists()
    assert not (tmp_path / "h.sqlite.rescue").exists()  # the partial copy not left behind
    [message] = writer.rescued
    assert "could not be written back (OperationalError: disk I/O error)" in message
    writer.rescued.clear()
    clock.t_s += WRITE_BACK_RETRY_MAX_S  # the next try due
    writer.write([{"events": [("r1", 2.0, "run", "space again", None)]}])
    assert writer.rescued == [f"the run's records file {path} was removed from disk while "
                              f"open; written back from the writer's copy to {path}"]
    writer.close(None)
    ticks, events = _on_disk(path)
    assert ticks == [float(t) for t in range(2000)]
    assert events == ["while full", "space again"]


def _tries_counted(writer: RecordWriter, clock: WallClock,
                   monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When (`clock`'s seconds) `writer` tries to write its file back: the real write-back,
    each call noted."""
    tries: list[float] = []
    write_back = writer._write_back

    def noted() -> str:
        tries.append(clock.t_s)
        return write_back()

    monkeypatch.setattr(writer, "_write_back", noted)
    return tries


def _removed_and_blocked(path: Path) -> Path:
    """`path` removed, and no copy of it can be made (a folder where the copy goes)."""
    path.unlink()
    obstacle = Path(f"{path}.rescue")
    obstacle.mkdir()
    return obstacle


def _event(writer: RecordWriter, message: str) -> None:
    writer.write([{"events": [("r1", 1.0, "run", message, None)]}])


def test_a_write_back_that_keeps_failing_is_tried_ever_less_often(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each try copies the whole file (a long run's, GB). Before, it was tried before every
    transaction: a full disk was filled with the copy and emptied again every second, for as
    long as the culture ran. Now 1 s after the failure, then 2 s, 4 s, ... up to
    WRITE_BACK_RETRY_MAX_S apart, never in between; the rows go on to the open copy."""
    path = tmp_path / "h.sqlite"
    clock = WallClock()
    writer = RecordWriter(str(path), RUN, now=clock)
    tries = _tries_counted(writer, clock, monkeypatch)
    obstacle = _removed_and_blocked(path)
    failed_s = clock.t_s
    for k in range(3000):  # a transaction every 0.5 s for 25 minutes
        _event(writer, f"{k}")
        clock.t_s += 0.5
    doubling = [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0, 255.0, 511.0]
    capped = [511.0 + n * WRITE_BACK_RETRY_MAX_S for n in (1, 2, 3)]
    assert [t - failed_s for t in tries] == doubling + capped
    [message] = writer.rescued  # said once, not at each try
    assert "could not be written back (IsADirectoryError: " in message
    obstacle.rmdir()
    writer.close(None)
    assert _on_disk(path)[1] == [f"{k}" for k in range(3000)]


def test_a_write_back_that_succeeds_at_last_starts_the_backoff_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Room again, the file is written back at the next try due (not before), and the next
    removal is tried at its first transaction and again 1 s after, not where the last
    backoff had got to."""
    path = tmp_path / "h.sqlite"
    clock = WallClock()
    writer = RecordWriter(str(path), RUN, now=clock)
    tries = _tries_counted(writer, clock, monkeypatch)
    obstacle = _removed_and_blocked(path)
    for at_s in (0.0, 1.0, 3.0, 7.0):  # each try failing; the next due at 15 s
        clock.t_s = 1000.0 + at_s
        _event(writer, f"at {at_s}")
    obstacle.rmdir()
    clock.t_s = 1014.5
    _event(writer, "at 14.5")
    assert not path.exists()  # not tried: not yet due
    clock.t_s = 1015.0
    _event(writer, "at 15")
    assert path.exists()
    assert len(tries) == 5
    assert writer.rescued[-1] == (f"the run's records file {path} was removed from disk while "
                                  f"open; written back from the writer's copy to {path}")
    obstacle = _removed_and_blocked(path)  # removed again, and no room again
    clock.t_s = 1020.0
    _event(writer, "at 20")  # tried at once
    obstacle.rmdir()
    clock.t_s = 1020.5
    _event(writer, "at 20.5")
    clock.t_s = 1021.0
    _event(writer, "at 21")  # 1 s after this removal's failure: the backoff started again
    assert [t - 1000.0 for t in tries] == [0.0, 1.0, 3.0, 7.0, 15.0, 20.0, 21.0]
    assert path.exists()
    writer.close(None)
    assert _on_disk(path)[1] == ["at 0.0", "at 1.0", "at 3.0", "at 7.0", "at 14.5", "at 15",
                                 "at 20", "at 20.5", "at 21"]


def test_the_close_writes_back_even_before_the_next_try_is_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The close is the open copy's last chance: tried whatever the backoff says."""
    path = tmp_path / "h.sqlite"
    clock = WallClock()
    writer = RecordWriter(str(path), RUN, now=clock)
    tries = _tries_counted(writer, clock, monkeypatch)
    obstacle = _removed_and_blocked(path)
    _event(writer, "failed")
    obstacle.rmdir()
    clock.t_s += 0.5
    _event(writer, "not due")
    assert not path.exists()  # the next try is due only 1 s after the failure
    assert writer.close('{"fold_expansion": 2.0}') == 2
    assert len(tries) == 2
    assert _on_disk(path)[1] == ["failed", "not due"]
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT summary_json FROM runs").fetchone() == (
            '{"fold_expansion": 2.0}',)


def test_a_moved_file_that_cannot_be_written_back_keeps_every_record_where_it_went(
        tmp_path: Path) -> None:
    """Moved away, and no copy can be made at the path (here a folder sits where the copy is
    made): two faults at once. The writer keeps writing to the moved file and, at the close,
    empties into it the -wal that SQLite would leave unread at the old path (it checkpoints at
    close only a file still at its path): the moved file has every record, the summary and
    the index, and the close is not failed."""
    path = tmp_path / "h.sqlite"
    moved = tmp_path / "moved.sqlite"
    writer = RecordWriter(str(path), RUN)
    columns = len(tick_columns())
    writer.write([{"ticks": [("r1", float(t), *[1.0] * columns) for t in range(2000)]}])
    path.rename(moved)
    Path(f"{path}.rescue").mkdir()
    writer.write([{"events": [("r1", 1.0, "run", "moved", None)]}])
    [message] = writer.rescued
    assert message.startswith(f"the run's records file {path} was moved away while open (to "
                              f"{moved}, which keeps the records up to now), and could not be "
                              f"written back (IsADirectoryError: ")
    writer.close('{"fold_expansion": 2.0}')
    # The -wal, emptied into the moved file, and the -shm are not left at the old path.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite.rescue", "moved.sqlite"]
    ticks, events = _on_disk(moved)
    assert ticks == [float(t) for t in range(2000)]
    assert events == ["moved"]
    with sqlite3.connect(moved) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT summary_json FROM runs").fetchone() == (
            '{"fold_expansion": 2.0}',)
        assert con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND "
                           "name = 'ticks_by_time'").fetchone() == ("ticks_by_time",)


def test_a_long_write_back_gives_life_signs_as_it_goes(tmp_path: Path) -> None:
    """Copying a long run's file takes seconds on a slow disk; the writer must not be taken for
    hung meanwhile (killed, it would take the only copy): a life sign every 256 pages."""
    path = tmp_path / "h.sqlite"
    signs: list[None] = []
    writer = RecordWriter(str(path), RUN, alive=lambda: signs.append(None))
    columns = len(tick_columns())
    writer.write([{"ticks": [("r1", float(t), *[t + k / 7 for k in range(columns)])
                             for t in range(8000)]}])
    (pages,) = writer._con.execute("PRAGMA page_count").fetchone()
    assert pages > 4 * 256
    path.unlink()
    writer.write([{"events": [("r1", 1.0, "run", "after", None)]}])
    assert len(signs) == -(-pages // 256)  # one a step of 256 pages, the last one's too
    writer.close(None)
    assert len(_on_disk(path)[0]) == 8000
