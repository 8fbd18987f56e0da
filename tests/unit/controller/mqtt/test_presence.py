"""ReactorPresence: what one reactor's messages say about whose they are (run and node)."""
from __future__ import annotations

import json
from pathlib import Path

from controller.clock import Clock
from controller.mqtt.link import MqttSettings
from controller.mqtt.node import NodePresence
from controller.mqtt.presence import ReactorPresence

NEVER_STARTED = MqttSettings.from_url("mqtt://127.0.0.1:9")


def node(outbox: Path, run_id: str) -> NodePresence:
    return NodePresence("n1", NEVER_STARTED, outbox, Clock(), run_id=run_id, time_scale=1.0)


def presence(outbox: Path, run_id: str) -> ReactorPresence:
    """A node's reactor whose messages are committed when a test says (`outbox.commit()`):
    the node's own commits, in its thread, are test_node.py's."""
    face = node(outbox, run_id).add_reactor("r1", lambda topic, payload, retained: None)
    face.maybe_commit = lambda: None  # type: ignore[method-assign]
    return face


def ticks(p: ReactorPresence, n: int) -> None:
    for i in range(n):
        p.tick(float(i), {}, {}, {}, {})
    p.outbox.commit()


def telemetry(outbox: Path) -> list[tuple[str, int]]:
    p = presence(outbox, "reader")
    seen = [(body["run_id"], body["seq"]) for body in
            (json.loads(m.payload) for m in p.outbox.peek(1000)) if "seq" in body]
    p.outbox.close()
    return seen


async def test_each_run_numbers_its_own_telemetry_under_its_run_id(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    killed = presence(outbox, "run-a")
    ticks(killed, 3)
    killed.outbox.close()  # left unsent: the next run sends it first (test_publisher.py)
    nxt = presence(outbox, "run-b")
    ticks(nxt, 2)
    nxt.outbox.close()
    assert telemetry(outbox) == [("run-a", 1), ("run-a", 2), ("run-a", 3), ("run-b", 1),
                                 ("run-b", 2)]


async def test_alarms_and_events_name_their_run_and_severity(tmp_path: Path) -> None:
    p = presence(tmp_path / "outbox.sqlite", "run-a")
    p.alarm(5.0, "temperature_high", priority="critical", active=True,
            message="unack: temperature_c above 38.5", value=38.6)
    p.event(6.0, "feed", "bolus s0 done")
    p.outbox.commit()
    alarm, event = (json.loads(m.payload) for m in p.outbox.peek(10))
    p.outbox.close()
    assert (alarm["run_id"], alarm["severity"], alarm["value"]) == ("run-a", "critical", 38.6)
    assert event["run_id"] == "run-a"


async def test_telemetry_says_where_the_recipe_is_when_the_reactor_has_one(tmp_path: Path) -> None:
    p = presence(tmp_path / "outbox.sqlite", "run-a")
    p.tick(1.0, {}, {}, {}, {}, recipe={"state": "running", "phase": "seed"})
    p.tick(2.0, {}, {}, {}, {})
    p.outbox.commit()
    with_recipe, without = (json.loads(m.payload) for m in p.outbox.peek(10))
    p.outbox.close()
    assert with_recipe["recipe"] == {"state": "running", "phase": "seed"}
    assert "recipe" not in without


async def test_a_reactors_status_names_its_node(tmp_path: Path) -> None:
    p = presence(tmp_path / "outbox.sqlite", "run-a")
    p.stop("done")
    p.outbox.commit()
    (status,) = p.outbox.peek(10)
    p.outbox.close()
    assert (status.topic, status.retain) == ("bioreactor/r1/status", True)
    assert json.loads(status.payload).items() >= {"state": "done", "run_id": "run-a",
                                                  "node": "n1"}.items()
