"""Where the runs go: a local process pool, or a Dask distributed cluster. Both take the same
task dicts and yield each run's record as it finishes, in finishing order.

A run that fails is a `failed` record made by the task itself; a worker that dies (killed, out
of memory, the cluster gone) is a `lost` record made here, run again when the sweep resumes.
"""
from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol

from controller.sweep.task import LOST, run_case

Setup = Callable[[], None]
"""Called once per task in the worker before the run (e.g. logging); must be picklable."""


class Executor(Protocol):
    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        ...


def lost(task: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    return {"run_id": task["run_id"], "case": task["case"], "status": LOST,
            "error": f"worker lost: {type(exc).__name__}: {exc}", "reactors": [],
            "wall_seconds": None}


class LocalPool:
    """`workers` processes on this machine, started with `spawn` (no state forked from the
    parent: each run builds its own event loop, clock and historian)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(self.workers, len(tasks)), mp_context=context) as pool:
            futures: dict[Future[dict[str, Any]], dict[str, Any]] = {
                pool.submit(run_case, task, setup): task for task in tasks}
            try:
                for future in as_completed(futures):
                    try:
                        yield future.result()
                    except Exception as exc:  # BrokenProcessPool: a worker died
                        yield lost(futures[future], exc)
            finally:  # the consumer stopped early (Ctrl-C): start nothing more
                for future in futures:
                    future.cancel()


class DaskCluster:
    """The workers of a running Dask scheduler (`dask scheduler`, `dask worker`): every worker
    must have this package installed, and DIR on a file system they share (the historians are
    written by the workers; the records and tables by this process)."""

    def __init__(self, address: str, connect_timeout_s: float = 10.0) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s

    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        from distributed import Client, as_completed  # imported only for a cluster: it is slow

        with Client(self.address, timeout=f"{self.connect_timeout_s}s") as client:
            # Keys unique to this sweep: the same case swept into another DIR at the same time
            # is another task (another historian), not one Dask may share between them.
            batch = uuid.uuid4().hex[:8]
            futures = client.map(run_case, tasks, setup=setup, pure=False,
                                 key=[f"sweep-{batch}-{task['run_id']}" for task in tasks])
            by_key = {future.key: task for future, task in zip(futures, tasks, strict=True)}
            try:
                for future in as_completed(futures):
                    try:
                        yield future.result()
                    except Exception as exc:  # a worker died under the task, or was killed
                        yield lost(by_key[future.key], exc)
            finally:
                client.cancel(futures)
