"""A fleet on one broker connection, as a user runs it: `bioreactor run CONFIG --reactors N
--mqtt URL` against a real Mosquitto, counted by independent `mosquitto_sub` processes."""
from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.mosquitto import KEY, Broker, Subscriber
from plugins.processes import BIN, LOOPBACK
from plugins.waiting import wait_until

from controller.cli.watch_render import render
from controller.view.fleet_state import FleetState


def fleet_run(tmp_path: Path, b: Broker, reactors: int, *, speed: str, duration: str,
              run_id: str) -> subprocess.Popen:
    """`bioreactor run default.toml --reactors N --mqtt URL`, with an operator for commands."""
    config = tmp_path / "fleet.toml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text()
                      + f'\n[[operator]]\nname = "alice"\nkey_hex = "{KEY}"\n')
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(config), "--reactors", str(reactors), "--mqtt", b.url,
         "--speed", speed, "--duration", duration, "--run-id", run_id, "--quiet",
         "--db", str(tmp_path / "runs" / "run.sqlite"),
         "--summary-json", str(tmp_path / "summary.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def retained(b: Broker, topic: str, count: int) -> list[tuple[str, dict]]:
    """The `count` retained messages on `topic` (a filter), as a newcomer gets them."""
    done = subprocess.run(["mosquitto_sub", "-h", LOOPBACK, "-p", str(b.port), "-v", "-t", topic,
                           "-C", str(count), "-W", "20"],
                          capture_output=True, text=True, timeout=30, check=True)
    return [(t, json.loads(p)) for t, _, p in
            (line.partition(" ") for line in done.stdout.splitlines())]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fifty_reactors_share_one_connection_and_every_telemetry_message_arrives(
    broker, tmp_path: Path, procs: list
) -> None:
    b = broker()
    sub = Subscriber(b, "bioreactor/+/telemetry", tmp_path / "telemetry.txt",
                     with_topics=True)
    try:
        run = fleet_run(tmp_path, b, 50, speed="10", duration="2m", run_id="fifty")
        procs.append(run)
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
        summary = json.loads((tmp_path / "summary.json").read_text())
        sent = {rid: r["mqtt"]["telemetry_messages"] for rid, r in summary["reactors"].items()}
        wait_until(lambda: len(sub.topic_messages()) >= sum(sent.values()), 60,
                   "every telemetry message at the subscriber", poll_s=0.2)
    finally:
        sub.close()
    seqs: dict[str, set[int]] = {}
    for topic, body in sub.topic_messages():
        seqs.setdefault(topic.split("/")[1], set()).add(body["seq"])
    assert len(sent) == 50 and min(sent.values()) > 0
    assert {rid: sorted(s) for rid, s in seqs.items()} == {
        rid: list(range(1, n + 1)) for rid, n in sent.items()}, "a gap in some reactor's seq"
    # One connection: the broker saw one controller client (the node) and no reconnect.
    clients = [line for line in b.log().splitlines()
               if "New client connected" in line and " as bioreactor-" in line]
    assert len(clients) == 1 and " as bioreactor-fifty " in clients[0], clients
    assert summary["mqtt"]["reconnects"] == 0 and summary["mqtt"]["outbox_depth"] == 0
    assert summary["mqtt"]["reactors"] == 50
    statuses = dict(retained(b, "bioreactor/+/status", 50))
    assert len(statuses) == 50
    assert all(s.items() >= {"state": "done", "node": "fifty", "run_id": "fifty"}.items()
               for s in statuses.values())
    ((_, node),) = retained(b, "bioreactor/_node/+/status", 1)
    assert node["state"] == "done" and len(node["reactors"]) == 50


def test_kill_9_of_a_fleet_shows_every_reactor_lost(broker, tmp_path: Path, procs: list) -> None:
    b = broker()
    run = fleet_run(tmp_path, b, 5, speed="20", duration="1d", run_id="doomed")
    procs.append(run)
    wait_until(lambda: len(retained(b, "bioreactor/+/status", 5)) == 5, 60,
               "the five reactors' births")
    run.send_signal(signal.SIGKILL)
    run.wait()
    wait_until(lambda: retained(b, "bioreactor/_node/doomed/status", 1)[0][1]
               == {"state": "lost"}, 30, "the node's will")
    state = FleetState()  # what `bioreactor watch` folds the retained messages into
    for topic, body in [*retained(b, "bioreactor/+/status", 5),
                        *retained(b, "bioreactor/_node/+/status", 1)]:
        state.update(topic, json.dumps(body).encode(), 0.0)
    screen = render(state, 1.0)
    assert [line.split("  run=")[0] for line in screen.splitlines() if line.startswith("==")] == [
        f"== hsc-1-000{k}  state=lost (node doomed lost)" for k in range(1, 6)]


def test_a_command_reaches_its_reactor_and_one_for_a_stranger_is_counted(
    broker, tmp_path: Path, procs: list
) -> None:
    b = broker()
    # Another daemon on the same broker, as its retained birth shows it: its reactor's
    # commands are that daemon's, counted apart from a stranger's.
    subprocess.run(["mosquitto_pub", "-h", LOOPBACK, "-p", str(b.port), "-q", "1", "-r", "-t",
                    "bioreactor/_node/other-daemon/status", "-m",
                    json.dumps({"state": "running", "reactors": ["theirs-1"]})], check=True)
    replies = Subscriber(b, "bioreactor/+/cmd/reply", tmp_path / "replies.txt",
                         with_topics=True)
    telemetry = Subscriber(b, "bioreactor/hsc-1-0002/telemetry", tmp_path / "tel.txt",
                           with_topics=True)
    run = fleet_run(tmp_path, b, 3, speed="20", duration="1d", run_id="cmds")
    procs.append(run)
    try:
        # Commands are heard once the node has subscribed, which precedes its telemetry.
        wait_until(telemetry.topic_messages, 60, "the fleet's telemetry")
        # The stranger's and the other daemon's first: the broker hands all three to the
        # node in that order, so once the good one is answered the other two have been seen.
        for reactor in ("stranger", "theirs-1"):
            subprocess.run(["mosquitto_pub", "-h", LOOPBACK, "-p", str(b.port), "-q", "1",
                            "-t", f"bioreactor/{reactor}/cmd", "-m", "{}"], check=True)
        good = subprocess.run(
            [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", "hsc-1-0002",
             "--operator", "alice", "--key", KEY, "--reason", "warmer", "set_setpoint",
             "loop=temperature", "value=37.2"], capture_output=True, text=True, timeout=60)
        assert good.returncode == 0, good.stderr
        wait_until(replies.topic_messages, 30, "the reply at the independent subscriber")
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 130, err
    finally:
        replies.close()
        telemetry.close()
    assert [t for t, _ in replies.topic_messages()] == ["bioreactor/hsc-1-0002/cmd/reply"]
    assert json.loads(good.stdout)["new"] == {"setpoint": 37.2}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mqtt"]["ignored_commands"] == 1
    assert summary["mqtt"]["other_nodes_commands"] == 1



def test_a_second_daemon_on_the_same_outbox_is_refused(
    broker, tmp_path: Path, procs: list
) -> None:
    """Two daemons draining one outbox would send and delete each other's messages."""
    b = broker()
    first = fleet_run(tmp_path, b, 2, speed="20", duration="1d", run_id="first")
    procs.append(first)
    wait_until(lambda: len(retained(b, "bioreactor/+/status", 2)) == 2, 60, "the first's birth")
    second = subprocess.run(
        [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--mqtt", b.url, "--speed", "20",
         "--duration", "1m", "--quiet", "--db", str(tmp_path / "runs" / "second.sqlite")],
        capture_output=True, text=True, timeout=60)
    assert second.returncode == 2, second.stderr
    assert "outbox.sqlite is in use by another running controller" in second.stderr
    assert "Traceback" not in second.stderr
    assert not (tmp_path / "runs" / "second.sqlite").exists()  # refused before writing anything
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
