"""Where one reactor's records go: the historian always, MQTT too once a broker is attached.

One object so that every part of a reactor (the tick, its commands, its alarms, its recovery)
records the same way: an event is on record and on the wire, or (without a broker) on record.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from controller.alarms.spec import FLOOD
from controller.alarms.state_machine import ACTIVE_STATES, Transition
from controller.control.control_loop import ControlLoop
from controller.mqtt.presence import ReactorPresence
from controller.mqtt.topics import SummaryAlarm
from controller.operator.audit import AuditRecord
from controller.runtime.historian import Historian


class ReactorJournal:
    def __init__(self, reactor_id: str, historian: Historian) -> None:
        self.reactor_id = reactor_id
        self.historian = historian
        self.presence: ReactorPresence | None = None
        """Set by the run when MQTT is configured."""

    def event(self, now: float, kind: str, message: str,
              data: dict[str, Any] | None = None) -> None:
        self.historian.record_event(self.reactor_id, now, kind, message, data)
        if self.presence is not None:
            self.presence.event(now, kind, message, data)

    def alarm_transitions(self, transitions: Iterable[Transition]) -> None:
        """The board's transitions: each an `alarm_state` event; those that notify on MQTT."""
        for tr in transitions:
            self.historian.record_event(self.reactor_id, tr.t_s, "alarm_state",
                                        f"{tr.alarm}: {tr.from_state.value} -> "
                                        f"{tr.to_state.value} ({tr.reason})", tr.as_dict())
            if tr.notify and self.presence is not None:
                active = tr.to_state in ACTIVE_STATES
                flood = ({"count": tr.count, "alarms": list(tr.alarms)}
                         if tr.alarm == FLOOD else None)
                self.presence.alarm(tr.t_s, tr.alarm, priority=tr.priority, active=active,
                                    message=f"{tr.to_state.value}: {tr.reason}",
                                    value=tr.value, flood=flood)

    def outside_alarm(self, now: float, name: str, *, priority: str, active: bool, message: str,
                      data: dict[str, Any], publish: bool) -> None:
        """An alarm raised outside the board: an `alarm` event, and on MQTT unless `publish` is
        False (the outbox itself is full)."""
        self.historian.record_event(self.reactor_id, now, "alarm", message, data)
        if publish and self.presence is not None:
            self.presence.alarm(now, name, priority=priority, active=active, message=message)

    def alarm_summary(self, now: float, alarms: Sequence[SummaryAlarm]) -> None:
        """On MQTT only (retained): the historian has every transition already."""
        if self.presence is not None:
            self.presence.alarm_summary(now, alarms)

    def setpoints(self, now: float, loops: Iterable[ControlLoop]) -> None:
        for loop in loops:
            self.historian.record_setpoint(self.reactor_id, now, loop.name, loop.pv, loop.mv,
                                           loop.setpoint, loop.mode)

    def audit(self, record: AuditRecord) -> None:
        self.historian.record_audit(record)

    def reply(self, body: dict[str, Any]) -> None:
        if self.presence is not None:
            self.presence.reply(json.dumps(body, sort_keys=True).encode())
