"""The daemon: builds the reactors from a config, runs their ticks and the record keeping, and
shuts everything down safely on completion or on SIGINT/SIGTERM."""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import signal
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from controller.clock import Clock
from controller.config import Config, ConfigError, safety_warnings
from controller.mqtt.link import MqttSettings
from controller.mqtt.presence import ReactorPresence
from controller.operator.nonce_store import FILE_NAME as NONCE_FILE
from controller.operator.nonce_store import NonceStore
from controller.operator.replay import ReplayGuard
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.reactor_summary import reactor_summary
from controller.runtime.recovery import Recovery, RunLock, check_continuable, load_recovery
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


def reactor_seed(run_seed: int, index: int) -> int:
    """Independent, reproducible streams per reactor from the one run seed."""
    return int(np.random.SeedSequence([run_seed, index]).generate_state(1, dtype=np.uint64)[0])


def open_reactor_driver(
    config: Config, index: int, now: Callable[[], float]
) -> Driver:
    """Build reactor `index`'s driver; a bad device URL or chamber table is a ConfigError.

    Virtual time is only for in-process devices: a wire driver waiting on a real link under
    virtual time would see every timeout fire at once.
    """
    reactor = config.reactor[index]
    speed = config.run.speed
    if speed is None and config.mqtt is not None:
        raise ConfigError("mqtt: publishing to a broker needs real or scaled time (run.speed or "
                          "--speed a number, e.g. 1 or 100), not 'max'")
    address, factory = _device_factory(config, index)
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


def _device_factory(config: Config, index: int) -> tuple[DeviceAddress, Callable[..., Driver]]:
    reactor = config.reactor[index]
    try:
        address = parse_device_url(reactor.device)
        return address, driver_factory(address.scheme)
    except (ValueError, DriverNotFoundError) as exc:
        raise ConfigError(f"reactor[{index}].device = {reactor.device!r}: {exc}") from None


def device_in_process(config: Config, index: int) -> bool:
    """Whether reactor `index`'s device lives inside this process (and dies with it)."""
    return bool(getattr(_device_factory(config, index)[1], "in_process", False))


def default_db_path(run_id: str) -> Path:
    return Path("runs") / f"{run_id}.sqlite"


class Run:
    """One run of one or more reactors. Use `await Run(options).execute()` inside `clock.run`."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.config = options.config
        self.db_path = options.db_path or default_db_path(options.run_id)
        self.stopped_by = "completed"
        self.resumed_from_s = 0.0
        """Where this process took the run over: later than 0 when continued after a crash."""
        self._stop = asyncio.Event()

    async def execute(self) -> dict[str, Any]:
        """Run to the end (or a stop); a run id found on disk is continued (recovery.py)."""
        lock = RunLock(self.db_path)
        try:
            recovery = load_recovery(self.db_path, self.options.run_id)
            return await self._execute(lock, recovery)
        finally:
            lock.release()

    async def _execute(self, lock: RunLock, recovery: Recovery | None) -> dict[str, Any]:
        run_cfg = self.config.run
        start_s = 0.0
        if recovery is not None:
            check_continuable(recovery, self.config.reactor,
                              [device_in_process(self.config, i)
                               for i in range(len(self.config.reactor))])
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
        ), lock_fd=lock.fd)
        reactors = [
            Reactor(
                rc,
                open_reactor_driver(self.config, i, clock.now),
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
            with self._signals_stop():
                await self._run_tasks(clock, reactors, historian)
        finally:
            diagnostics = {}
            for reactor in reactors:
                diagnostics[reactor.id] = await reactor.driver.diagnostics()
                historian.record_diagnostics(reactor.id, clock.now(), diagnostics[reactor.id])
                await reactor.go_safe(self.stopped_by)
                if reactor.presence is not None:
                    await reactor.presence.stop("done" if self.stopped_by == "completed"
                                                 else "stopping")
            summary = self._summary(clock, reactors, diagnostics, wall_start)
            await asyncio.to_thread(historian.close, summary)
            summary["wall_seconds"] = clock.wall_monotonic() - wall_start
        return summary

    def _attach_presence(self, reactor: Reactor, clock: Clock) -> None:
        """Give a started reactor its MQTT presence, when the config has a broker."""
        mqtt = self.config.mqtt
        if mqtt is None:
            return
        settings = MqttSettings.from_url(mqtt.url, ca_file=mqtt.ca_file, cert_file=mqtt.cert_file,
                                         key_file=mqtt.key_file, client_id=mqtt.client_id)
        presence = ReactorPresence(
            reactor.id, settings, self._outbox_path(mqtt.outbox, reactor.id), clock,
            run_id=self.options.run_id,
            time_scale=self.config.run.speed or 1.0,
            on_command=reactor.commands.receive,
        )
        reactor.attach_presence(presence, {op.name: op.key() for op in self.config.operator},
                                ReplayGuard(mqtt.max_skew_s, store=NonceStore(
                                    self.db_path.parent / NONCE_FILE, reactor.id),
                                    now_wall_s=clock.wall_time()))
        presence.start()

    def _outbox_path(self, configured: str | None, reactor_id: str) -> Path:
        """One outbox per reactor, shared by its runs (so a killed run's unsent messages go out
        with the next run's), beside the run's database unless the config names one."""
        if configured is None:
            return self.db_path.parent / f"outbox-{reactor_id}.sqlite"
        outbox = Path(configured)
        return outbox.with_name(f"{outbox.stem}-{reactor_id}{outbox.suffix}")

    def stop(self, reason: str) -> None:
        self.stopped_by = reason
        self._stop.set()

    async def _run_tasks(
        self, clock: Clock, reactors: list[Reactor], historian: Historian
    ) -> None:
        run_cfg = self.config.run
        async with asyncio.TaskGroup() as group:
            ticks = [group.create_task(self._tick_forever(clock, r), name=f"tick-{r.id}")
                     for r in reactors]
            helpers = [
                group.create_task(self._record_forever(clock, reactors, historian)),
                group.create_task(self._progress_forever(clock, reactors)),
            ]
            stop_wait = group.create_task(self._stop.wait())
            done = asyncio.gather(*ticks)
            await asyncio.wait([done, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            for task in [*ticks, *helpers, stop_wait]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await done
        log.info("run ended", stopped_by=self.stopped_by, t_s=clock.now(),
                 duration_s=run_cfg.duration)

    async def _tick_forever(self, clock: Clock, reactor: Reactor) -> None:
        period = self.config.run.control_period_s
        duration = self.config.run.duration
        n = 0
        t = clock.now()
        start = t  # later than 0 for a run continued after a crash
        periods = math.ceil((duration - start) / period)  # every one a tick made or skipped
        lateness = reactor.lateness_s
        stop = self._stop
        # The stop flag is checked as well as cancellation: a library that swallows a
        # CancelledError (asyncio.wait_for on 3.11 can, in a race) must not keep a run alive.
        while t < duration and not stop.is_set():
            lateness.append(clock.now() - t)
            await reactor.tick()
            n += 1
            t = start + n * period
            now = clock.now()
            if now > t:  # overran: skip the ticks we missed rather than bunch them up
                skip_to = int((now - start) // period) + 1
                # Only periods inside the run count as skipped, not those past its end.
                reactor.counters.skipped_ticks += min(skip_to, periods) - n
                n = skip_to
                t = start + n * period
            await clock.sleep_until(t)

    async def _record_forever(
        self, clock: Clock, reactors: list[Reactor], historian: Historian
    ) -> None:
        run_cfg = self.config.run
        next_diag = 0.0
        while not self._stop.is_set():
            now = clock.now()
            if now >= next_diag:
                for reactor in reactors:
                    truth = await reactor.driver.diagnostics()
                    historian.record_diagnostics(reactor.id, now, truth)
                    if truth and reactor.soft_sensor is not None:
                        reactor.soft_sensor_score.add(now, reactor.soft_sensor.current(now),
                                                      truth)
                next_diag = now + run_cfg.diagnostics_interval_s
            historian.flush()
            await clock.sleep_until(now + run_cfg.flush_interval_s)

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
