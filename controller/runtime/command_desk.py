"""Where one reactor's operator commands arrive, wait for the tick, and are carried out.

A command is verified the moment it arrives (a refusal is answered and audited at once) and
applied at the start of the next tick, so it never races the control arithmetic. This object is
the `CommandTarget` the protocol's `apply` acts on: the loops, the schedule and the alarms, as an
operator may touch them.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

import structlog

from controller.alarms.board import AlarmBoard
from controller.alarms.state_machine import AlarmState, Transition
from controller.clock import Clock
from controller.control.control_loop import ControlLoop
from controller.control.interlocks import InterlockSet, Trip
from controller.control.schedule import FeedSchedule
from controller.operator import audit
from controller.operator.actions import apply
from controller.operator.bounds import CommandBounds
from controller.operator.protocol import Command, CommandRefused, applied_reply, refused_reply
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms

log = structlog.get_logger(__name__)

UNACKNOWLEDGED = (AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED)


class CommandDesk:
    def __init__(self, *, loops: Sequence[ControlLoop], schedule: FeedSchedule,
                 board: AlarmBoard, outside: OutsideAlarms, bounds: CommandBounds,
                 journal: ReactorJournal, clock: Clock,
                 interlocks: InterlockSet | None = None,
                 on_interlock: Callable[[Trip, float], None] | None = None) -> None:
        """`interlocks`: the reactor's, for `reset_interlock`; `on_interlock(trip, now)` puts
        an applied reset on record like any trip."""
        self._interlocks = interlocks if interlocks is not None else InterlockSet([], {})
        self._on_interlock = on_interlock
        self._loops = {loop.name: loop for loop in loops}
        self.schedule = schedule
        self._board = board
        self._outside = outside
        self._bounds = bounds
        self._journal = journal
        self._clock = clock
        self._keys: Mapping[str, bytes] = {}
        self._replay = ReplayGuard()
        self.inbox: deque[Command] = deque()

    def enable(self, keys: Mapping[str, bytes], replay: ReplayGuard) -> None:
        """Accept commands signed with these operators' keys (none are accepted before)."""
        self._keys = keys
        self._replay = replay

    def receive(self, topic: str, payload: bytes) -> None:
        """From the MQTT client: verify now; a good command waits for the next tick."""
        now = self._clock.now()
        wall = self._clock.wall_time()
        try:
            command = verify(payload, self._keys, self._replay, wall, self._bounds)
        except CommandRefused as refusal:
            log.warning("command refused", reactor=self._journal.reactor_id, code=refusal.code,
                        message=refusal.message)
            self._refuse(refusal, now, wall)
            return
        self.inbox.append(command)

    def apply_pending(self, now: float, on_applied: Callable[[], None]) -> None:
        """Carry out every queued command, in order; `on_applied` after each one applied (the
        reactor republishes its settings)."""
        journal = self._journal
        while self.inbox:
            command = self.inbox.popleft()
            wall = self._clock.wall_time()
            try:
                change = apply(command, self, now)
            except CommandRefused as refusal:  # e.g. a manual output for a loop in auto
                self._refuse(refusal, now, wall)
                continue
            journal.audit(audit.applied(journal.reactor_id, now, wall, command, change))
            journal.event(now, "operator", f"{command.operator}: {command.action} "
                          f"{dict(command.params)} ({command.reason})",
                          {"old": change.old, "new": change.new})
            journal.setpoints(now, self._loops.values())
            on_applied()
            journal.reply(applied_reply(command, change, now))

    def _refuse(self, refusal: CommandRefused, now: float, wall: float) -> None:
        self._journal.audit(audit.refused(self._journal.reactor_id, now, wall, refusal))
        self._journal.reply(refused_reply(refusal, now))

    # --- the CommandTarget that `apply` acts on ----------------------------------------------
    def loop(self, name: str) -> ControlLoop:
        return self._loops[name]

    def add_bolus(self, volume_ml: float, channel_name: str, at_s: float) -> None:
        self.schedule.add_bolus(volume_ml, channel_name, at_s)

    def ack_alarm(self, name: str, operator: str, t_s: float) -> bool:
        outside = self._outside.acknowledge(name)
        if outside is not None:
            return outside
        alarm = self._board[name]
        if alarm.state not in UNACKNOWLEDGED:
            return False
        self._journal.alarm_transitions(alarm.acknowledge(t_s, operator))
        return True

    @property
    def board(self) -> AlarmBoard:
        return self._board

    def record_alarm_transitions(self, transitions: list[Transition]) -> None:
        self._journal.alarm_transitions(transitions)

    @property
    def interlocks(self) -> InterlockSet:
        return self._interlocks

    def record_interlock_reset(self, trip: Trip) -> None:
        if self._on_interlock is not None:
            self._on_interlock(trip, trip.t_s)
