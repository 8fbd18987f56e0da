"""How a verified command is carried out on the tick: the target a reactor offers, and `apply`.

Synchronous and cheap: only the tick may touch loops and the schedule, so the runtime queues a
verified command and applies it at the start of the next tick.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from controller.alarms.board import AlarmBoard, ShelvingForbidden
from controller.alarms.state_machine import Transition
from controller.operator.bounds import BOARD_ACTIONS
from controller.operator.protocol import (
    FORBIDDEN,
    RECIPE_ACTIONS,
    UNKNOWN_ACTION,
    UNKNOWN_TARGET,
    WRONG_MODE,
    WRONG_STATE,
    Change,
    Command,
    CommandRefused,
    claimed_of,
)


class PidTarget(Protocol):
    """The part of controller.control.pid.Pid a command touches."""

    setpoint: float
    output: float

    def set_manual(self, output: float) -> None: ...
    def set_auto(self) -> None: ...
    def track(self, output: float) -> None: ...


class LoopTarget(Protocol):
    """controller.control.control_loop.ControlLoop satisfies this as it is."""

    @property
    def setpoint(self) -> float: ...
    @property
    def mode(self) -> str: ...
    @property
    def pid(self) -> PidTarget: ...


class ScheduleTarget(Protocol):
    """controller.control.schedule.FeedSchedule satisfies this as it is."""

    paused: bool


class TripTarget(Protocol):
    """controller.control.interlocks.Trip as a reset returns it."""

    @property
    def value(self) -> float: ...


class InterlocksTarget(Protocol):
    """controller.control.interlocks.InterlockSet satisfies this as it is: `reset` raises
    KeyError for an unknown interlock, ValueError when it may not be reset now."""

    tripped: set[str]
    cleared: set[str]

    def reset(self, name: str, t_s: float, by: str, reason: str) -> TripTarget: ...


class CommandTarget(Protocol):
    """What `apply()` needs from a reactor; the runtime's CommandDesk implements it.

    - `loop(name)`: the named loop; raises KeyError if there is none.
    - `schedule`: the feed schedule; `paused` stops every pump the schedule drives.
    - `add_bolus(volume_ml, channel, at_s)`: a one-off bolus due at clock time `at_s`.
    - `ack_alarm(name, operator, t_s)`: acknowledge an alarm (the board's or one raised
      outside it); True if it was waiting for one.
    - `board`: the reactor's alarm board, for the shelve and service actions.
    - `record_alarm_transitions(transitions)`: put what an action did to the board on record
      (and on MQTT) like any other transition.
    - `interlocks`: the reactor's interlocks; `record_interlock_reset(trip)` puts an applied
      reset on record (an `interlock` event, the alarm it raised resolved).
    """

    def loop(self, name: str) -> LoopTarget: ...
    @property
    def schedule(self) -> ScheduleTarget: ...
    def add_bolus(self, volume_ml: float, channel: str, at_s: float) -> None: ...
    def ack_alarm(self, name: str, operator: str, t_s: float) -> bool: ...
    @property
    def board(self) -> AlarmBoard: ...
    def record_alarm_transitions(self, transitions: list[Transition]) -> None: ...
    @property
    def interlocks(self) -> InterlocksTarget: ...
    def record_interlock_reset(self, trip: Any) -> None: ...
    def recipe_command(self, action: str, operator: str, reason: str,
                       t_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
        """The recipe's state before and after; KeyError without a recipe, ValueError (why)
        when its state does not allow the command."""


def apply(command: Command, target: CommandTarget, now_s: float) -> Change:
    """Carry out a verified command on the tick at clock time `now_s`; what changed.

    Raises CommandRefused(`wrong_mode`) for `set_output` on a loop in auto mode, and
    (`unknown_target`) if the target has lost a loop the bounds still listed.
    """
    p = command.params
    action = command.action
    if "loop" in p:
        try:
            loop = target.loop(p["loop"])
        except KeyError:
            raise CommandRefused(UNKNOWN_TARGET, f"no loop {p['loop']!r}",
                                 claimed_of(command)) from None
        if action == "set_setpoint":
            old = loop.setpoint
            loop.pid.setpoint = p["value"]
            return Change({"setpoint": old}, {"setpoint": loop.setpoint})
        if action == "set_mode":
            old_mode = loop.mode
            if p["mode"] == "manual" and old_mode != "manual":
                loop.pid.set_manual(loop.pid.output)  # hold what the actuator does: bumpless
            elif p["mode"] == "auto" and old_mode != "auto":
                loop.pid.set_auto()
            return Change({"mode": old_mode, "output": loop.pid.output},
                          {"mode": loop.mode, "output": loop.pid.output})
        if action == "set_output":
            if loop.mode != "manual":
                raise CommandRefused(WRONG_MODE, f"loop {p['loop']!r} is in {loop.mode} mode; "
                                     "set_mode manual first", claimed_of(command))
            old_output = loop.pid.output
            loop.pid.track(p["value"])
            return Change({"output": old_output}, {"output": loop.pid.output})
    if action in BOARD_ACTIONS:
        return _apply_board_action(command, target, now_s)
    schedule = target.schedule
    if action == "bolus":
        target.add_bolus(p["volume_ml"], p["channel"], now_s)
        return Change(None, {"volume_ml": p["volume_ml"], "channel": p["channel"], "at_s": now_s,
                             "schedule_paused": schedule.paused})
    if action in ("pause_schedule", "resume_schedule"):
        old_paused = schedule.paused
        schedule.paused = action == "pause_schedule"
        return Change({"paused": old_paused}, {"paused": schedule.paused})
    if action == "ack_alarm":
        was_active = target.ack_alarm(p["alarm"], command.operator, now_s)
        return Change({"alarm": p["alarm"], "unacknowledged": was_active},
                      {"alarm": p["alarm"], "unacknowledged": False})
    if action == "reset_interlock":
        return _reset_interlock(command, target, now_s)
    if action in RECIPE_ACTIONS:
        try:
            before, after = target.recipe_command(action, command.operator, command.reason,
                                                  now_s)
        except KeyError:
            raise CommandRefused(UNKNOWN_TARGET, "this reactor runs no recipe",
                                 claimed_of(command)) from None
        except ValueError as exc:
            raise CommandRefused(WRONG_STATE, str(exc), claimed_of(command)) from None
        return Change(before, after)
    raise CommandRefused(UNKNOWN_ACTION, f"unknown action {action!r}", claimed_of(command))


def _state_of(interlocks: InterlocksTarget, name: str) -> str:
    if name not in interlocks.tripped:
        return "ok"
    return "latched" if name in interlocks.cleared else "tripped"


def _reset_interlock(command: Command, target: CommandTarget, now_s: float) -> Change:
    """Reset a tripped interlock whose condition is gone (on a GOOD reading): its state before
    (`tripped`: condition present, `latched`: cleared, waiting) and after (`ok`)."""
    name = command.params["interlock"]
    interlocks = target.interlocks
    before = _state_of(interlocks, name)
    try:
        trip = interlocks.reset(name, now_s, command.operator, command.reason)
    except KeyError:
        raise CommandRefused(UNKNOWN_TARGET, f"no interlock {name!r}",
                             claimed_of(command)) from None
    except ValueError as exc:
        raise CommandRefused(WRONG_STATE, str(exc), claimed_of(command)) from None
    target.record_interlock_reset(trip)
    return Change({"interlock": name, "state": before},
                  {"interlock": name, "state": _state_of(interlocks, name), "value": trip.value})


def _apply_board_action(command: Command, target: CommandTarget, now_s: float) -> Change:
    """Shelve, unshelve, remove from or return to service: the alarm's state before and after
    (and a shelf's expiry on the run clock, `shelved_until_s`). The transitions go on record
    carrying who and why, so the alarm journal explains itself without the audit trail."""
    name, who, why = command.params["alarm"], command.operator, command.reason
    board = target.board
    until_s = now_s + command.params["duration_s"] if command.action == "shelve_alarm" else None
    try:
        alarm = board[name]
        before = alarm.state
        if until_s is not None:  # shelve_alarm (a number: protocol.py's PARAMS)
            transitions = board.shelve(name, until_s, now_s, who)
        elif command.action == "unshelve_alarm":
            transitions = board.unshelve(name, now_s, who)
        elif command.action == "remove_alarm_from_service":
            transitions = board.remove_from_service(name, now_s, who)
        else:
            transitions = board.return_to_service(name, now_s, who)
    except KeyError:
        raise CommandRefused(UNKNOWN_TARGET, f"no alarm {name!r} on the alarm board",
                             claimed_of(command)) from None
    except ShelvingForbidden as exc:
        raise CommandRefused(FORBIDDEN, str(exc), claimed_of(command)) from None
    except ValueError as exc:  # the alarm's state does not allow it (now, at the tick)
        raise CommandRefused(WRONG_STATE, str(exc), claimed_of(command)) from None
    target.record_alarm_transitions([replace(tr, reason=f"{tr.reason}; {who}: {why}")
                                     for tr in transitions])
    after: dict[str, Any] = {"alarm": name, "state": alarm.state.value}
    if until_s is not None:
        after["shelved_until_s"] = until_s
    return Change({"alarm": name, "state": before.value}, after)
