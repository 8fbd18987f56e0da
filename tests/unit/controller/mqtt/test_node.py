"""NodePresence without a broker: one outbox for many reactors, commands to the right one,
the birth, and an older layout's per-reactor outboxes taken over."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.node import COMMAND_FILTERS, NodePresence
from controller.mqtt.outbox import Outbox, OutboxFullError
from controller.mqtt.topics import check_reactor_id, node_status_topic
from drivers.contract.reading import Reading

NEVER_STARTED = MqttSettings.from_url("mqtt://127.0.0.1:9")


def make_node(tmp_path: Path, **kwargs: object) -> NodePresence:
    return NodePresence("lab-a", NEVER_STARTED, tmp_path / "outbox.sqlite", Clock(),
                        run_id="run-a", time_scale=1.0, **kwargs)  # type: ignore[arg-type]


async def test_reactors_share_one_outbox_and_keep_their_own_order_and_seq(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    faces = [node.add_reactor(f"r{i}", lambda *a: None) for i in range(3)]
    for t in range(4):
        for face in faces:
            face.tick(float(t), {}, {}, {}, {})
    await node.commit()
    by_reactor: dict[str, list[int]] = {}
    for m in node.outbox.peek(100):
        by_reactor.setdefault(m.topic.split("/")[1], []).append(json.loads(m.payload)["seq"])
    node.outbox.close()
    assert by_reactor == {f"r{i}": [1, 2, 3, 4] for i in range(3)}


async def test_commands_go_to_their_reactor_and_others_are_counted(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    got: dict[str, list[str]] = {"r1": [], "r2": []}
    for rid in got:
        node.add_reactor(rid, lambda topic, payload, retained, rid=rid: got[rid].append(topic))
    node._dispatch("bioreactor/r2/cmd", b"{}", False)
    node._dispatch("bioreactor/r1/settings/temperature.setpoint/set", b"{}", False)
    node._dispatch("bioreactor/elsewhere/cmd", b"{}", False)
    node._dispatch("bioreactor/elsewhere/cmd", b"{}", False)
    node.outbox.close()
    assert got == {"r1": ["bioreactor/r1/settings/temperature.setpoint/set"],
                   "r2": ["bioreactor/r2/cmd"]}
    assert node.ignored_commands == 2
    assert node.summary()["ignored_commands"] == 2
    assert COMMAND_FILTERS == ("bioreactor/+/cmd", "bioreactor/+/settings/+/set")


async def test_a_command_for_another_running_nodes_reactor_is_counted_as_theirs(
        tmp_path: Path) -> None:
    """Several daemons on one broker each hear every command: one for a reactor another node's
    retained status names while `running` is that node's, not an ignored command."""
    node = make_node(tmp_path)
    node.add_reactor("r1", lambda *a: None)

    def status(node_id: str, body: object) -> None:
        node._dispatch(node_status_topic(node_id), json.dumps(body).encode(), True)

    status("lab-b", {"state": "running", "reactors": ["x1", "x2", 3, None]})
    status("lab-a", {"state": "running", "reactors": ["mine-by-name-only"]})  # our own
    node._dispatch("bioreactor/x1/cmd", b"{}", False)
    node._dispatch("bioreactor/mine-by-name-only/cmd", b"{}", False)
    assert (node.other_nodes_commands, node.ignored_commands) == (1, 1)
    status("lab-b", {"state": "lost"})  # its will: nobody runs x1 now
    node._dispatch("bioreactor/x1/cmd", b"{}", False)
    assert (node.other_nodes_commands, node.ignored_commands) == (1, 2)
    for garbage in (b"[" * 100_000, b"not json", b'"running"', b"{}" * 10):
        node._dispatch(node_status_topic("lab-c"), garbage, True)
    node._dispatch(node_status_topic("lab-c"), b"x" * (2 << 20), True)
    status("lab-d", {"state": "running", "reactors": "x2"})  # not a list
    node._dispatch("bioreactor/x2/cmd", b"{}", False)
    assert (node.other_nodes_commands, node.ignored_commands) == (1, 3)
    summary = node.summary()
    node.outbox.close()
    assert (summary["other_nodes_commands"], summary["ignored_commands"]) == (1, 3)


async def test_birth_is_the_node_then_each_running_reactor(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    node.add_reactor("r1", lambda *a: None)
    node.add_reactor("r2", lambda *a: None).stop("done")
    birth = node._birth()
    node.outbox.close()
    assert [(topic, retain) for topic, _, retain in birth] == [
        ("bioreactor/_node/lab-a/status", True), ("bioreactor/r1/status", True)]
    assert json.loads(birth[0][1]).items() >= {
        "state": "running", "run_id": "run-a", "reactors": ["r1", "r2"]}.items()
    assert json.loads(birth[1][1])["node"] == "lab-a"


async def test_the_acks_are_counted_per_reactor(tmp_path: Path) -> None:
    node = make_node(tmp_path)
    r1 = node.add_reactor("r1", lambda *a: None)
    node._acked({"r1": 2, "gone": 1})  # as the publisher child reports them
    node.outbox.close()
    assert r1.summary() == {"telemetry_messages": 0, "published": 2, "node": "lab-a"}


async def test_an_older_layouts_outboxes_go_out_first_in_their_order(tmp_path: Path) -> None:
    legacy = {}
    for rid in ("r1", "r2"):
        legacy[rid] = tmp_path / f"outbox-{rid}.sqlite"
        with Outbox(legacy[rid]) as old:
            for seq in (1, 2, 3):
                old.append(f"bioreactor/{rid}/telemetry", json.dumps({"seq": seq}).encode())
            old.commit()
    node = make_node(tmp_path, legacy_outboxes=[*legacy.values(), tmp_path / "outbox-r3.sqlite"])
    node.add_reactor("r1", lambda *a: None).tick(0.0, {}, {}, {}, {})
    await node.commit()
    messages = node.outbox.peek(100)
    inherited = node.outbox.inherited_through_seq
    node.outbox.close()
    assert node.adopted == 6
    assert not any(p.exists() for p in legacy.values())
    assert [(m.topic.split("/")[1], json.loads(m.payload)["seq"]) for m in messages] == [
        ("r1", 1), ("r1", 2), ("r1", 3), ("r2", 1), ("r2", 2), ("r2", 3), ("r1", 1)]
    assert inherited == messages[5].seq  # the older run's, sent before this run's birth


@pytest.mark.parametrize("name", ["_node", "_x"])
def test_a_reactor_cannot_take_the_nodes_topics(name: str) -> None:
    with pytest.raises(ValueError, match="must not start with '_'"):
        check_reactor_id(name)


def test_a_node_id_is_topic_safe() -> None:
    assert node_status_topic("lab-a") == "bioreactor/_node/lab-a/status"
    with pytest.raises(ValueError, match="node id 'a/b'"):
        node_status_topic("a/b")


async def test_a_commit_in_the_nodes_thread_that_fails_is_raised_on_the_tick_and_loses_nothing(
        tmp_path: Path) -> None:
    """The node commits in a thread of its own; a full disk there is raised on a later tick
    (where the reactor alarms it, as a synchronous commit's was), with the batch back in the
    buffer ahead of newer messages, and everything goes out in order once there is room."""
    node = make_node(tmp_path)
    face = node.add_reactor("r1", lambda *a: None)
    node.outbox.max_page_count = 8  # the commit thread's connection opens with this cap
    big = {f"x{i}": Reading(1.0, "u" * 2000, 0.0) for i in range(4)}
    raised = None
    for t in range(200):  # until a later call finds the thread's commit failed
        try:
            face.tick(float(t), big, {}, {}, {})
        except OutboxFullError as exc:
            raised = exc
            break
        await asyncio.sleep(0.01)
    assert raised is not None and "is full" in str(raised)
    assert node.outbox.depth == face.seq  # not one message lost: all buffered again
    node.outbox.max_page_count = None
    node._writer = None  # the next commit opens a connection without the cap (same thread)
    await node.commit()
    seqs = [json.loads(m.payload)["seq"] for m in node.outbox.peek(1000)]
    node.outbox.close()
    assert seqs == list(range(1, face.seq + 1))
