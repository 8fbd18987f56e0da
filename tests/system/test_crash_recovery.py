"""Crash recovery, as it happens: the chamber served by `bioreactor emulate` over Modbus TCP keeps
going while the controller is killed with SIGKILL at seeded random moments and restarted with
the same run id. The feed ledger in the run's records must show every scheduled bolus started
once and finished once, book exactly what the device's feed totaliser counted (what the pump
gave on while the controller was down included: zero doubled, zero missed, an over-delivery
recorded as such), and the loops must pick up where they were."""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from plugins.configs import REPO
from plugins.hil import EMULATOR_SPEED as SPEED
from plugins.hil import emulator
from plugins.mosquitto import KEY, Subscriber
from plugins.processes import BIN
from plugins.records import count_rows
from plugins.waiting import wait_until

from controller.control.schedule import OVER_DELIVERY_ML
from controller.runtime.recovery import RunLock
from drivers.contract.errors import DeviceHeldError
from drivers.contract.urls import parse_device_url
from drivers.wire.modbus_driver import ModbusDriver

# One run killed fifty times (module-scoped, shared by four tests) takes minutes when loaded.
pytestmark = pytest.mark.timeout(900)

KILLS = 50
SEED = 20261127
BOLUS_EVERY_S = 900
BOLUS_ML = 1.0
BOLUS_ML_PER_H = 12.0  # 300 s of pumping: a third of the run has a bolus under way
DURATION_H = 96
"""The run's end, as a ceiling only: the last process ends the run 30-45 simulated minutes after
the 50th kill. 96 h is 576 s of wall time at 600x, where 50 kill cycles take 100-200 s; 48 h
(288 s) ran out on a loaded machine, whose slower restarts let the run's clock pass its end
before the last kills ("run already completed")."""
DELIVERY_TOLERANCE_ML = 0.2
"""The default `[reactor.schedule.delivery] tolerance_ml` (1 mL boluses: max(0.2, 10 %))."""
EARLY_KILLS = 0.2
"""The share of kills aimed at a controller still starting (before it took the run over)."""


def kill_test_config(tmp: Path, *, duration_h: float = DURATION_H,
                     policy: str = "resume") -> tuple[Path, int]:
    """The Modbus TCP config with a bolus every 15 min instead of the three of the culture, and
    no perfusion: the feed totaliser then counts the boluses alone."""
    text = (REPO / "configs" / "hil_modbus_tcp.toml").read_text()
    head, _, feeding = text.partition("[[reactor.schedule.perfusion]]")
    assert "[" not in feeding.replace("[[reactor.schedule.perfusion]]", "").replace(
        "[[reactor.schedule.bolus]]", ""), "the feeding tables must come last"
    head = head.replace('duration = "2d"', f'duration = "{duration_h}h"')
    head = head.replace('restart_policy = "resume"', f'restart_policy = "{policy}"')
    count = int(duration_h * 3600 // BOLUS_EVERY_S) - 1
    for k in range(count):
        head += (f"\n[[reactor.schedule.bolus]]\nat = {BOLUS_EVERY_S * (k + 1)}\n"
                 f"volume_ml = {BOLUS_ML}\nrate_ml_per_h = {BOLUS_ML_PER_H}\n")
    path = tmp / "kill.toml"
    path.write_text(head)
    return path, count


def start_controller(config: Path, url: str, tmp: Path, attempt: int,
                     *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(config), "--device", url, "--quiet",
         "--run-id", "killed-run", "--db", str(tmp / "run.sqlite"),
         "--summary-json", str(tmp / "summary.json"), *extra],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"controller-{attempt}.err", "w"),
    )


def takeovers(db: Path) -> int:
    """How many controller processes have started or continued the run so far."""
    return count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'run' AND "
                          "message LIKE 'reactor %started%'")


def now_s(db: Path) -> float:
    """Where the run's clock stands now, from its newest checkpoint (as a restart computes)."""
    with sqlite3.connect(db) as con:
        t_s, wall = con.execute("SELECT t_s, wall_time FROM checkpoints").fetchone()
    return t_s + (time.time() - wall) * SPEED


def wait_until_started(db: Path, before: int, proc: subprocess.Popen) -> None:
    def started() -> bool:
        assert proc.poll() is None, "controller exited before it started"
        return takeovers(db) > before

    wait_until(started, 60, "the controller to take the run over")


def feed_ledger(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT t_s, data_json FROM events WHERE kind = 'feed' "
                           "ORDER BY rowid").fetchall()
    return [{"t_s": t_s, **json.loads(data)} for t_s, data in rows]


def device_feed_totaliser_ml(url: str) -> float:
    """What the device's feed pump delivered since it booted, read over its own link."""
    async def read() -> float:
        driver = ModbusDriver(parse_device_url(url), now=time.monotonic, seed=0, options={})
        # A look, not control: the last controller's lease lives for the comm timeout.
        with contextlib.suppress(DeviceHeldError):
            await driver.connect()
        try:
            readings = await driver.read()
        finally:
            await driver.close()
        return readings["feed_delivered_ml"].value

    return asyncio.run(read())


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One run killed KILLS times at seeded random moments, then let to finish."""
    tmp = tmp_path_factory.mktemp("killed")
    config, boluses = kill_test_config(tmp)
    rng = random.Random(SEED)
    db = tmp / "run.sqlite"
    kills = running_kills = 0
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0", comm_timeout_s=0.5) as (
            device, url):
        for attempt in range(KILLS):
            RunLock(db, wait_s=30).release()  # the last one's records are all committed
            before = takeovers(db)
            proc = start_controller(config, url, tmp, attempt)
            try:
                if rng.random() < EARLY_KILLS:
                    # The random moment of the kill is the scenario, not a wait.
                    time.sleep(rng.uniform(0.02, 0.6))  # during start-up: imports, connecting
                else:  # once this process has taken the run over, anywhere in its ticks
                    wait_until_started(db, before, proc)
                    time.sleep(rng.uniform(0.0, 1.0))  # the kill moment, as above
                    running_kills += 1
                assert proc.poll() is None, (tmp / f"controller-{attempt}.err").read_text()
            finally:
                proc.kill()
                proc.wait()
            kills += 1
        # The last controller finishes the run 30-45 simulated minutes from now, midway
        # between two boluses, so the run's end cuts none short.
        RunLock(db, wait_s=30).release()
        end_s = (now_s(db) + 1800) // BOLUS_EVERY_S * BOLUS_EVERY_S + BOLUS_EVERY_S / 2
        last = start_controller(config, url, tmp, KILLS, "--duration", f"{end_s}s")
        last.wait(timeout=120)
        assert device.poll() is None
        device_feed_ml = device_feed_totaliser_ml(url)
    return {"tmp": tmp, "db": tmp / "run.sqlite", "boluses": boluses, "kills": kills,
            "running_kills": running_kills, "end_s": end_s,
            "due": sum(1 for k in range(boluses) if BOLUS_EVERY_S * (k + 1) < end_s),
            "returncode": last.returncode, "device_feed_ml": device_feed_ml,
            "stderr": (tmp / f"controller-{KILLS}.err").read_text()}


def test_the_run_completes_after_fifty_kills(killed_run: dict) -> None:
    assert killed_run["kills"] == KILLS
    assert killed_run["returncode"] == 0, killed_run["stderr"]
    summary = json.loads((killed_run["tmp"] / "summary.json").read_text())
    reactor = summary["reactors"]["hsc-1"]
    assert summary["stopped_by"] == "completed"
    assert summary["simulated_seconds"] >= killed_run["end_s"]
    assert reactor["boluses_done"] == killed_run["due"] >= 20
    with sqlite3.connect(killed_run["db"]) as con:
        restarts = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'run' "
                               "AND message LIKE 'reactor restarted%'").fetchone()[0]
    # Every kill of a running controller is followed by a continuation; a kill during start-up
    # may or may not be (it depends on whether that process had taken the run over).
    assert reactor["restarts"] == restarts
    assert killed_run["running_kills"] >= KILLS * 0.6
    assert killed_run["running_kills"] <= restarts <= KILLS, restarts
    assert reactor["errors"]["tick"] == 0


def test_no_feed_repeated_none_skipped(killed_run: dict) -> None:
    ledger = feed_ledger(killed_run["db"])
    events = defaultdict(list)
    for entry in ledger:
        events[entry["bolus"]].append(entry)
    # Every bolus due before the end, and none after it.
    assert set(events) == {f"s{k}" for k in range(killed_run["due"])}
    resumed = 0
    for bolus_id, entries in events.items():
        kinds = [e["event"] for e in entries]
        counts = Counter(kinds)
        assert counts["started"] == 1 and counts["done"] == 1, (bolus_id, kinds)
        assert kinds[0] == "started" and kinds[-1] == "done", (bolus_id, kinds)
        resumed += counts["resumed"]
        done = entries[-1]
        # Measured: its volume within the tolerance (a served device at 600x runs each rate a
        # few simulated seconds more or less than the controller's tick says), or more when
        # the pump ran on while the controller was down, then on record as an over-delivery.
        over = done["delivered_ml"] > BOLUS_ML + OVER_DELIVERY_ML
        assert over == (counts["over"] == 1), (bolus_id, kinds, done)
        assert done["delivered_ml"] >= BOLUS_ML - DELIVERY_TOLERANCE_ML, (bolus_id, done)
        # Never credited backwards: a resumed bolus goes on from what it had.
        delivered = [e["delivered_ml"] for e in entries]
        assert delivered == sorted(delivered), (bolus_id, delivered)
        assert entries[0]["t_s"] >= entries[0]["due_t_s"]
    assert resumed >= 5, "too few kills hit a bolus under way to prove anything"


def test_the_ledger_books_exactly_what_the_device_totalised(killed_run: dict) -> None:
    """No feed perfusion in the kill test's config: the device's feed totaliser counted nothing
    but the boluses, so the ledger must add up to it, through fifty kills."""
    final: dict[str, dict] = {}
    for entry in feed_ledger(killed_run["db"]):
        final[entry["bolus"]] = entry
    booked_ml = sum(e["delivered_ml"] for e in final.values())
    assert booked_ml == pytest.approx(killed_run["device_feed_ml"], abs=1e-3)
    summary = json.loads((killed_run["tmp"] / "summary.json").read_text())
    feed = summary["reactors"]["hsc-1"]["delivery_ml"]["feed_ml_per_h"]
    assert feed["measured"] == pytest.approx(killed_run["device_feed_ml"], abs=1e-3)
    # Each kill mid-bolus lets the pump run on until the device's watchdog (0.5 s wall = 300 s
    # at 12 mL/h per bolus pumping: up to 1 mL more each): recorded, never lost. An outage can
    # delay a bolus into the next one's slot, so two may pump together; the volume is then
    # booked to fill the older and the rest to the newer, so a bolus's excess is bounded by the
    # boluses pumping in the outages it was booked in (1 mL each). The older one taking all of
    # it would leave the newer to be pumped a second time, past this bound.
    booked = [e for e in feed_ledger(killed_run["db"]) if e["event"] == "booked"]
    pumping_at = Counter(e["t_s"] for e in booked)
    allowance_ml: Counter[str] = Counter()
    for e in booked:
        allowance_ml[e["bolus"]] += 1.0 * pumping_at[e["t_s"]]
    over_ml = {b: e["delivered_ml"] - BOLUS_ML for b, e in final.items()
               if e["delivered_ml"] > BOLUS_ML + OVER_DELIVERY_ML}
    assert over_ml
    assert all(ml <= allowance_ml[b] + DELIVERY_TOLERANCE_ML
               for b, ml in over_ml.items()), (over_ml, allowance_ml)


def test_records_continue_without_overlap(killed_run: dict) -> None:
    with sqlite3.connect(killed_run["db"]) as con:
        times = [t for (t,) in con.execute("SELECT t_s FROM ticks ORDER BY rowid")]
        (runs,) = con.execute("SELECT COUNT(*) FROM runs").fetchone()
    assert runs == 1
    assert times == sorted(times) and len(set(times)) == len(times)
    # Every tick counted by a checkpoint is on record (the rows go to the writer with or
    # before the checkpoint); the outages themselves are gaps in time, not missing rows.
    summary = json.loads((killed_run["tmp"] / "summary.json").read_text())
    assert len(times) >= summary["ticks"] > 1000


def test_the_soft_sensor_carries_on_across_kills(killed_run: dict) -> None:
    """Once its filter has run, every restart continues it from the checkpoint (the estimates
    a recipe reads are never reset by a crash), each from an update that is on record."""
    with sqlite3.connect(killed_run["db"]) as con:
        events = [(kind, message, json.loads(data) if data else {}) for kind, message, data in
                  con.execute("SELECT kind, message, data_json FROM events WHERE kind IN "
                              "('run', 'estimation') ORDER BY rowid")]
        updates = {t for (t,) in con.execute(
            "SELECT t_s FROM estimates WHERE name = 'est_viable_cells_per_ml'")}
    restarts = [i for i, (kind, message, _) in enumerate(events)
                if kind == "run" and message.startswith("reactor restarted")]
    verdicts = [events[i - 1] for i in restarts]  # the soft sensor's, just before each
    assert all(kind == "estimation" for kind, _, _ in verdicts)
    restored = ["filter_t_s" in data for _, _, data in verdicts]
    first = restored.index(True)
    assert all(restored[first:]), [m for _, m, _ in verdicts[first:]]
    assert sum(restored) > KILLS // 2  # not a vacuous pass: most restarts came after it
    assert {data["filter_t_s"] for _, _, data in verdicts[first:]} <= updates


def test_a_restarted_controller_is_the_same_master(killed_run: dict) -> None:
    """A restart of the same run takes its predecessor's lease token from the checkpoint: the
    device's lease is its own, so it is never held out by the controller it replaces (which
    would leave the pumps on the dead one's outputs until the lease lapsed)."""
    held = count_rows(killed_run["db"], "SELECT COUNT(*) FROM events WHERE kind = 'alarm' "
                      "AND data_json LIKE '%\"device_held\"%'")
    assert held == 0
    with sqlite3.connect(killed_run["db"]) as con:
        (state_json,) = con.execute("SELECT state_json FROM checkpoints").fetchone()
    assert json.loads(state_json)["device_session"] is not None


def test_loops_resume_bumplessly(killed_run: dict) -> None:
    """The first command after a restart is the output the loop had at its checkpoint (held
    until the input has been good for a few samples), unless the device's watchdog put it in
    its safe state during the outage (here it always did: comm timeout 0.5 s): then the loops
    restart from the device's outputs, recorded with the restart (docs/recovery.md)."""
    with sqlite3.connect(killed_run["db"]) as con:
        restarts = con.execute("SELECT t_s, data_json FROM events WHERE kind = 'run' AND "
                               "message LIKE 'reactor restarted%' ORDER BY t_s").fetchall()
        went_safe = {t_s: json.loads(d)["device_outputs"] for t_s, d in con.execute(
            "SELECT t_s, data_json FROM events WHERE kind = 'run' AND "
            "message LIKE 'device went to its safe state%'")}
        checked = 0
        ends = [t_s for t_s, _ in restarts[1:]] + [float("inf")]
        for (t_s, data_json), next_restart_s in zip(restarts, ends, strict=True):
            outputs = json.loads(data_json)["loop_outputs"]
            # Its own first tick: a controller killed before it made one has none (the next
            # restart's first tick is not its).
            row = con.execute("SELECT heater_pct, o2_pct, co2_pct FROM ticks WHERE t_s >= ? "
                              "AND t_s < ? ORDER BY t_s LIMIT 1",
                              (t_s, next_restart_s)).fetchone()
            if row is None:
                continue
            before = con.execute("SELECT heater_pct FROM ticks WHERE t_s < ? "
                                 "ORDER BY t_s DESC LIMIT 1", (t_s,)).fetchone()
            assert row == pytest.approx(
                (outputs["heater_pct"], outputs["o2_pct"], outputs["co2_pct"]))
            if t_s in went_safe:
                device = went_safe[t_s]
                assert row == pytest.approx(
                    (device["heater_pct"], device["o2_pct"], device["co2_pct"]))
            elif before is not None:
                assert abs(row[0] - before[0]) < 10.0, (t_s, row, before)
            checked += 1
    assert checked >= 10
    assert went_safe  # the watchdog (0.5 s) always trips before a restart takes over


def test_hold_policy_waits_for_an_operator(broker, tmp_path: Path) -> None:
    """Restarted under `hold`: the loops regulate, the schedule waits (a bolus falling due is
    not given, nor dropped) until an operator's signed resume_schedule; telemetry numbers never
    repeat with different content across the crash."""
    b = broker()
    config, boluses = kill_test_config(tmp_path, duration_h=2, policy="hold")
    config.write_text(config.read_text() + (
        f'\n[mqtt]\nurl = "{b.url}"\noutbox = "{tmp_path / "outbox.sqlite"}"\n'
        f'\n[[operator]]\nname = "alice"\nkey_hex = "{KEY}"\n'))
    telemetry = Subscriber(b, "bioreactor/hsc-1/telemetry", tmp_path / "telemetry.txt")
    db = tmp_path / "run.sqlite"
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0", comm_timeout_s=0.5) as (
            _, url):
        first = start_controller(config, url, tmp_path, 0)
        try:
            wait_until(lambda: count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'feed' "
                                          "AND json_extract(data_json, '$.event') = 'done'"),
                       60, "the first bolus given (due at 900 s = 1.5 s of wall time)")
        finally:
            first.kill()
            first.wait()
        second = start_controller(config, url, tmp_path, 1)
        try:
            def held_past_two_boluses() -> bool:
                held = count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'alarm' AND "
                                  "message LIKE 'restarted on hold%'")
                return bool(held) and now_s(db) > 3 * BOLUS_EVERY_S + 60

            wait_until(held_past_two_boluses, 60, "two more boluses falling due while held")
            with sqlite3.connect(db) as con:
                (held_at,) = con.execute(
                    "SELECT t_s FROM events WHERE kind = 'alarm' AND message LIKE "
                    "'restarted on hold%'").fetchone()
            started_before = {e["bolus"] for e in feed_ledger(db) if e["event"] == "started"}
            resume = subprocess.run(
                [BIN / "bioreactor", "cmd", "--mqtt", b.url, "--reactor", "hsc-1", "--operator",
                 "alice", "--key", KEY, "--reason", "checked the chamber after the crash",
                 "resume_schedule"], capture_output=True, text=True, timeout=60)
            assert resume.returncode == 0, resume.stdout + resume.stderr
            second.wait(timeout=60)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    telemetry.close()
    assert second.returncode == 0, (tmp_path / "controller-1.err").read_text()
    ledger = feed_ledger(db)
    with sqlite3.connect(db) as con:
        (resumed_at,) = con.execute("SELECT t_s FROM audit WHERE action = 'resume_schedule' "
                                    "AND outcome = 'applied'").fetchone()
        cleared = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'alarm' AND "
                              "message LIKE 'feed schedule resumed%'").fetchone()[0]
    assert cleared == 1
    # Boluses that fell due during the hold started only after the operator's resume...
    held = [e for e in ledger if e["event"] == "started" and e["bolus"] not in started_before]
    due_in_hold = [e for e in held if e["due_t_s"] < resumed_at]
    assert len(due_in_hold) >= 2, ledger
    assert all(e["t_s"] >= resumed_at for e in held)
    assert held_at < resumed_at
    # ...and every bolus was given once, none dropped.
    done = Counter(e["bolus"] for e in ledger if e["event"] == "done")
    assert done == Counter({f"s{k}": 1 for k in range(boluses)})
    # The same seq never carries two different messages, before and after the crash.
    by_seq: dict[int, set[str]] = defaultdict(set)
    for message in telemetry.messages():
        if "seq" in message:
            by_seq[message["seq"]].add(json.dumps(message, sort_keys=True))
    assert len(by_seq) > 100
    assert all(len(payloads) == 1 for payloads in by_seq.values())
