"""A node's MQTT publisher in its own process, so a fleet's broker traffic runs on another core.

Why: at 1,000 reactors a second, publishing in the controller's event loop cost ~470 us a
message there (profiled: building the payload 40 %, aiomqtt/paho's publish 35 %, the PUBACKs
20 %), and those bursts made every tick group behind them late. The controller now only builds
the payloads and commits them to the node's durable outbox (SQLite, as before); this child
opens the same file, publishes what is committed (controller/mqtt/publisher.py, unchanged),
handles the PUBACKs and deletes what the broker acknowledged. The outbox stays the one place a
message waits, so nothing about durability changes: what is committed is sent, now or after an
outage, by this child or by the next run's.

A plain child interpreter (`python -m controller.mqtt.publisher_process FD`, started by
controller/child_process.py), like the historian's writer. The pipe between them carries only
small messages: to the child `wake` (a commit), `stopped` (a reactor's final status is queued),
`stop`; to the controller `msg` (a command from the broker, handed to the node's dispatch),
`beat` (every BEAT_WALL_S: acks per reactor since the last, reconnects, connected), `stopped`.

A child that dies or stops beating for WEDGED_AFTER_WALL_S is logged, counted (`restarts`),
killed and started again (the broker publishes the node's will when its connection drops, and
the new child's birth says `running` again); what it had not sent is still in the outbox. If
the controller dies, the child sees the pipe close and exits at once without a clean
disconnect, so the broker publishes the will (`lost`) for the node's reactors.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import structlog

from controller.child_process import PipeSender, start_child
from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import Outbox
from controller.mqtt.publisher import MqttPublisher, PublisherStats
from controller.mqtt.topics import LOST_PAYLOAD, node_birth, node_status_topic, parse_topic
from drivers.wire.backoff import Backoff

BEAT_WALL_S = 0.25
"""How often the child reports (acks per reactor, connection state): also its heartbeat."""
WEDGED_AFTER_WALL_S = 10.0
"""A child silent this long (wall seconds) is taken for wedged: killed and started again."""
STOP_GRACE_WALL_S = 5.0
"""Beyond the stop's own timeout, how long the child gets to report before it is killed."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ChildConfig:
    """What the child needs to connect and publish for a node (sent once, pickled)."""

    settings: MqttSettings
    outbox_path: str
    node_id: str
    run_id: str
    reactors: tuple[str, ...]
    stopped: tuple[str, ...]
    subscriptions: tuple[str, ...]
    inherited_through_seq: int
    """Messages an earlier process left (sent before the birth); 0 for a restarted child,
    whose predecessor's messages are this run's own."""


@dataclass
class ProcessStats(PublisherStats):
    restarts: int = 0
    """Publisher children that died or wedged and were started again."""


class PublisherProcess:
    """The node's side: starts, feeds, watches and stops the publisher child.

    `run()` (a task) supervises until `stop()`; `on_message(topic, payload, retained)` gets
    the commands, `on_acked(counts)` the broker's acknowledgements per reactor id.
    Durations given here are in the controller's loop time, `time_scale` loop seconds per
    wall second (the child itself works in wall time).
    """

    def __init__(self, config: ChildConfig, outbox: Outbox, *,
                 on_message: Callable[[str, bytes, bool], None],
                 on_acked: Callable[[dict[str, int]], None],
                 time_scale: float) -> None:
        self.config = config
        self.outbox = outbox
        self.on_message = on_message
        self.on_acked = on_acked
        self.scale = time_scale
        self.stats = ProcessStats(depth=outbox.depth)
        self._stopped_reactors: list[str] = list(config.stopped)
        self._pipe: Connection | None = None
        self._sender: PipeSender | None = None
        """Sends on the pipe, so a child that stops reading never holds the event loop (and
        with it the watchdog that would find it wedged): a wake a commit, up to 20 a second,
        fill the pipe's ~280 messages in 14 s, only 4 s after the watchdog's limit."""
        self._process: subprocess.Popen[bytes] | None = None
        self._heard = asyncio.Event()
        self._gone = asyncio.Event()
        self._reply: asyncio.Future[bool] | None = None
        self._stopping = False
        self._started = False
        self._backoff = Backoff(0.2 * time_scale, 5.0 * time_scale)
        self.wedged_after_wall_s = WEDGED_AFTER_WALL_S
        outbox.add_listener(self.notify)

    @property
    def pid(self) -> int | None:
        """The current child's process id (None between children)."""
        return None if self._process is None else self._process.pid

    # -- from the node ------------------------------------------------------------------------
    def notify(self) -> None:
        """A commit: the child reads the outbox now rather than at its next poll."""
        self._send(("wake",))

    def reactor_stopped(self, reactor_id: str) -> None:
        """Its final status is queued: births from now on leave it out."""
        self._stopped_reactors.append(reactor_id)
        self._send(("stopped", reactor_id))

    async def run(self) -> None:
        """Start the child; start it again whenever it dies or wedges, until `stop()`."""
        first = True
        self._started = True
        try:
            while not self._stopping:
                self._spawn(first)
                first = False
                await self._watch()
                if self._stopping:
                    return
                self.stats.restarts += 1
                self.stats.connected = False
                code = self._kill()
                self.outbox.recount()  # the dead child's deletes (rare: one COUNT a restart)
                self.stats.depth = self.outbox.committed_depth
                delay = self._backoff.next_delay_s()
                log.error("mqtt.publisher_process_restarted", node=self.config.node_id,
                          exit_code=code, restarts=self.stats.restarts,
                          retry_in_s=delay / self.scale, depth=self.stats.depth,
                          note="unsent messages wait in the outbox; the new child sends them")
                await asyncio.sleep(delay)
        finally:
            if not self._stopping:
                self._kill()

    async def stop(self, final_status: tuple[str, bytes] | None = None,
                   timeout_s: float = 5.0, *,
                   urgent: Sequence[tuple[str, bytes]] = ()) -> bool:
        """As MqttPublisher.stop (`timeout_s` in loop time), done by the child; True when
        everything committed and the final status went out in time."""
        self._stopping = True
        ok = False
        if self._started and (self._pipe is None or self._gone.is_set()):
            # Died just now: one more child sends the backlog and the final statuses.
            self._kill()
            self._spawn(first=False)
        if self._pipe is not None and not self._gone.is_set():
            self._reply = asyncio.get_running_loop().create_future()
            self._send(("stop", final_status, timeout_s / self.scale, list(urgent)))
            with contextlib.suppress(TimeoutError):
                ok = await asyncio.wait_for(
                    asyncio.shield(self._reply),
                    2 * timeout_s + STOP_GRACE_WALL_S * self.scale)
        if not ok:
            log.warning("mqtt.stop_incomplete", node=self.config.node_id,
                        connected=self.stats.connected)
        self._kill()
        return ok

    # -- the child ----------------------------------------------------------------------------
    def _spawn(self, first: bool) -> None:
        self._process, self._pipe = start_child("controller.mqtt.publisher_process")
        self._sender = PipeSender(self._pipe, f"mqtt-{self.config.node_id}-sender")
        self._gone.clear()
        config = self.config if first else _replace_for_restart(self.config,
                                                                 self._stopped_reactors)
        self._sender.send_bytes(pickle.dumps(config, pickle.HIGHEST_PROTOCOL))
        asyncio.get_running_loop().add_reader(self._pipe.fileno(), self._readable)

    async def _watch(self) -> None:
        """Return when the child is gone or has been silent for WEDGED_AFTER_WALL_S."""
        while not self._gone.is_set():
            self._heard.clear()
            waiter = asyncio.ensure_future(self._heard.wait())
            gone = asyncio.ensure_future(self._gone.wait())
            done, _ = await asyncio.wait({waiter, gone},
                                         timeout=self.wedged_after_wall_s * self.scale,
                                         return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            gone.cancel()
            if not done:
                if self._stopping:  # the stop's own timeout decides now
                    return
                log.error("mqtt.publisher_process_wedged", node=self.config.node_id,
                          silent_s=self.wedged_after_wall_s)
                return

    def _readable(self) -> None:
        pipe = self._pipe
        try:
            while pipe is not None and pipe.poll():
                self._handle(pipe.recv())
        except (EOFError, OSError):
            self._closed()

    def _handle(self, message: tuple[Any, ...]) -> None:
        self._heard.set()
        kind = message[0]
        if kind == "msg":
            self.on_message(message[1], message[2], message[3])
        elif kind in ("beat", "stopped"):
            acked, reconnects, connected, last_error = message[1:5]
            if acked:
                self.on_acked(acked)
                self.stats.published += sum(acked.values())
            self.stats.reconnects += reconnects
            self.stats.connected = connected
            self.stats.last_error = last_error
            if kind == "stopped" and self._reply is not None and not self._reply.done():
                self._reply.set_result(message[5])

    def _closed(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._pipe.fileno())
        self._gone.set()
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(False)

    def _send(self, message: tuple[Any, ...]) -> None:
        sender = self._sender
        if sender is None or self._gone.is_set():
            return  # the supervisor restarts the child; it reads the outbox afresh
        if sender.error is not None:
            self._closed()
            return
        sender.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def _kill(self) -> int | None:
        """End the child (if it has not ended) and close the pipe; its exit code."""
        self._closed()
        sender, self._sender = self._sender, None
        if sender is not None and not sender.stop(abandon=True):
            log.error("mqtt.publisher_sender_not_stopped", node=self.config.node_id)
        if self._pipe is not None:
            self._pipe.close()
            self._pipe = None
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.kill()
        code = self._process.wait()
        self._process = None
        return code


def _replace_for_restart(config: ChildConfig, stopped: Sequence[str]) -> ChildConfig:
    return ChildConfig(config.settings, config.outbox_path, config.node_id, config.run_id,
                       config.reactors, tuple(stopped), config.subscriptions, 0)


# --- in the child ---------------------------------------------------------------------------
async def _serve(pipe: Connection, config: ChildConfig) -> None:
    """Publish for the node until told to stop; exit at once when the controller is gone."""
    clock = Clock()
    stopped = set(config.stopped)
    acked: Counter[str] = Counter()
    outbox = Outbox(config.outbox_path)
    outbox.inherited_through_seq = min(outbox.inherited_through_seq,
                                       config.inherited_through_seq)

    def count(topic: str) -> None:
        parsed = parse_topic(topic)
        if parsed is not None:
            acked[parsed[0]] += 1

    publisher = MqttPublisher(
        config.settings, outbox, will=(node_status_topic(config.node_id), LOST_PAYLOAD),
        birth=lambda: node_birth(config.node_id, config.run_id, config.reactors, stopped,
                                 clock.wall_time()),
        subscriptions=config.subscriptions,
        on_message=lambda topic, payload, retained: pipe.send(
            ("msg", topic, bytes(payload), retained)),
        on_acked=count, backoff=Backoff(0.2, 5.0), poll_s=0.5, publish_timeout_s=10.0)
    reported_reconnects = 0

    def report(kind: str, *extra: Any) -> None:
        nonlocal reported_reconnects
        stats = publisher.stats
        pipe.send((kind, dict(acked), stats.reconnects - reported_reconnects, stats.connected,
                   stats.last_error, *extra))
        acked.clear()
        reported_reconnects = stats.reconnects

    loop = asyncio.get_running_loop()
    orders: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def readable() -> None:
        try:
            while pipe.poll():
                message = pipe.recv()
                if message[0] == "wake":
                    publisher.notify()
                elif message[0] == "stopped":
                    stopped.add(message[1])
                else:
                    orders.put_nowait(message)
        except (EOFError, OSError):
            os._exit(3)  # the controller is gone: drop the link so the broker sends the will

    loop.add_reader(pipe.fileno(), readable)
    task = asyncio.create_task(publisher.run())
    stopping: asyncio.Future[bool] | None = None
    while True:  # a beat every BEAT_WALL_S, during the stop too (it may take a while)
        if stopping is None:
            with contextlib.suppress(TimeoutError):
                _, final_status, timeout_s, urgent = await asyncio.wait_for(orders.get(),
                                                                             BEAT_WALL_S)
                stopping = asyncio.ensure_future(
                    publisher.stop(final_status, timeout_s, urgent=urgent))
        else:
            await asyncio.wait({stopping}, timeout=BEAT_WALL_S)
            if stopping.done():
                if not task.done():  # never connected: nothing more to wait for
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                outbox.close()
                report("stopped", stopping.result())
                return
        if task.done() and stopping is None:  # run() ended unasked: a bug; be restarted
            task.result()
            raise RuntimeError("publisher ended without a stop")
        outbox.checkpoint_wal()  # the controller's commits leave it to this process
        report("beat")


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the controller decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pipe = Connection(fd)
    config: ChildConfig = pipe.recv()
    asyncio.run(_serve(pipe, config))


if __name__ == "__main__":
    main(int(sys.argv[1]))
