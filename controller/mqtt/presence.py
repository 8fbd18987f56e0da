"""One reactor's MQTT presence: telemetry every tick, lifecycle status, settings, events, replies.

Everything goes through the reactor's durable outbox first (`Outbox.append`, memory only, cheap
on the tick); `maybe_commit()` makes it durable at most every COMMIT_EVERY_WALL_S of wall time and
wakes the publisher, which sends in order and deletes a message only once the broker has
acknowledged it. One MQTT connection per reactor, so each reactor has its own last will.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import Outbox
from controller.mqtt.publisher import MqttPublisher
from controller.mqtt.topics import (
    LOST_PAYLOAD,
    SEVERITY_OF_PRIORITY,
    Topics,
    alarm_payload,
    event_payload,
    setting_payload,
    status_payload,
    telemetry_payload,
)
from drivers.contract.reading import Reading
from drivers.wire.backoff import Backoff

COMMIT_EVERY_WALL_S = 0.05


class ReactorPresence:
    def __init__(
        self,
        reactor_id: str,
        settings: MqttSettings,
        outbox_path: Path,
        clock: Clock,
        *,
        run_id: str,
        time_scale: float,
        on_command: Callable[[str, bytes, bool], None],
    ) -> None:
        self.topics = Topics(reactor_id)
        self.clock = clock
        self.run_id = run_id
        self.seq = 0
        self.outbox = Outbox(outbox_path)
        self._last_commit_wall = float("-inf")
        self._scale = time_scale
        self.publisher = MqttPublisher(
            settings.with_client_id(f"{settings.client_id or 'bioreactor'}-{reactor_id}"),
            self.outbox,
            will=(self.topics.status, LOST_PAYLOAD),
            birth=lambda: [(self.topics.status, self._status("running"), True)],
            subscriptions=[self.topics.cmd, self.topics.settings_set_filter],
            on_message=on_command,
            backoff=Backoff(0.2 * time_scale, 5.0 * time_scale),
            poll_s=0.5 * time_scale,
            publish_timeout_s=10.0 * time_scale,
        )
        self._task: asyncio.Task[None] | None = None
        self._depth_at_close: int | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.publisher.run(), name=f"mqtt-{self.topics.base}")

    def _status(self, state: str) -> bytes:
        return status_payload(state, wall_ts=self.clock.wall_time(), run_id=self.run_id)

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
            readings={name: (r.value, r.unit, r.quality.name.lower())
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

    def reply(self, payload: bytes) -> None:
        self.outbox.append(self.topics.cmd_reply, payload)

    def setting(self, name: str, *, value: float, unit: str, minimum: float, maximum: float,
                description: str) -> None:
        self.outbox.append(self.topics.setting(name), setting_payload(
            value=value, unit=unit, minimum=minimum, maximum=maximum, settable=True,
            description=description), retain=True)

    def maybe_commit(self) -> None:
        wall = self.clock.wall_monotonic()
        if wall - self._last_commit_wall >= COMMIT_EVERY_WALL_S:
            self._last_commit_wall = wall
            self.outbox.commit()

    def summary(self) -> dict[str, Any]:
        stats = self.publisher.stats
        depth = self._depth_at_close if self._depth_at_close is not None else self.outbox.depth
        return {"telemetry_messages": self.seq, "published": stats.published,
                "reconnects": stats.reconnects, "outbox_depth": depth}

    # --- shutdown --------------------------------------------------------------------------
    async def stop(self, state: str = "done", timeout_s: float = 10.0) -> None:
        """Send everything committed and the final retained status, then disconnect."""
        self.outbox.commit()
        drained = await self.publisher.stop(final_status=(self.topics.status, self._status(state)),
                                            timeout_s=timeout_s * self._scale)
        if self._task is not None:
            if not drained:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._depth_at_close = self.outbox.depth
        self.outbox.close()
