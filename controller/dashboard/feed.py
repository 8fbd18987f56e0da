"""The dashboard's one MQTT subscription, folded into the FleetState every page reads, and the
fan-out of "this reactor changed" to each open live feed (SSE client).

One subscription serves every browser: a hundred open pages cost the broker nothing more. Each
client gets a `Listener` holding the *set* of reactor ids changed since it last sent, not a
queue of messages: a slow client's backlog can never be larger than the fleet, and what it
sends when it catches up is the latest view (coalescing), never a stale one.
"""
from __future__ import annotations

import asyncio
import uuid

import aiomqtt
import structlog

from controller.mqtt.client import Client
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import NODE, parse_topic, subscription
from controller.view.fleet_state import MAX_REACTORS, FleetState
from controller.view.payload import text
from drivers.wire.backoff import Backoff

log = structlog.get_logger(__name__)

MAX_LISTENERS = 256
"""Open live feeds at once; one more is refused (a runaway tab cannot exhaust the server)."""


class TooManyListeners(Exception):
    """MAX_LISTENERS feeds are open already."""


class Listener:
    """One client's pending changes: the reactor ids changed since it last took them."""

    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.link_changed = False
        self.wake = asyncio.Event()

    def take(self) -> set[str]:
        """The ids changed since the last call; clears them."""
        ids, self.pending = self.pending, set()
        self.wake.clear()
        return ids


class Feed:
    """Subscribes to every reactor's topics and keeps `state` current until cancelled."""

    def __init__(self, settings: MqttSettings, *,
                 backoff: Backoff | None = None, max_reactors: int = MAX_REACTORS) -> None:
        self.settings = settings
        self.state = FleetState(max_reactors=max_reactors)
        self.closing = False
        """Set at shutdown: every live feed ends, so the server stops without cutting them."""
        self._backoff = backoff or Backoff(0.2, 5.0)
        self._listeners: set[Listener] = set()
        self.connected = asyncio.Event()

    def listen(self) -> Listener:
        """A new client's listener, already pending on every known reactor (its first view)."""
        if self.closing:
            raise TooManyListeners("the dashboard is shutting down")
        if len(self._listeners) >= MAX_LISTENERS:
            raise TooManyListeners(f"{MAX_LISTENERS} live feeds are open already")
        listener = Listener()
        listener.pending.update(self.state.reactors)
        listener.wake.set()
        self._listeners.add(listener)
        return listener

    def close(self) -> None:
        """End every live feed (they see `closing` when woken) and refuse new ones."""
        self.closing = True
        for listener in self._listeners:
            listener.wake.set()

    def unlisten(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def fold(self, topic: str, payload: bytes, now_s: float) -> None:
        """One message into the state, and the reactors it changed to every listener."""
        if not self.state.update(topic, payload, now_s):
            return
        parsed = parse_topic(topic)
        if parsed is None:
            return
        reactor_id, rest = parsed
        if reactor_id == NODE:  # a node's will changes how all its reactors read
            node = rest.partition("/")[0]
            changed = {rid for rid, v in self.state.reactors.items() if v.node == node}
        else:
            name = text(reactor_id, 40) or "?"
            changed = {name} if name in self.state.reactors else set()
        self._notify(changed)

    def _notify(self, changed: set[str], *, link: bool = False) -> None:
        for listener in self._listeners:
            listener.pending |= changed
            listener.link_changed |= link
            if changed or link:
                listener.wake.set()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        # Its own client id: never take over the controller's session (nor a watch's).
        settings = self.settings.with_client_id(f"dashboard-{uuid.uuid4().hex[:8]}")
        while True:
            try:
                async with Client(**settings.client_kwargs()) as client:
                    self._backoff.reset()
                    await client.subscribe(subscription(None), qos=1)
                    self.state.link = f"connected to {self.settings.url}"
                    self.connected.set()
                    self._notify(set(), link=True)
                    async for message in client.messages:
                        payload = message.payload
                        raw = (bytes(payload) if isinstance(payload, (bytes, bytearray))
                               else str(payload or "").encode())
                        self.fold(str(message.topic), raw, loop.time())
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = self._backoff.next_delay_s()
                log.warning("dashboard.outage", broker=self.settings.url, error=str(exc),
                            retry_in_s=delay)
                self.state.link = (f"broker unreachable ({text(str(exc))}); "
                                   f"retrying in {delay:.1f} s")
                self._notify(set(), link=True)
                await asyncio.sleep(delay)
