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
    with contextlib.suppress(ProcessLookupError):  # what is left of its session (a nanny's
        os.killpg(process.pid, signal.SIGKILL)     # workers when a test killed the leader)


@contextlib.contextmanager
def dask_cluster(folder: Path, workers: int = 2) -> Iterator[str]:
    """The scheduler's address once `workers` workers have joined; all stopped on exit, with
    their logs in `folder`."""
    with dask_scheduler(folder) as address, dask_workers(address, folder, workers):
        yield address


@contextlib.contextmanager
def dask_scheduler(folder: Path) -> Iterator[str]:
    """A scheduler alone (workers join it with `dask_workers`), its address once it answers."""
    from distributed import Client

    address = f"tcp://{LOOPBACK}:{free_port()}"
    with _started(folder, "scheduler", ["scheduler", "--host", LOOPBACK,
                                        "--port", address.rpartition(":")[2],
                                        "--no-dashboard"]):
        with Client(address, timeout=f"{START_S}s"):
            pass
        yield address


@contextlib.contextmanager
def dask_workers(address: str, folder: Path,
                 workers: int) -> Iterator[subprocess.Popen[bytes]]:
    """`dask worker` with `workers` single-threaded processes, once they have joined; its
    process (the leader of a session holding its nanny and worker processes)."""
    from distributed import Client

    with _started(folder, "worker", [
            "worker", address, "--nworkers", str(workers), "--nthreads", "1", "--host",
            LOOPBACK, "--no-dashboard", "--local-directory", str(folder / "scratch")]) as worker:
        with Client(address, timeout=f"{START_S}s") as client:
            client.wait_for_workers(workers, timeout=START_S)
        yield worker


@contextlib.contextmanager
def _started(folder: Path, name: str,
             command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """`dask COMMAND` in its own session, its output in `folder/NAME.log`; stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.log").open("ab") as log:
        process = subprocess.Popen([str(BIN / "dask"), *command], stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **WORKER_ENV},
                                   start_new_session=True)
    try:
        yield process
    finally:
        _stop(process)
