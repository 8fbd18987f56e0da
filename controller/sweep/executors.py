"""Where the runs go: a local process pool, or a Dask distributed cluster. Both take the same
task dicts and yield each run's record as it finishes, in finishing order.

A run that fails is a `failed` record made by the task itself; a worker that dies (killed, out
of memory, the cluster gone) is a `lost` record made here, run again when the sweep resumes.
"""
from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, as_completed
from typing import Any, Protocol

import structlog

from controller.clock import Clock
from controller.sweep.task import LOST, run_case
from drivers.contract.urls import split_host_port

log = structlog.get_logger(__name__)

SCHEDULER_SCHEME = "tcp://"
"""The one transport `--scheduler` takes: Dask's tls://, ws:// and ucx:// need security or
transport settings this command does not take."""

WORKER_WAIT_S = 60.0
"""How long a sweep waits while its scheduler has no worker (none started yet, or all gone)
before its runs still to do are `lost`: a cluster without workers would hold them forever."""

POLL_S = 1.0
"""How often a sweep on a cluster with nothing finishing looks whether it still has workers."""

Setup = Callable[[], None]
"""Called once per task in the worker before the run (e.g. logging); must be picklable."""


class Executor(Protocol):
    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        ...


def lost(task: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    return {"run_id": task["run_id"], "case": task["case"], "status": LOST,
            "error": f"worker lost: {type(exc).__name__}: {exc}", "reactors": [],
            "wall_seconds": None}


def scheduler_address(text: str) -> str:
    """A Dask scheduler's address as Dask takes it (`tcp://HOST:PORT`, an IPv6 host in
    brackets) from `tcp://HOST:PORT` or `HOST:PORT`; a ValueError saying what is expected.

    Checked before anything runs: Dask's own parser fails deep in the client's start with a
    traceback (a missing port, an unknown scheme) or, for ucx:// without its package, with
    an abstract-class error."""
    location = text
    if "://" in text:
        scheme, _, location = text.partition("://")
        if f"{scheme.lower()}://" != SCHEDULER_SCHEME:
            raise ValueError(f"only {SCHEDULER_SCHEME}HOST:PORT is supported (a `dask "
                             f"scheduler`'s address), not {scheme}://")
    host, port = split_host_port(location)
    return f"{SCHEDULER_SCHEME}{f'[{host}]' if ':' in host else host}:{port}"


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

    def __init__(self, address: str, connect_timeout_s: float = 10.0,
                 worker_wait_s: float = WORKER_WAIT_S) -> None:
        self.address = address
        self.connect_timeout_s = connect_timeout_s
        self.worker_wait_s = worker_wait_s

    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        from distributed import Client, wait  # imported only for a cluster: it is slow

        with Client(self.address, timeout=f"{self.connect_timeout_s}s") as client:
            # Keys unique to this sweep: the same case swept into another DIR at the same time
            # is another task (another historian), not one Dask may share between them.
            batch = uuid.uuid4().hex[:8]
            futures = client.map(run_case, tasks, setup=setup, pure=False,
                                 key=[f"sweep-{batch}-{task['run_id']}" for task in tasks])
            by_key = {future.key: task for future, task in zip(futures, tasks, strict=True)}
            pending = set(futures)
            workerless_since: float | None = None
            try:
                while pending:
                    try:
                        done, pending = wait(pending, timeout=POLL_S,
                                             return_when="FIRST_COMPLETED")
                    except TimeoutError:
                        done = set()
                    except CancelledError:  # the scheduler's connection lost: each says so
                        done = {future for future in pending if future.done()}
                        pending -= done
                    for future in done:
                        try:
                            yield future.result()
                        except Exception as exc:  # a worker died under the task, or was killed
                            yield lost(by_key[future.key], exc)
                    if done or client.scheduler_info()["workers"]:
                        workerless_since = None
                        continue
                    now = Clock.wall_monotonic()
                    if workerless_since is None:
                        workerless_since = now
                        log.warning("the Dask scheduler has no worker: the runs wait for one",
                                    scheduler=self.address, wait_s=self.worker_wait_s)
                    elif now - workerless_since >= self.worker_wait_s:
                        yield from self._give_up(pending, by_key)
                        return
            finally:
                client.cancel(futures)

    def _give_up(self, pending: set[Any],
                 by_key: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The runs still to do, `lost`: the scheduler has had no worker for `worker_wait_s`."""
        why = (f"no worker on the Dask scheduler {self.address} for {self.worker_wait_s:g} s: "
               f"start one (`dask worker {self.address}`), then run the sweep again")
        log.error(why, runs=len(pending))
        for future in pending:
            yield lost(by_key[future.key], TimeoutError(why))
