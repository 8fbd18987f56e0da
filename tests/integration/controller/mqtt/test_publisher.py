"""Outbox + MqttPublisher against a real Mosquitto: order, no gaps, outages, will, TLS, auth."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import aiomqtt
import pytest
from plugins.configs import REPO
from plugins.mosquitto import PASSWORD, USER, Broker
from plugins.waiting import async_wait_until

from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.node import NodePresence
from controller.mqtt.outbox import Outbox
from controller.mqtt.presence import ReactorPresence
from controller.mqtt.publisher import MqttPublisher
from controller.mqtt.topics import LOST_PAYLOAD, Topics, status_payload, telemetry_payload
from drivers.wire.backoff import Backoff

T = Topics("r1")
PROBE = "test/probe"


def tick_payload(seq: int) -> bytes:
    readings = {f"ch{i}": (20.0 + i + seq * 1e-3, "u", "good") for i in range(8)}
    return telemetry_payload(seq=seq, wall_ts=1.7e9 + seq, t_s=seq * 1.0, readings=readings,
                             setpoints={"temp": 37.0}, outputs={"heater_pct": 12.5},
                             modes={"temp": "auto"})


def make_publisher(settings: MqttSettings, outbox: Outbox, **kw: object) -> MqttPublisher:
    return MqttPublisher(
        settings, outbox, will=(T.status, LOST_PAYLOAD),
        birth=[(T.status, status_payload("running"), True)],
        backoff=Backoff(0.05, 0.5), **kw)  # type: ignore[arg-type]


class Sub:
    """An independent subscriber: mosquitto_sub, persistent session, QoS 1, reconnects itself."""

    def __init__(self, b: Broker, topic: str, client_id: str = "test-sub") -> None:
        self.b, self.topic, self.client_id = b, topic, client_id
        self.lines: list[tuple[str, str]] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    def _auth(self) -> list[str]:
        return ["-u", USER, "-P", PASSWORD] if self.b.users else []

    async def start(self) -> Sub:
        self.proc = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.b.port), *self._auth(),
            "-c", "-i", self.client_id, "-q", "1", "-v", "-t", self.topic, "-t", PROBE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        self.reader = asyncio.create_task(self._read())

        def probe_seen() -> bool:
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.b.port),
                            *self._auth(), "-t", PROBE, "-m", "probe", "-q", "1"], check=True)
            return any(t == PROBE for t, _ in self.lines)

        await async_wait_until(probe_seen, 30, "mosquitto_sub to see the probe", poll_s=0.05)
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for raw in self.proc.stdout:
            topic, _, payload = raw.decode().rstrip("\n").partition(" ")
            self.lines.append((topic, payload))

    def seqs(self) -> list[int]:
        return [json.loads(p)["seq"] for t, p in self.lines if t == self.topic]

    async def wait_for(self, n: int, timeout_s: float) -> list[int]:
        """The sequence numbers seen once `n` have arrived, or at `timeout_s` (the caller's
        assertion then says what is missing)."""
        with contextlib.suppress(AssertionError):
            await async_wait_until(lambda: len(set(self.seqs())) >= n, timeout_s,
                                   f"{n} sequence numbers", poll_s=0.05)
        return self.seqs()

    async def close(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self.reader:
            self.reader.cancel()


def assert_complete_in_order(seqs: list[int], n: int) -> None:
    """At-least-once: duplicates allowed; first deliveries are exactly 1..n in order."""
    first: list[int] = []
    seen: set[int] = set()
    for s in seqs:
        if s not in seen:
            seen.add(s)
            first.append(s)
    missing = sorted(set(range(1, n + 1)) - seen)
    assert not missing, f"{len(missing)} lost, first: {missing[:10]}"
    assert first == list(range(1, n + 1)), "first deliveries out of order"


async def produce(outbox: Outbox, start: int, count: int, batch: int = 50,
                  pause_s: float = 0.0) -> None:
    for seq in range(start, start + count):
        outbox.append(T.telemetry, tick_payload(seq))
        if seq % batch == 0:
            outbox.commit()
            await asyncio.sleep(pause_s)
    outbox.commit()


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_every_message_arrives_in_order(broker, tmp_path: Path) -> None:
    b = broker()
    sub = await Sub(b, T.telemetry).start()
    outbox = Outbox(tmp_path / "outbox.db")
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-a"), outbox)
    task = asyncio.create_task(pub.run())
    try:
        n = 5000
        await produce(outbox, 1, n)
        seqs = await sub.wait_for(n, 30)
        assert_complete_in_order(seqs, n)
        await async_wait_until(lambda: outbox.depth == 0, 2, "the outbox drained")
        assert pub.stats.published == n + 0  # birth is not an outbox message
        assert pub.stats.reconnects == 0
    finally:
        try:
            await stop_task(task)
        finally:  # the subscriber process is stopped even if the publisher crashed
            await sub.close()
            outbox.close()


async def test_broker_restart_mid_stream_loses_nothing(broker, tmp_path: Path) -> None:
    b = broker()
    sub = await Sub(b, T.telemetry, client_id="sub-restart").start()
    outbox = Outbox(tmp_path / "outbox.db")
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-b"), outbox)
    task = asyncio.create_task(pub.run())
    try:
        await produce(outbox, 1, 1500)  # a burst: the broker stops with publishes in flight
        await asyncio.to_thread(b.stop)
        await produce(outbox, 1501, 1500, pause_s=0.01)  # keeps appending while down (~0.3 s)
        await async_wait_until(lambda: not pub.stats.connected, 10,
                               "the publisher to see the outage")
        assert outbox.depth > 0
        await asyncio.to_thread(b.start)
        await produce(outbox, 3001, 1000, pause_s=0.002)
        seqs = await sub.wait_for(4000, 90)
        assert_complete_in_order(seqs, 4000)
        assert pub.stats.reconnects >= 1
    finally:
        try:
            await stop_task(task)
        finally:  # the subscriber process is stopped even if the publisher crashed
            await sub.close()
            outbox.close()


PUBLISHER_SCRIPT = """
import asyncio, sys
from controller.mqtt.link import MqttSettings
from controller.mqtt.outbox import Outbox
from controller.mqtt.publisher import MqttPublisher
from controller.mqtt.topics import LOST_PAYLOAD, Topics, status_payload
t = Topics("r9")
ob = Outbox(sys.argv[2])
pub = MqttPublisher(MqttSettings.from_url(sys.argv[1], client_id="ctrl-kill"), ob,
                    will=(t.status, LOST_PAYLOAD),
                    birth=[(t.status, status_payload("running"), True)])
asyncio.run(pub.run())
"""


async def test_kill_9_publishes_retained_lost_will(broker, tmp_path: Path) -> None:
    b = broker()
    status = Topics("r9").status
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, b.url,
                             str(tmp_path / "k.db")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="watch-kill") as c:
            await c.subscribe(status, qos=1)
            states = []
            async with asyncio.timeout(20):
                async for m in c.messages:
                    states.append(json.loads(m.payload)["state"])
                    if states[-1] == "running":
                        os.kill(proc.pid, signal.SIGKILL)
                    if states[-1] == "lost":
                        break
        assert states[-2:] == ["running", "lost"]
        # Retained: a late subscriber sees "lost" too.
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="late") as c:
            await c.subscribe(status, qos=1)
            async with asyncio.timeout(5):
                m = await anext(aiter(c.messages))
        assert json.loads(m.payload) == {"state": "lost"} and m.retain
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


async def test_outbox_survives_restart_then_publishes(broker, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Outbox(path) as ob:  # a run that never reached the broker
        for seq in range(1, 301):
            ob.append(T.telemetry, tick_payload(seq))
        ob.commit()
        ob.append(T.telemetry, tick_payload(999))  # never committed: not durable, not sent
    b = broker()
    sub = await Sub(b, T.telemetry, client_id="sub-e").start()
    outbox = Outbox(path)
    assert outbox.depth == 300
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-e"), outbox)
    task = asyncio.create_task(pub.run())
    try:
        seqs = await sub.wait_for(300, 15)
        assert_complete_in_order(seqs, 300)
        await asyncio.sleep(0.2)
        assert 999 not in seqs
    finally:
        try:
            await stop_task(task)
        finally:  # the subscriber process is stopped even if the publisher crashed
            await sub.close()
            outbox.close()
    assert Outbox(path).depth == 0


async def test_an_earlier_runs_unsent_messages_go_before_the_new_birth(
    broker, tmp_path: Path
) -> None:
    """A killed run left 200 messages unsent; the next run's birth and its own messages come
    after all of them, never between (a consumer sees one run, then the other)."""
    path = tmp_path / "outbox.db"
    with Outbox(path) as ob:
        for seq in range(1, 201):
            ob.append(T.telemetry, telemetry_payload(seq=seq, wall_ts=0, t_s=seq, readings={},
                                                     run_id="old"))
        ob.commit()
    b = broker()
    sub = await Sub(b, f"{T.base}/#", client_id="sub-handover").start()
    outbox = Outbox(path)
    for seq in range(1, 51):  # the new run's first ticks, committed before the link is up
        outbox.append(T.telemetry, telemetry_payload(seq=seq, wall_ts=0, t_s=seq, readings={},
                                                     run_id="new"))
    outbox.commit()
    pub = MqttPublisher(
        MqttSettings.from_url(b.url, client_id="ctrl-handover"), outbox,
        will=(T.status, LOST_PAYLOAD),
        birth=[(T.status, status_payload("running", run_id="new"), True)],
        backoff=Backoff(0.05, 0.5), window=16)
    task = asyncio.create_task(pub.run())
    try:
        # Not counting the probes: the subscriber's start may have seen more than one.
        await async_wait_until(lambda: sum(t != PROBE for t, _ in sub.lines) >= 251, 20,
                               "250 messages and a birth")
    finally:
        try:
            await stop_task(task)
        finally:
            await sub.close()
            outbox.close()
    seen = [(json.loads(p).get("run_id"), json.loads(p).get("seq", "birth"))
            for t, p in sub.lines if t != PROBE]
    assert seen == ([("old", s) for s in range(1, 201)] + [("new", "birth")]
                    + [("new", s) for s in range(1, 51)])


async def test_graceful_stop_drains_and_publishes_final_status(broker, tmp_path: Path) -> None:
    b = broker()
    outbox = Outbox(tmp_path / "o.db")
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-s"), outbox)
    task = asyncio.create_task(pub.run())
    await produce(outbox, 1, 200)
    assert await pub.stop((T.status, status_payload("done")), timeout_s=10)
    await asyncio.wait_for(task, 5)
    assert outbox.depth == 0
    async with aiomqtt.Client("127.0.0.1", b.port, identifier="after-stop") as c:
        await c.subscribe(T.status, qos=1)
        async with asyncio.timeout(5):
            m = await anext(aiter(c.messages))
    assert json.loads(m.payload)["state"] == "done"  # clean DISCONNECT: no "lost" will
    outbox.close()


async def test_a_stop_that_cannot_drain_in_time_still_says_where_things_stand(
    broker, tmp_path: Path
) -> None:
    """A backlog longer than the stop may take stays in the outbox for next time, and the final
    statuses go out directly: the broker does not keep a stopped process `running`."""
    b = broker()
    outbox = Outbox(tmp_path / "o.db")
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-late"), outbox)
    task = asyncio.create_task(pub.run())
    await produce(outbox, 1, 20_000)
    async with asyncio.timeout(10):
        while pub.stats.published == 0:  # connected and draining
            await asyncio.sleep(0.01)
    r2 = Topics("r2").status
    drained = await pub.stop((T.status, status_payload("done")), timeout_s=0.05,
                             urgent=[(r2, status_payload("stopping"))])
    await asyncio.wait_for(task, 10)
    assert not drained and outbox.depth > 0
    async with aiomqtt.Client("127.0.0.1", b.port, identifier="after-late-stop") as c:
        await c.subscribe("bioreactor/+/status", qos=1)
        retained: dict[str, str] = {}
        async with asyncio.timeout(5):
            async for m in c.messages:
                retained[str(m.topic)] = json.loads(m.payload)["state"]
                if len(retained) == 2:
                    break
    assert retained == {T.status: "done", r2: "stopping"}
    outbox.close()


async def test_incoming_messages_reach_on_message(broker, tmp_path: Path) -> None:
    b = broker()
    got: list[tuple[str, bytes, bool]] = []
    outbox = Outbox(tmp_path / "o.db")
    pub = make_publisher(MqttSettings.from_url(b.url, client_id="ctrl-in"), outbox,
                         subscriptions=[T.cmd, T.settings_set_filter],
                         on_message=lambda t, p, r: got.append((t, p, r)))
    task = asyncio.create_task(pub.run())
    try:
        await async_wait_until(lambda: pub.stats.connected, 5, "the publisher connected")
        # Subscriptions follow the birth and the publisher does not report them: a margin.
        await asyncio.sleep(0.2)
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="operator") as c:
            await c.publish(T.cmd, b'{"id":1}', qos=1)
            await c.publish(T.setting_set("temp_sp"), b"37.5", qos=1)
            await c.publish(T.cmd, b'{"id":2}', qos=1, retain=True)
        await async_wait_until(lambda: len(got) == 3, 2, "the three messages handed over")
        assert got == [(T.cmd, b'{"id":1}', False), (T.setting_set("temp_sp"), b"37.5", False),
                       (T.cmd, b'{"id":2}', False)]  # live, it is not flagged retained
        # A session subscribing later gets the stored copy, flagged retained.
        outbox_2 = Outbox(tmp_path / "o2.db")
        later = asyncio.create_task(make_publisher(
            MqttSettings.from_url(b.url, client_id="ctrl-in-2"), outbox_2,
            subscriptions=[T.cmd], on_message=lambda t, p, r: got.append((t, p, r))).run())
        await async_wait_until(lambda: len(got) == 4, 5, "the retained message on subscribe")
        await stop_task(later)
        outbox_2.close()
        assert got[3] == (T.cmd, b'{"id":2}', True)
    finally:
        await stop_task(task)
        outbox.close()


async def test_tls_and_password(broker, tmp_path: Path) -> None:
    b = broker(password=True, tls=True)
    assert b.url.startswith("mqtts://ctrl:")
    sub_got: list[bytes] = []
    outbox = Outbox(tmp_path / "o.db")
    settings = MqttSettings.from_url(b.url, ca_file=b.ca_file, client_id="ctrl-tls")
    pub = make_publisher(settings, outbox)
    task = asyncio.create_task(pub.run())
    try:
        async with aiomqtt.Client("127.0.0.1", b.port, username=USER, password=PASSWORD,
                                  identifier="sub-tls",
                                  tls_params=aiomqtt.TLSParameters(ca_certs=str(b.ca_file))) as c:
            await c.subscribe(T.telemetry, qos=1)
            await produce(outbox, 1, 20)
            async with asyncio.timeout(10):
                async for m in c.messages:
                    sub_got.append(m.payload)  # type: ignore[arg-type]
                    if len(sub_got) == 20:
                        break
        assert [json.loads(p)["seq"] for p in sub_got] == list(range(1, 21))
        assert pub.stats.reconnects == 0
    finally:
        await stop_task(task)
        outbox.close()


async def test_wrong_password_is_refused_and_retried(broker, tmp_path: Path) -> None:
    b = broker(password=True)
    url = b.url.replace(PASSWORD, "wrong")
    outbox = Outbox(tmp_path / "o.db")
    outbox.append(T.telemetry, tick_payload(1))
    outbox.commit()
    pub = make_publisher(MqttSettings.from_url(url, client_id="ctrl-bad"), outbox)
    task = asyncio.create_task(pub.run())
    try:
        await async_wait_until(lambda: pub.stats.reconnects >= 3 or task.done(), 10,
                               "three refused attempts")
        assert not task.done(), "the publisher must keep retrying, not crash"
        assert pub.stats.reconnects >= 3
        assert "authori" in (pub.stats.last_error or "").lower()
        assert outbox.depth == 1  # nothing lost while refused
    finally:
        await stop_task(task)
        outbox.close()


def doc_acl() -> str:
    """The ACL file exactly as docs/mqtt.md shows it."""
    text = (REPO / "docs" / "mqtt.md").read_text()
    after = text[text.index("`/etc/mosquitto/acl`"):]
    return after.split("```\n", 2)[1]


async def test_docs_acl_only_controller_publishes_telemetry(broker) -> None:
    """The ACL of docs/mqtt.md: a viewer's or operator's telemetry is dropped; commands pass."""
    users = {"controller": "c-pw", "operator1": "o-pw", "viewer": "v-pw"}
    b = broker(users=users, acl=doc_acl())

    def client(user: str) -> aiomqtt.Client:
        return aiomqtt.Client("127.0.0.1", b.port, username=user, password=users[user],
                              identifier=f"acl-{user}")

    async def try_publish(user: str, topic: str, payload: bytes) -> None:
        """Mosquitto may PUBACK-and-drop or drop the connection on a denied publish."""
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("127.0.0.1", b.port, username=user, password=users[user],
                                      identifier=f"acl-pub-{user}", timeout=2) as c:
                await c.publish(topic, payload, qos=1)

    async with client("viewer") as viewer, client("controller") as ctl:
        await viewer.subscribe("bioreactor/#", qos=1)
        await ctl.subscribe(T.cmd, qos=1)
        await try_publish("viewer", T.telemetry, b'{"seq":666}')
        await try_publish("operator1", T.telemetry, b'{"seq":667}')
        await try_publish("viewer", T.cmd, b"viewer-cmd")
        await try_publish("operator1", T.cmd, b"operator-cmd")
        await ctl.publish("bioreactor/_node/lab-a/status", b'{"state":"running"}', qos=1)
        await ctl.publish(T.telemetry, b'{"seq":1}', qos=1)
        seen: list[tuple[str, bytes]] = []
        ctl_seen: list[bytes] = []
        async with asyncio.timeout(5):
            async for m in viewer.messages:
                seen.append((str(m.topic), m.payload))  # type: ignore[arg-type]
                if m.payload == b'{"seq":1}':
                    break
            async for m in ctl.messages:
                ctl_seen.append(m.payload)  # type: ignore[arg-type]
                break
    assert (T.telemetry, b'{"seq":1}') in seen
    assert ("bioreactor/_node/lab-a/status", b'{"state":"running"}') in seen  # the node's too
    assert (T.cmd, b"operator-cmd") in seen
    assert not any(p in (b'{"seq":666}', b'{"seq":667}', b"viewer-cmd") for _, p in seen)
    assert ctl_seen == [b"operator-cmd"]


async def test_docs_message_size_limit_drops_a_huge_command_at_the_broker(tmp_path: Path) -> None:
    """The `message_size_limit` of docs/mqtt.md's broker config: a payload above it never
    reaches the controller's subscription; one at the limit does."""
    text = (REPO / "docs" / "mqtt.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("message_size_limit "))
    limit = int(line.split()[1])
    assert limit > 8192  # above the largest command, so only a hostile payload is dropped
    b = Broker(tmp_path)
    b.conf.write_text(b.conf.read_text() + line + "\n")
    b.start()
    try:
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="ctl") as ctl:
            await ctl.subscribe(T.cmd, qos=1)
            # Mosquitto 2.0.11 refuses the PUBACK or drops the sender's connection: either way
            # the message goes no further.
            with contextlib.suppress(aiomqtt.MqttError):
                async with aiomqtt.Client("127.0.0.1", b.port, identifier="big", timeout=2) as c:
                    await c.publish(T.cmd, b"x" * (limit + 1), qos=1)
            async with aiomqtt.Client("127.0.0.1", b.port, identifier="op") as op:
                await op.publish(T.cmd, b"y" * limit, qos=1)
            async with asyncio.timeout(5):
                first = await anext(aiter(ctl.messages))
        assert first.payload == b"y" * limit
    finally:
        b.stop()


# --- a node's publisher child (controller/mqtt/publisher_process.py) ---------------------------
async def node_ticks(face: ReactorPresence, node: NodePresence, start: int, count: int) -> None:
    for t in range(start, start + count):
        face.tick(float(t), {}, {}, {}, {})
        if t % 20 == 0:
            await node.commit()
            await asyncio.sleep(0.005)
    await node.commit()


@pytest.mark.parametrize("fault", ["killed", "wedged"])
async def test_a_dead_or_wedged_publisher_child_is_restarted_and_nothing_is_lost(
        broker, tmp_path: Path, fault: str) -> None:
    b = broker()
    sub = await Sub(b, Topics("r1").telemetry, client_id=f"sub-child-{fault}").start()
    node = NodePresence("lab-c", MqttSettings.from_url(b.url), tmp_path / "outbox.sqlite",
                        Clock(), run_id="run-c", time_scale=1.0)
    node.publisher.wedged_after_wall_s = 1.0
    face = node.add_reactor("r1", lambda *a: None)
    node.start()
    try:
        await node_ticks(face, node, 1, 300)
        await async_wait_until(lambda: face.published > 0, 20, "the child to publish")
        first_child = node.publisher.pid
        assert first_child is not None
        os.kill(first_child, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
        await node_ticks(face, node, 301, 300)  # appended while the child is dead or stuck
        await async_wait_until(
            lambda: node.publisher.stats.restarts == 1 and node.publisher.pid is not None, 20,
            "the supervisor to notice and restart the child")
        assert node.publisher.pid != first_child
        assert_complete_in_order(await sub.wait_for(600, 30), 600)
    finally:
        try:
            await node.stop("done", timeout_s=10)
        finally:
            await sub.close()
    summary = node.summary()
    assert summary["publisher_restarts"] == 1
    assert summary["outbox_depth"] == 0
    assert face.published >= 601  # every telemetry message and the final status, acked



async def test_a_publisher_child_that_stops_reading_never_holds_the_nodes_loop(
        broker, tmp_path: Path) -> None:
    """Stopped with more wakes sent than its pipe holds (~280: 14 s of commits): the sends must
    not wait, or the loop, and the watchdog in it that finds the child wedged, stop too."""
    b = broker()
    sub = await Sub(b, Topics("r1").telemetry, client_id="sub-child-full").start()
    node = NodePresence("lab-f", MqttSettings.from_url(b.url), tmp_path / "outbox.sqlite",
                        Clock(), run_id="run-f", time_scale=1.0)
    node.publisher.wedged_after_wall_s = 2.0
    face = node.add_reactor("r1", lambda *a: None)
    node.start()
    try:
        await node_ticks(face, node, 1, 100)
        await async_wait_until(lambda: face.published > 0, 20, "the child to publish")
        stopped = node.publisher.pid
        assert stopped is not None
        os.kill(stopped, signal.SIGSTOP)
        sent = threading.Event()
        freed: list[bool] = []

        def free_a_waiting_send() -> None:  # a send that waits fails the test, not hangs it
            if not sent.wait(10):
                freed.append(True)
                os.kill(stopped, signal.SIGKILL)

        threading.Thread(target=free_a_waiting_send, daemon=True).start()
        for _ in range(2_000):  # on the loop's thread, as the node's commits notify
            node.publisher.notify()
        sent.set()
        assert not freed, "a send waited for the stopped child, and the loop with it"
        await node_ticks(face, node, 101, 100)
        await async_wait_until(
            lambda: node.publisher.stats.restarts == 1 and node.publisher.pid is not None, 20,
            "the supervisor to notice the stopped child and restart it")
        assert_complete_in_order(await sub.wait_for(200, 30), 200)
    finally:
        try:
            await node.stop("done", timeout_s=10)
        finally:
            await sub.close()
    assert node.summary()["outbox_depth"] == 0


async def test_a_publisher_child_dead_when_the_node_stops_is_replaced_for_the_final_statuses(
        broker, tmp_path: Path) -> None:
    """The stop does not wait for the supervisor's restart: one more child sends the backlog
    and the final statuses, so the broker does not keep `lost` (the dead child's will)."""
    b = broker()
    node = NodePresence("lab-d", MqttSettings.from_url(b.url), tmp_path / "outbox.sqlite",
                        Clock(), run_id="run-d", time_scale=1.0)
    face = node.add_reactor("r1", lambda *a: None)
    node.start()
    try:
        await node_ticks(face, node, 1, 50)
        await async_wait_until(lambda: face.published > 0, 20, "the child to publish")
        pid = node.publisher.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await node_ticks(face, node, 51, 50)
    finally:
        await node.stop("done", timeout_s=10)
    assert node.summary()["outbox_depth"] == 0
    async with aiomqtt.Client("127.0.0.1", b.port, identifier="after-dead-child") as c:
        await c.subscribe("bioreactor/#", qos=1)
        retained: dict[str, str] = {}
        async with asyncio.timeout(5):
            async for m in c.messages:
                if str(m.topic).endswith("/status"):
                    retained[str(m.topic)] = json.loads(m.payload)["state"]
                if len(retained) == 2:
                    break
    assert retained == {"bioreactor/_node/lab-d/status": "done", "bioreactor/r1/status": "done"}
