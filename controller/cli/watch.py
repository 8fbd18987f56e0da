"""`bioreactor watch`: a live terminal view of one or all reactors, straight from the MQTT topics.

Read-only and independent of the controller process: anyone with a broker account can watch. The
pieces: view/payload.py reads a possibly hostile payload, view/fleet_state.py folds messages into a
view state, watch_render.py draws it (pure, tested without a terminal); this module only feeds
them. The screen is redrawn when a message changes it (at most every `min_interval_s`, so a fast
telemetry stream does not flood a slow terminal) and at least every `refresh_s` without any
message, so data ages keep counting and a will's `lost` shows even when telemetry has stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from typing import TextIO

import aiomqtt
import structlog

from controller.cli.watch_render import render
from controller.mqtt.client import Client
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import node_subscription, subscription
from controller.view.fleet_state import FleetState
from controller.view.payload import text
from drivers.wire.backoff import Backoff

log = structlog.get_logger(__name__)
CLEAR_HOME = "\x1b[2J\x1b[H"


async def watch(settings: MqttSettings, reactor: str | None, out: TextIO = sys.stdout, *,
                min_interval_s: float = 0.25, refresh_s: float = 1.0,
                backoff: Backoff | None = None) -> None:
    """Subscribe and redraw until cancelled; reconnects with backoff when the broker goes.

    Receiving and drawing are two tasks of one group: should either fail, watch ends rather
    than leave a frozen screen that looks live.
    """
    state = FleetState()
    changed = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(_redraw_forever(state, out, changed, min_interval_s, refresh_s))
        group.create_task(_receive_forever(state, changed, settings, reactor,
                                           backoff or Backoff(0.2, 5.0)))


async def _receive_forever(state: FleetState, changed: asyncio.Event, settings: MqttSettings,
                           reactor: str | None, backoff: Backoff) -> None:
    loop = asyncio.get_running_loop()
    # Its own client id: never take over the controller's session.
    client_settings = settings.with_client_id(f"watch-{uuid.uuid4().hex[:8]}")
    while True:
        try:
            async with Client(**client_settings.client_kwargs()) as client:
                backoff.reset()
                await client.subscribe(subscription(reactor), qos=1)
                if reactor is not None:  # `bioreactor/+/#` has the nodes' statuses already
                    await client.subscribe(node_subscription(), qos=1)
                state.link = f"connected to {settings.url}"
                changed.set()
                async for message in client.messages:
                    payload = message.payload
                    raw = (bytes(payload) if isinstance(payload, (bytes, bytearray))
                           else str(payload or "").encode())
                    if state.update(str(message.topic), raw, loop.time()):
                        changed.set()
        except aiomqtt.MqttError as exc:
            delay = backoff.next_delay_s()
            log.warning("watch.outage", broker=settings.url, error=str(exc), retry_in_s=delay)
            state.link = f"broker unreachable ({text(str(exc))}); retrying in {delay:.1f} s"
            changed.set()
            await asyncio.sleep(delay)


async def _redraw_forever(state: FleetState, out: TextIO, changed: asyncio.Event,
                          min_interval_s: float, refresh_s: float) -> None:
    tty = out.isatty()
    loop = asyncio.get_running_loop()
    while True:
        changed.clear()
        out.write((CLEAR_HOME if tty else "") + render(state, loop.time()) + ("" if tty else "\n"))
        out.flush()
        await asyncio.sleep(min_interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), max(refresh_s - min_interval_s, 0.0))
