"""`bioreactor sweep` on the local process pool, as a user runs it: the tables, the page, a
failing run as a row, and a sweep killed half-way and run again."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
from plugins.sweeps import (
    metrics_by_case,
    read_results,
    run_sweep_command,
    sweep_command,
    write_sweep,
)
from plugins.waiting import wait_until

from controller.runtime.recovery import RunLock
from controller.sweep.cases import build_cases
from controller.sweep.spec import load_sweep
from controller.sweep.store import SweepStore
from controller.sweep.sweep import task_of
from controller.sweep.task import run_case

AXES = ("seed", "reactor.chamber.microgravity")


def records(out: Path) -> dict[str, str]:
    """Each finished run's record file, by run id, as text."""
    return {p.stem: p.read_text() for p in (out / "runs").glob("*.json")}


def test_a_sweep_writes_one_row_per_run_and_a_summary_page(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, 'seed = [1, 2]\n"reactor.chamber.microgravity" = '
                                  '[false, true]\n')
    out = tmp_path / "out"
    done = run_sweep_command(sweep, out, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "4 runs (0 found finished, 4 run now); 0 failed, 0 lost" in done.stdout
    rows = read_results(out)
    assert [(r["seed"], r["reactor.chamber.microgravity"]) for r in rows] == [
        ("1", "False"), ("1", "True"), ("2", "False"), ("2", "True")]  # the cases' order
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert (out / "runs" / f"{row['run_id']}.sqlite").exists()
        assert float(row["wall_seconds"]) > 0
        assert 0.9 < float(row["total_fold"]) < 1.1  # two hours: barely any growth yet
        assert row["in_band_ph"] != "" and row["alarms_raised"] == "0"
    # Microgravity is the only difference within a seed, and it changes the culture.
    by_case = metrics_by_case(rows, AXES)
    assert by_case[("1", "False")]["total_fold"] != by_case[("1", "True")]["total_fold"]
    table = pq.read_table(out / "results.parquet")
    assert table.column_names == list(rows[0])
    assert table.column("seed").to_pylist() == [1, 1, 2, 2]
    assert table.column("reactor.chamber.microgravity").to_pylist() == [False, True] * 2
    page = (out / "index.html").read_text()
    assert "by_seed.png" in page and "by_reactor_chamber_microgravity.png" in page
    assert (out / "by_seed.png").stat().st_size > 10_000
    assert "Failed runs</h2><p>None.</p>" in page


def test_a_failed_run_is_a_row_and_is_tried_again_on_resume(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, "seed = [1, 2]\n", duration="1h")
    out = tmp_path / "out"
    ids = [case.run_id for case in build_cases(load_sweep(sweep))]
    # Seed 2's historian cannot be written (a folder stands where its file goes): that run
    # fails; the sweep goes on.
    (out / "runs" / f"{ids[1]}.sqlite").mkdir(parents=True)
    failed = run_sweep_command(sweep, out, "--workers", "1")
    assert failed.returncode == 1
    assert "2 runs (0 found finished, 2 run now); 1 failed, 0 lost" in failed.stdout
    rows = read_results(out)
    assert [(r["run_id"], r["status"]) for r in rows] == [(ids[0], "ok"), (ids[1], "failed")]
    assert rows[1]["error"].startswith("IsADirectoryError: ")
    assert rows[1]["total_fold"] == ""
    assert ids[1] in (out / "index.html").read_text().split("Failed runs")[1]
    (out / "runs" / f"{ids[1]}.sqlite").rmdir()
    again = run_sweep_command(sweep, out, "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "2 runs (1 found finished, 1 run now); 0 failed, 0 lost" in again.stdout
    assert [r["status"] for r in read_results(out)] == ["ok", "ok"]


def test_a_killed_sweep_run_again_finishes_only_the_missing_runs(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, "seed = [1, 2, 3, 4]\n", duration="1h")
    out = tmp_path / "out"
    process = subprocess.Popen(sweep_command(sweep, out, "--workers", "1", "--quiet"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        wait_until(lambda: records(out), 120, "the first run's record")
    finally:  # the sweep and its pool's worker, all of its session
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    before = records(out)
    assert 1 <= len(before) < 4
    again = run_sweep_command(sweep, out, "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert (f"4 runs ({len(before)} found finished, {4 - len(before)} run now); "
            "0 failed, 0 lost") in again.stdout
    after = records(out)
    assert len(after) == 4
    assert {k: after[k] for k in before} == before  # the finished runs were not run again
    rows = read_results(out)
    assert [r["seed"] for r in rows] == ["1", "2", "3", "4"]
    assert all(r["status"] == "ok" for r in rows)
    assert json.loads(after[rows[0]["run_id"]])["status"] == "ok"


def test_a_bad_sweep_file_is_exit_2_with_the_problems_and_runs_nothing(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, '"run.sed" = [1]\n')
    done = run_sweep_command(sweep, tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {sweep}: 1 problem(s)",
        "  axes.run.sed: run has no key 'sed' (allowed: band_after_s, checkpoint_interval_s, "
        "control_period_s, diagnostics_interval_s, duration, flush_interval_s, "
        "restart_policy, seed, speed)"]
    assert not (tmp_path / "out").exists()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _run_processes(pid: int) -> list[int]:
    """The sweep's runs in flight: the processes its forkserver (a child of the sweep) forked,
    one a run."""
    return [run for child in _children(pid)
            if b"multiprocessing.forkserver" in Path(f"/proc/{child}/cmdline").read_bytes()
            for run in _children(child)]


@contextmanager
def _sweep_mid_run(sweep: Path, out: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A one-worker sweep and its run's process, once a run has started (its historian
    appears); the sweep's whole session killed afterwards if it still runs."""
    process = subprocess.Popen(sweep_command(sweep, out, "--workers", "1", "--quiet"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        wait_until(lambda: list((out / "runs").glob("*.sqlite")), 60, "a run to start")
        [run] = wait_until(lambda: _run_processes(process.pid), 60, "the run's process")
        yield process, run
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_a_run_whose_process_is_killed_is_one_lost_row_and_the_others_run(
        tmp_path: Path) -> None:
    """Killed (-9, as the out-of-memory killer does) under its run, a process pool's worker
    broke the whole pool: every run of the sweep was `lost`. A lost run is run again on
    resume, as a failed one is (store's unit tests)."""
    sweep = write_sweep(tmp_path, "seed = [1, 2, 3]\n", duration="6h")
    out = tmp_path / "out"
    with _sweep_mid_run(sweep, out) as (process, run):
        os.kill(run, signal.SIGKILL)
        stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "3 runs (0 found finished, 3 run now); 0 failed, 1 lost" in stdout
    rows = read_results(out)
    assert [r["status"] for r in rows] == ["lost", "ok", "ok"]
    assert rows[0]["error"] == (
        "worker lost: ChildProcessError: the run's process was killed by SIGKILL (the "
        "kernel's out-of-memory killer, or a kill -9) before it sent its record")
    again = run_sweep_command(sweep, out, "--workers", "2")
    assert "3 runs (2 found finished, 1 run now); 0 failed, 0 lost" in again.stdout
    assert [r["status"] for r in read_results(out)] == ["ok", "ok", "ok"]


def test_a_sweep_killed_alone_has_its_runs_stop_safely_not_run_on_as_orphans(
        tmp_path: Path) -> None:
    """kill -9 of the sweep's process alone (the out-of-memory killer, a service manager's
    last resort): its runs in flight ran on to their end as orphans, holding their records'
    locks against the resumed sweep. Now each stops as on Ctrl-C, its records closed."""
    sweep = write_sweep(tmp_path, "seed = [1, 2]\n", duration="1d")
    out = tmp_path / "out"
    with _sweep_mid_run(sweep, out) as (process, run):
        process.kill()
        process.wait(timeout=30)
        wait_until(lambda: not Path(f"/proc/{run}").exists(), 30, "the run's process to end")
    [db] = (out / "runs").glob("*.sqlite")
    assert not Path(f"{db}-wal").exists()  # closed, its last records in the file
    with contextlib.closing(sqlite3.connect(db)) as con:
        ticks = con.execute("SELECT count(*) FROM ticks").fetchone()[0]
        last = con.execute("SELECT message FROM events WHERE kind = 'safe_state' "
                           "ORDER BY rowid DESC LIMIT 1").fetchone()
    assert ticks < 86400  # stopped, not run to its end
    # The run's own handler takes the SIGINT once it ticks; in its start-up (a loaded machine)
    # asyncio's runner does, and cancels it (test_run_stopped_by.py).
    assert last in {("safe state: signal SIGINT",), ("safe state: interrupted",)}
    again = run_sweep_command(sweep, out, "--workers", "2")
    assert "2 runs (0 found finished, 2 run now); 0 failed, 0 lost" in again.stdout


def test_sigterm_stops_a_sweep_and_its_workers_as_ctrl_c_does(tmp_path: Path) -> None:
    """A service manager stops with SIGTERM, to the sweep's process only: its pool's workers
    must stop too (not run on as orphans), the finished runs are kept, and a re-run finishes
    the rest."""
    sweep = write_sweep(tmp_path, "seed = [1, 2, 3, 4]\n", duration="6h")
    out = tmp_path / "out"
    with _sweep_mid_run(sweep, out) as (process, run):
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted: the finished runs are in" in stderr
    assert "Traceback" not in stderr
    wait_until(lambda: not Path(f"/proc/{run}").exists(), 30, "the run's process to end")
    again = run_sweep_command(sweep, out, "--workers", "2")
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in read_results(out)] == ["ok"] * 4


def test_a_second_sweep_into_the_same_dir_is_refused_and_leaves_the_first_alone(
        tmp_path: Path) -> None:
    """Two terminals, or a timer, sweeping into one DIR: the second would run the first's
    cases again, starting their historians over under its runs, and both would write the
    tables. It is refused at once, naming the sweep that owns DIR."""
    sweep = write_sweep(tmp_path, "seed = [1, 2, 3]\n", duration="6h")
    out = tmp_path / "out"
    with _sweep_mid_run(sweep, out) as (first, _):
        second = run_sweep_command(sweep, out, "--workers", "1")
        assert first.poll() is None  # still sweeping, so the refusal was the lock's
        stdout, stderr = first.communicate(timeout=180)
    assert second.returncode == 1
    assert second.stderr == (f"error: {out} is in use by another sweep (pid {first.pid}): "
                             "wait for it to end, or give this one another --out\n")
    assert second.stdout == ""
    assert first.returncode == 0, stderr
    assert "3 runs (0 found finished, 3 run now); 0 failed, 0 lost" in stdout
    assert [r["alarms_raised"] for r in read_results(out)] == ["0"] * 3  # none removed
    # The first sweep over, DIR is free again.
    again = run_sweep_command(sweep, out, "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "3 runs (3 found finished, 0 run now)" in again.stdout


def test_a_case_started_again_while_its_first_attempt_runs_waits_and_removes_nothing(
        tmp_path: Path) -> None:
    """A Dask cluster runs a task again when it takes a worker for dead, which may still be
    running it. The second attempt must not remove the first one's records under it: it
    waits for the run's lock (held here as the first attempt would), then starts over."""
    sweep = write_sweep(tmp_path, "seed = [1]\n", duration="1h")
    store = SweepStore(tmp_path / "out")
    [case] = build_cases(load_sweep(sweep))
    task = task_of(case, store)
    db = Path(task["db"])
    db.write_bytes(b"the first attempt's records")
    seen_while_held: list[bytes] = []

    def first_attempt() -> None:
        time.sleep(1.0)  # the first attempt's run, going on meanwhile
        seen_while_held.append(db.read_bytes())
        lock.release()

    lock = RunLock(db)
    holder = threading.Thread(target=first_attempt)
    holder.start()
    try:
        record = run_case(task)
    finally:
        holder.join()
    assert seen_while_held == [b"the first attempt's records"]
    assert record["status"] == "ok", record.get("error")
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("SELECT count(*) FROM ticks").fetchone()[0] == 3600
