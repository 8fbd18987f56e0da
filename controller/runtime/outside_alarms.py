"""Alarms raised outside the alarm board, by the runtime itself.

The board judges readings one channel at a time; these are raised by events no one reading
shows: the telemetry outbox is full, the run restarted on hold, a gas supply interlock tripped,
the chamber's mass balance does not close (controller/control/volume_balance.py), a pump's
measured delivery is off what was commanded, the device rebooted
(controller/runtime/delivery.py), ticks keep overrunning their period
(controller/alarms/tick_overrun.py), another controller holds the device
(controller/runtime/device_link.py), the historian's writer failed and the records wait
(controller/runtime/writer_child.py), a probe fails its blood-gas reference check
(`<channel>_probe_failing`, controller/runtime/probe_standards.py). An operator acknowledges
them like the board's (`ack_alarm`), they are on record as `alarm` events, on MQTT, in the
checkpoint and in the summary.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.runtime.journal import ReactorJournal

OUTSIDE_ALARMS = ("outbox_full", "restart_hold", "o2_supply_lost", "co2_supply_lost",
                  "volume_balance", "feed_delivery_mismatch", "device_rebooted", "tick_overrun",
                  "device_held", "historian_down", "device_went_safe", "records_file_removed")
"""Alarms raised outside the alarm board that an operator can acknowledge."""
ONE_SHOT = frozenset({"outbox_full", "device_rebooted", "device_went_safe",
                      "records_file_removed"})
"""Raised by an event and never cleared by their source: an operator's acknowledgement ends
them (else they would stand for the rest of the run)."""
DEFAULT_PRIORITY = "high"
"""The priority of an outside alarm raised without one."""


class OutsideAlarms:
    def __init__(self, journal: ReactorJournal, on_change: Callable[[], None],
                 on_raise: Callable[[float, str, str], None] | None = None) -> None:
        """`on_change` is called when something worth a checkpoint changed; `on_raise(now,
        name, priority)` when an alarm is raised (the recipe's reaction)."""
        self._on_raise = on_raise
        self._journal = journal
        self._on_change = on_change
        self.names = set(OUTSIDE_ALARMS)
        """Every alarm raised here: the fixed ones and those a reactor's config adds (a
        standardised probe's `<channel>_probe_failing`)."""
        self.unacknowledged: set[str] = set()
        self.first_raised: dict[str, tuple[str, float]] = {}
        """name -> (priority, first raised at)."""
        self.active: dict[str, tuple[str, float, str]] = {}
        """name -> (priority, raised at, message) of each alarm raised and not yet cleared (a
        one-shot one: not yet acknowledged). Only the one-shot ones are checkpointed: nothing
        would raise them again after a restart, while every other source raises its alarm
        again if its condition still holds (a restored one whose source starts afresh would
        never be cleared)."""

    def set(self, now: float, name: str, *, active: bool, message: str,
            priority: str | None = None, publish: bool = True,
            data: Mapping[str, Any] | None = None) -> None:
        """Raise (`active`) or clear an alarm. A raised alarm stays unacknowledged until an
        operator acknowledges it, even once it has cleared (ISA-18.2's return-unacknowledged):
        the operator must learn that it happened. `data` adds to the event's data."""
        data = {**(data or {}), "alarm": name, "active": active}
        if priority is not None:
            data["priority"] = priority
        if active:
            if self._on_raise is not None:
                self._on_raise(now, name, priority or DEFAULT_PRIORITY)
            self.unacknowledged.add(name)
            if name not in self.first_raised:
                self.first_raised[name] = (priority or DEFAULT_PRIORITY, now)
                self._on_change()
            since = self.active[name][1] if name in self.active else now
            self.active[name] = (priority or DEFAULT_PRIORITY, since, message)
        else:
            self.active.pop(name, None)
        self._journal.outside_alarm(now, name, priority=priority or DEFAULT_PRIORITY,
                                    active=active, message=message, data=data, publish=publish)

    def resolve(self, now: float, name: str, message: str) -> None:
        """Cleared and acknowledged at once: what an operator did ended it (resume_schedule
        ends `restart_hold`), so there is nothing left to acknowledge."""
        self.unacknowledged.discard(name)
        self.set(now, name, active=False, message=message)

    def acknowledge(self, name: str) -> bool | None:
        """True if `name` was waiting for an acknowledgement, False if it is one of these
        alarms but was not (already acknowledged, or never raised), None if it is not one of
        these alarms (the board's, then)."""
        if name in ONE_SHOT:
            self.active.pop(name, None)
        if name in self.unacknowledged:
            self.unacknowledged.discard(name)
            return True
        return False if name in self.names else None

    def standing(self) -> list[tuple[str, str]]:
        """(name, priority) of each alarm raised here and not cleared: what a recipe's phase
        may react to, beside the board's."""
        return [(name, priority) for name, (priority, _, _) in sorted(self.active.items())]

    def snapshot(self) -> dict[str, Any]:
        return {"unacknowledged": sorted(self.unacknowledged), "first_raised": self.first_raised,
                "one_shot_active": {name: raised for name, raised in self.active.items()
                                    if name in ONE_SHOT}}

    def restore(self, state: dict[str, Any]) -> None:
        """A checkpoint's alarms; one from before one-shot alarms were checkpointed has
        none standing."""
        self.unacknowledged = set(state["unacknowledged"])
        self.first_raised = {name: (priority, t_s)
                             for name, (priority, t_s) in state["first_raised"].items()}
        self.active = {name: (priority, since_s, message)
                       for name, (priority, since_s, message)
                       in state.get("one_shot_active", {}).items() if name in ONE_SHOT}
