"""`bioreactor sweep --scheduler` on a real Dask cluster: a `dask scheduler` and a `dask worker`
with two worker processes on loopback, against the same sweep on the local pool."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client
from plugins.processes import BIN, LOOPBACK, free_port
from plugins.sweeps import metrics_by_case, read_results, run_sweep_command, write_sweep

AXES = ("seed", "reactor.chamber.microgravity")
START_S = 60


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The process and whatever it started (a worker's nanny starts the worker processes)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """The address of a scheduler with two single-threaded worker processes, all stopped after
    the test whatever its outcome."""
    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in (
            ("scheduler", ["scheduler", "--host", LOOPBACK, "--port", str(port),
                           "--no-dashboard"]),
            ("worker", ["worker", address, "--nworkers", "2", "--nthreads", "1",
                        "--host", LOOPBACK, "--no-dashboard",
                        "--local-directory", str(tmp_path / "dask-scratch")]),
        ):
            with (logs / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen([str(BIN / "dask"), *command],
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  start_new_session=True))
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(2, timeout=START_S)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)


def test_a_dask_cluster_gives_the_local_pools_metrics(tmp_path: Path,
                                                      dask_scheduler: str) -> None:
    sweep = write_sweep(tmp_path, 'seed = [1, 2]\n"reactor.chamber.microgravity" = '
                                  '[false, true]\n')
    local = run_sweep_command(sweep, tmp_path / "local", "--workers", "2")
    assert local.returncode == 0, local.stderr
    cluster = run_sweep_command(sweep, tmp_path / "dask", "--scheduler", dask_scheduler)
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
