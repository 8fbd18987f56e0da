"""One reactor under control: its parts, and the control tick that drives them.

Each reactor owns its device link, loops, schedule, alarms and interlocks and runs in its own
task, so a slow or failing device never holds up another reactor. The tick reads top to bottom
(docs/architecture.md, "The tick"); what happens around it lives in collaborators with names of
their own: the device link (`DeviceLink`), operator commands (`CommandDesk`), alarms raised
outside the board (`OutsideAlarms`), checkpoints (`Checkpointer`), records (`ReactorJournal`).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import structlog

from controller.alarms.setup import alarm_board
from controller.alarms.state_machine import AlarmState
from controller.alarms.tick_overrun import ALARM as OVERRUN_ALARM
from controller.alarms.tick_overrun import PRIORITY as OVERRUN_PRIORITY
from controller.alarms.tick_overrun import TickOverrun
from controller.clock import Clock
from controller.config import ReactorConfig
from controller.config.hard_limits import configured_interlocks
from controller.config.recipe import PhaseLoop
from controller.control.control_loop import ControlLoop
from controller.control.interlocks import InterlockSet, Trip, supply_interlocks
from controller.control.quality import QualityJudge
from controller.control.schedule import BolusState, FeedSchedule
from controller.control.volume_balance import ALARM as BALANCE_ALARM
from controller.control.volume_balance import VolumeBalance
from controller.estimation.accuracy import AccuracyScore
from controller.estimation.soft_sensor import SoftSensor
from controller.mqtt.outbox import OutboxFullError
from controller.mqtt.presence import ReactorPresence
from controller.operator.bounds import bounds_from_config
from controller.operator.replay import ReplayGuard
from controller.procedure.procedure import Procedure
from controller.runtime.alarm_summary import AlarmSummary
from controller.runtime.checkpointer import Checkpointer
from controller.runtime.command_desk import DEVICE_CUTOUT, CommandDesk, standing_now
from controller.runtime.delivery import DeliveryMonitor
from controller.runtime.device_link import (
    KEEP_ALIVE_WALL_S,
    LINK_ERRORS,
    DeviceLink,
    ReactorCounters,
)
from controller.runtime.historian import Historian
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OUTSIDE_ALARMS, OutsideAlarms
from controller.runtime.probe_standards import ProbeStandards
from controller.runtime.recovery import ReactorCheckpoint, schedule_fingerprint
from drivers.contract.datasheet import PUMPS, RELAY_CLOSED, channel
from drivers.contract.driver import Driver
from drivers.contract.errors import DriverError
from drivers.contract.reading import Reading
from drivers.contract.status import DeviceStatus

log = structlog.get_logger(__name__)

BOLUS_MAX_ML = 20.0
"""The largest bolus an operator may order remotely."""
ALARM_PERIOD_S = 5.0
"""How often the alarm board is evaluated (clock seconds): detection within on-delay + 5 s."""
LATENESS_WINDOW = 100_000


class Reactor:
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
        self.clock = clock
        self.period_s = control_period_s
        self.safe_state = dict(config.safe_state)
        self.loops = [ControlLoop(name, lc, stats_after_s=stats_after_s,
                                  safe_state=config.safe_state)
                      for name, lc in config.loops.items()]
        self.schedule = FeedSchedule(config.schedule)
        self.judge = QualityJudge(config.quality, control_period_s)
        loops_by_pv = {loop.pv: loop for loop in self.loops}
        self.interlocks = InterlockSet(configured_interlocks(config.interlocks.latch),
                                       config.safe_state,
                                       supply_interlocks(config),
                                       lambda pv: loops_by_pv[pv].setpoint)
        self.alarms = alarm_board(config.loops, config.alarm, config.alarm_board)
        self.balance = VolumeBalance(config.volume_balance)
        self.overrun = TickOverrun(control_period_s)
        self.alarm_summary = AlarmSummary()
        """The retained alarm summary last published (controller/runtime/alarm_summary.py)."""
        self.counters = ReactorCounters()
        self.journal = ReactorJournal(self.id, historian)
        self.procedure = (Procedure(config.recipe,
                                    {pump: config.safe_state[pump] for pump in PUMPS},
                                    lambda: standing_now(self.alarms, self.outside_alarms,
                                                         self.interlocks))
                          if config.recipe is not None else None)
        """The recipe's procedure (docs/recipes.md); None: the schedule alone feeds."""
        self.outside_alarms = OutsideAlarms(self.journal,
                                            on_change=lambda: self.checkpoints.request(),
                                            on_raise=self._react_to_outside_alarm)
        self.standards = ProbeStandards(config.standardisation, self.journal,
                                        self.outside_alarms, clock.wall_time,
                                        on_change=lambda: self.checkpoints.request())
        self.link = DeviceLink(driver, clock, self.journal, self.counters,
                               control_period_s=control_period_s, outside=self.outside_alarms)
        self.delivery = DeliveryMonitor(config.schedule.delivery, self.journal,
                                        self.outside_alarms, on_reboot=self.link.forget_written)
        self.soft_sensor = SoftSensor(
            config.soft_sensor,
            on_update=lambda t_s, rows: historian.record_estimates(self.id, t_s, rows),
        ) if config.soft_sensor.enabled else None
        self.checkpoints = Checkpointer(
            loops=self.loops, schedule=self.schedule, delivery=self.delivery, board=self.alarms,
            outside=self.outside_alarms, interlocks=self.interlocks, counters=self.counters,
            journal=self.journal, clock=clock, schedule_fingerprint=schedule_fingerprint(config),
            interval_s=checkpoint_interval_s, control_period_s=control_period_s,
            session=lambda: self.link.driver.session_token, standards=self.standards,
            procedure=self.procedure, soft_sensor=self.soft_sensor)
        self.commands = CommandDesk(
            loops=self.loops, schedule=self.schedule, board=self.alarms,
            outside=self.outside_alarms, journal=self.journal, clock=clock,
            interlocks=self.interlocks, on_interlock=self._record_trip,
            procedure=self.procedure,
            bounds=bounds_from_config(config, self.alarms, bolus_max_ml=BOLUS_MAX_ML,
                                      outside_alarms=(*OUTSIDE_ALARMS,
                                                      *self.standards.alarm_names),
                                      interlocks=[*self.interlocks.names, DEVICE_CUTOUT]))
        self.soft_sensor_score = AccuracyScore()
        """The estimates against the device's ground truth, when it has one (emulators)."""
        self.lateness_s: deque[float] = deque(maxlen=LATENESS_WINDOW)
        """How late each tick started (clock seconds), over the most recent ticks: the jitter."""
        self._last_tick_s: float | None = None
        self._next_alarm_eval_s = float("-inf")
        self._awaiting_device = False
        """The device has not answered yet in this run: nothing is written to it until it does."""
        self._restored = False
        self._takeover_error = ""

    @property
    def driver(self) -> Driver:
        return self.link.driver

    @property
    def presence(self) -> ReactorPresence | None:
        return self.journal.presence

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, restore: ReactorCheckpoint | None = None,
                    restart_policy: str = "resume") -> None:
        """Connect and take over: a new run from the device's current outputs, a continued one
        from its checkpoint (controller/runtime/recovery.py); either way bumplessly, unless the
        device went to its safe state during the outage (status COMM_LOSS_SAFE): then the loops
        regulate from the process, not from the checkpointed outputs (docs/recovery.md). Ends
        with a checkpoint, so a crash from the first tick on can be recovered.

        A device that does not answer yet does not stop the run: a daemon started before its
        device keeps trying (the driver's backoff) and takes over on the first good read
        (`_take_over_late`), with the comm-loss alarm up meanwhile."""
        now = self.clock.now()
        if restore is not None and restore.state.get("device_session") is not None:
            # The same run's master: its dead predecessor's lease is its own.
            self.link.driver.session_token = int(restore.state["device_session"])
        device_outputs = await self._connect(now)
        self._restored = restore is not None
        if restore is None:
            if device_outputs is not None:
                self._take_over(device_outputs)
            self.journal.event(now, "run", "reactor started", {
                "device": self.config.device, "device_reachable": device_outputs is not None})
        else:
            # Before the first heartbeat, which clears the device's COMM_LOSS_SAFE bit.
            status = None if device_outputs is None else await self.link.read_status(now)
            went_safe = status is not None and bool(status & DeviceStatus.COMM_LOSS_SAFE)
            self.checkpoints.restore(restore, restart_policy, now, self.config.device,
                                     on_resumed=lambda bolus: self._feed_event(now, "resumed",
                                                                               bolus),
                                     device_outputs=None if status is None else device_outputs,
                                     went_safe=went_safe)
            if went_safe and device_outputs is not None:
                self._record_went_safe(now, device_outputs, status)
        self.journal.setpoints(now, self.loops)
        self.checkpoints.write(now)

    async def _connect(self, now: float) -> dict[str, float] | None:
        """What the device's outputs hold, or None when it cannot be reached yet."""
        try:
            return await self.link.connect()
        except LINK_ERRORS as exc:
            self._awaiting_device = True
            log.error("device not reachable: the run goes on without it and keeps reconnecting "
                      "with backoff; outputs are written once it answers", reactor=self.id,
                      device=self.config.device, error=str(exc))
            self.journal.event(now, "comm", f"device not reachable at start-up: {exc}",
                               {"link": "down", "error": type(exc).__name__})
            return None

    def _take_over(self, device_outputs: dict[str, float]) -> None:
        """A new run: every loop starts from what its actuator does now (bumpless)."""
        for loop in self.loops:
            loop.take_over(device_outputs[loop.mv])

    def _resume_by_status(self, now: float, device_outputs: dict[str, float],
                          status: DeviceStatus) -> None:
        """A continued run whose device answered only after the restart: what
        `Checkpointer.restore` does for a device there at once (docs/recovery.md)."""
        went_safe = bool(status & DeviceStatus.COMM_LOSS_SAFE)
        for loop in self.loops:
            loop.resume_after_outage(device_outputs[loop.mv], went_safe)
        if went_safe:
            self._record_went_safe(now, device_outputs, status)

    async def _take_over_late(self, now: float,
                              readings: dict[str, Reading]) -> dict[str, Reading]:
        """The device answered for the first time in this run: check it as `start` would have
        (map version, protocol id), learn what it holds and take over from that; on a
        continued run, by its status as at a restart. Until this succeeds nothing is written
        to it, so the readings of a device that fails the check are not used either."""
        try:
            device_outputs = await self.link.connect()
        except DriverError as exc:
            if str(exc) != self._takeover_error:
                self._takeover_error = str(exc)
                log.error("device answers but cannot be taken over", reactor=self.id, t_s=now,
                          error=str(exc))
                self.journal.event(now, "comm", f"device cannot be taken over: {exc}",
                                   {"error": type(exc).__name__})
            self.link.read_ok = False  # its readings are not used: the comm-loss alarm judges
            return self.link.comm_failed_readings
        self._awaiting_device = False
        if not self._restored:
            self._take_over(device_outputs)
        else:  # without a status the checkpointed outputs stand, as at any restart
            status = await self.link.read_status(now)  # the heartbeat has not cleared it yet
            if status is not None:
                self._resume_by_status(now, device_outputs, status)
        log.warning("device reachable: control taken over", reactor=self.id, t_s=now,
                    device=self.config.device)
        self.journal.event(now, "run", "device reachable: control taken over",
                           {"device": self.config.device, "device_outputs": device_outputs})
        self.checkpoints.request()
        return readings

    def _record_went_safe(self, now: float, device_outputs: dict[str, float],
                          status: DeviceStatus | None) -> None:
        log.warning("device went safe during the outage: loops restart from the process",
                    reactor=self.id, t_s=now, device_outputs=device_outputs)
        self.journal.event(
            now, "run", "device went to its safe state during the outage (comm-loss watchdog): "
            "loops restart from the process, not from the checkpointed outputs",
            {"device_status": int(status or 0), "device_outputs": dict(device_outputs),
             "loops": {loop.name: loop.mv for loop in self.loops}})

    def attach_presence(self, presence: ReactorPresence, keys: dict[str, bytes],
                        replay: ReplayGuard) -> None:
        """Publish over MQTT from now on and accept commands signed with `keys`."""
        presence.seq = self.checkpoints.telemetry_seq
        self.journal.presence = presence
        self.commands.enable(keys, replay)
        self.publish_settings()

    def publish_settings(self) -> None:
        """Each loop's setpoint as a retained, self-describing setting (on start and on change),
        and its band, read-only: a live trend draws the band without the run file."""
        presence = self.journal.presence
        if presence is None:
            return
        for loop in self.loops:
            config = self.config.loops[loop.name]
            unit = channel(loop.pv).unit
            presence.setting(
                f"{loop.name}.setpoint", value=loop.setpoint, unit=unit,
                minimum=config.min_setpoint, maximum=config.max_setpoint,
                description=f"setpoint of the {loop.name} loop ({loop.pv})")
            presence.setting(
                f"{loop.name}.band", value=config.band, unit=unit, settable=False,
                description=f"the {loop.name} loop is in band within this of its setpoint")

    async def go_safe(self, reason: str) -> None:
        """Put every actuator in its configured safe state, then release the device."""
        await self.link.go_safe(self.safe_state, reason)

    # --- the tick ----------------------------------------------------------------------------
    async def tick(self) -> None:
        """One control tick. Never raises: every failure is counted, logged and recorded."""
        try:
            await self._tick()
        except Exception as exc:  # the tick must survive anything a device or bug throws
            self.counters.tick_errors += 1
            now = self.clock.now()
            log.error("tick failed", reactor=self.id, t_s=now, error=repr(exc))
            self.journal.event(now, "error", f"tick failed: {exc!r}")

    async def _tick(self) -> None:
        now = self.clock.now()
        if self.commands.inbox:
            self._apply_commands(now)
        raw = await self.link.read(now)
        if self._awaiting_device and self.link.read_ok:
            raw = await self._take_over_late(now, raw)
        readings = self.judge.judge(raw, now)
        # Probes corrected against their offline reference before anything acts on them.
        self.standards.apply(readings, now)
        if self.soft_sensor is not None:  # estimates are readings: alarms and control see them
            self.soft_sensor.observe(readings, now)
        if self.commands.device_resets:
            await self.commands.reset_cutouts(readings.get(DEVICE_CUTOUT),
                                              self.link.driver.reset_cutout, now)
        if now >= self._next_alarm_eval_s:
            self._evaluate_alarms(readings, now)
        outputs = self._control(readings, now)
        self.checkpoints.write_if_due(now)  # before the write: what is commanded is on record
        if not self._awaiting_device and self.link.comm_ok:
            # Not while the link is down: the read that found it down has waited out its
            # deadline, and a write and heartbeat would each wait out theirs, stretching the
            # tick (and the board's judgement of the link) threefold. The device's watchdog
            # takes it safe meanwhile, as it must; the next good read resumes both.
            # The heartbeat first: it takes or renews the device's lease (one master per
            # device), which a device asks of a connection before it takes its writes.
            if now >= self.link.next_heartbeat_s:
                await self.link.heartbeat(now)
            await self.link.write_changed(outputs, now)
        self.counters.ticks += 1
        self._record(readings, now)

    async def keep_alive(self) -> None:
        """A heartbeat between ticks once KEEP_ALIVE_WALL_S of wall time has passed without
        one: a control period longer than the device's comm timeout (10 s against the
        emulator's 5 s) would otherwise let its watchdog take it safe every period. Never
        raises; not while the link is down (the next good read resumes the heartbeats, as in
        the tick)."""
        now = self.clock.now()
        link = self.link
        if (self._awaiting_device or not link.comm_ok
                or self.clock.wall_monotonic() - link.heartbeat_sent_wall_s < KEEP_ALIVE_WALL_S):
            return
        try:
            await link.heartbeat(now)
        except Exception as exc:  # as the tick: a heartbeat must not end the run
            self.counters.tick_errors += 1
            log.error("heartbeat failed", reactor=self.id, t_s=now, error=repr(exc))
            self.journal.event(now, "error", f"heartbeat failed: {exc!r}")

    def _apply_commands(self, now: float) -> None:
        self.checkpoints.request()
        self.commands.apply_pending(now, on_applied=self.publish_settings)
        if self.checkpoints.holding_for_operator and not self.schedule.paused:
            self.checkpoints.holding_for_operator = False
            self.outside_alarms.resolve(now, "restart_hold",
                                        "feed schedule resumed by an operator")
        self._publish_alarm_summary(now)  # an acknowledgement or a shelf shows at once

    def _publish_alarm_summary(self, now: float) -> None:
        if self.journal.presence is None:
            return
        changed = self.alarm_summary.changed(self.alarms, self.outside_alarms)
        if changed is not None:
            self.journal.alarm_summary(now, changed)

    def _evaluate_alarms(self, readings: dict[str, Reading], now: float) -> None:
        """The alarm board, every ALARM_PERIOD_S of clock time (its on-delays are longer)."""
        # Half a tick early, so a tick a hair early on the clock does not wait a whole period.
        self._next_alarm_eval_s = now + ALARM_PERIOD_S - 0.5 * self.period_s
        setpoints = {loop.pv: loop.setpoint for loop in self.loops}
        link = self.link
        transitions = self.alarms.evaluate(readings, setpoints, now, link.healthy,
                                           link.read_failure_share, link.unhealthy_since_s)
        if transitions:
            self.checkpoints.request()
            self.journal.alarm_transitions(transitions)
            if self.procedure is not None:
                for tr in transitions:
                    if tr.to_state is AlarmState.UNACK and tr.alarm != "flood":
                        self.procedure.react("alarm", tr.alarm, tr.priority, now)
        overrun = self.overrun.observe(now, self.counters.skipped_ticks)
        if overrun is not None:
            self.outside_alarms.set(now, OVERRUN_ALARM, active=overrun, priority=OVERRUN_PRIORITY,
                                    message=self.overrun.message(),
                                    data={"skipped_share": self.overrun.share})
        change = self.balance.observe(readings, now)
        if change is not None:
            self.outside_alarms.set(now, BALANCE_ALARM, active=change.active,
                                    priority=self.balance.config.priority,
                                    message=change.message)
        self._publish_alarm_summary(now)

    def _control(self, readings: dict[str, Reading], now: float) -> dict[str, float]:
        """The outputs for this tick: loops, then the schedule, then the interlocks over both."""
        schedule = self.schedule
        delivery = self.delivery
        measured_ml = delivery.measure(readings, now)
        if delivery.outage_pending:
            schedule.account_outage(delivery.commanded_rates, measured_ml)
            delivery.booked_outage(measured_ml)
        elif self._last_tick_s is not None:
            schedule.account(delivery.commanded_rates, measured_ml, now - self._last_tick_s,
                             fresh=delivery.fresh)
        self._last_tick_s = now
        if self.procedure is not None:  # after `account`: the last interval's rates stood
            self._step_procedure(readings, now)
        outputs: dict[str, float] = {}
        for loop in self.loops:  # a plain loop: a comprehension is a call of its own in 3.11
            outputs[loop.mv] = loop.step(readings, now)
        outputs["heater_relay"] = RELAY_CLOSED  # only an interlock or the safe state opens it
        outputs.update(schedule.rates(now, self.period_s))
        if schedule.ledger:
            for what, bolus in schedule.ledger:
                self._feed_event(now, what, bolus)
            schedule.ledger.clear()
        for trip in self.interlocks.apply(readings, outputs, now):
            self._record_trip(trip, now)
        if self.interlocks.tripped:
            for loop in self.loops:  # loops follow what the interlocks apply: no wind-up
                loop.follow(outputs[loop.mv])
        delivery.commanded(outputs)
        return outputs

    def _step_procedure(self, readings: dict[str, Reading], now: float) -> None:
        """The recipe's tick: its rates and boluses to the feed schedule, a new phase's loop
        settings to the loops, its transitions on record."""
        procedure = self.procedure
        assert procedure is not None
        step = procedure.step(readings, now)
        schedule = self.schedule
        schedule.set_base_rates(step.rates)
        schedule.set_boluses_wait(step.boluses_wait)
        for order in step.boluses:
            schedule.add_recipe_bolus(order.id, order.volume_ml, order.channel,
                                      order.rate_ml_per_h, now)
        if step.loop_settings:
            self._apply_loop_settings(step.loop_settings, now)
        if procedure.events:
            self.checkpoints.request()
            for t_s, message, data in procedure.events:
                log.info(message, reactor=self.id, t_s=t_s)
                self.journal.event(t_s, "recipe", message, data)
            procedure.events.clear()

    def _apply_loop_settings(self, settings: Mapping[str, PhaseLoop], now: float) -> None:
        loops = {loop.name: loop for loop in self.loops}
        for name, setting in settings.items():
            loop = loops[name]
            pid = loop.pid
            if setting.setpoint is not None and setting.ramp_per_h is not None:
                loop.ramp_to(setting.setpoint, setting.ramp_per_h / 3600.0)
            elif setting.setpoint is not None:
                loop.ramp = None
                pid.setpoint = setting.setpoint
            if setting.mode == "manual":
                assert setting.output is not None  # the config requires it
                pid.set_manual(setting.output)
            elif setting.mode == "auto" and pid.manual:
                pid.set_auto()
        self.journal.setpoints(now, self.loops)
        self.publish_settings()

    def _react_to_outside_alarm(self, now: float, name: str, priority: str) -> None:
        if self.procedure is not None:
            self.procedure.react("alarm", name, priority, now)

    def _record_trip(self, trip: Trip, now: float) -> None:
        self.checkpoints.request()
        event = trip.event
        if event == "cleared":
            verb = "condition cleared, latched until an operator resets it,"
        elif trip.by is not None:
            verb = f"reset by {trip.by}: {trip.reason} (reading"
        else:
            verb = event
        text = f"{trip.name} {verb} at {trip.value:.4g}" + (")" if trip.by else "")
        log.warning(f"interlock {event}", reactor=self.id, interlock=trip.name, t_s=now,
                    value=trip.value, by=trip.by)
        self.journal.event(now, "interlock", text,
                           {"interlock": trip.name, "tripped": trip.tripped, "event": event,
                            "latched": trip.name in self.interlocks.latched,
                            "value": trip.value, "by": trip.by, "reason": trip.reason or None})
        if self.procedure is not None and event == "tripped":
            self.procedure.react("interlock", trip.name, None, now)
        if trip.priority is not None and event != "cleared":  # no board alarm covers it
            self.outside_alarms.set(now, trip.name, active=trip.tripped, priority=trip.priority,
                                    message=f"{trip.name}: interlock {text}")

    def _feed_event(self, now: float, what: str, bolus: BolusState) -> None:
        """The feed ledger, on record: each bolus started once, done once (resumed after a
        restart), with the volume measured (delivered) and commanded so far."""
        self.journal.event(now, "feed", f"bolus {bolus.id} {what}: {bolus.delivered_ml:.4g} of "
                           f"{bolus.volume_ml:g} mL {bolus.channel} measured, "
                           f"{bolus.commanded_ml:.4g} mL commanded (due at {bolus.at_s:g} s)",
                           {"bolus": bolus.id, "event": what, "channel": bolus.channel,
                            "volume_ml": bolus.volume_ml, "delivered_ml": bolus.delivered_ml,
                            "commanded_ml": bolus.commanded_ml, "state": bolus.state,
                            "due_t_s": bolus.at_s})
        self.delivery.bolus_event(now, what, bolus)

    def _record(self, readings: dict[str, Reading], now: float) -> None:
        written = self.link.written
        self.journal.historian.record_tick(self.id, now, readings, written)
        presence = self.journal.presence
        if presence is None:
            return
        try:
            presence.tick(now, {**readings, **self.standards.telemetry},
                          {lp.name: lp.setpoint for lp in self.loops},
                          written, {lp.name: lp.mode for lp in self.loops},
                          recipe=None if self.procedure is None else self.procedure.telemetry)
        except OutboxFullError as exc:
            # The historian still has every tick; telemetry resumes once there is room.
            if "outbox_full" not in self.outside_alarms.unacknowledged:
                log.error("telemetry outbox full", reactor=self.id, error=str(exc))
                self.outside_alarms.set(now, "outbox_full", active=True,
                                        message=f"telemetry outbox full: {exc}", publish=False)
