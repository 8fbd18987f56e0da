"""One reactor's checkpoints: what a restarted controller needs to carry on, when it is written,
and how a continued run takes it back (docs/recovery.md).

Written at once (urgent: handed to the historian's writer with every record before it) on a feed
ledger change, an applied command, an alarm or interlock change; otherwise every
`checkpoint_interval_s` with the next flush. Always before the tick writes to the device, so
what is commanded is on record first.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import structlog

from controller.alarms.board import AlarmBoard
from controller.clock import Clock
from controller.control.control_loop import ControlLoop
from controller.control.interlocks import InterlockSet
from controller.control.schedule import BolusState, FeedSchedule
from controller.estimation.soft_sensor import SoftSensor
from controller.procedure.procedure import Procedure
from controller.runtime.delivery import DeliveryMonitor
from controller.runtime.device_link import ReactorCounters
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from controller.runtime.probe_standards import ProbeStandards
from controller.runtime.recovery import ReactorCheckpoint

log = structlog.get_logger(__name__)

_COUNTER_NAMES = tuple(counter.name for counter in fields(ReactorCounters))
"""The counters in the checkpoint, in their order: `dataclasses.asdict` made the same dict of
ints (deep copies of ints are the ints) at ~30 us a checkpoint, a third of `state()`."""


class Checkpointer:
    def __init__(self, *, loops: Sequence[ControlLoop], schedule: FeedSchedule,
                 delivery: DeliveryMonitor,
                 board: AlarmBoard, outside: OutsideAlarms, interlocks: InterlockSet,
                 counters: ReactorCounters, journal: ReactorJournal, clock: Clock,
                 schedule_fingerprint: str, interval_s: float, control_period_s: float,
                 session: Callable[[], int | None] = lambda: None,
                 standards: ProbeStandards | None = None,
                 procedure: Procedure | None = None,
                 soft_sensor: SoftSensor | None = None) -> None:
        """`session()`: the driver's lease token, carried so a restart is the same master;
        `standards`: the probes' corrections, so a restart does not step the pH the loop
        holds back to the uncorrected probe; `soft_sensor`: its filter, so the estimates a
        recipe's exits and feeding read carry on at a restart instead of starting afresh
        from the first density with a wide prior."""
        self._standards = standards
        self._soft_sensor = soft_sensor
        self._procedure = procedure
        self._loops = loops
        self._session = session
        self._schedule = schedule
        self._delivery = delivery
        self._board = board
        self._outside = outside
        self._interlocks = interlocks
        self._counters = counters
        self._journal = journal
        self._clock = clock
        self._fingerprint = schedule_fingerprint
        self._interval_s = interval_s
        self._period_s = control_period_s
        self._next_s = float("inf")  # armed by the first write
        self._due = False
        self._ledger_version = -1
        self.telemetry_seq = 0
        """The last telemetry seq used before this process (the presence continues from it)."""
        self.holding_for_operator = False
        """Restarted under the `hold` policy: the schedule waits for an operator's resume."""

    def request(self) -> None:
        """Something worth a checkpoint changed: write one before the tick's write."""
        self._due = True

    def write_if_due(self, now: float) -> None:
        if self._due or self._schedule.ledger_version != self._ledger_version:
            self.write(now)
        elif now >= self._next_s:
            self.write(now, urgent=False)

    def write(self, now: float, *, urgent: bool = True) -> None:
        """Urgent checkpoints reach the historian's writer now, routine ones with the next
        flush."""
        self._journal.historian.record_checkpoint(self._journal.reactor_id, now,
                                                  self._clock.wall_time(), self.state(),
                                                  urgent=urgent)
        self._due = False
        self._ledger_version = self._schedule.ledger_version
        self._next_s = now + self._interval_s

    def state(self) -> dict[str, Any]:
        """Everything a restarted controller needs to carry on."""
        return {
            "schedule_fingerprint": self._fingerprint,
            "schedule": self._schedule.snapshot(),
            "delivery": self._delivery.snapshot(),
            "holding_for_operator": self.holding_for_operator,
            "loops": {loop.name: loop.snapshot() for loop in self._loops},
            "alarms": self._board.snapshot(),
            "outside_alarms": self._outside.snapshot(),
            "interlocks": self._interlocks.snapshot(),
            "counters": {name: getattr(self._counters, name) for name in _COUNTER_NAMES},
            "telemetry_seq": self._telemetry_seq_now(),
            "device_session": self._session(),
            "standardisation": (None if self._standards is None
                                else self._standards.snapshot()),
            "recipe": None if self._procedure is None else self._procedure.snapshot(),
            "soft_sensor": None if self._soft_sensor is None else self._soft_sensor.snapshot(),
        }

    def _restore_soft_sensor(self, snapshot: object, now: float) -> None:
        """The filter as of its last update before the crash. Not restored (an event says
        why) when the checkpoint has none, was made under another soft-sensor configuration,
        or its part is unreadable: the filter then starts afresh on the first density, as in a
        new run. Never raised: the estimates are not a safety layer, and control must start
        whatever became of them."""
        sensor = self._soft_sensor
        if sensor is None:
            return
        why = _why_not_restored(sensor, snapshot, now)
        if why is None:
            filter_t_s = sensor.filter.t_s if sensor.filter is not None else now
            self._journal.event(now, "estimation",
                                f"soft sensor restored as of its update at {filter_t_s:.0f} s",
                                {"filter_t_s": filter_t_s, "updates": sensor.updates})
            return
        log.warning("soft sensor not restored: it starts afresh", reactor=self._journal.reactor_id,
                    t_s=now, why=why)
        self._journal.event(now, "estimation", f"soft sensor not restored: {why}; it starts "
                            "afresh on the first density", {"restored": False})

    def _telemetry_seq_now(self) -> int:
        presence = self._journal.presence
        return self.telemetry_seq if presence is None else presence.seq

    def restore(self, checkpoint: ReactorCheckpoint, policy: str, now: float, device: str,
                on_resumed: Callable[[BolusState], None],
                device_outputs: Mapping[str, float] | None = None,
                went_safe: bool = False) -> None:
        """Take the checkpoint back; `on_resumed` records each bolus it left unfinished.

        `device_outputs` (what the device holds now) when the device reports a status: if it
        went to its safe state during the outage (`went_safe`), the loops keep their
        checkpointed setpoints, modes and statistics but regulate from the process
        (`ControlLoop.restart_from_process`); if not, they hold what the device holds
        (`ControlLoop.resume_at`), which may be newer than the checkpoint. Without a status the
        checkpointed outputs stand. Everything else is restored as ever."""
        state = checkpoint.state
        for loop in self._loops:
            if loop.name in state["loops"]:
                loop.restore(state["loops"][loop.name])
            if device_outputs is not None:
                loop.resume_after_outage(device_outputs[loop.mv], went_safe)
        self._board.restore(state["alarms"])
        self._outside.restore(state["outside_alarms"])
        self._interlocks.restore(state["interlocks"])
        if self._standards is not None and state.get("standardisation") is not None:
            self._standards.restore(state["standardisation"])
        for counter in fields(self._counters):
            # A counter added since the checkpoint was written starts at 0.
            setattr(self._counters, counter.name, state["counters"].get(counter.name, 0))
        self._counters.restarts += 1
        # Telemetry numbers: past any message sent between the checkpoint and the crash (one
        # per tick at most), so subscribers see a gap for the outage, never a repeated seq.
        self.telemetry_seq = state["telemetry_seq"] + 2 + int(
            (now - checkpoint.t_s) / self._period_s)
        unfinished = self._schedule.restore(state["schedule"])
        if self._procedure is not None and state.get("recipe") is not None:
            self._procedure.restore(state["recipe"], now)
        self._delivery.restore(state["delivery"])
        self._restore_soft_sensor(state.get("soft_sensor"), now)
        self.holding_for_operator = bool(state["holding_for_operator"]) or policy == "hold"
        if self.holding_for_operator:
            self._schedule.paused = True
        outage_s = now - checkpoint.t_s
        restarts = self._counters.restarts
        self._journal.event(now, "run", f"reactor restarted after {outage_s:.0f} s "
                            f"(restart {restarts}, policy {policy})",
                            {"device": device, "checkpoint_t_s": checkpoint.t_s,
                             "outage_s": outage_s, "policy": policy, "restart": restarts,
                             "loop_outputs": {loop.mv: loop.pid.output for loop in self._loops}})
        for bolus in unfinished:
            on_resumed(bolus)
        if self.holding_for_operator:
            log.warning("restarted on hold: feed schedule paused until an operator resumes it",
                        reactor=self._journal.reactor_id, t_s=now)
            self._outside.set(now, "restart_hold", active=True,
                              message="restarted on hold: feed schedule paused until an "
                                      "operator sends resume_schedule")


def _why_not_restored(sensor: SoftSensor, snapshot: object, now: float) -> str | None:
    """None if `sensor` took `snapshot`; otherwise why not, in words."""
    if snapshot is None:
        return "the checkpoint holds no filter (made before it started, or by an older version)"
    try:
        if not isinstance(snapshot, str):
            raise TypeError(f"a {type(snapshot).__name__}, not JSON text")
        taken = sensor.restore(snapshot, now)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        return f"its part of the checkpoint is unreadable ({exc})"
    return None if taken else "the soft-sensor configuration changed since the checkpoint"
