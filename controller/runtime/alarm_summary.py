"""The retained alarm summary: every alarm of a reactor that needs attention, in one message.

Alarm messages are a stream: a subscriber that connects after an alarm was raised (a night
shift's dashboard, a ground station after loss of signal) would never hear of it. So whenever
the set of alarms needing attention, or the state of one, changes, the reactor publishes the
whole set retained on `bioreactor/<id>/alarms/summary` (docs/mqtt.md); the broker hands the
latest to every new subscriber. Checked at every alarm evaluation and after every operator
command, so it trails a change by at most one evaluation period (5 s).
"""
from __future__ import annotations

from controller.alarms.board import AlarmBoard
from controller.alarms.state_machine import STANDING_STATES, AlarmState
from controller.mqtt.topics import SummaryAlarm
from controller.runtime.outside_alarms import DEFAULT_PRIORITY, OutsideAlarms


def needing_attention(board: AlarmBoard, outside: OutsideAlarms) -> tuple[SummaryAlarm, ...]:
    """The board's alarms not normal (shelved and out-of-service ones too: an operator put
    them there), and those raised outside it that are active or unacknowledged, by name."""
    found = [SummaryAlarm(alarm.name, alarm.priority, state.value, state in STANDING_STATES,
                          alarm.last_reason, alarm.last_change_t_s)
             for alarm in board.alarms.values()
             if (state := alarm.state) is not AlarmState.NORMAL]
    since_s: float | None  # None: first raised at an unknown time (SummaryAlarm.t_s)
    for name in sorted(outside.active.keys() | outside.unacknowledged):
        unacked = name in outside.unacknowledged
        if name in outside.active:
            priority, since_s, message = outside.active[name]
            state = AlarmState.UNACK if unacked else AlarmState.ACKED
        else:
            priority, since_s = outside.first_raised.get(name, (DEFAULT_PRIORITY, None))
            message, state = "cleared", AlarmState.RTN_UNACK
        found.append(SummaryAlarm(name, priority, state.value, name in outside.active,
                                  message, since_s))
    return tuple(sorted(found))


class AlarmSummary:
    """What was last published, so the summary goes out only when it changed."""

    def __init__(self) -> None:
        self._last: tuple[SummaryAlarm, ...] | None = None

    def changed(self, board: AlarmBoard,
                outside: OutsideAlarms) -> tuple[SummaryAlarm, ...] | None:
        """The summary if it differs from the last published (the first always does)."""
        now = needing_attention(board, outside)
        if now == self._last:
            return None
        self._last = now
        return now
