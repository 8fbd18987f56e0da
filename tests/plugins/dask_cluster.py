"""A real Dask cluster on loopback, as docs/sweeps.md tells a user to start one: `dask
scheduler` and `dask worker` with N single-threaded worker processes and the workers' profiler
off, each in its own session so that stopping it stops the worker processes its nanny started.
For tests (a fixture) and benchmarks alike."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from plugins.processes import BIN, LOOPBACK, free_port

START_S = 60
WORKER_ENV = {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
"""docs/sweeps.md: the profiler samples the run's thread every 10 ms, and a run then took 26 %
more CPU (docs/benchmarks.md, Sweeps)."""


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2) -> Iterator[str]:
    """The scheduler's address once `workers` workers have joined; all stopped on exit, with
    their logs in `folder`."""
    from distributed import Client

    port = free_port()
    address = f"tcp://{LOOPBACK}:{port}"
    folder.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in (
            ("scheduler", ["scheduler", "--host", LOOPBACK, "--port", str(port),
                           "--no-dashboard"]),
            ("worker", ["worker", address, "--nworkers", str(workers), "--nthreads", "1",
                        "--host", LOOPBACK, "--no-dashboard",
                        "--local-directory", str(folder / "scratch")]),
        ):
            with (folder / f"{name}.log").open("wb") as log:
                processes.append(subprocess.Popen([str(BIN / "dask"), *command],
                                                  stdout=log, stderr=subprocess.STDOUT,
                                                  env={**os.environ, **WORKER_ENV},
                                                  start_new_session=True))
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(workers, timeout=START_S)
        yield address
    finally:
        for process in reversed(processes):
            _stop(process)
