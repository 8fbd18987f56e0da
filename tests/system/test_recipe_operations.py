"""A running recipe steered by operators over a real broker, and a recipe that outlives a
`kill -9` of its controller (issue 13): signed hold and restart seen in telemetry within two
ticks and audited, a command the state does not allow refused with its reason, and a killed
served-device run that comes back held at the same phase and, restarted, gives no feed twice."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, REPO
from plugins.hil import emulator
from plugins.mosquitto import KEY, Broker, Subscriber
from plugins.processes import BIN
from plugins.records import count_rows
from plugins.waiting import wait_until

from controller.operator.audit import read_audit

pytestmark = pytest.mark.timeout(600)

OPERATOR = f'\n[[operator]]\nname = "alice"\nkey_hex = "{KEY}"\n'


def cmd(b: Broker, action: str, reactor: str = "hsc-1") -> subprocess.CompletedProcess:
    """`bioreactor cmd` as an operator types it: signed, waits for the reply."""
    return subprocess.run(
        [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", reactor, "--operator", "alice",
         "--key", KEY, "--reason", f"test {action}", action],
        capture_output=True, text=True, timeout=60)


def first_telemetry(sub: Subscriber, state: str, after_t_s: float) -> dict:
    def found() -> dict | None:
        return next((m for m in sub.messages() if m["t_s"] >= after_t_s
                     and m.get("recipe", {}).get("state") == state), None)

    return wait_until(found, 60, f"telemetry with recipe {state} after t={after_t_s}")


def test_hold_and_restart_reach_telemetry_within_two_ticks_and_a_wrong_restart_is_refused(
    broker, tmp_path: Path
) -> None:
    b = broker()
    config = tmp_path / "recipe.toml"
    config.write_text(DEFAULT_CONFIG_PATH.read_text() + OPERATOR)
    telemetry = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "telemetry.txt")
    run = subprocess.Popen(
        [BIN / "bioreactor", "run", str(config), "--speed", "60", "--duration", "1d", "--quiet",
         "--mqtt", b.url, "--db", str(tmp_path / "run.sqlite"),
         "--summary-json", str(tmp_path / "summary.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        running = first_telemetry(telemetry, "running", 0.0)
        assert running["recipe"] == {"state": "running", "phase": "seed"}
        wrong = cmd(b, "restart")
        assert wrong.returncode == 1 and "wrong_state" in wrong.stderr
        assert "restart is not allowed while the recipe is running (allowed in: held)" \
            in wrong.stderr
        hold = cmd(b, "hold")
        assert hold.returncode == 0, hold.stderr
        reply = json.loads(hold.stdout)
        assert reply["old"]["state"] == "running" and reply["new"]["state"] == "holding"
        held = first_telemetry(telemetry, "held", reply["t_s"])
        assert held["t_s"] - reply["t_s"] <= 2 * 1.0  # within two ticks of 1 s
        assert held["recipe"]["phase"] == "seed"
        restart = cmd(b, "restart")
        assert restart.returncode == 0, restart.stderr
        restarted_at = json.loads(restart.stdout)["t_s"]
        back = first_telemetry(telemetry, "running", restarted_at)
        assert back["t_s"] - restarted_at <= 2 * 1.0
        again = cmd(b, "start")
        assert again.returncode == 1 and "start is not allowed" in again.stderr
    finally:
        telemetry.close()
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err  # stopped by Ctrl-C, as an operator ends a run
    assert "Traceback" not in err
    audit = [r for r in read_audit(tmp_path / "run.sqlite") if r["operator"] == "alice"]
    assert [(r["action"], r["outcome"]) for r in audit] == [
        ("restart", "wrong_state"), ("hold", "applied"), ("restart", "applied"),
        ("start", "wrong_state")]
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        moves = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'recipe' ORDER BY rowid")]
    states = [(m["from_state"], m["state"], m["by"]) for m in moves if m["event"] == "state"]
    assert states == [("idle", "running", "recipe"), ("running", "holding", "operator:alice"),
                      ("holding", "held", "recipe"), ("held", "restarting", "operator:alice"),
                      ("restarting", "running", "recipe")]


# --- kill -9 in the middle of a phase, on a served device ----------------------------------------
KILL_RECIPE = """
[reactor.recipe]
name = "kill-test"

[[reactor.recipe.phase]]
name = "first"
feed = { strategy = "fixed", feed_ml_per_h = 0.0 }
[[reactor.recipe.phase.bolus]]
after = "10m"
volume_ml = 1.0
rate_ml_per_h = 12.0
[[reactor.recipe.phase.exit]]
when = "phase_time >= 1h"

[[reactor.recipe.phase]]
name = "second"
feed = { strategy = "fixed", feed_ml_per_h = 0.0 }
[[reactor.recipe.phase.bolus]]
after = "10m"
volume_ml = 1.0
rate_ml_per_h = 12.0
[[reactor.recipe.phase.bolus]]
after = "2h"
volume_ml = 1.0
rate_ml_per_h = 12.0
[[reactor.recipe.phase.exit]]
when = "phase_time >= 3h"

[[reactor.recipe.phase]]
name = "third"
feed = { strategy = "fixed", feed_ml_per_h = 0.0 }
[[reactor.recipe.phase.bolus]]
after = "10m"
volume_ml = 1.0
rate_ml_per_h = 12.0
[[reactor.recipe.phase.exit]]
when = "phase_time >= 1h"
"""
"""No perfusion, so the feed totaliser counts the boluses alone; five of them, 300 s each."""


def kill_config(tmp: Path, broker_url: str) -> Path:
    text = (REPO / "configs" / "hil_modbus_tcp.toml").read_text()
    head, _, _ = text.partition("[[reactor.schedule.perfusion]]")
    path = tmp / "kill-recipe.toml"
    path.write_text(head + KILL_RECIPE + f'\n[mqtt]\nurl = "{broker_url}"\noutbox = '
                    f'"{tmp / "outbox.sqlite"}"\n' + OPERATOR)
    return path


def recipe_events(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        return [{"t_s": t, "message": m, **json.loads(d)} for t, m, d in con.execute(
            "SELECT t_s, message, data_json FROM events WHERE kind = 'recipe' ORDER BY rowid")]


def controller(config: Path, url: str, tmp: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(config), "--device", url, "--quiet", "--duration", "8h",
         "--run-id", "recipe-killed", "--db", str(tmp / "run.sqlite"),
         "--summary-json", str(tmp / "summary.json")],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.err", "w"))


def test_a_killed_recipe_comes_back_held_at_its_phase_and_gives_no_feed_twice(
    broker, tmp_path: Path
) -> None:
    b = broker()
    config = kill_config(tmp_path, b.url)
    db = tmp_path / "run.sqlite"
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0",
                  comm_timeout_s=0.5) as (device, url):
        first = controller(config, url, tmp_path, "first")
        try:
            # Kill -9 while the second phase's first bolus is being pumped.
            wait_until(lambda: count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'feed' "
                                              "AND message LIKE 'bolus r1 started%'") == 1,
                       120, "the second phase's first bolus to start")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        killed_at = recipe_events(db)
        assert [e["phase"] for e in killed_at if e["event"] == "phase_started"] == \
            ["first", "second"]
        second = controller(config, url, tmp_path, "second")
        try:
            restored = wait_until(
                lambda: next((e for e in recipe_events(db) if e.get("by") == "restart"), None),
                60, "the recipe restored")
            assert restored["state"] == "held" and restored["from_state"] == "running"
            assert restored["phase"] == "second"
            assert "held at phase second" in restored["message"]
            restart = cmd(b, "restart")
            assert restart.returncode == 0, restart.stderr
            assert json.loads(restart.stdout)["new"]["state"] == "restarting"
            _, _ = second.communicate(timeout=240)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
        assert second.returncode == 0, (tmp_path / "second.err").read_text()
        assert device.poll() is None
    summary = json.loads((tmp_path / "summary.json").read_text())
    reactor = summary["reactors"]["hsc-1"]
    assert reactor["recipe"]["state"] == "complete"
    assert [p["name"] for p in reactor["recipe"]["phases"]] == ["first", "second", "third"]
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT data_json FROM events WHERE kind = 'feed' "
                           "ORDER BY rowid").fetchall()
    ledger = defaultdict(list)
    for (data,) in rows:
        entry = json.loads(data)
        ledger[entry["bolus"]].append(entry["event"])
    assert set(ledger) == {"r0", "r1", "r2", "r3"}, dict(ledger)
    for bolus, kinds in ledger.items():
        counts = Counter(kinds)
        assert counts["started"] == 1 and counts["done"] == 1, (bolus, kinds)
    given = {b["id"]: b for b in reactor["boluses"]}
    assert all(given[k]["state"] == "done" for k in ledger)
    # What was booked is what the pump gave: within the delivery tolerance of 1 mL each.
    for k in ledger:
        assert given[k]["delivered_ml"] == pytest.approx(1.0, abs=0.2), given[k]
    audit = [r for r in read_audit(db) if r["operator"] == "alice"]
    assert [(r["action"], r["outcome"]) for r in audit] == [("restart", "applied")]

