"""The daemon: builds the reactors from a config, runs their ticks and the record keeping, and
shuts everything down safely on completion or on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from controller.clock import Clock
from controller.config import Config, ConfigError, safety_warnings
from controller.mqtt.link import MqttSettings
from controller.mqtt.node import NodePresence
from controller.operator.nonce_store import FILE_NAME as NONCE_FILE
from controller.operator.nonce_store import NonceStore
from controller.operator.replay import ReplayGuard
from controller.runtime.device_link import KEEP_ALIVE_WALL_S
from controller.runtime.garbage_collection import SETTLE_PERIODS, StartUpObjects, TickCollections
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.reactor_summary import reactor_summary
from controller.runtime.recovery import (
    Recovery,
    RunLock,
    check_continuable,
    load_recovery,
    remove_records,
)
from controller.runtime.tick_groups import tick_forever, tick_groups
from controller.runtime.writer_child import ALARM as WRITER_ALARM
from controller.runtime.writer_child import FILE_ALARM as RECORDS_FILE_ALARM
from controller.runtime.writer_child import PRIORITY as WRITER_PRIORITY
from controller.runtime.writer_child import DownAlarm, WriterChild
from drivers.contract.driver import Driver
from drivers.contract.errors import DriverNotFoundError
from drivers.contract.registry import driver_factory
from drivers.contract.urls import DeviceAddress, parse_device_url

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[float, float, int], None]
"""progress(simulated_s, duration_s, ticks) called about 200 times per run."""


@dataclass
class RunOptions:
    config: Config
    config_text: str
    db_path: Path | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    progress: ProgressCallback | None = None
    historian_in_process: bool = False
    """Write the records in this process rather than in a writer child (Historian's
    `in_process`): for a sweep worker, whose siblings keep every core busy already."""
    start_over: bool = False
    """A run id found on disk is not continued: its records are removed, under the run's
    lock, and it runs from the beginning (a sweep's run, run again after it was interrupted
    or failed). Under the lock, because a Dask cluster may start a task again while the first
    attempt still runs (a worker taken for dead): that attempt keeps its file, and the second
    waits for it, then is refused."""


def reactor_seed(run_seed: int, index: int) -> int:
    """Independent, reproducible streams per reactor from the one run seed."""
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1, dtype=np.uint64)[0])


Device = tuple[DeviceAddress, Callable[..., Driver]]
"""A reactor's device address and the factory of its driver."""


def open_reactor_driver(
    config: Config, index: int, now: Callable[[], float], device: Device | None = None
) -> Driver:
    """Build reactor `index`'s driver; a bad device URL or chamber table is a ConfigError.

    `device`: the reactor's entry of `config_devices(config)`, when the caller has them.

    Virtual time is only for in-process devices: a wire driver waiting on a real link under
    virtual time would see every timeout fire at once.
    """
    reactor = config.reactor[index]
    speed = config.run.speed
    if speed is None and config.mqtt is not None:
        raise ConfigError("mqtt: publishing to a broker needs real or scaled time (run.speed or "
                          "--speed a number, e.g. 1 or 100), not 'max'")
    address, factory = device if device is not None else config_devices(config, [index])[0]
    if speed is None and not getattr(factory, "in_process", False):
        raise ConfigError(
            f"reactor[{index}].device = {reactor.device!r} is a real link: run it in real or "
            "scaled time (run.speed or --speed a number, e.g. 1 or 600), not 'max'"
        )
    options = dict(reactor.chamber)
    faults = config.faults_for(index)
    if faults:
        options["faults"] = [*options.get("faults", []), *faults]
    try:
        return factory(address, now=now, seed=reactor_seed(config.run.seed, index),
                       options=options, time_scale=speed or 1.0)
    except ValueError as exc:
        raise ConfigError(f"reactor[{index}].chamber: {exc}") from None


def config_devices(config: Config, indices: Sequence[int] | None = None) -> list[Device]:
    """The reactors' (all, or those of `indices`) devices; a bad URL is a ConfigError.

    Each scheme's driver is looked up once: the entry-point scan behind a lookup takes
    milliseconds, seconds for a fleet of a thousand reactors.
    """
    factories: dict[str, Callable[..., Driver]] = {}
    devices = []
    for index in range(len(config.reactor)) if indices is None else indices:
        reactor = config.reactor[index]
        try:
            address = parse_device_url(reactor.device)
            if address.scheme not in factories:
                factories[address.scheme] = driver_factory(address.scheme)
        except (ValueError, DriverNotFoundError) as exc:
            raise ConfigError(f"reactor[{index}].device = {reactor.device!r}: {exc}") from None
        devices.append((address, factories[address.scheme]))
    return devices


def in_process(device: Device) -> bool:
    """Whether the device lives inside this process (and dies with it)."""
    return bool(getattr(device[1], "in_process", False))


DIAGNOSTICS_FLUSH_EVERY = 10
"""Reactors whose diagnostics (~80 rows each) go to the historian in one hand-over: a 1,000-
reactor fleet's in one were 83,000 rows, 15-40 ms of pickling and sending that held the
tick that carried them."""


def default_db_path(run_id: str) -> Path:
    return Path("runs") / f"{run_id}.sqlite"


INTERRUPTED = "interrupted"
"""A run's `stopped_by` when it ended neither at its duration nor by `Run.stop`: cancelled
(a Ctrl-C during the start-up, before the run's own signal handlers are in place, reaches the
event loop's runner, which cancels the run) or an error. Before, such a run's records said
`safe state: completed`."""


class Run:
    """One run of one or more reactors. Use `await Run(options).execute()` inside `clock.run`."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.config = options.config
        self.db_path = options.db_path or default_db_path(options.run_id)
        self.stopped_by = INTERRUPTED
        """Why the run ended: `completed` once its ticks reach the duration, the reason given
        to `stop` (a signal, an operator), or INTERRUPTED for anything else."""
        self.resumed_from_s = 0.0
        """Where this process took the run over: later than 0 when continued after a crash."""
        self._stop = asyncio.Event()
        self._in_process: list[bool] = []
        self._node: NodePresence | None = None
        """The daemon's one MQTT connection and outbox, once a reactor is attached."""
        self._outbox_lock: RunLock | None = None
        """Held while this daemon owns its outbox: two daemons draining one file would send
        each other's messages and delete each other's rows."""

    async def execute(self) -> dict[str, Any]:
        """Run to the end (or a stop); a run id found on disk is continued (recovery.py)."""
        lock = RunLock(self.db_path)
        try:
            # Before anything is written: a daemon refused its outbox leaves no run behind.
            self._outbox_lock = self._lock_outbox()
            if self.options.start_over:
                remove_records(self.db_path)
            recovery = load_recovery(self.db_path, self.options.run_id)
            with StartUpObjects() as start_up:
                return await self._execute(lock, recovery, start_up)
        finally:
            if self._outbox_lock is not None:
                self._outbox_lock.release()
            lock.release()

    async def _execute(self, lock: RunLock, recovery: Recovery | None,
                       start_up: StartUpObjects) -> dict[str, Any]:
        run_cfg = self.config.run
        devices = config_devices(self.config)
        self._in_process = [in_process(d) for d in devices]
        start_s = 0.0
        if recovery is not None:
            check_continuable(recovery, self.config.reactor,
                              self._in_process)
            start_s = recovery.start_s(Clock.wall_time(), run_cfg.speed or 1.0)
            log.warning("continuing run", run_id=self.options.run_id, t_s=start_s,
                        previous_stop=recovery.previous_stop or "killed",
                        policy=run_cfg.restart_policy)
        self.resumed_from_s = start_s
        clock = Clock(start_s)
        wall_start = clock.wall_monotonic()
        historian = Historian(self.db_path, RunInfo(
            run_id=self.options.run_id,
            started_wall_iso=dt.datetime.fromtimestamp(clock.wall_time(), dt.UTC).isoformat(),
            seed=run_cfg.seed,
            control_period_s=run_cfg.control_period_s,
            config_toml=self.options.config_text,
            reactors=[(r.id, r.device) for r in self.config.reactor],
        ), lock_fd=lock.fd, in_process=self.options.historian_in_process)
        reactors = [
            Reactor(
                rc,
                open_reactor_driver(self.config, i, clock.now, devices[i]),
                clock,
                historian,
                control_period_s=run_cfg.control_period_s,
                stats_after_s=run_cfg.band_after_s,
                checkpoint_interval_s=run_cfg.checkpoint_interval_s,
            )
            for i, rc in enumerate(self.config.reactor)
        ]
        for index, warning in safety_warnings(self.config):
            historian.record_event(reactors[index].id, clock.now(), "config_warning", warning)
        summary: dict[str, Any] = {}
        try:
            for reactor in reactors:
                await reactor.start(
                    None if recovery is None else recovery.checkpoints[reactor.id],
                    run_cfg.restart_policy)
                self._attach_presence(reactor, clock)
            historian.drain()
            start_up.built()
            with self._signals_stop():
                await self._run_tasks(clock, reactors, historian, start_up)
        finally:
            diagnostics = {}
            final_state = "done" if self.stopped_by == "completed" else "stopping"
            for reactor in reactors:
                diagnostics[reactor.id] = await reactor.driver.diagnostics()
                historian.record_diagnostics(reactor.id, clock.now(), diagnostics[reactor.id])
                await reactor.go_safe(self.stopped_by)
                if reactor.presence is not None:
                    reactor.presence.stop(final_state)
            if self._node is not None:  # each reactor's final status, then the node's
                await self._node.stop(final_state)
            summary = self._summary(clock, reactors, diagnostics, wall_start)
            if self._node is not None:
                summary["mqtt"] = self._node.summary()
            await asyncio.to_thread(historian.close, summary)
            summary["wall_seconds"] = clock.wall_monotonic() - wall_start
        return summary

    def _attach_presence(self, reactor: Reactor, clock: Clock) -> None:
        """Give a started reactor its MQTT presence, when the config has a broker."""
        mqtt = self.config.mqtt
        if mqtt is None:
            return
        if self._node is None:
            settings = MqttSettings.from_url(mqtt.url, ca_file=mqtt.ca_file,
                                             cert_file=mqtt.cert_file, key_file=mqtt.key_file,
                                             client_id=mqtt.client_id)
            node_id = mqtt.node_id or mqtt.client_id or self.options.run_id
            outbox = self._outbox_path(mqtt.outbox)
            try:
                self._node = NodePresence(
                    node_id, settings, outbox, clock,
                    run_id=self.options.run_id, time_scale=self.config.run.speed or 1.0,
                    legacy_outboxes=[self._legacy_outbox_path(mqtt.outbox, rc.id)
                                     for rc in self.config.reactor])
            except ValueError as exc:
                raise ConfigError(f"mqtt.node_id (default: mqtt.client_id, else the run id) "
                                  f"{node_id!r}: {exc}") from None
        node = self._node
        presence = node.add_reactor(reactor.id, reactor.commands.receive)
        reactor.attach_presence(presence, {op.name: op.key() for op in self.config.operator},
                                ReplayGuard(mqtt.max_skew_s, store=NonceStore(
                                    self.db_path.parent / NONCE_FILE, reactor.id),
                                    now_wall_s=clock.wall_time()))
        if len(node.reactors) == len(self.config.reactor):
            node.start()  # every reactor on board: the birth lists them all

    def _lock_outbox(self) -> RunLock | None:
        """The daemon's outbox, locked (None without a broker); ConfigError when another
        running controller holds it."""
        if self.config.mqtt is None:
            return None
        outbox = self._outbox_path(self.config.mqtt.outbox)
        try:
            return RunLock(outbox, wait_s=0.0)
        except ConfigError:
            raise ConfigError(
                f"mqtt outbox {outbox} is in use by another running controller: give each "
                "daemon its own --db folder or [mqtt] outbox") from None

    def _outbox_path(self, configured: str | None) -> Path:
        """One outbox per daemon, shared by its runs (so a killed run's unsent messages go out
        with the next run's), beside the run's database unless the config names one."""
        return self.db_path.parent / "outbox.sqlite" if configured is None else Path(configured)

    def _legacy_outbox_path(self, configured: str | None, reactor_id: str) -> Path:
        """Where the older layout kept a reactor's own outbox (drained into the node's)."""
        if configured is None:
            return self.db_path.parent / f"outbox-{reactor_id}.sqlite"
        outbox = Path(configured)
        return outbox.with_name(f"{outbox.stem}-{reactor_id}{outbox.suffix}")

    def stop(self, reason: str) -> None:
        self.stopped_by = reason
        self._stop.set()

    async def _run_tasks(
        self, clock: Clock, reactors: list[Reactor], historian: Historian,
        start_up: StartUpObjects,
    ) -> None:
        run_cfg = self.config.run
        virtual_time = run_cfg.speed is None
        # In virtual time no tick waits on another's pause, and collecting after every group
        # would cost more than the allocation counts' own schedule.
        collections = None if virtual_time else TickCollections(clock)
        async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as group:
            if collections is not None:
                stack.enter_context(collections)
            after_group = None if collections is None else collections.after_group
            groups = tick_groups(self._in_process, virtual_time=virtual_time,
                                 period_s=run_cfg.control_period_s, speed=run_cfg.speed or 1.0)
            ticks = [group.create_task(self._tick_forever(clock, [reactors[i] for i in g.members],
                                                          g.offset_s, after_group,
                                                          g.first_spread_s),
                                       name=f"tick-{reactors[g.members[0]].id}")
                     for g in groups]
            last_start_s = max(g.offset_s for g in groups)
            helpers = [
                *(group.create_task(self._keep_alive_forever(clock, reactor),
                                    name=f"heartbeat-{reactor.id}")
                  for reactor, local in zip(reactors, self._in_process, strict=True)
                  if not local),
                group.create_task(self._record_forever(clock, reactors, historian)),
                group.create_task(self._progress_forever(clock, reactors)),
                group.create_task(self._settle(clock, start_up, collections, last_start_s)),
            ]
            stop_wait = group.create_task(self._stop.wait())
            done = asyncio.gather(*ticks)
            first: list[asyncio.Future[Any]] = [done, stop_wait]
            await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
            if done.done() and not self._stop.is_set():
                self.stopped_by = "completed"
            for task in [*ticks, *helpers, stop_wait]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await done
        log.info("run ended", stopped_by=self.stopped_by, t_s=clock.now(),
                 duration_s=run_cfg.duration)

    async def _tick_forever(self, clock: Clock, reactors: list[Reactor], offset_s: float = 0.0,
                            after_group: Callable[[], None] | None = None,
                            first_spread_s: float = 0.0) -> None:
        await tick_forever(clock, reactors, offset_s=offset_s,
                           period_s=self.config.run.control_period_s,
                           duration_s=self.config.run.duration, stopped=self._stop,
                           after_group=after_group, first_spread_s=first_spread_s)

    async def _keep_alive_forever(self, clock: Clock, reactor: Reactor) -> None:
        """Heartbeats for a device on a real link between the ticks, whatever the period
        (`Reactor.keep_alive`): a look every half KEEP_ALIVE_WALL_S of wall time, which finds
        the tick's own heartbeats enough when the ticks come a second apart or faster."""
        step_s = 0.5 * KEEP_ALIVE_WALL_S * (self.config.run.speed or 1.0)  # wall to clock
        while not self._stop.is_set():
            await clock.sleep_until(clock.now() + step_s)
            await reactor.keep_alive()

    async def _record_forever(
        self, clock: Clock, reactors: list[Reactor], historian: Historian
    ) -> None:
        run_cfg = self.config.run
        next_diag = 0.0
        writer_down = DownAlarm()
        while not self._stop.is_set():
            now = clock.now()
            if now >= next_diag:
                for i, reactor in enumerate(reactors, 1):
                    await asyncio.sleep(0)  # a fleet's ticks go on between two reactors
                    truth = await reactor.driver.diagnostics()
                    historian.record_diagnostics(reactor.id, now, truth)
                    if truth and reactor.soft_sensor is not None:
                        reactor.soft_sensor_score.add(now, reactor.soft_sensor.current(now),
                                                      truth)
                    if i % DIAGNOSTICS_FLUSH_EVERY == 0:
                        historian.flush()
                next_diag = now + run_cfg.diagnostics_interval_s
            historian.flush()
            if historian.writer is not None:
                _raise_records_alarms(now, reactors, historian.writer, writer_down)
            await clock.sleep_until(now + run_cfg.flush_interval_s)

    async def _settle(self, clock: Clock, start_up: StartUpObjects,
                      collections: TickCollections | None, last_start_s: float) -> None:
        """Collection back on once every reactor has made its first SETTLE_PERIODS ticks (the
        last group starts `last_start_s` into the run)."""
        await clock.sleep_until(clock.now() + last_start_s
                                + SETTLE_PERIODS * self.config.run.control_period_s)
        start_up.settled()
        if collections is not None:
            collections.start()

    async def _progress_forever(self, clock: Clock, reactors: list[Reactor]) -> None:
        progress = self.options.progress
        if progress is None:
            return
        duration = self.config.run.duration
        step = max(duration / 200.0, self.config.run.control_period_s)
        while not self._stop.is_set():
            progress(clock.now(), duration, reactors[0].counters.ticks)
            await clock.sleep_until(clock.now() + step)

    @contextlib.contextmanager
    def _signals_stop(self) -> Any:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop, f"signal {sig.name}")
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): stop() can still be called directly
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _summary(
        self, clock: Clock, reactors: list[Reactor],
        diagnostics: dict[str, dict[str, float]], wall_start: float,
    ) -> dict[str, Any]:
        per_reactor = {r.id: reactor_summary(r, diagnostics[r.id]) for r in reactors}
        first = per_reactor[reactors[0].id]
        return {
            "run_id": self.options.run_id,
            "db": str(self.db_path),
            "seed": self.config.run.seed,
            "stopped_by": self.stopped_by,
            "control_period_s": self.config.run.control_period_s,
            "simulated_seconds": clock.now(),
            "resumed_from_s": self.resumed_from_s,
            "wall_seconds": clock.wall_monotonic() - wall_start,
            "ticks": first["ticks"],
            # The first reactor's results at top level, so a single-reactor run reads simply.
            "fold_expansion": first["fold_expansion"],
            "viable_cells_per_ml_final": first["viable_cells_per_ml_final"],
            "loops": first["loops"],
            "reactors": per_reactor,
        }


def _raise_records_alarms(now: float, reactors: list[Reactor], writer: WriterChild,
                          writer_down: DownAlarm) -> None:
    """The records' alarms, on every reactor of the run: `historian_down` as it changes, and
    `records_file_removed` (one-shot) for each time the file was removed or moved away."""
    change = writer_down.change(writer)
    if change is not None:
        active, message = change
        for reactor in reactors:
            reactor.outside_alarms.set(now, WRITER_ALARM, active=active,
                                       priority=WRITER_PRIORITY, message=message)
    for message in writer.rescues:
        for reactor in reactors:
            reactor.outside_alarms.set(now, RECORDS_FILE_ALARM, active=True,
                                       priority=WRITER_PRIORITY, message=message)
    writer.rescues.clear()
