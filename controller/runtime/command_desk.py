"""Where one reactor's operator commands arrive, wait for the tick, and are carried out.

A command is verified the moment it arrives (a refusal is answered and audited at once) and
applied at the start of the next tick, so it never races the control arithmetic. This object is
the `CommandTarget` the protocol's `apply` acts on: the loops, the schedule and the alarms, as an
operator may touch them.

One reset acts on the device, not on the controller: `reset_interlock` `heater_cutout` re-arms
the device's own over-temperature cut-out (`Driver.reset_cutout`). A driver call is async and
may fail, so it waits in `device_resets` and the tick carries it out after reading the device
(`reset_cutouts`), against that tick's judged `heater_cutout` reading; applied or refused, it
is audited and answered like any command.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from controller.alarms.board import AlarmBoard
from controller.alarms.state_machine import AlarmState, Transition
from controller.clock import Clock
from controller.control.control_loop import ControlLoop
from controller.control.interlocks import InterlockSet, Trip
from controller.control.schedule import FeedSchedule
from controller.mqtt.topics import Topics
from controller.operator import audit
from controller.operator.actions import apply
from controller.operator.bounds import CommandBounds
from controller.operator.protocol import (
    WRONG_STATE,
    WRONG_TOPIC,
    Change,
    Command,
    CommandRefused,
    applied_reply,
    claimed_of,
    refused_reply,
)
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from controller.procedure.procedure import Procedure, Standing
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from drivers.contract.errors import DriverError
from drivers.contract.reading import Quality, Reading

log = structlog.get_logger(__name__)

UNACKNOWLEDGED = (AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED)
DEVICE_CUTOUT = "heater_cutout"
"""The interlock name `reset_interlock` takes for the device's own over-temperature cut-out."""


def standing_now(board: AlarmBoard, outside: OutsideAlarms, interlocks: InterlockSet) -> Standing:
    """What stands that a recipe's phase may react to: the standing alarms (name, priority),
    the board's (a shelved one does not stand) and those raised outside it, and the tripped
    interlocks."""
    return ([(a.name, a.priority) for a in board.active()] + outside.standing(),
            interlocks.tripped)


class CommandDesk:
    def __init__(self, *, loops: Sequence[ControlLoop], schedule: FeedSchedule,
                 board: AlarmBoard, outside: OutsideAlarms, bounds: CommandBounds,
                 journal: ReactorJournal, clock: Clock,
                 interlocks: InterlockSet | None = None,
                 on_interlock: Callable[[Trip, float], None] | None = None,
                 procedure: Procedure | None = None) -> None:
        """`interlocks`: the reactor's, for `reset_interlock`; `on_interlock(trip, now)` puts
        an applied reset on record like any trip; `procedure`: the recipe's, for its
        commands (start, hold, restart, stop, abort, confirm)."""
        self._procedure = procedure
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
        self.device_resets: deque[Command] = deque()
        """`reset_interlock heater_cutout` commands waiting for the tick's device call."""

    def enable(self, keys: Mapping[str, bytes], replay: ReplayGuard) -> None:
        """Accept commands signed with these operators' keys (none are accepted before)."""
        self._keys = keys
        self._replay = replay

    def receive(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """From the MQTT client: verify now; a good command waits for the next tick.
        `retained`: the broker's retain flag (a retained message is refused)."""
        now = self._clock.now()
        wall = self._clock.wall_time()
        failures = self._replay.store_failures
        try:
            command = verify(payload, self._keys, self._replay, wall, self._bounds,
                             setting=self._setting_of(topic), retained=retained)
        except CommandRefused as refusal:
            log.warning("command refused", reactor=self._journal.reactor_id, code=refusal.code,
                        message=refusal.message)
            self._refuse(refusal, now, wall)
            return
        finally:
            if self._replay.store_failures > failures:
                self._journal.event(now, "operator", "the nonce store failed: a replay of "
                                    "this command is refused by this run only ("
                                    f"{self._replay.last_store_error})", {})
        self.inbox.append(command)

    def _setting_of(self, topic: str) -> str | None:
        """The setting a `settings/<name>/set` topic writes; None for the `cmd` topic."""
        topics = Topics(self._journal.reactor_id)
        if topic == topics.cmd:
            return None
        prefix, suffix = f"{topics.base}/settings/", "/set"
        name = topic.removeprefix(prefix).removesuffix(suffix)
        if topic.startswith(prefix) and topic.endswith(suffix) and name and "/" not in name:
            return name
        raise CommandRefused(WRONG_TOPIC, f"{topic[:200]!r} is neither {topics.cmd!r} nor a "
                             f"{topics.settings_set_filter!r} topic")

    def apply_pending(self, now: float, on_applied: Callable[[], None]) -> None:
        """Carry out every queued command, in order; `on_applied` after each one applied (the
        reactor republishes its settings)."""
        while self.inbox:
            command = self.inbox.popleft()
            if (command.action == "reset_interlock"
                    and command.params["interlock"] == DEVICE_CUTOUT):
                self.device_resets.append(command)  # a driver call: the tick makes it
                continue
            wall = self._clock.wall_time()
            try:
                change = apply(command, self, now)
            except CommandRefused as refusal:  # e.g. a manual output for a loop in auto
                self._refuse(refusal, now, wall)
                continue
            self._applied(command, change, now, wall)
            on_applied()

    async def reset_cutouts(self, cutout: Reading | None,
                            reset: Callable[[], Awaitable[bool]], now: float) -> None:
        """Carry out the waiting cut-out resets with the device's `reset` (Driver.reset_cutout),
        given this tick's judged `heater_cutout` reading: refused unless that reading is GOOD
        and shows the cut-out tripped, or when the device refuses; audited either way."""
        while self.device_resets:
            command = self.device_resets.popleft()
            wall = self._clock.wall_time()
            try:
                self._check_cutout_reading(command, cutout)
                try:
                    await reset()
                except DriverError as exc:
                    raise CommandRefused(WRONG_STATE, f"the device refused to re-arm its "
                                         f"cut-out: {exc}", claimed_of(command)) from None
            except CommandRefused as refusal:
                log.warning("cut-out reset refused", reactor=self._journal.reactor_id,
                            message=refusal.message)
                self._refuse(refusal, now, wall)
                continue
            self._applied(command, Change({"interlock": DEVICE_CUTOUT, "state": "tripped"},
                                          {"interlock": DEVICE_CUTOUT, "state": "ok"}),
                          now, wall)

    @staticmethod
    def _check_cutout_reading(command: Command, cutout: Reading | None) -> None:
        if cutout is None or cutout.quality is not Quality.GOOD:
            quality = "no reading" if cutout is None else f"a {cutout.quality.name} reading"
            raise CommandRefused(WRONG_STATE, f"interlock {DEVICE_CUTOUT!r}: {DEVICE_CUTOUT} "
                                 f"has {quality}; a reset needs a GOOD one showing the cut-out "
                                 "tripped", claimed_of(command))
        if cutout.value < 0.5:
            raise CommandRefused(WRONG_STATE, f"interlock {DEVICE_CUTOUT!r} is not tripped "
                                 "(the device's cut-out is armed)", claimed_of(command))

    def _applied(self, command: Command, change: Change, now: float, wall: float) -> None:
        journal = self._journal
        journal.audit(audit.applied(journal.reactor_id, now, wall, command, change))
        journal.event(now, "operator", f"{command.operator}: {command.action} "
                      f"{dict(command.params)} ({command.reason})",
                      {"old": change.old, "new": change.new})
        journal.setpoints(now, self._loops.values())
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

    def recipe_command(self, action: str, operator: str, reason: str,
                       t_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
        procedure = self._procedure
        if procedure is None:
            raise KeyError("recipe")
        standing = procedure.standing(*standing_now(self._board, self._outside,
                                                    self._interlocks))
        return procedure.command(action, t_s, operator, reason, standing)

    def record_interlock_reset(self, trip: Trip) -> None:
        if self._on_interlock is not None:
            self._on_interlock(trip, trip.t_s)
