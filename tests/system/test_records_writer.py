"""A run whose historian writer is killed (the kernel's out-of-memory killer, a stray kill -9):
the culture stays under control and every record still reaches the file, once.

The installed `bioreactor run` command in scaled time; its writer child found in /proc and
killed with SIGKILL halfway through.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.processes import BIN, children
from plugins.records import count_rows
from plugins.waiting import wait_until


def test_a_killed_writer_costs_neither_control_nor_a_record(tmp_path: Path) -> None:
    db, summary_path, proc = _run_five_minutes_in(tmp_path, "1h", "200")
    try:
        [writer] = children(proc.pid)
        subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(writer)], check=True)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_control_and_records_kept(proc, stderr, db, summary_path)


def test_a_writer_stuck_on_its_disk_is_replaced_and_never_holds_the_ticks(
        tmp_path: Path) -> None:
    """The writer stops reading (stopped here, as a process waits on a disk that no longer
    answers) while the run hands it more than the pipe holds. The ticks must go on, so that the
    silence limit finds the writer hung and replaces it; before, the run waited on its pipe for
    good once 4 MB of rows were queued: no control, and no end."""
    # 2,000 rows a wall second: the pipe is full within ~10 s
    db, summary_path, proc = _run_five_minutes_in(tmp_path, "1d", "2000")
    stuck = None
    try:
        [stuck] = children(proc.pid)
        subprocess.run(["kill", f"-{signal.SIGSTOP.value}", str(stuck)], check=True)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if stuck is not None:
            subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(stuck)], check=False)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_control_and_records_kept(proc, stderr, db, summary_path)
    with sqlite3.connect(db) as con:
        (why,) = con.execute("SELECT message FROM events WHERE kind = 'alarm' AND message "
                             "LIKE 'historian writer failed%'").fetchone()
    assert "writer hung: nothing written for 30 s" in why


@pytest.mark.parametrize("how", ["removed", "moved"])
def test_a_records_file_removed_or_moved_mid_run_is_written_back_and_alarmed(
        tmp_path: Path, how: str) -> None:
    """The run's file and its -wal and -shm removed halfway (as a cleaner of old files under
    /tmp does), or moved away together (`mv run.sqlite* archive/`): the run ends with every
    tick in the file at its path, once, and the one-shot `records_file_removed` raised on the
    reactor. Before, a removed file was gone for good at the end, a moved one grew elsewhere,
    and nothing said so. A moved file keeps, whole, what it held when the move was noticed."""
    archive = tmp_path / "archive"
    archive.mkdir()
    db, summary_path, proc = _run_five_minutes_in(tmp_path, "1h", "200")
    try:
        for name in ("run.sqlite", "run.sqlite-wal", "run.sqlite-shm"):
            if how == "removed":
                (tmp_path / name).unlink()
            else:
                (tmp_path / name).rename(archive / name)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == "completed"
    [reactor] = summary["reactors"].values()
    assert "records_file_removed" in [a["name"] for a in reactor["alarms"]]
    with sqlite3.connect(db) as con:
        ticks, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT t_s) FROM ticks").fetchone()
        [message] = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'alarm' AND message LIKE "
            "'%records file%'")]
    assert ticks == distinct == summary["ticks"]  # every tick of the run, once
    if how == "removed":
        assert f"{db} was removed from disk while open; written back" in message
        return
    assert (f"{db} was moved away while open (to {archive / 'run.sqlite'}, which keeps the "
            f"records up to now); written back from the writer's copy to {db}") in message
    with sqlite3.connect(archive / "run.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        moved = con.execute("SELECT * FROM ticks ORDER BY rowid").fetchall()
    with sqlite3.connect(db) as con:
        kept = con.execute("SELECT * FROM ticks ORDER BY rowid LIMIT ?", (len(moved),)).fetchall()
    assert len(moved) > 300 and moved == kept  # the run's first ticks, none missing


def _run_five_minutes_in(tmp_path: Path, duration: str,
                         speed: str) -> tuple[Path, Path, subprocess.Popen]:
    """`bioreactor run` in `tmp_path` (its records, its summary, the process), once five
    simulated minutes of ticks are on record: the moment each fault here is made."""
    db = tmp_path / "run.sqlite"
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--duration", duration,
         "--speed", speed, "--quiet", "--db", str(db), "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        wait_until(lambda: count_rows(db, "SELECT COUNT(*) FROM ticks") > 300, 60,
                   "five minutes of ticks on record")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return db, summary_path, proc


def assert_control_and_records_kept(proc: subprocess.Popen, stderr: str, db: Path,
                                    summary_path: Path) -> None:
    """The run completed, under control after its first ten minutes (the writer failed after
    five), every tick on record once, and `historian_down` raised, then cleared."""
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == "completed"
    with sqlite3.connect(db) as con:
        coldest, hottest = con.execute(
            "SELECT MIN(temperature_c), MAX(temperature_c) FROM ticks WHERE t_s > 600"
        ).fetchone()
        ticks, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT t_s) FROM ticks").fetchone()
        alarm = [json.loads(data) for (data,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm' AND message LIKE "
            "'historian writer%' ORDER BY rowid")]
    assert coldest > 36.8 and hottest < 37.2  # under control throughout
    assert ticks == distinct == summary["ticks"]  # every tick once: none lost, none twice
    assert [(a["alarm"], a["active"]) for a in alarm] == [("historian_down", True),
                                                          ("historian_down", False)]
