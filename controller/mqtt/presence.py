"""One reactor's face on its node's MQTT connection: telemetry every tick, lifecycle status,
settings, events, replies.

The reactor only appends to the node's durable outbox (`Outbox.append`, memory only, cheap on
the tick); the node (node.py) makes it durable at most every COMMIT_EVERY_WALL_S of wall time
for all its reactors at once and owns the one broker connection. The reactor keeps its own
topics, its own telemetry `seq` and its own retained status, which names the node: the node's
will (`lost`) is every one of its reactors' (docs/mqtt.md, "Nodes").
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controller.clock import Clock
from controller.mqtt.outbox import Outbox
from controller.mqtt.topics import (
    SEVERITY_OF_PRIORITY,
    SummaryAlarm,
    Topics,
    alarm_payload,
    alarm_summary_payload,
    event_payload,
    setting_payload,
    status_payload,
    telemetry_payload,
)
from drivers.contract.reading import Quality, Reading

QUALITY_WORD = {q: q.name.lower() for q in Quality}
"""A reading's quality as the wire writes it (an enum's `.name` is a property: slow per tick)."""


class ReactorPresence:
    """Made by `NodePresence.add_reactor`; the Reactor's only way to the broker."""

    def __init__(
        self,
        reactor_id: str,
        outbox: Outbox,
        clock: Clock,
        *,
        run_id: str,
        node_id: str,
        commit: Callable[[], None],
    ) -> None:
        """`commit`: the node's `maybe_commit` (one commit for every reactor of the node)."""
        self.topics = Topics(reactor_id)
        self.outbox = outbox
        self.clock = clock
        self.run_id = run_id
        self.node_id = node_id
        self.maybe_commit = commit
        self.seq = 0
        self.published = 0
        """This reactor's outbox messages the broker acknowledged (counted by the node)."""
        self.final_state: str | None = None
        """The state `stop()` published; None while the reactor runs."""
        self.final_status: tuple[str, bytes] | None = None
        """That status message (topic, payload), for the node to send directly when its
        outbox cannot be drained in time."""

    def status(self, state: str) -> bytes:
        """This reactor's retained status, naming its run and its node."""
        return status_payload(state, wall_ts=self.clock.wall_time(), run_id=self.run_id,
                              node=self.node_id)

    # --- on the tick: append only ------------------------------------------------------------
    def tick(
        self, t_s: float, readings: Mapping[str, Reading], setpoints: Mapping[str, float],
        outputs: Mapping[str, float], modes: Mapping[str, str],
        recipe: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue one telemetry message; `recipe` (state and phase) only for a reactor with one."""
        self.seq += 1
        payload = telemetry_payload(
            seq=self.seq, wall_ts=self.clock.wall_time(), t_s=t_s,
            readings={name: (r.value, r.unit, QUALITY_WORD[r.quality])
                      for name, r in readings.items()},
            setpoints=setpoints, outputs=outputs, modes=modes, run_id=self.run_id,
            recipe=recipe,
        )
        self.outbox.append(self.topics.telemetry, payload)
        self.maybe_commit()

    def event(self, t_s: float, kind: str, message: str,
              data: Mapping[str, Any] | None = None) -> None:
        self.outbox.append(self.topics.events, event_payload(
            wall_ts=self.clock.wall_time(), t_s=t_s, kind=kind, message=message, data=data,
            run_id=self.run_id))

    def alarm(self, t_s: float, name: str, *, priority: str, active: bool, message: str,
              value: float | None = None, flood: Mapping[str, Any] | None = None) -> None:
        """`priority` is the alarm's (low, medium, high, critical), sent as its severity."""
        self.outbox.append(self.topics.alarms, alarm_payload(
            wall_ts=self.clock.wall_time(), t_s=t_s, name=name,
            severity=SEVERITY_OF_PRIORITY[priority], active=active, message=message,
            value=value, flood=flood, run_id=self.run_id))

    def alarm_summary(self, t_s: float, alarms: Sequence[SummaryAlarm]) -> None:
        """Retained: a subscriber that connects later starts from the whole board."""
        self.outbox.append(self.topics.alarm_summary, alarm_summary_payload(
            wall_ts=self.clock.wall_time(), t_s=t_s, alarms=alarms, run_id=self.run_id),
            retain=True)

    def reply(self, payload: bytes) -> None:
        self.outbox.append(self.topics.cmd_reply, payload)

    def setting(self, name: str, *, value: float, unit: str, description: str,
                minimum: float | None = None, maximum: float | None = None,
                settable: bool = True) -> None:
        self.outbox.append(self.topics.setting(name), setting_payload(
            value=value, unit=unit, minimum=minimum, maximum=maximum, settable=settable,
            description=description), retain=True)

    def summary(self) -> dict[str, Any]:
        """This reactor's share; the connection's own counters are the node's (once a run)."""
        return {"telemetry_messages": self.seq, "published": self.published,
                "node": self.node_id}

    # --- shutdown --------------------------------------------------------------------------
    def stop(self, state: str = "done") -> None:
        """Queue the final retained status after everything this reactor sent (the node sends
        it, then its own, when it stops); the node's births leave a stopped reactor out."""
        self.final_state = state
        self.final_status = (self.topics.status, self.status(state))
        self.outbox.append(*self.final_status, retain=True)
