"""`bioreactor sweep --scheduler` on a real Dask cluster: a `dask scheduler` and a `dask worker`
with two worker processes on loopback, against the same sweep on the local pool."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from plugins.dask_cluster import dask_cluster, dask_scheduler, dask_workers
from plugins.sweeps import (
    metrics_by_case,
    read_results,
    run_sweep_command,
    sweep_command,
    write_sweep,
)
from plugins.waiting import wait_until

AXES = ("seed", "reactor.chamber.microgravity")


@pytest.fixture
def two_worker_cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler with two single-threaded worker processes, stopped whatever the outcome."""
    with dask_cluster(tmp_path / "dask-cluster", workers=2) as address:
        yield address


def test_a_dask_cluster_gives_the_local_pools_metrics(tmp_path: Path,
                                                      two_worker_cluster: str) -> None:
    sweep = write_sweep(tmp_path, 'seed = [1, 2]\n"reactor.chamber.microgravity" = '
                                  '[false, true]\n')
    local = run_sweep_command(sweep, tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    cluster = run_sweep_command(sweep, tmp_path / "dask", "--scheduler", two_worker_cluster)
    assert cluster.returncode == 0, cluster.stderr
    assert "4 runs (0 found finished, 4 run now); 0 failed, 0 lost" in cluster.stdout
    local_rows = read_results(tmp_path / "local")
    cluster_rows = read_results(tmp_path / "dask")
    assert [r["run_id"] for r in cluster_rows] == [r["run_id"] for r in local_rows]
    assert metrics_by_case(cluster_rows, AXES) == metrics_by_case(local_rows, AXES)
    assert all(r["status"] == "ok" for r in cluster_rows)
    # The workers wrote each run's historian where the sweep asked.
    assert all((tmp_path / "dask" / "runs" / f"{r['run_id']}.sqlite").exists()
               for r in cluster_rows)


def test_a_scheduler_without_workers_loses_the_runs_after_the_wait_and_a_resume_runs_them(
        tmp_path: Path) -> None:
    """A scheduler nobody started workers for held the runs forever, the sweep silent."""
    sweep = write_sweep(tmp_path, "seed = [1, 2]\n", duration="1h")
    out = tmp_path / "out"
    with dask_scheduler(tmp_path / "cluster") as address:
        started = time.monotonic()
        result = run_sweep_command(sweep, out, "--scheduler", address, "--worker-wait", "3",
                                   timeout_s=120)
        assert time.monotonic() - started < 60
        assert result.returncode == 1, result.stderr
        assert "2 runs (0 found finished, 2 run now); 0 failed, 2 lost" in result.stdout
        why = (f"no worker on the Dask scheduler {address} for 3 s: start one "
               f"(`dask worker {address}`), then run the sweep again")
        assert "the Dask scheduler has no worker: the runs wait for one" in result.stderr
        assert why in result.stderr
        rows = read_results(out)
        assert [r["status"] for r in rows] == ["lost", "lost"]
        assert all(r["error"] == f"worker lost: TimeoutError: {why}" for r in rows)
        with dask_workers(address, tmp_path / "cluster", 2):
            again = run_sweep_command(sweep, out, "--scheduler", address)
    assert again.returncode == 0, again.stderr
    assert "2 runs (0 found finished, 2 run now); 0 failed, 0 lost" in again.stdout
    assert [r["status"] for r in read_results(out)] == ["ok", "ok"]


def test_workers_killed_mid_sweep_lose_its_runs_instead_of_holding_them(
        tmp_path: Path) -> None:
    """Every worker killed (-9, the whole `dask worker` session) while a run is in flight:
    Dask puts the run back in the queue, where it waited for a worker forever."""
    sweep = write_sweep(tmp_path, "seed = [1, 2]\n", duration="2d")
    out = tmp_path / "out"
    with (dask_scheduler(tmp_path / "cluster") as address,
          dask_workers(address, tmp_path / "cluster", 1) as worker):
        returncode, stdout, stderr = _sweep_killed_under(
            sweep_command(sweep, out, "--scheduler", address, "--worker-wait", "3"), out,
            lambda: os.killpg(worker.pid, signal.SIGKILL))
    assert returncode == 1, stderr
    assert "2 runs (0 found finished, 2 run now); 0 failed, 2 lost" in stdout
    assert f"no worker on the Dask scheduler {address} for 3 s" in stderr
    assert [r["status"] for r in read_results(out)] == ["lost", "lost"]


def test_a_scheduler_killed_mid_sweep_loses_its_runs_and_ends_the_sweep(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, "seed = [1, 2]\n", duration="2d")
    out = tmp_path / "out"
    with dask_cluster(tmp_path / "cluster", workers=1) as address:
        scheduler = ["pgrep", "-f", f"dask scheduler .*--port {address.rpartition(':')[2]}"]
        returncode, stdout, stderr = _sweep_killed_under(
            sweep_command(sweep, out, "--scheduler", address), out,
            lambda: os.kill(int(subprocess.run(scheduler, capture_output=True, text=True,
                                               check=True).stdout), signal.SIGKILL))
    assert returncode == 1, stderr
    assert "2 runs (0 found finished, 2 run now); 0 failed, 2 lost" in stdout
    assert "Traceback" not in stderr
    rows = read_results(out)
    assert [r["status"] for r in rows] == ["lost", "lost"]
    assert all("cancelled for reason: scheduler-connection-lost" in r["error"] for r in rows)


def _sweep_killed_under(command: list[str], out: Path,
                        kill: Callable[[], None]) -> tuple[int, str, str]:
    """The sweep's exit code and output, `kill` done once its first run has started; the
    sweep stopped whatever happens."""
    sweeping = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        wait_until(lambda: any((out / "runs").glob("*.sqlite")), 60, "a run started")
        kill()
        stdout, stderr = sweeping.communicate(timeout=90)
    finally:
        if sweeping.poll() is None:
            sweeping.kill()
            sweeping.wait()
    return sweeping.returncode, stdout, stderr
