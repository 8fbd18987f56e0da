"""MQTT publisher: drains the durable outbox to the broker, in order, across outages.

Why this shape:
- The control tick never touches the network: it only calls `Outbox.append` / `commit`. This
  task sends what is committed and deletes a message only after the broker's PUBACK (aiomqtt
  2.x `Client.publish(qos=1)` awaits paho's `on_publish`, which paho fires on PUBACK for QoS 1;
  see aiomqtt/client.py `publish` and paho `_handle_pubackcomp`).
- Several publishes are in flight for throughput. They are started in outbox order (paho
  writes PUBLISH packets in call order on the one connection, so the broker receives them in
  order) and acked in order, so the outbox always holds a contiguous tail: after a drop,
  sending resumes from the oldest unacked message. Duplicates are possible (at-least-once);
  gaps and reordering of first deliveries are not. Consumers deduplicate by payload `seq`.
- Reconnect: the aiomqtt 2.x pattern, a loop around `async with client:` catching
  `aiomqtt.MqttError`, with the shared deterministic Backoff. Each outage is logged and
  counted. Birth (retained status) is published first on every connection; the Will
  `{"state": "lost"}` covers a crash or a dropped link.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import structlog

from controller.mqtt.client import Client
from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import Outbox
from drivers.wire.backoff import Backoff

Birth = Sequence[tuple[str, bytes, bool]]
BirthSource = Birth | Callable[[], Birth]

log = structlog.get_logger(__name__)


@dataclass
class PublisherStats:
    published: int = 0
    """Messages the broker acknowledged (PUBACK) and the outbox deleted."""
    reconnects: int = 0
    """Failed connection attempts and lost connections."""
    depth: int = 0
    """Outbox depth at the last update."""
    connected: bool = False
    last_error: str | None = None


class MqttPublisher:
    """Runs until cancelled (or `stop()`): connect, birth, subscribe, drain, receive."""

    def __init__(
        self,
        settings: MqttSettings,
        outbox: Outbox,
        *,
        will: tuple[str, bytes],
        birth: BirthSource = (),
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes, bool], None] | None = None,
        on_acked: Callable[[str], None] | None = None,
        backoff: Backoff | None = None,
        window: int = 128,
        poll_s: float = 1.0,
        publish_timeout_s: float = 10.0,
    ) -> None:
        """`window`: publishes in flight. `poll_s`: how often the outbox is re-read even
        without a commit notification (covers a producer in another process). `on_acked`:
        called with the topic of each outbox message the broker acknowledged (a node counts
        what each of its reactors got out)."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.settings = settings
        self.outbox = outbox
        self.will = will
        self.birth = birth
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_acked = on_acked
        self.backoff = backoff or Backoff(0.2, 10.0)
        self.window = window
        self.poll_s = poll_s
        self.publish_timeout_s = publish_timeout_s
        self.stats = PublisherStats(depth=outbox.depth)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._final: tuple[str, bytes] | None = None
        self._urgent: list[tuple[str, bytes]] = []
        self._give_up = asyncio.Event()
        self._finished = asyncio.Event()
        outbox.add_listener(self.notify)

    # -- control -------------------------------------------------------------------------
    def notify(self) -> None:
        """Non-blocking: a batch was committed, send it promptly. Call from the loop thread."""
        self._wake.set()

    async def stop(self, final_status: tuple[str, bytes] | None = None,
                   timeout_s: float = 5.0, *,
                   urgent: Sequence[tuple[str, bytes]] = ()) -> bool:
        """Drain what is committed, publish `final_status` (retained), disconnect cleanly.

        Returns True when all of it happened within `timeout_s`. Otherwise, connected but
        behind (a backlog longer than the time allowed), it stops draining, publishes `urgent`
        and then `final_status` directly (retained; e.g. the final statuses that wait in the
        outbox behind the backlog), so the broker does not keep saying `running` for a process
        that is gone, disconnects cleanly and returns False; the unsent messages stay in the
        outbox for next time. Not connected at all, it returns False and run() is left to the
        caller to cancel.
        """
        self._final = final_status
        self._stopping.set()
        self._wake.set()
        finished = asyncio.ensure_future(self._finished.wait())
        try:
            await asyncio.wait_for(asyncio.shield(finished), timeout_s)
            return True
        except TimeoutError:
            log.warning("mqtt.stop_timeout", depth=self.outbox.depth, timeout_s=timeout_s,
                        connected=self.stats.connected)
        if self.stats.connected:
            self._urgent = list(urgent)
            self._give_up.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(finished), timeout_s)
        finished.cancel()
        return False

    # -- main loop -----------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, publish, reconnect with backoff; return only after a graceful stop()."""
        loop = asyncio.get_running_loop()
        outage_since: float | None = None
        try:
            while True:
                client = self._client()
                try:
                    async with client:
                        self.stats.connected = True
                        self.backoff.reset()
                        log.info("mqtt.connected", broker=self.settings.url,
                                 outage_s=None if outage_since is None
                                 else round(loop.time() - outage_since, 3),
                                 depth=self.outbox.depth, reconnects=self.stats.reconnects)
                        outage_since = None
                        await self._session(client)
                        return  # graceful stop: leaving the context sends DISCONNECT (no will)
                except aiomqtt.MqttError as exc:
                    self.stats.connected = False
                    self.stats.reconnects += 1
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    if outage_since is None:
                        outage_since = loop.time()
                    delay = self.backoff.next_delay_s()
                    log.warning("mqtt.outage", broker=self.settings.url,
                                error=self.stats.last_error,
                                attempt=self.backoff.attempts, retry_in_s=delay,
                                depth=self.outbox.depth)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    # Stopping while the broker is away: keep trying until stop() times out.
        finally:
            self.stats.connected = False
            self.outbox.flush_acks()
            self.stats.depth = self.outbox.depth

    def _client(self) -> aiomqtt.Client:
        topic, payload = self.will
        client = Client(
            **self.settings.client_kwargs(),
            will=aiomqtt.Will(topic, payload, qos=1, retain=True),
            max_inflight_messages=self.window,
            timeout=self.publish_timeout_s,
        )
        # A full window is normal here, not the leak aiomqtt's warning is meant to catch.
        client.pending_calls_threshold = self.window + 16
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        receiver = asyncio.create_task(self._receive(client))
        try:
            if self.outbox.inherited_through_seq:
                # An earlier process's unsent messages (an older run's, after a kill) go out
                # before this process's birth: never an older run's telemetry after ours.
                await self._drain(client, receiver,
                                  through_seq=self.outbox.inherited_through_seq)
                self.outbox.inherited_through_seq = 0
            births = [] if self._give_up.is_set() else list(
                self.birth() if callable(self.birth) else self.birth)
            await self._publish_all(client, births)
            for sub in self.subscriptions:
                await client.subscribe(sub, qos=1)
            await self._drain(client, receiver)
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await receiver
        finals = [*(self._urgent if self._give_up.is_set() else []),
                  *([] if self._final is None else [self._final])]
        await self._publish_all(client, [(topic, payload, True) for topic, payload in finals])
        self._finished.set()

    async def _publish_all(self, client: aiomqtt.Client, messages: Birth) -> None:
        """Publish (topic, payload, retain) messages in order, `window` of them in flight at a
        time: a node's birth and final statuses are one per reactor, and a round trip each
        would take seconds for a thousand."""
        messages = list(messages)
        for start in range(0, len(messages), self.window):
            await asyncio.gather(*(client.publish(topic, payload, qos=1, retain=retain)
                                   for topic, payload, retain
                                   in messages[start:start + self.window]))

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand incoming messages to on_message; a failing handler never drops the link."""
        async for message in client.messages:
            if self.on_message is None:
                continue
            payload = message.payload
            if isinstance(payload, str):
                payload = payload.encode()
            elif not isinstance(payload, (bytes, bytearray)):
                payload = b"" if payload is None else str(payload).encode()
            try:  # bytes as received (no copy): the handler checks the size before parsing
                self.on_message(str(message.topic), payload, bool(message.retain))
            except Exception:
                log.exception("mqtt.on_message_failed", topic=str(message.topic))

    async def _drain(self, client: aiomqtt.Client, receiver: asyncio.Task[None], *,
                     through_seq: int | None = None) -> None:
        """Send committed messages oldest first, `window` in flight, ack in order.

        Returns when stopping and everything committed is acked, or (with `through_seq`) once
        every message up to that seq is acked, or when stop() gives up waiting; raises
        MqttError when the connection drops (the receiver sees the disconnect first and its
        error is re-raised).
        """
        in_flight: deque[tuple[int, str, asyncio.Task[None]]] = deque()
        on_acked = self.on_acked
        cursor = 0
        try:
            while True:
                # Ack every finished publish at the head, in order.
                while in_flight and in_flight[0][2].done():
                    seq, topic, task = in_flight.popleft()
                    task.result()  # raises MqttError on a failed publish
                    self.outbox.ack(seq)
                    self.stats.published += 1
                    if on_acked is not None:
                        on_acked(topic)
                if self._give_up.is_set():  # stop() ran out of time: the rest waits
                    return
                room = self.window - len(in_flight)
                if room > 0:
                    self._wake.clear()
                    for msg in self.outbox.peek(room, after=cursor):
                        if through_seq is not None and msg.seq > through_seq:
                            break
                        task = asyncio.ensure_future(client.publish(
                            msg.topic, msg.payload, qos=msg.qos, retain=msg.retain))
                        in_flight.append((msg.seq, msg.topic, task))
                        cursor = msg.seq
                self.stats.depth = self.outbox.depth
                if not in_flight:
                    if self._stopping.is_set() or through_seq is not None:
                        return
                    waiter = asyncio.ensure_future(self._wake.wait())
                    done, _ = await asyncio.wait({waiter, receiver}, timeout=self.poll_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if receiver in done:
                        receiver.result()
                        raise aiomqtt.MqttError("receiver stopped")
                    continue
                head = in_flight[0][2]
                done, _ = await asyncio.wait({head, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if receiver in done:
                    receiver.result()  # the disconnect error
                    raise aiomqtt.MqttError("receiver stopped")
        finally:
            for _, _, task in in_flight:
                task.cancel()
            for _, _, task in in_flight:
                with contextlib.suppress(BaseException):
                    await task
            self.outbox.flush_acks()
            self.stats.depth = self.outbox.depth
