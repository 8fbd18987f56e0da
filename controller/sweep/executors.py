"""Where the runs go: a local process pool, or a Dask distributed cluster. Both take the same
task dicts and yield each run's record as it finishes, in finishing order.

A run that fails is a `failed` record made by the task itself; a worker that dies (killed, out
of memory, the cluster gone) is a `lost` record made here, run again when the sweep resumes.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, cast

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

FORKSERVER_PRELOAD = ("controller.sweep.task",)
"""What the local runs' forkserver imports once, before it forks a process for each run."""

STOP_WAIT_S = 60.0
"""How long a sweep stopped early waits for each run in flight to stop safely (it was sent
SIGINT, as `bioreactor run` is on Ctrl-C) before it kills it."""

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
    """Up to `workers` runs at a time on this machine, each in a process of its own.

    One process a run, not a pool of long-lived workers: a run whose process dies (killed,
    out of memory) is then that one `lost` row. A `ProcessPoolExecutor` breaks whole when one
    of its workers dies: every run in flight or still to do was lost with it (measured: one
    worker killed two runs into six, and all six were `lost`). The processes are forked from
    a forkserver that has imported the run's code once (`FORKSERVER_PRELOAD`), so a run starts in
    milliseconds, with none of this process's state (each run builds its own event loop,
    clock and historian)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, tasks: list[dict[str, Any]], setup: Setup | None) -> Iterator[dict[str, Any]]:
        if not tasks:
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        waiting = list(reversed(tasks))
        running: dict[Connection, tuple[BaseProcess, dict[str, Any]]] = {}
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    task = waiting.pop()
                    receiver, sender = context.Pipe(duplex=False)
                    started = context.Process(target=_run_and_send, args=(task, setup, sender),
                                              name=f"sweep-run-{task['run_id']}")
                    started.start()
                    sender.close()  # the child's copy is its own: EOF here when it dies
                    running[receiver] = (started, task)
                for ready in wait(list(running)):
                    receiver = cast(Connection, ready)
                    ended, task = running.pop(receiver)
                    yield _record_of(receiver, ended, task)
        finally:  # stopped early (Ctrl-C, SIGTERM, an error): the runs in flight stop
            for receiver in running:  # safely, as on SIGINT (`_stop_when_the_sweep_ends`)
                receiver.close()
            for process, _ in running.values():
                process.join(STOP_WAIT_S)
                if process.is_alive():
                    process.kill()
                    process.join()


def _run_and_send(task: dict[str, Any], setup: Setup | None, sender: Connection) -> None:
    """A run's process: the run, its record sent back (run_case never raises for a run that
    fails: its failure is the record). Stopped by the sweep's SIGINT, the run has stopped
    safely and has no record: it is run again on resume."""
    _stop_when_the_sweep_ends(sender)
    try:
        record = run_case(task, setup)
    except KeyboardInterrupt:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: the sweep may close its end now
    with contextlib.suppress(OSError):  # the sweep is gone (killed): nobody to tell
        sender.send(record)
    sender.close()


def _stop_when_the_sweep_ends(sender: Connection) -> None:
    """SIGINT to this run's process once the sweep's end of its pipe closes (POLLERR on ours).

    A sweep killed with -9 (the kernel's out-of-memory killer, a service manager's last
    resort) then has its runs stop safely, as on Ctrl-C, instead of running on as orphans that
    hold their records' locks against the resumed sweep. (The forkserver does not end with the
    sweep: every process it forks holds its liveness pipe, so its parent-death signal could
    not carry this.)"""
    def watch() -> None:
        poller = select.poll()
        poller.register(sender.fileno(), 0)  # POLLERR and POLLHUP are always reported
        poller.poll()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="sweep-watch", daemon=True).start()


def _record_of(receiver: Connection, process: BaseProcess,
               task: dict[str, Any]) -> dict[str, Any]:
    """The record a run's process sent, or `lost` if it ended without sending one."""
    try:
        record: dict[str, Any] = receiver.recv()
    except (EOFError, OSError):
        process.join()
        record = lost(task, ChildProcessError(
            f"the run's process {_ended(process.exitcode)} before it sent its record"))
    else:
        process.join()
    finally:
        receiver.close()
    return record


def _ended(exitcode: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if exitcode is None or exitcode >= 0:
        return f"exited with code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
        return f"was killed by {name} (the kernel's out-of-memory killer, or a kill -9)"
    return f"was killed by {name}"


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
        from distributed import Client  # imported only for a cluster: it is slow
        from distributed import wait as wait_for_futures

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
                        done, pending = wait_for_futures(pending, timeout=POLL_S,
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
