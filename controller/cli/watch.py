"""A live terminal view of one or all reactors, straight from the MQTT topics.

Read-only and independent of the controller process: anyone with a broker account can watch.
`render(state)` is pure so the view is tested without a terminal; `watch()` only feeds it.
Redraws are throttled (~4/s) so a fast telemetry stream does not flood a slow terminal.
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiomqtt
import structlog

from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import parse_topic, subscription
from drivers.wire.backoff import Backoff

log = structlog.get_logger(__name__)
MAX_ALARMS = 5
CLEAR_HOME = "\x1b[2J\x1b[H"


@dataclass
class ReactorView:
    status: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_ALARMS))
    gaps: int = 0
    """Telemetry seq numbers skipped (a lost message would show here)."""


@dataclass
class WatchState:
    reactors: dict[str, ReactorView] = field(default_factory=dict)

    def update(self, topic: str, payload: bytes) -> bool:
        """Fold one message into the state; True when it was telemetry (a redraw point)."""
        parsed = parse_topic(topic)
        if parsed is None:
            return False
        reactor, rest = parsed
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            return False
        if not isinstance(body, dict):
            return False
        view = self.reactors.setdefault(reactor, ReactorView())
        if rest == "status":
            view.status = body
        elif rest == "telemetry":
            last = view.telemetry.get("seq")
            seq = body.get("seq")
            if isinstance(last, int) and isinstance(seq, int) and seq > last + 1:
                view.gaps += seq - last - 1
            view.telemetry = body
            return True
        elif rest == "alarms":
            view.alarms.append(body)
        elif rest.startswith("settings/") and not rest.endswith("/set"):
            view.settings[rest.removeprefix("settings/")] = body
        return False


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(state: WatchState) -> str:
    """The whole screen as text: per reactor status, readings, loops, outputs, last alarms."""
    if not state.reactors:
        return "waiting for bioreactor/... messages\n"
    lines: list[str] = []
    for reactor in sorted(state.reactors):
        v = state.reactors[reactor]
        tel = v.telemetry
        head = f"== {reactor}  state={v.status.get('state', '?')}"
        if tel:
            head += f"  seq={tel.get('seq')}  t={_fmt(tel.get('t_s'))}s  {tel.get('wall_ts', '')}"
        if v.gaps:
            head += f"  GAPS={v.gaps}"
        lines.append(head)
        readings = tel.get("readings", {})
        for name in sorted(readings):
            r = readings[name]
            quality = r.get("quality", "?")
            flag = "" if quality == "good" else f"  [{quality.upper()}]"
            lines.append(f"  {name:<24} {_fmt(r.get('value')):>12} {r.get('unit', ''):<10}{flag}")
        setpoints, modes = tel.get("setpoints", {}), tel.get("modes", {})
        for loop in sorted(set(setpoints) | set(modes)):
            lines.append(f"  loop {loop:<19} sp={_fmt(setpoints.get(loop)):>10}  "
                         f"mode={modes.get(loop, '?')}")
        outputs = tel.get("outputs", {})
        if outputs:
            lines.append("  outputs: " + "  ".join(f"{k}={_fmt(outputs[k])}"
                                                   for k in sorted(outputs)))
        for alarm in v.alarms:
            state_txt = "ACTIVE" if alarm.get("active") else "cleared"
            lines.append(f"  alarm {alarm.get('severity', '?')} {alarm.get('name', '?')} "
                         f"{state_txt}: {alarm.get('message', '')}")
    return "\n".join(lines) + "\n"


async def watch(settings: MqttSettings, reactor: str | None, out: TextIO = sys.stdout, *,
                min_interval_s: float = 0.25, backoff: Backoff | None = None) -> None:
    """Subscribe and redraw until cancelled; reconnects with backoff when the broker goes."""
    state = WatchState()
    tty = out.isatty()
    loop = asyncio.get_running_loop()
    backoff = backoff or Backoff(0.2, 5.0)
    # Its own client id: never take over the controller's session.
    client_settings = settings.with_client_id(f"watch-{uuid.uuid4().hex[:8]}")
    last_draw = -1e9
    pending: asyncio.TimerHandle | None = None

    def draw() -> None:
        nonlocal last_draw, pending
        pending = None
        last_draw = loop.time()
        out.write((CLEAR_HOME if tty else "") + render(state) + ("" if tty else "\n"))
        out.flush()

    try:
        while True:
            try:
                async with aiomqtt.Client(**client_settings.client_kwargs()) as client:
                    backoff.reset()
                    await client.subscribe(subscription(reactor), qos=1)
                    async for message in client.messages:
                        payload = message.payload
                        raw = (payload if isinstance(payload, bytes)
                               else str(payload or "").encode())
                        if not state.update(str(message.topic), raw) or pending is not None:
                            continue
                        wait = last_draw + min_interval_s - loop.time()
                        if wait <= 0:
                            draw()
                        else:  # throttled: draw the latest state once the interval is over
                            pending = loop.call_later(wait, draw)
            except aiomqtt.MqttError as exc:
                delay = backoff.next_delay_s()
                log.warning("watch.outage", broker=settings.url, error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
    finally:
        if pending is not None:
            pending.cancel()
