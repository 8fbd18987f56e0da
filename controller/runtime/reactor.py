"""One reactor's control tick: read, judge, control, schedule, write, record.

Each reactor owns its driver, loops and schedule, and runs in its own task, so a slow or failing
device never holds up another reactor.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

import structlog

from controller.operator import audit
from controller.alarms.setup import alarm_board
from controller.alarms.state_machine import AlarmState, Transition
from controller.alarms.spec import FLOOD
from controller.runtime.clock import Clock
from controller.operator.commands import (
    Command,
    CommandRefused,
    ReplayGuard,
    applied_reply,
    bounds_from_config,
    refused_reply,
    verify,
)
from controller.operator.commands import apply as apply_command
from controller.config import ReactorConfig
from controller.runtime.historian import Historian
from controller.control.interlocks import InterlockSet, default_interlocks, supply_interlocks
from controller.control.control_loop import ControlLoop
from controller.runtime.recovery import ReactorCheckpoint, schedule_fingerprint
from controller.control.schedule import BolusState, FeedSchedule
from controller.mqtt.outbox import OutboxFullError
from controller.control.quality import QualityJudge
from controller.mqtt.presence import ReactorTelemetry
from drivers.contract.datasheet import INPUTS, channel
from drivers.contract.driver import Driver
from drivers.contract.errors import (
    CommTimeoutError,
    ConnectionLostError,
    DriverError,
    FrameError,
    ReadbackError,
)
from drivers.contract.reading import Quality, Reading

log = structlog.get_logger(__name__)

UNACKNOWLEDGED = (AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED)
HEARTBEAT_PERIOD_S = 1.0
BOLUS_MAX_ML = 20.0
"""The largest bolus an operator may order remotely."""
ALARMS = ("outbox_full", "restart_hold", "o2_supply_lost", "co2_supply_lost")
"""Alarms raised outside the alarm board that an operator can acknowledge."""
ALARM_PERIOD_S = 5.0
"""How often the alarm board is evaluated (clock seconds): detection within on-delay + 5 s."""
COUNTERS = ("ticks", "read_errors", "write_errors", "tick_errors", "comm_losses",
            "skipped_ticks", "restarts")
"""Run-long counts, carried across a crash by the checkpoint."""
LATENESS_WINDOW = 100_000
LINK_ERRORS = (ConnectionLostError, CommTimeoutError, FrameError)
"""Errors that mean the link is down or unusable (as opposed to a device refusing a value)."""


class ReactorRuntime:
    def __init__(
        self,
        config: ReactorConfig,
        driver: Driver,
        clock: Clock,
        historian: Historian,
        *,
        control_period_s: float,
        stats_after_s: float,
        checkpoint_interval_s: float = 60.0,
    ) -> None:
        self.id = config.id
        self.config = config
        self.driver = driver
        self.clock = clock
        self.historian = historian
        self.period_s = control_period_s
        self.loops = [ControlLoop(name, lc, stats_after_s=stats_after_s, safe_state=config.safe_state)
                      for name, lc in config.loops.items()]
        self.schedule = FeedSchedule(config.schedule)
        self.judge = QualityJudge(config.quality, control_period_s)
        loops_by_pv = {loop.pv: loop for loop in self.loops}
        self.interlocks = InterlockSet(default_interlocks(), config.safe_state,
                                       supply_interlocks(config),
                                       lambda pv: loops_by_pv[pv].setpoint)
        self.safe_state = dict(config.safe_state)
        self.written: dict[str, float] = {}
        self.ticks = 0
        self.read_errors = 0
        self.write_errors = 0
        self.tick_errors = 0
        self._last_tick_s: float | None = None
        self._last_heartbeat_s = float("-inf")
        self.command_inbox: deque[Command] = deque()
        self._loops_by_name = {loop.name: loop for loop in self.loops}
        self.unacked_alarms: set[str] = set()
        self.outside_first_raised: dict[str, tuple[str, float]] = {}
        """Alarms raised outside the board (ALARMS): name -> (priority, first raised at)."""
        self.alarms = alarm_board(config.loops, config.alarm, config.alarm_board)
        self._next_alarm_eval_s = float("-inf")
        self._operator_keys: dict[str, bytes] = {}
        self._replay = ReplayGuard()
        self._bounds = bounds_from_config(config, bolus_max_ml=BOLUS_MAX_ML,
                                          alarms=[*ALARMS, *self.alarms.alarms])
        self.telemetry: ReactorTelemetry | None = None
        """Set by the runtime when MQTT is configured."""
        self.comm_ok = True
        """The link is up (no link error since the last successful read)."""
        self.read_ok = True
        """The last read succeeded (a device can answer with exceptions on a good link)."""
        self._refusals_logged: set[tuple[str, str]] = set()
        self._read_failures: deque[float] = deque(maxlen=100_000)
        self.comm_losses = 0
        self.skipped_ticks = 0
        self._last_readback_error = ""
        self.lateness_s: deque[float] = deque(maxlen=LATENESS_WINDOW)
        """How late each tick started (clock seconds), over the most recent ticks: the jitter."""
        self.checkpoint_interval_s = checkpoint_interval_s
        self._next_checkpoint_s = float("inf")  # armed by start()
        self._checkpoint_due = False
        self._checkpointed_ledger = -1
        self._schedule_fingerprint = schedule_fingerprint(config)
        self.restarts = 0
        self.telemetry_seq = 0
        """The last telemetry seq used before this process (the runtime continues from it)."""
        self.holding_for_operator = False
        """Restarted under the `hold` policy: the schedule waits for an operator's resume."""
        self._comm_failed_readings: dict[str, Reading] = {
            c.name: Reading(float("nan"), c.unit, 0.0, Quality.COMM_ERROR) for c in INPUTS
        }

    # --- remote operation --------------------------------------------------------------
    def enable_commands(self, keys: dict[str, bytes], replay: ReplayGuard) -> None:
        """Accept commands signed with these operators' keys (none are accepted before)."""
        self._operator_keys = keys
        self._replay = replay

    def receive_command(self, topic: str, payload: bytes) -> None:
        """From the MQTT client: verify now (a refusal is answered and audited at once); a good
        command waits for the next tick, so it never races the control arithmetic."""
        now = self.clock.now()
        wall = self.clock.wall_time()
        try:
            command = verify(payload, self._operator_keys, self._replay, wall, self._bounds)
        except CommandRefused as refusal:
            log.warning("command refused", reactor=self.id, code=refusal.code,
                        message=refusal.message)
            self.historian.record_audit(audit.refused(self.id, now, wall, refusal))
            self._reply(refused_reply(refusal, now))
            return
        self.command_inbox.append(command)

    def _apply_commands(self, now: float) -> None:
        while self.command_inbox:
            command = self.command_inbox.popleft()
            wall = self.clock.wall_time()
            try:
                change = apply_command(command, self, now)
            except CommandRefused as refusal:  # e.g. a manual output for a loop in auto
                self.historian.record_audit(audit.refused(self.id, now, wall, refusal))
                self._reply(refused_reply(refusal, now))
                continue
            self.historian.record_audit(audit.applied(self.id, now, wall, command, change))
            self._event(now, "operator", f"{command.operator}: {command.action} "
                        f"{dict(command.params)} ({command.reason})",
                        {"old": change.old, "new": change.new})
            for loop in self.loops:
                self.historian.record_setpoint(self.id, now, loop.name, loop.pv, loop.mv,
                                               loop.setpoint, loop.mode)
            self.publish_settings()
            self._reply(applied_reply(command, change, now))

    def publish_settings(self) -> None:
        """Each loop's setpoint as a retained, self-describing setting (on start and on change)."""
        if self.telemetry is None:
            return
        for loop in self.loops:
            bounds = self.config.loops[loop.name]
            self.telemetry.setting(
                f"{loop.name}.setpoint", value=loop.setpoint, unit=channel(loop.pv).unit,
                minimum=bounds.min_setpoint, maximum=bounds.max_setpoint,
                description=f"setpoint of the {loop.name} loop ({loop.pv})")

    def _reply(self, body: dict[str, Any]) -> None:
        if self.telemetry is not None:
            self.telemetry.reply(json.dumps(body, sort_keys=True).encode())

    # CommandTarget
    def loop(self, name: str) -> ControlLoop:
        return self._loops_by_name[name]

    def add_bolus(self, volume_ml: float, channel: str, at_s: float) -> None:
        self.schedule.add_bolus(volume_ml, channel, at_s)

    def ack_alarm(self, name: str, operator: str, t_s: float) -> bool:
        if name in self.unacked_alarms:  # raised outside the board (outbox full, ...)
            self.unacked_alarms.discard(name)
            return True
        if name in ALARMS:  # outside the board and already acknowledged (or never raised)
            return False
        alarm = self.alarms[name]
        if alarm.state not in UNACKNOWLEDGED:
            return False
        self._alarm_transitions(alarm.acknowledge(t_s, operator))
        return True

    def shelve_alarm(self, name: str, operator: str, t_s: float, until_s: float,
                     why: str) -> tuple[str, str]:
        return self._board_action(name, operator, why,
                                  lambda: self.alarms.shelve(name, until_s, t_s, operator))

    def unshelve_alarm(self, name: str, operator: str, t_s: float, why: str) -> tuple[str, str]:
        return self._board_action(name, operator, why,
                                  lambda: self.alarms.unshelve(name, t_s, operator))

    def remove_alarm_from_service(self, name: str, operator: str, t_s: float,
                                  why: str) -> tuple[str, str]:
        return self._board_action(name, operator, why,
                                  lambda: self.alarms.remove_from_service(name, t_s, operator))

    def return_alarm_to_service(self, name: str, operator: str, t_s: float,
                                why: str) -> tuple[str, str]:
        return self._board_action(name, operator, why,
                                  lambda: self.alarms.return_to_service(name, t_s, operator))

    def _board_action(self, name: str, operator: str, why: str,
                      act: Callable[[], list[Transition]]) -> tuple[str, str]:
        """One operator action on the board, its transitions on record (`alarm_state` events)
        and on MQTT like any other, carrying who and why so the alarm journal explains itself
        without the audit trail. Returns the alarm's (old, new) state; KeyError, ValueError
        (ShelvingForbidden included) leave the board untouched and reach `commands.apply`."""
        alarm = self.alarms[name]
        before = alarm.state
        transitions = act()
        self._alarm_transitions([replace(tr, reason=f"{tr.reason}; {operator}: {why}")
                                 for tr in transitions])
        return before.value, alarm.state.value

    # --- alarms ----------------------------------------------------------------------------
    def _evaluate_alarms(self, readings: dict[str, Reading], now: float) -> None:
        """The alarm board, every ALARM_PERIOD_S of clock time (its on-delays are longer)."""
        self._next_alarm_eval_s = now + ALARM_PERIOD_S
        setpoints = {loop.pv: loop.setpoint for loop in self.loops}
        self._alarm_transitions(self.alarms.evaluate(
            readings, setpoints, now, self.comm_ok and self.read_ok, self._read_failure_share))

    def _read_failure_share(self, window_s: float) -> float:
        """The share of reads that failed over the last `window_s` (one read per tick)."""
        since = self.clock.now() - window_s
        failed = 0
        for t_s in reversed(self._read_failures):
            if t_s < since:
                break
            failed += 1
        return min(failed * self.period_s / window_s, 1.0)

    def _alarm_transitions(self, transitions: list[Transition]) -> None:
        if transitions:
            self._checkpoint_due = True
        for tr in transitions:
            active = tr.to_state in (AlarmState.UNACK, AlarmState.ACKED)
            self.historian.record_event(self.id, tr.t_s, "alarm_state",
                                        f"{tr.alarm}: {tr.from_state.value} -> "
                                        f"{tr.to_state.value} ({tr.reason})", tr.as_dict())
            if tr.notify and self.telemetry is not None:
                flood = ({"count": tr.count, "alarms": list(tr.alarms)}
                         if tr.alarm == FLOOD else None)
                self.telemetry.alarm(tr.t_s, tr.alarm, active=active,
                                     message=f"{tr.to_state.value}: {tr.reason}", flood=flood)

    def _event(self, now: float, kind: str, message: str,
               data: dict[str, Any] | None = None) -> None:
        """An event goes on record (historian) and on the wire (MQTT), if there is one."""
        self.historian.record_event(self.id, now, kind, message, data)
        if self.telemetry is not None:
            self.telemetry.event(now, kind, message, data)

    def _alarm(self, now: float, name: str, *, active: bool, message: str,
               priority: str | None = None, publish: bool = True) -> None:
        """An alarm outside the board (ALARMS) raised or cleared: unacknowledged until an
        operator acknowledges it, on record as an `alarm` event, on MQTT on `alarms` (unless
        `publish` is False: the outbox itself is full)."""
        data: dict[str, Any] = {"alarm": name, "active": active}
        if priority is not None:
            data["priority"] = priority
        if active:
            self.unacked_alarms.add(name)
            if name not in self.outside_first_raised:
                self.outside_first_raised[name] = (priority or "high", now)
                self._checkpoint_due = True
        self.historian.record_event(self.id, now, "alarm", message, data)
        if publish and self.telemetry is not None:
            self.telemetry.alarm(now, name, active=active, message=message)

    async def start(self, restore: ReactorCheckpoint | None = None,
                    restart_policy: str = "resume") -> None:
        """Connect and take over: a new run from the device's current outputs, a continued one
        from its checkpoint (controller/runtime/recovery.py); either way bumplessly. Ends with a
        checkpoint, so a crash from the first tick on can be recovered."""
        await self.driver.connect()
        now = self.clock.now()
        self.written = await self.driver.read_outputs()
        if restore is None:
            for loop in self.loops:
                loop.take_over(self.written[loop.mv])
            self._event(now, "run", "reactor started", {"device": self.config.device})
        else:
            self._restore(restore, restart_policy, now)
        for loop in self.loops:
            self.historian.record_setpoint(
                self.id, now, loop.name, loop.pv, loop.mv, loop.setpoint, loop.mode
            )
        self.checkpoint(now)

    # --- crash recovery --------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        """Everything a restarted controller needs to carry on (see controller/runtime/recovery.py)."""
        return {
            "schedule_fingerprint": self._schedule_fingerprint,
            "schedule": self.schedule.snapshot(),
            "holding_for_operator": self.holding_for_operator,
            "loops": {loop.name: loop.snapshot() for loop in self.loops},
            "alarms": self.alarms.snapshot(),
            "outside_alarms": {"unacknowledged": sorted(self.unacked_alarms),
                               "first_raised": self.outside_first_raised},
            "interlocks": sorted(self.interlocks.tripped),
            "counters": {name: getattr(self, name) for name in COUNTERS},
            "telemetry_seq": self.telemetry_seq if self.telemetry is None else self.telemetry.seq,
        }

    def checkpoint(self, now: float, *, urgent: bool = True) -> None:
        """Record the checkpoint: urgent ones reach the historian's writer now (with every
        record before them), routine ones with the next flush."""
        self.historian.record_checkpoint(self.id, now, self.clock.wall_time(),
                                         self.checkpoint_state(), urgent=urgent)
        self._checkpoint_due = False
        self._checkpointed_ledger = self.schedule.ledger_version
        self._next_checkpoint_s = now + self.checkpoint_interval_s

    def _restore(self, checkpoint: ReactorCheckpoint, policy: str, now: float) -> None:
        state = checkpoint.state
        for loop in self.loops:
            if loop.name in state["loops"]:
                loop.restore(state["loops"][loop.name])
        self.alarms.restore(state["alarms"])
        self.unacked_alarms = set(state["outside_alarms"]["unacknowledged"])
        self.outside_first_raised = {
            name: (priority, t_s)
            for name, (priority, t_s) in state["outside_alarms"]["first_raised"].items()}
        self.interlocks.tripped = set(state["interlocks"])
        for name in COUNTERS:
            setattr(self, name, state["counters"][name])
        self.restarts += 1
        # Telemetry numbers: past any message sent between the checkpoint and the crash (one
        # per tick at most), so subscribers see a gap for the outage, never a repeated seq.
        self.telemetry_seq = state["telemetry_seq"] + 2 + int(
            (now - checkpoint.t_s) / self.period_s)
        unfinished = self.schedule.restore(state["schedule"])
        self.holding_for_operator = bool(state["holding_for_operator"]) or policy == "hold"
        if self.holding_for_operator:
            self.schedule.paused = True
        outage_s = now - checkpoint.t_s
        self._event(now, "run", f"reactor restarted after {outage_s:.0f} s "
                    f"(restart {self.restarts}, policy {policy})",
                    {"device": self.config.device, "checkpoint_t_s": checkpoint.t_s,
                     "outage_s": outage_s, "policy": policy, "restart": self.restarts,
                     "loop_outputs": {loop.mv: loop.pid.output for loop in self.loops}})
        for bolus in unfinished:
            self._feed_event(now, "resumed", bolus)
        if self.holding_for_operator:
            log.warning("restarted on hold: feed schedule paused until an operator resumes it",
                        reactor=self.id, t_s=now)
            self._alarm(now, "restart_hold", active=True,
                        message="restarted on hold: feed schedule paused until an operator "
                                "sends resume_schedule")

    def _feed_event(self, now: float, what: str, bolus: BolusState) -> None:
        """The feed ledger, on record: each bolus started once, done once (resumed after a
        restart), with the volume credited so far."""
        self._event(now, "feed", f"bolus {bolus.id} {what}: {bolus.delivered_ml:.4g} of "
                    f"{bolus.volume_ml:g} mL {bolus.channel} (due at {bolus.at_s:g} s)",
                    {"bolus": bolus.id, "event": what, "channel": bolus.channel,
                     "volume_ml": bolus.volume_ml, "delivered_ml": bolus.delivered_ml,
                     "due_t_s": bolus.at_s})

    async def tick(self) -> None:
        """One control tick. Never raises: every failure is counted, logged and recorded."""
        try:
            await self._tick()
        except Exception as exc:  # the tick must survive anything a device or bug throws
            self.tick_errors += 1
            now = self.clock.now()
            log.error("tick failed", reactor=self.id, t_s=now, error=repr(exc))
            self._event(now, "error", f"tick failed: {exc!r}")

    async def _tick(self) -> None:
        clock = self.clock
        now = clock.now()
        if self.command_inbox:
            self._checkpoint_due = True
            self._apply_commands(now)
            if self.holding_for_operator and not self.schedule.paused:
                self.holding_for_operator = False
                self.unacked_alarms.discard("restart_hold")
                self._alarm(now, "restart_hold", active=False,
                            message="feed schedule resumed by an operator")
        readings = self.judge.judge(await self._read(now), now)
        if now >= self._next_alarm_eval_s:
            self._evaluate_alarms(readings, now)
        if self._last_tick_s is not None:
            self.schedule.account(self.written, now - self._last_tick_s)
        self._last_tick_s = now
        commands: dict[str, float] = {}
        for loop in self.loops:
            commands[loop.mv] = loop.step(readings, now)
        schedule = self.schedule
        commands.update(schedule.rates(now, self.period_s))
        if schedule.ledger:
            for what, bolus in schedule.ledger:
                self._feed_event(now, what, bolus)
            schedule.ledger.clear()
        for trip in self.interlocks.apply(readings, commands, now):
            self._checkpoint_due = True
            verb = "tripped" if trip.tripped else "reset"
            log.warning(f"interlock {verb}", reactor=self.id, interlock=trip.name, t_s=now,
                        value=trip.value)
            self._event(now, "interlock", f"{trip.name} {verb} at {trip.value:.4g}",
                        {"interlock": trip.name, "tripped": trip.tripped, "value": trip.value})
            if trip.priority is not None:  # no alarm-board alarm covers it: raise its own
                self._alarm(now, trip.name, active=trip.tripped, priority=trip.priority,
                            message=f"{trip.name}: interlock {verb} at {trip.value:.4g}")
        if self.interlocks.tripped:
            for loop in self.loops:  # loops follow what the interlocks apply: no wind-up
                loop.follow(commands[loop.mv])
        if self._checkpoint_due or schedule.ledger_version != self._checkpointed_ledger:
            self.checkpoint(now)  # before the write: what is commanded is on record first
        elif now >= self._next_checkpoint_s:
            self.checkpoint(now, urgent=False)
        written = self.written
        changed = {name: value for name, value in commands.items() if written.get(name) != value}
        if changed:
            await self._write(changed, now)
        if now - self._last_heartbeat_s >= HEARTBEAT_PERIOD_S:
            self._last_heartbeat_s = now
            try:
                await self.driver.heartbeat()
            except DriverError as exc:
                self._comm_failed(now, "heartbeat", exc)
        self.ticks += 1
        self.historian.record_tick(self.id, now, readings, written)
        if self.telemetry is not None:
            try:
                self.telemetry.tick(now, readings, {lp.name: lp.setpoint for lp in self.loops},
                                    written, {lp.name: lp.mode for lp in self.loops})
            except OutboxFullError as exc:
                # The historian still has every tick; telemetry resumes once there is room.
                if "outbox_full" not in self.unacked_alarms:
                    log.error("telemetry outbox full", reactor=self.id, error=str(exc))
                    self._alarm(now, "outbox_full", active=True,
                                message=f"telemetry outbox full: {exc}", publish=False)

    async def _read(self, now: float) -> dict[str, Reading]:
        try:
            readings = await self.driver.read()
        except DriverError as exc:
            self.read_errors += 1
            self.read_ok = False
            self._read_failures.append(now)
            self._comm_failed(now, "read", exc)
            return self._comm_failed_readings
        self.read_ok = True
        if self._refusals_logged:
            self._refusals_logged.clear()
        if not self.comm_ok:
            self.comm_ok = True
            log.warning("comm restored", reactor=self.id, t_s=now)
            self._event(now, "comm", "comm restored", {"link": "up"})
        return readings

    def _comm_failed(self, now: float, what: str, exc: DriverError) -> None:
        """Record every failure (historian); log a refusal once until a read gets through,
        not once per tick of a device answering "busy" for hours.

        After an outage the device may have gone to its own safe state, so every output is
        written afresh on the first tick that gets through.
        """
        self._event(now, "comm", f"{what} failed: {exc}",
                                    {"error": type(exc).__name__})
        if isinstance(exc, LINK_ERRORS):
            self.written = {}
            if self.comm_ok:
                self.comm_ok = False
                self.comm_losses += 1
                log.error("comm loss", reactor=self.id, t_s=now, error=str(exc))
                # An event, not an alarm: the board's comm_loss (30 s on-delay) and
                # comm_errors alarms judge the link, so a flaky one is not an alarm per frame.
                self._event(now, "comm", f"comm loss: {exc}", {"link": "down"})
        elif (what, str(exc)) not in self._refusals_logged:
            self._refusals_logged.add((what, str(exc)))
            log.warning(f"{what} failed (logged once until a read succeeds)", reactor=self.id,
                        t_s=now, error=str(exc))

    async def _write(self, changed: dict[str, float], now: float) -> None:
        try:
            await self.driver.write(changed)
        except ReadbackError as exc:
            # The device took the command but holds a limited value (gas mix over 100 %, a pump
            # slower than its datasheet). Resending would fail the same way every tick: record
            # it once per kind of mismatch and treat the command as sent.
            self.write_errors += 1
            if str(exc) != self._last_readback_error:
                self._last_readback_error = str(exc)
                log.warning("write limited by the device", reactor=self.id, t_s=now,
                            error=str(exc))
                self._event(now, "device", f"write limited: {exc}",
                                            {"commands": changed})
        except DriverError as exc:
            self.write_errors += 1
            self._comm_failed(now, "write", exc)
            return
        else:
            self._last_readback_error = ""
        self.written.update(changed)

    async def go_safe(self, reason: str) -> None:
        """Put every actuator in its configured safe state, then release the device."""
        now = self.clock.now()
        try:
            await self.driver.write(self.safe_state)
            self.written.update(self.safe_state)
            self._event(now, "safe_state", f"safe state: {reason}",
                                        self.safe_state)
        except DriverError as exc:
            self.write_errors += 1
            log.error("safe state write failed", reactor=self.id, error=str(exc))
            self._event(now, "error", f"safe state failed: {exc}")
        finally:
            await self.driver.close()

    def summary(self, diagnostics: dict[str, float]) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.config.device,
            "ticks": self.ticks,
            "fold_expansion": diagnostics.get("fold_expansion"),
            "viable_cells_per_ml_final": diagnostics.get("viable_cells_per_ml"),
            "boluses_done": self.schedule.boluses_done,
            "restarts": self.restarts,
            "boluses_scheduled": len(self.schedule.boluses),
            "errors": {"read": self.read_errors, "write": self.write_errors,
                       "tick": self.tick_errors},
            "comm_losses": self.comm_losses,
            "skipped_ticks": self.skipped_ticks,
            "mqtt": None if self.telemetry is None else self.telemetry.summary(),
            "alarms": sorted(
                [{"name": f.name, "priority": f.priority, "first_raised_t_s": f.t_s}
                 for f in self.alarms.first_raised]
                + [{"name": name, "priority": priority, "first_raised_t_s": t_s}
                   for name, (priority, t_s) in self.outside_first_raised.items()],
                key=lambda a: (a["first_raised_t_s"], a["name"])),
            "interlocks": [{"name": t.name, "t_s": t.t_s, "tripped": t.tripped}
                           for t in self.interlocks.history],
            "tick_lateness_s": _percentiles(self.lateness_s),
            "loops": {
                loop.name: {
                    "pv": loop.pv,
                    "mv": loop.mv,
                    "setpoint": loop.setpoint,
                    "band": loop.stats.band,
                    "within_band_fraction": loop.stats.within_band_fraction,
                    "iae": loop.stats.iae,
                    "max_abs_error": loop.stats.max_abs_error,
                    "held_ticks": loop.stats.held,
                }
                for loop in self.loops
            },
        }


def _percentiles(values: deque[float]) -> dict[str, float] | None:
    if not values:
        return None
    p50, p99 = np.percentile(np.fromiter(values, float, len(values)), [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(max(values)), "n": len(values)}
