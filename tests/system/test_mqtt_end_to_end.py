"""MQTT as a user meets it: `bioreactor run --mqtt` against a real Mosquitto that the test starts,
an independent `mosquitto_sub`, broker restarts, `kill -9`, and signed commands."""
from __future__ import annotations

import contextlib
import json
import secrets
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, REPO
from plugins.controller_runs import start_run, write_config
from plugins.hil import EMULATOR_SPEED, emulator
from plugins.mosquitto import KEY, PASSWORD, USER, Broker, Subscriber
from plugins.processes import BIN, LOOPBACK, children
from plugins.records import periods_after_first_tick
from plugins.waiting import wait_until

from controller.operator.audit import read_audit
from controller.operator.protocol import sign


@pytest.fixture
def stopper() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def first_deliveries(seqs: list[int]) -> list[int]:
    """QoS 1 is at least once: drop repeats, keep the order of first delivery."""
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


def test_a_day_of_telemetry_arrives_whole_across_a_broker_restart(
    broker, tmp_path: Path, stopper: list
) -> None:
    """`bioreactor run configs/hsc_expansion.toml --speed 3600 --duration 1d --mqtt URL --db
    ELSEWHERE/run.sqlite` typed in an empty folder: the outbox goes beside the database (its
    folder created), and an independent persistent subscriber sees every seq of the run."""
    b = broker()
    empty = tmp_path / "cwd"
    empty.mkdir()
    db = tmp_path / "not" / "yet" / "run.sqlite"
    sub = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "sub.txt")
    try:
        run = start_run(DEFAULT_CONFIG_PATH, tmp_path, speed="3600", duration="1d", db=db,
                        cwd=empty, options=("--mqtt", b.url))
        stopper.append(run)
        wait_until(lambda: len(sub.messages()) >= 2000, 120, "2000 telemetry messages")
        b.restart(down_s=3.0)  # the broker goes away for 3 s (3 simulated hours)
        err, summary = _completed_and_delivered(run, sub, tmp_path)
        ticks = summary["ticks"]
    finally:
        sub.close()
    assert "Traceback" not in err
    assert list(empty.iterdir()) == [], "the run wrote into the folder it was started from"
    assert (db.parent / "outbox.sqlite").is_file()  # the daemon's one outbox
    assert {m["run_id"] for m in sub.messages()} == {summary["run_id"]}
    seqs = first_deliveries([m["seq"] for m in sub.messages()])
    assert seqs == list(range(1, ticks + 1)), f"{ticks - len(seqs)} missing or out of order"
    # Every period is a tick made or a tick skipped on record. How few are skipped is a speed,
    # so the benchmarks' to measure (make bench): at 2.5 ms of wall time a tick, the other test
    # worker on the two cores takes a share that varies with what it runs.
    periods = periods_after_first_tick(db, 86400, 1.0)
    assert ticks + summary["reactors"]["hsc-1"]["skipped_ticks"] in periods


def test_the_broker_and_the_records_writer_lost_at_once(
    broker, tmp_path: Path, stopper: list
) -> None:
    """Two faults at once, as a host under memory pressure has them: the historian's writer
    killed (-9) in the same moment as the broker goes away. Each of the controller's two
    children is replaced on its own; control goes on; afterwards every tick's telemetry is at
    an independent subscriber and every tick is on record, once."""
    b = broker()
    db = tmp_path / "run.sqlite"
    sub = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "sub.txt")
    try:
        run = start_run(DEFAULT_CONFIG_PATH, tmp_path, speed="600", duration="6h", db=db,
                        options=("--mqtt", b.url))
        stopper.append(run)
        wait_until(lambda: len(sub.messages()) >= 600, 60, "ten minutes of telemetry")
        [writer] = [pid for pid in children(run.pid)
                    if b"record_writer" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(writer)], check=True)
        b.restart(down_s=3.0)  # 30 simulated minutes without a broker
        err, summary = _completed_and_delivered(run, sub, tmp_path)
        ticks = summary["ticks"]
    finally:
        sub.close()
    assert "Traceback" not in err
    assert first_deliveries([m["seq"] for m in sub.messages()]) == list(range(1, ticks + 1))
    with sqlite3.connect(db) as con:
        on_record, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT t_s) FROM ticks").fetchone()
        coldest, hottest = con.execute(
            "SELECT MIN(temperature_c), MAX(temperature_c) FROM ticks WHERE t_s > 600"
        ).fetchone()
        down = [json.loads(d)["active"] for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm' AND "
            "json_extract(data_json, '$.alarm') = 'historian_down' ORDER BY rowid")]
    assert on_record == distinct == ticks
    assert coldest > 36.8 and hottest < 37.2
    assert down == [True, False]


def _completed_and_delivered(run: subprocess.Popen, sub: Subscriber,
                             tmp_path: Path) -> tuple[str, dict]:
    """The run's stderr and summary once it completed and every tick's telemetry arrived."""
    _, err = run.communicate(timeout=240)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    wait_until(lambda: len({m["seq"] for m in sub.messages()}) >= summary["ticks"], 60,
               "every tick's telemetry", poll_s=0.2)
    return err, summary


def _telemetry_in_outbox(outbox: Path) -> int:
    """Committed telemetry messages waiting in the daemon's outbox (0 before the run made it)."""
    if not outbox.exists():
        return 0
    with contextlib.closing(sqlite3.connect(outbox)) as con:
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox'").fetchone() is None:
            return 0
        return con.execute("SELECT COUNT(*) FROM outbox WHERE topic LIKE '%/telemetry'"
                           ).fetchone()[0]


def test_a_killed_runs_unsent_messages_go_out_before_the_next_runs_birth(
    broker, tmp_path: Path, stopper: list
) -> None:
    """A run killed (-9) while the broker was away left telemetry in the daemon's outbox; the
    next run (a new run id, the same folder) sends all of it first, then its own birth, then its
    own messages from seq 1: a consumer never sees the older run after the newer one began."""
    b = broker()
    b.stop()
    runs = tmp_path / "runs"
    first = start_run(DEFAULT_CONFIG_PATH, tmp_path, speed="100", duration="1d",
                      db=runs / "first.sqlite", options=("--mqtt", b.url, "--run-id", "first"))
    stopper.append(first)
    outbox = runs / "outbox.sqlite"
    wait_until(lambda: _telemetry_in_outbox(outbox) >= 20, 60, "20 telemetry messages queued")
    first.send_signal(signal.SIGKILL)
    first.wait()
    left = _telemetry_in_outbox(outbox)
    b.start()
    sub = Subscriber(b, "bioreactor/hsc-1/#", tmp_path / "sub.txt")
    try:
        second = start_run(DEFAULT_CONFIG_PATH, tmp_path, speed="100", duration="10m",
                           db=runs / "second.sqlite",
                           options=("--mqtt", b.url, "--run-id", "second"))
        stopper.append(second)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        wait_until(lambda: {"state": "done"}.items() <= sub.messages()[-1].items(), 30,
                   "the second run's final status")
    finally:
        sub.close()
    messages = sub.messages()
    birth = messages.index(next(m for m in messages if m.get("state") == "running"))
    assert messages[birth]["run_id"] == "second"
    before, after = messages[:birth], messages[birth + 1:]
    assert {m.get("run_id") for m in after} <= {"second", None}  # settings carry no run id
    assert first_deliveries([m["seq"] for m in before if "seq" in m]) == list(range(1, left + 1))
    assert {m["run_id"] for m in before if "seq" in m} == {"first"}
    ticks = json.loads((tmp_path / "summary.json").read_text())["ticks"]
    assert first_deliveries([m["seq"] for m in after if "seq" in m]) == list(range(1, ticks + 1))


def test_kill_9_of_the_controller_publishes_its_nodes_lost(
    broker, tmp_path: Path, stopper: list
) -> None:
    """The will is the daemon's (its node's) status; the reactor's status names the node, so a
    consumer knows the reactor is lost with it (docs/mqtt.md, "Nodes")."""
    b = broker()
    run = start_run(write_config(tmp_path, b.url), tmp_path, speed="100", duration="1d",
                    options=("--run-id", "kill-me"))
    stopper.append(run)
    status, node_status = tmp_path / "status.txt", tmp_path / "node.txt"
    sub = Subscriber(b, "bioreactor/hsc-1/status", status)
    node_sub = Subscriber(b, "bioreactor/_node/kill-me/status", node_status)
    try:
        wait_until(lambda: '"running"' in status.read_text(), 30, "the running status")
        run.send_signal(signal.SIGKILL)
        run.wait()
        wait_until(lambda: '"lost"' in node_status.read_text(), 30, "the lost will")
    finally:
        sub.close()
        node_sub.close()
    assert node_sub.messages()[0].items() >= {"state": "running", "reactors": ["hsc-1"]}.items()
    assert node_sub.messages()[-1] == {"state": "lost"}
    assert sub.messages()[-1].items() >= {"state": "running", "node": "kill-me"}.items()


def _signed(action: str, params: dict, *, key: str = KEY, reason: str = "test") -> dict:
    return sign({"operator": "alice", "reactor": "hsc-1", "action": action, "params": params,
                 "reason": reason, "ts": time.time(), "nonce": secrets.token_hex(16)},
                bytes.fromhex(key))


def test_commands_good_and_bad_are_answered_and_audited(
    broker, tmp_path: Path, stopper: list
) -> None:
    b = broker()
    run = start_run(write_config(tmp_path, b.url, period_s=1.0), tmp_path, speed="20",
                    duration="1d")
    stopper.append(run)
    replies_path = tmp_path / "replies.txt"
    replies = Subscriber(b, "bioreactor/hsc-1/cmd/reply", replies_path)
    telemetry = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "telemetry.txt")

    def publish(payload: bytes | str) -> None:
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-q", "1",
                        "-t", "bioreactor/hsc-1/cmd", "-m", payload], check=True)

    try:
        # Telemetry flows once the controller's session has subscribed to its commands.
        wait_until(telemetry.messages, 60, "the controller's first telemetry")
        good = subprocess.run(
            [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", "hsc-1", "--operator",
             "alice", "--key", KEY, "--reason", "warmer", "set_setpoint", "loop=temperature",
             "value=37.2"], capture_output=True, text=True, timeout=60)
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["new"] == {"setpoint": 37.2}
        wrong_key = subprocess.run(
            [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", "hsc-1", "--operator",
             "alice", "--key", "ff" * 16, "--reason", "x", "pause_schedule"],
            capture_output=True, text=True, timeout=60)
        assert wrong_key.returncode == 1 and "bad_signature" in wrong_key.stdout
        too_hot = json.dumps(_signed("set_setpoint", {"loop": "temperature", "value": 70.0}))
        publish(too_hot)
        unsigned = _signed("pause_schedule", {})
        del unsigned["sig"]
        publish(json.dumps(unsigned))
        publish("{not json")
        replayed = json.dumps(_signed("set_setpoint", {"loop": "ph", "value": 7.25}))
        publish(replayed)
        publish(replayed)
        wait_until(lambda: len(replies.messages()) >= 7, 30, "seven replies")
    finally:
        replies.close()
        telemetry.close()
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    codes = sorted(m["code"] for m in replies.messages())
    assert codes == sorted(["applied", "bad_signature", "out_of_range", "unsigned", "malformed",
                            "applied", "replayed"]), codes
    audit = read_audit(tmp_path / "run.sqlite")
    assert sorted(r["outcome"] for r in audit) == codes
    applied = [r for r in audit if r["outcome"] == "applied"]
    assert {r["operator"] for r in applied} == {"alice"}
    assert any(r["reason"] == "warmer" and json.loads(r["new_json"]) == {"setpoint": 37.2}
               for r in applied)
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        setpoints = [v for (v,) in con.execute(
            "SELECT setpoint FROM setpoints WHERE loop = 'temperature' ORDER BY t_s")]
    assert setpoints[0] == 37.0 and 37.2 in setpoints


def _publish(b: Broker, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-q", "1", "-t",
                    topic, *(["-r"] if retain else []), "-m", payload], check=True)


def test_a_command_captured_from_one_run_is_refused_by_the_next_run(
    broker, tmp_path: Path, stopper: list
) -> None:
    """Two runs of reactor hsc-1, one after the other, new databases in one folder: the bolus
    applied by the first is `replayed` for the second. The window is widened to 120 s so the
    refusal is `replayed` however slowly the second run starts (30 s would also pass as
    `stale`, which proves less). Between the runs a retained command waits on the broker; the
    second run also gets a pH command on the temperature setpoint's topic and an oversized
    message: all refused, answered and audited."""
    b = broker()
    config = write_config(tmp_path, b.url, period_s=1.0, max_skew_s=120.0)
    replies = Subscriber(b, "bioreactor/hsc-1/cmd/reply", tmp_path / "replies.txt")
    telemetry = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "telemetry.txt")
    captured = json.dumps(_signed("bolus", {"volume_ml": 1.0, "channel": "feed_ml_per_h"}))
    retained = json.dumps(_signed("pause_schedule", {}))
    ph_on_temperature = json.dumps(_signed("set_setpoint", {"loop": "ph", "value": 7.25}))
    replies_seen = telemetry_seen = 0

    def reply_codes() -> list[str]:
        return [m["code"] for m in replies.messages()[replies_seen:]]

    try:
        for db_name in ("first.sqlite", "second.sqlite"):
            run = start_run(config, tmp_path, speed="20", duration="1d", db=tmp_path / db_name)
            stopper.append(run)
            # Commands are heard once the session has subscribed, which precedes telemetry.
            wait_until(lambda n=telemetry_seen: len(telemetry.messages()) > n, 60,
                       "the run's telemetry")
            if db_name == "first.sqlite":
                _publish(b, "bioreactor/hsc-1/cmd", captured)
                wait_until(reply_codes, 30, "the first run's reply")
            else:
                wait_until(reply_codes, 30, "the retained command's refusal")
                _publish(b, "bioreactor/hsc-1/cmd", captured)
                _publish(b, "bioreactor/hsc-1/settings/temperature.setpoint/set",
                         ph_on_temperature)
                _publish(b, "bioreactor/hsc-1/cmd", "x" * 10_000)
                wait_until(lambda: len(reply_codes()) >= 4, 30, "four replies")
            run.send_signal(signal.SIGINT)
            run.communicate(timeout=60)
            if db_name == "first.sqlite":
                assert reply_codes() == ["applied"]
                _publish(b, "bioreactor/hsc-1/cmd", retained, retain=True)
            replies_seen, telemetry_seen = len(replies.messages()), len(telemetry.messages())
    finally:
        replies.close()
        telemetry.close()
    second_replies = [m["code"] for m in replies.messages()[1:]]
    assert second_replies == ["retained", "replayed", "wrong_topic", "malformed"]
    second = read_audit(tmp_path / "second.sqlite")
    assert [r["outcome"] for r in second] == second_replies
    assert second[1]["action"] == "bolus" and second[1]["operator"] == "alice"
    assert "10000 bytes" in second[3]["message"]
    first = read_audit(tmp_path / "first.sqlite")
    assert [(r["action"], r["outcome"]) for r in first] == [("bolus", "applied")]
    assert first[0]["nonce"] == second[1]["nonce"]
    with sqlite3.connect(tmp_path / "second.sqlite") as con:
        ph_setpoints = {v for (v,) in con.execute(
            "SELECT setpoint FROM setpoints WHERE loop = 'ph'")}
    assert 7.25 not in ph_setpoints


def test_tls_and_password_broker(broker, tmp_path: Path, stopper: list) -> None:
    b = broker(password=True, tls=True)
    config = write_config(tmp_path, b.url)
    config.write_text(config.read_text().replace(
        f'url = "{b.url}"', f'url = "{b.url}"\nca_file = "{b.ca_file}"'))
    out = tmp_path / "sub.txt"
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "--cafile", str(b.ca_file),
         "-u", USER, "-P", PASSWORD, "-q", "1", "-t", "bioreactor/hsc-1/telemetry", "-C", "20"],
        stdout=out.open("w"), stderr=subprocess.PIPE, text=True)
    stopper.append(sub)
    wait_until(lambda: "New client connected" in b.log(), 30, "mosquitto_sub connected")
    run = start_run(config, tmp_path, speed="200", duration="30m")
    stopper.append(run)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    sub.wait(timeout=30)
    seqs = [json.loads(line)["seq"] for line in out.read_text().splitlines()]
    assert len(seqs) == 20 and seqs == sorted(seqs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    mqtt = summary["reactors"]["hsc-1"]["mqtt"]
    assert mqtt["published"] >= mqtt["telemetry_messages"]
    assert summary["mqtt"]["outbox_depth"] == 0 and summary["mqtt"]["reactors"] == 1


# --- the alarm board over MQTT ----------------------------------------------------------------
VOLUME_WATCH = """
[[reactor.alarm]]
name = "volume_watch"      # the chamber holds 50 mL: this stands from the first evaluation
channel = "volume_ml"
kind = "high"
limit = 10.0
priority = "low"
"""


def _with_alarms(config: Path, tables: str) -> Path:
    text = config.read_text()
    anchor = "# The recipe (docs/recipes.md)"
    assert anchor in text
    config.write_text(text.replace(anchor, tables + "\n" + anchor, 1))
    return config


SUMMARY = "bioreactor/hsc-1/alarms/summary"


def _retained(b: Broker, topic: str) -> dict:
    """The retained message of `topic` as a new subscriber gets it ({} when there is none)."""
    out = subprocess.run(["mosquitto_sub", "-h", LOOPBACK, "-p", str(b.port), "-t", topic,
                          "-C", "1", "-W", "2", "--retained-only"],
                         capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout) if out.stdout.strip() else {}


def _summary_with(b: Broker, name: str, state: str) -> dict | None:
    """The retained alarm summary if it shows `name` in `state` (its message starts with it)."""
    body = _retained(b, SUMMARY)
    shown = [a["message"].partition(":")[0] for a in body.get("alarms", [])
             if a["name"] == name]
    return body if shown == [state] else None


def _wall_s(body: dict) -> float:
    return datetime.fromisoformat(body["wall_ts"].replace("Z", "+00:00")).timestamp()


def _cmd(b: Broker, action: str, *params: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", "hsc-1", "--operator", "alice",
         "--key", KEY, "--reason", f"e2e {action}", action, *params],
        capture_output=True, text=True, timeout=60)


def _await(sub: Subscriber, name: str, state: str, after_t_s: float = -1.0,
           timeout_s: float = 40.0) -> dict:
    """The first message on `alarms` for `name` whose message starts with `state`."""
    def first() -> dict | None:
        return next((m for m in sub.messages() if m["name"] == name
                     and m["message"].startswith(f"{state}:") and m["t_s"] > after_t_s), None)

    return wait_until(first, timeout_s, f"{name} {state} after t={after_t_s} on MQTT")


def test_an_alarm_shelved_and_taken_out_of_service_by_operators(
    broker, tmp_path: Path, stopper: list
) -> None:
    b = broker()
    config = _with_alarms(write_config(tmp_path, b.url, period_s=1.0), VOLUME_WATCH)
    alarms = Subscriber(b, "bioreactor/hsc-1/alarms", tmp_path / "alarms.txt")
    run = start_run(config, tmp_path, speed="20", duration="1d",
                    options=("--run-id", "shelving"))
    stopper.append(run)
    try:
        raised = _await(alarms, "volume_watch", "unack")
        assert raised["active"] is True
        # A subscriber that comes later finds the standing alarm in the retained summary.
        late = wait_until(lambda: _summary_with(b, "volume_watch", "unack"), 30,
                          "volume_watch unack in the retained summary")
        assert late["run_id"] == "shelving"
        assert {"severity": "info", "priority": "low", "active": True}.items() <= \
            next(a for a in late["alarms"] if a["name"] == "volume_watch").items()
        # a low-priority alarm, judged on the chamber's ~50 mL, from this run
        assert raised["severity"] == "info" and raised["value"] > 10.0
        assert raised["run_id"] == "shelving"
        shelve = _cmd(b, "shelve_alarm", "alarm=volume_watch", "duration_s=2m")
        assert shelve.returncode == 0, shelve.stderr
        reply = json.loads(shelve.stdout)
        assert reply["old"] == {"alarm": "volume_watch", "state": "unack"}
        until = reply["new"]["shelved_until_s"]
        assert reply["new"]["state"] == "shelved" and until == reply["t_s"] + 120.0
        shelved = _await(alarms, "volume_watch", "shelved")
        assert shelved["active"] is False and "alice: e2e shelve_alarm" in shelved["message"]
        wait_until(lambda: _summary_with(b, "volume_watch", "shelved"), 30,
                   "the shelf in the retained summary")
        # refused: a critical alarm, too long a shelf, an alarm that does not exist
        critical = _cmd(b, "shelve_alarm", "alarm=temperature_high", "duration_s=60")
        assert critical.returncode == 1 and "forbidden" in critical.stderr
        too_long = _cmd(b, "shelve_alarm", "alarm=volume_watch", "duration_s=9h")
        assert too_long.returncode == 1 and "0 < duration_s <= 28800" in too_long.stderr
        unknown = _cmd(b, "unshelve_alarm", "alarm=volume_watch_2")
        assert unknown.returncode == 1 and "unknown_target" in unknown.stderr
        # the shelf runs out on its own: the alarm is back, still standing, unacknowledged
        back = _await(alarms, "volume_watch", "unack", after_t_s=raised["t_s"])
        assert back["active"] is True and "shelf expired" in back["message"]
        assert until <= back["t_s"] <= until + 5.0 + 1.0  # the board is evaluated every 5 s
        # out of service and back: evaluated afresh, so raised again
        removed = _cmd(b, "remove_alarm_from_service", "alarm=volume_watch")
        assert removed.returncode == 0, removed.stderr
        assert json.loads(removed.stdout)["new"]["state"] == "out_of_service"
        _await(alarms, "volume_watch", "out_of_service")
        returned = _cmd(b, "return_alarm_to_service", "alarm=volume_watch")
        assert returned.returncode == 0, returned.stderr
        normal = _await(alarms, "volume_watch", "normal")
        again = _await(alarms, "volume_watch", "unack", after_t_s=back["t_s"])
        assert again["t_s"] - normal["t_s"] <= 5.0 + 1.0
    finally:
        alarms.close()
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    audit = read_audit(tmp_path / "run.sqlite")
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("shelve_alarm", "applied"), ("shelve_alarm", "forbidden"),
        ("shelve_alarm", "out_of_range"), ("unshelve_alarm", "unknown_target"),
        ("remove_alarm_from_service", "applied"), ("return_alarm_to_service", "applied")]
    assert {r["operator"] for r in audit} == {"alice"}
    assert json.loads(audit[0]["new_json"])["state"] == "shelved"
    assert audit[0]["reason"] == "e2e shelve_alarm"
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        journal = [(json.loads(d)["from"], json.loads(d)["to"]) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm_state' "
            "AND json_extract(data_json, '$.alarm') = 'volume_watch' ORDER BY rowid")]
    assert journal == [("normal", "unack"), ("unack", "shelved"), ("shelved", "unack"),
                       ("unack", "out_of_service"), ("out_of_service", "normal"),
                       ("normal", "unack")]


def test_a_killed_runs_standing_alarm_stays_on_the_broker_and_comes_back_as_it_was(
    broker, tmp_path: Path, stopper: list
) -> None:
    """kill -9 with an acknowledged alarm standing. A subscriber that comes afterwards finds the
    node lost and the alarm still in the reactor's retained summary, so the last word on the
    broker is not "nothing wrong"; the run continued under the same id (its chamber served by
    `bioreactor emulate`, so it outlives the controller) publishes it again as it stood:
    acknowledged, not put back to the operator as new."""
    b = broker()
    config = tmp_path / "hil-mqtt.toml"
    config.write_text((REPO / "configs" / "hil_modbus_tcp.toml").read_text() + VOLUME_WATCH
                      + f'\n[mqtt]\nurl = "{b.url}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
                      + f'\n[[operator]]\nname = "alice"\nkey_hex = "{KEY}"\n')
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0") as (_, url):
        options = ("--device", url, "--run-id", "kill-alarms")
        speed = str(EMULATOR_SPEED)
        first = start_run(config, tmp_path, speed=speed, duration="2d", options=options)
        stopper.append(first)
        wait_until(lambda: _summary_with(b, "volume_watch", "unack"), 60,
                   "volume_watch unack in the retained summary")
        ack = _cmd(b, "ack_alarm", "alarm=volume_watch")
        assert ack.returncode == 0, ack.stderr
        wait_until(lambda: _summary_with(b, "volume_watch", "acked"), 30,
                   "the ack in the summary")
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_wall = time.time()
        wait_until(lambda: _retained(b, "bioreactor/_node/kill-alarms/status")
                   == {"state": "lost"}, 30, "the node's will")
        left = _summary_with(b, "volume_watch", "acked")
        assert left is not None and left["run_id"] == "kill-alarms"
        assert _wall_s(left) < killed_wall

        second = start_run(config, tmp_path, speed=speed, duration="2d", options=options)
        stopper.append(second)
        try:
            again = wait_until(
                lambda: (body := _retained(b, SUMMARY)) and _wall_s(body) > killed_wall
                and body, 60, "the continued run's summary")
        finally:
            second.send_signal(signal.SIGINT)
            _, err = second.communicate(timeout=60)
    assert second.returncode == 130 and "Traceback" not in err, err  # stopped by its SIGINT
    assert again["run_id"] == "kill-alarms"
    assert [a["message"].partition(":")[0] for a in again["alarms"]
            if a["name"] == "volume_watch"] == ["acked"]
    assert again["t_s"] >= left["t_s"]  # the run's clock carried on, not from 0
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        raised = con.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'alarm_state' AND "
            "json_extract(data_json, '$.alarm') = 'volume_watch' AND "
            "json_extract(data_json, '$.to') = 'unack'").fetchone()[0]
    assert raised == 1  # raised once, by the first process; the restart did not raise it anew

def test_an_alarm_flood_reaches_subscribers_as_one_summary_and_an_end(
    broker, tmp_path: Path, stopper: list
) -> None:
    tables = "".join(VOLUME_WATCH.replace('"volume_watch"', f'"volume_watch_{i}"')
                     .replace("10.0", f"{10.0 + i}") for i in range(5))
    tables += '\n[reactor.alarm_board]\nflood_threshold = 3\nflood_window_s = "1m"\n'
    b = broker()
    config = _with_alarms(write_config(tmp_path, b.url, period_s=1.0), tables)
    alarms = Subscriber(b, "bioreactor/hsc-1/alarms", tmp_path / "alarms.txt")
    run = start_run(config, tmp_path, speed="20", duration="3m")
    stopper.append(run)
    try:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
        wait_until(lambda: len([m for m in alarms.messages() if m["name"] == "flood"]) >= 2,
                   30, "the flood's start and end")
    finally:
        alarms.close()
    messages = alarms.messages()
    assert not [m for m in messages if m["name"].startswith("volume_watch")], messages
    start, end = [m for m in messages if m["name"] == "flood"]
    names = ", ".join(f"volume_watch_{i}" for i in range(5))
    assert start["active"] is True and start["t_s"] < 5.0  # the first evaluation
    assert f"alarm flood: 5 activations within 60 s ({names})" in start["message"]
    # over once the window has emptied, at the first evaluation (every 5 s) after it
    assert end["active"] is False and 60.0 <= end["t_s"] - start["t_s"] <= 66.0
    assert f"5 notifications held back ({names})" in end["message"]
