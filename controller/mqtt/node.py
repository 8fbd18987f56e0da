"""A daemon's one MQTT presence (its "node", Sparkplug-style): one broker connection and one
durable outbox for every reactor it runs.

Why: a connection and an outbox per reactor meant, at 1,000 reactors, 1,000 TCP sessions and
1,000 SQLite commits every 50 ms. Here the reactors append to the node's outbox (memory, on the
tick) and the node commits it at most every COMMIT_EVERY_WALL_S of wall time for all of them.
Each reactor keeps its topics and its lifecycle (presence.py); the connection's last will is
the node's status `lost`, which a consumer applies to every reactor whose status names the
node (docs/mqtt.md, "Nodes"). On every (re)connect the birth is the node's status `running`
(listing its reactors), then each running reactor's status. Commands arrive on two wildcard
subscriptions, whatever the number of reactors, and go to the reactor they name. One for a
reactor another running node names in its retained status (several daemons on one broker) is
counted as the other node's; one for a reactor no node runs is ignored, counted and logged
(once per name).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import BatchWriter, Outbox, OutboxError
from controller.mqtt.presence import ReactorPresence
from controller.mqtt.publisher_process import ChildConfig, PublisherProcess
from controller.mqtt.topics import (
    NODE,
    ROOT,
    check_name,
    node_birth,
    node_status_topic,
    node_subscription,
    parse_topic,
    status_payload,
)

COMMIT_EVERY_WALL_S = 0.05
COMMAND_FILTERS = (f"{ROOT}/+/cmd", f"{ROOT}/+/settings/+/set")
"""Two subscriptions for any number of reactors (per-reactor filters would be 2,000 at 1,000
reactors, all re-sent on every reconnect)."""
SUBSCRIPTIONS = (*COMMAND_FILTERS, node_subscription())
"""The commands, and every node's retained status: which reactors the other nodes run."""
MAX_UNKNOWN_LOGGED = 100
"""Names of unknown reactors logged once each; past this, only counted (a peer may invent)."""
MAX_STATUS_BYTES = 1 << 20
"""Another node's status is read only up to this size (1,000 reactors' names: ~20 kB)."""
MAX_OTHER_NODES = 64
MAX_OTHER_REACTORS = 10_000
"""Other nodes, and reactors of each, remembered (a peer may invent them); past these a
command for one of theirs counts as ignored."""

CommandHandler = Callable[[str, bytes, bool], None]
log = structlog.get_logger(__name__)


class NodePresence:
    """Build, `add_reactor` for each reactor, `start()`, and `await stop(state)` at the end."""

    def __init__(
        self,
        node_id: str,
        settings: MqttSettings,
        outbox_path: Path,
        clock: Clock,
        *,
        run_id: str,
        time_scale: float,
        legacy_outboxes: Iterable[Path] = (),
    ) -> None:
        """`legacy_outboxes`: per-reactor outbox files of the older layout; what they hold is
        moved into this node's outbox (and the files deleted) so it goes out first."""
        check_name("node id", node_id)
        self.node_id = node_id
        self.clock = clock
        self.run_id = run_id
        self.status_topic = node_status_topic(node_id)
        # The publisher child checkpoints the log (between its beats), not the commits here;
        # the commits run in a thread of their own (`maybe_commit`).
        self.outbox = Outbox(outbox_path, wal_checkpoints=False)
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"outbox-{node_id}")
        self._writer: BatchWriter | None = None
        """The commit thread's own connection (made and used in that thread only)."""
        self._committing: Future[None] | None = None
        self._committing_batch: list[tuple[int, str, bytes, int, int]] = []
        self.adopted = sum(self.outbox.adopt(p) for p in legacy_outboxes if p.exists())
        self.reactors: dict[str, ReactorPresence] = {}
        self._handlers: dict[str, CommandHandler] = {}
        self.ignored_commands = 0
        """Commands for a reactor no node runs."""
        self.other_nodes_commands = 0
        """Commands for a reactor another running node runs (one broker, several daemons)."""
        self._others: dict[str, frozenset[str]] = {}
        """The reactors of each other node whose retained status says `running`."""
        self._unknown_logged: set[str] = set()
        self._last_commit_wall = float("-inf")
        self._scale = time_scale
        self.publisher = PublisherProcess(
            ChildConfig(
                settings=settings.with_client_id(settings.client_id or f"bioreactor-{node_id}"),
                outbox_path=str(outbox_path), node_id=node_id, run_id=run_id, reactors=(),
                stopped=(), subscriptions=SUBSCRIPTIONS,
                inherited_through_seq=self.outbox.inherited_through_seq),
            self.outbox, on_message=self._dispatch, on_acked=self._acked,
            time_scale=time_scale)
        self._task: asyncio.Task[None] | None = None
        self._depth_at_close: int | None = None

    def add_reactor(self, reactor_id: str, on_command: CommandHandler) -> ReactorPresence:
        """The reactor's face; its commands go to `on_command(topic, payload, retained)`."""
        if reactor_id in self.reactors:
            raise ValueError(f"reactor {reactor_id!r} is already on node {self.node_id!r}")
        face = ReactorPresence(reactor_id, self.outbox, self.clock, run_id=self.run_id,
                               node_id=self.node_id, commit=self.maybe_commit)
        self.reactors[reactor_id] = face
        self._handlers[reactor_id] = on_command
        return face

    def start(self) -> None:
        """Start the publisher child, with every reactor added by now in its birth."""
        self.publisher.config = replace(self.publisher.config, reactors=tuple(self.reactors))
        self._task = asyncio.create_task(self.publisher.run(), name=f"mqtt-node-{self.node_id}")

    def _status(self, state: str) -> bytes:
        return status_payload(state, wall_ts=self.clock.wall_time(), run_id=self.run_id,
                              reactors=list(self.reactors))

    def _birth(self) -> list[tuple[str, bytes, bool]]:
        """What the publisher child sends on each connection (it builds the same itself)."""
        return node_birth(self.node_id, self.run_id, list(self.reactors),
                          [rid for rid, face in self.reactors.items()
                           if face.final_state is not None], self.clock.wall_time())

    # --- from the connection -----------------------------------------------------------------
    def _dispatch(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = parse_topic(topic)
        handler = None if parsed is None else self._handlers.get(parsed[0])
        if handler is not None:
            handler(topic, payload, retained)
            return
        if parsed is not None and parsed[0] == NODE:
            self._node_status(parsed[1], payload)
            return
        name = "?" if parsed is None else parsed[0]
        if any(name in reactors for reactors in self._others.values()):
            self.other_nodes_commands += 1
            return
        self.ignored_commands += 1
        if name not in self._unknown_logged and len(self._unknown_logged) < MAX_UNKNOWN_LOGGED:
            self._unknown_logged.add(name)
            log.warning("mqtt.command_for_unknown_reactor", node=self.node_id, reactor=name,
                        topic=topic[:200], note="ignored; further ones for it only counted")

    def _node_status(self, rest: str, payload: bytes) -> None:
        """Another node's retained status: the reactors it runs while `running`. Read as a
        peer's: bounded, and anything unreadable forgets the node."""
        node, _, leaf = rest.partition("/")
        if leaf != "status" or node == self.node_id:
            return
        body: Any = None
        if len(payload) <= MAX_STATUS_BYTES:
            with contextlib.suppress(ValueError, RecursionError):
                body = json.loads(payload)
        if not isinstance(body, dict):
            body = {}
        reactors = body.get("reactors")
        if body.get("state") != "running" or not isinstance(reactors, list):
            self._others.pop(node, None)
        elif node in self._others or len(self._others) < MAX_OTHER_NODES:
            self._others[node] = frozenset(
                r for r in reactors[:MAX_OTHER_REACTORS] if isinstance(r, str))

    def _acked(self, counts: dict[str, int]) -> None:
        """The broker's acknowledgements since the child's last report, per reactor id."""
        for reactor_id, n in counts.items():
            face = self.reactors.get(reactor_id)
            if face is not None:
                face.published += n

    # --- from the ticks ----------------------------------------------------------------------
    def maybe_commit(self) -> None:
        """Commit every reactor's appended messages, at most every COMMIT_EVERY_WALL_S, in the
        node's commit thread: a commit of a 1,000-reactor fleet's 50 ms of messages took up to
        10 ms of SQLite work (and lock waits on the publisher child), which held whichever
        tick made it. While one is being written the next messages wait for the next call.
        The error of a failed commit (OutboxFullError on a full disk) is raised here, on the
        next call after it, with its batch back in the buffer, as a synchronous commit's was."""
        wall = self.clock.wall_monotonic()
        if wall - self._last_commit_wall < COMMIT_EVERY_WALL_S:
            return
        if not self._settle_commit():
            return
        self._last_commit_wall = wall
        batch = self.outbox.take_batch()
        if not batch:
            return
        loop = asyncio.get_running_loop()
        self._committing_batch = batch
        self._committing = future = self._committer.submit(self._write, batch)
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(self._committed, done, batch))

    def _write(self, batch: list[tuple[int, str, bytes, int, int]]) -> None:
        """In the commit thread."""
        if self._writer is None:
            self._writer = BatchWriter(self.outbox)
        self._writer.write(batch)

    def _committed(self, done: Future[None], batch: list[tuple[int, str, bytes, int, int]]
                   ) -> None:
        if not done.cancelled() and done.exception() is None:
            self.outbox.counted_in(batch)

    def _settle_commit(self) -> bool:
        """Whether no commit is being written now; a finished one's error is raised."""
        committing = self._committing
        if committing is None:
            return True
        if not committing.done():
            return False
        self._committing = None
        error = committing.exception()
        if error is not None:
            self.outbox.restore_batch(self._committing_batch)
            raise error
        return True

    async def commit(self) -> None:
        """Everything appended so far is durable when this returns: a commit being written in
        the thread is waited for, then what is left is committed here."""
        if self._committing is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._committing)
            with contextlib.suppress(OutboxError):
                self._settle_commit()
        self.outbox.commit()

    def summary(self) -> dict[str, Any]:
        """The connection's counters, once per run (each reactor's share is in its own)."""
        stats = self.publisher.stats
        depth = self._depth_at_close if self._depth_at_close is not None else self.outbox.depth
        return {"node": self.node_id, "reactors": len(self.reactors),
                "published": stats.published, "reconnects": stats.reconnects,
                "publisher_restarts": stats.restarts,
                "outbox_depth": depth, "ignored_commands": self.ignored_commands,
                "other_nodes_commands": self.other_nodes_commands,
                "adopted_from_legacy_outboxes": self.adopted}

    # --- shutdown --------------------------------------------------------------------------
    async def stop(self, state: str = "done", timeout_s: float = 10.0) -> None:
        """Each reactor's final status (those not stopped yet), everything committed, then
        the node's own final status; then disconnect (no will). A backlog that cannot be sent
        within `timeout_s` stays in the outbox for the next run, and the final statuses are
        then sent directly, so no reactor of a stopped node is left `running` at the broker."""
        for face in self.reactors.values():
            if face.final_state is None:
                face.stop(state)
        for reactor_id in self.reactors:  # births during the stop leave them out
            self.publisher.reactor_stopped(reactor_id)
        await self.commit()
        if self._task is not None:  # never started: it all waits in the outbox for next time
            await self.publisher.stop(
                final_status=(self.status_topic, self._status(state)),
                timeout_s=timeout_s * self._scale,
                urgent=[face.final_status for face in self.reactors.values()
                        if face.final_status is not None])
            if not self._task.done():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.outbox.recount()  # the child deleted what the broker acknowledged
        self._depth_at_close = self.outbox.depth
        self.outbox.close()
        if self._writer is not None:
            self._committer.submit(self._writer.close).result()
        self._committer.shutdown()
