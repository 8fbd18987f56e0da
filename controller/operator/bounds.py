"""What an operator may ask of one reactor: setpoint and output ranges, bolus size, and the
alarm board's shelving policy, checked before a command is queued (operator/verify.py)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.alarms.board import AlarmBoard
from controller.config import ReactorConfig


@dataclass(frozen=True)
class LoopBounds:
    setpoint_min: float
    setpoint_max: float
    output_min: float
    output_max: float


BOARD_ACTIONS = frozenset({"shelve_alarm", "unshelve_alarm", "remove_alarm_from_service",
                           "return_alarm_to_service"})
"""Actions on the alarm board's alarms only (not on alarms raised outside it, like a full
outbox, which can only be acknowledged)."""


@dataclass(frozen=True)
class AlarmLimits:
    """What an operator may do to one alarm of the board: the board's shelving policy."""

    shelvable: bool
    max_shelve_s: float
    priority: str


@dataclass(frozen=True)
class CommandBounds:
    """What an operator may ask of one reactor. Built by the runtime from its config.

    `alarms`: every alarm name `ack_alarm` accepts; `alarm_limits`: the board's alarms, the
    only ones the shelve and service actions accept.
    """

    reactor_id: str
    loops: Mapping[str, LoopBounds]
    bolus_max_ml: float
    alarms: frozenset[str] = field(default_factory=frozenset)
    alarm_limits: Mapping[str, AlarmLimits] = field(default_factory=dict)
    interlocks: frozenset[str] = field(default_factory=frozenset)
    """The reactor's interlocks, which `reset_interlock` accepts."""


def bounds_from_config(
    reactor: ReactorConfig, board: AlarmBoard, *, bolus_max_ml: float,
    outside_alarms: Iterable[str] = (), interlocks: Iterable[str] = (),
) -> CommandBounds:
    """Bounds for a reactor from its config and its alarm board: each loop's
    `setpoint_min`/`setpoint_max` (default: the PV's datasheet range, which a config should
    narrow: 0-60 degC lets a typo through that 35-39 would not) and its output limits; the
    board's shelving policy per alarm. The board is the reactor's own, so what an operator is
    told before a command is queued cannot disagree with what the board then does.
    `outside_alarms` are the alarms raised outside the board, which may only be acknowledged;
    `interlocks` the reactor's interlocks."""
    loops = {
        name: LoopBounds(lc.min_setpoint, lc.max_setpoint, lc.output_min, lc.output_max)
        for name, lc in reactor.loops.items()
    }
    limits = {name: AlarmLimits(board.may_shelve(name), board.max_shelve_s_for(name),
                                board[name].priority) for name in board.alarms}
    return CommandBounds(reactor.id, loops, bolus_max_ml,
                         frozenset([*outside_alarms, *board.alarms]), limits,
                         frozenset(interlocks))
