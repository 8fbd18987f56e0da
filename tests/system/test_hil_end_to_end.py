"""Hardware in the loop, end to end, as a user runs it: `bioreactor emulate` in one process,
`bioreactor run` in another, talking over a real wire on loopback. Processes are killed the hard
way to prove the safety behaviour on both sides."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from plugins.configs import REPO
from plugins.hil import controller, emulator, stop, ticks_recorded
from plugins.processes import children, free_port
from plugins.records import count_rows, periods_after_first_tick
from plugins.waiting import wait_until

CONFIGS = {
    "modbus-tcp": ("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:{port}"),
    "modbus-rtu": ("hil_modbus_rtu.toml", "modbus-rtu://socket://127.0.0.1:{port}"),
    "serial": ("hil_serial.toml", "serial://socket://127.0.0.1:{port}"),
}


def link_events(tmp: Path, message: str) -> int:
    return count_rows(tmp / "run.sqlite", "SELECT COUNT(*) FROM events WHERE kind = 'comm' AND "
                      "data_json LIKE '%\"link\"%' AND message LIKE ?", f"{message}%")


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_a_culture_over_the_wire_holds_the_bands(kind: str, tmp_path: Path) -> None:
    """Six simulated hours at 600x (36 s of wall time) over each wire, bands after the first
    hour."""
    config, listen = CONFIGS[kind]
    with emulator(config, listen.format(port=0)) as (_, url):
        run = controller(config, url, tmp_path, "6h")
        _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    loops = summary["loops"]
    assert loops["temperature"]["within_band_fraction"] >= 0.99, loops
    assert loops["do"]["within_band_fraction"] >= 0.95, loops
    assert loops["ph"]["within_band_fraction"] >= 0.95, loops
    reactor = summary["reactors"]["hsc-1"]
    assert reactor["comm_losses"] == 0
    # Every period is a tick made or a tick skipped on record (an overrun is skipped, not
    # bunched). How few are skipped is a speed, so a benchmark's to measure (make bench: 34,559
    # of 34,560 over two days at 600x); here the other test worker shares the two cores and, at
    # 8 ms of wall time a tick, takes a share that varies with what it runs (CI once made 79 %).
    periods = periods_after_first_tick(tmp_path / "run.sqlite", 6 * 3600, 5.0)
    assert summary["ticks"] + reactor["skipped_ticks"] in periods


def test_killing_the_controller_puts_the_device_in_its_safe_state(tmp_path: Path) -> None:
    import asyncio

    from drivers import DeviceHeldError, DeviceStatus, parse_device_url
    from drivers.wire.modbus_driver import ModbusDriver

    config, listen = CONFIGS["modbus-tcp"]
    comm_timeout_s = 1.0
    with emulator(config, listen.format(port=0), comm_timeout_s) as (device, url):
        run = controller(config, url, tmp_path, "2d")
        wait_until(lambda: ticks_recorded(tmp_path) >= 10, 60,
                   "the controller to run and feed the heartbeat")
        assert run.poll() is None, run.stderr.read()  # type: ignore[union-attr]
        run.kill()  # kill -9: no chance to put anything in a safe state itself
        run.wait()
        killed_at = time.monotonic()

        async def device_state() -> tuple[DeviceStatus, dict[str, float]]:
            loop = asyncio.get_running_loop()
            driver = ModbusDriver(parse_device_url(url), now=loop.time, seed=0, options={})
            # A look, not control: the killed controller's lease lives until the watchdog trips.
            with contextlib.suppress(DeviceHeldError):
                await driver.connect()
            try:
                return await driver.read_status(), await driver.read_outputs()
            finally:
                await driver.close()

        def safe_device() -> tuple[DeviceStatus, dict[str, float]] | None:
            status, outputs = asyncio.run(device_state())
            return (status, outputs) if status & DeviceStatus.COMM_LOSS_SAFE else None

        status, outputs = wait_until(safe_device, 5.0, "the device to go safe", poll_s=0.1)
        tripped_after_s = time.monotonic() - killed_at
        assert device.poll() is None
    assert status & DeviceStatus.COMM_LOSS_SAFE
    assert tripped_after_s <= comm_timeout_s + 1.0
    assert outputs == {"heater_pct": 0.0, "o2_pct": 21.0, "co2_pct": 5.0, "feed_ml_per_h": 0.0,
                       "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0, "heater_relay": 0.0}


DEVICE_LATE_S = 5.0
"""How long after the controller the device comes up: the scenario, not a wait."""


def test_a_run_started_before_its_device_waits_for_it_and_completes(tmp_path: Path) -> None:
    """A daemon started before its device keeps trying, says so on one clear line, alarms the
    comm loss and takes over once the device answers; the run then completes. Six simulated
    hours at 600x (36 s of wall time), the device up 5 s in."""
    config, listen = CONFIGS["modbus-tcp"]
    port = free_port()
    run = controller(config, listen.format(port=port), tmp_path, "6h")
    try:
        wait_until(lambda: link_events(tmp_path, "device not reachable at start-up"), 60,
                   "the run to start without its device")
        time.sleep(DEVICE_LATE_S)  # the device's late start is the scenario
        with emulator(config, listen.format(port=port)):
            out, err = run.communicate(timeout=120)
    finally:
        stop(run)
    assert run.returncode == 0, err
    assert "Traceback" not in out + err
    assert "device not reachable: the run goes on without it" in err
    assert "device reachable: control taken over" in err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped_by"] == "completed"
    db = tmp_path / "run.sqlite"
    raised = count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'alarm_state' "
                        "AND message LIKE 'comm_loss: % -> unack%'")
    taken_over_s = count_rows(db, "SELECT MIN(t_s) FROM events WHERE kind = 'run' "
                              "AND message = 'device reachable: control taken over'")
    good_after = count_rows(db, "SELECT COUNT(*) FROM ticks WHERE temperature_c_q = 0 "
                            "AND t_s > ?", taken_over_s)
    written_before = count_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'comm' AND "
                                "message LIKE 'write failed%' AND t_s < ?", taken_over_s)
    assert raised >= 1  # the comm-loss alarm stood while the device was absent
    assert good_after > 100  # the device read and controlled after the take-over
    assert written_before == 0  # nothing was written to a device not yet taken over
    assert "pymodbus" not in err and "Repeating" not in err and "Failed to connect" not in err


def test_controller_alarms_and_reconnects_when_the_device_restarts(tmp_path: Path) -> None:
    config, listen = CONFIGS["modbus-tcp"]
    port = free_port()
    with emulator(config, listen.format(port=port)) as (device, url):
        run = controller(config, url, tmp_path, "2d")
        wait_until(lambda: ticks_recorded(tmp_path) >= 10, 60, "the controller to run")
        device.kill()  # the device dies mid-run
        device.wait()
        wait_until(lambda: link_events(tmp_path, "comm loss"), 60, "the comm loss on record")
        outage_ticks = ticks_recorded(tmp_path)
        wait_until(lambda: ticks_recorded(tmp_path) > outage_ticks, 60,
                   "ticks recorded during the outage")
    with emulator(config, listen.format(port=port)):  # and comes back on the same port
        wait_until(lambda: link_events(tmp_path, "comm restored"), 60, "the link restored")
        restored_ticks = ticks_recorded(tmp_path)
        wait_until(lambda: ticks_recorded(tmp_path) > restored_ticks + 5, 60,
                   "good ticks after the reconnect")
        _, err = stop(run)
    assert run.returncode == 130, err
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        links = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'comm' AND data_json LIKE '%\"link\"%' "
            "ORDER BY t_s")]
        bad = con.execute("SELECT COUNT(*) FROM ticks WHERE temperature_c_q = 4").fetchone()[0]
        (last_q,) = con.execute(
            "SELECT temperature_c_q FROM ticks ORDER BY t_s DESC LIMIT 1").fetchone()
    # One spell: its start and its end (with its counts), not one row per failed operation.
    assert links[0].startswith("comm loss") and links[1].startswith("comm restored"), links
    assert bad > 0  # readings during the outage were marked as comm errors
    assert last_q == 0  # and good again after the reconnect


def test_a_controller_stalled_past_the_watchdog_writes_every_output_again(
        tmp_path: Path) -> None:
    """The controller's host stalls (SIGSTOP: a VM paused, a swap storm) longer than the
    device's comm timeout; its watchdog opens the heater relay and stops the pumps. The link
    itself never failed, so before, the controller went on believing the relay closed: it
    rewrote only outputs that changed, and the chamber cooled towards ambient under a heater
    pinned at 100 % (27 C twenty minutes later, measured at 60x). Now the first heartbeat
    after the silence reads the device's status first and every output is written again."""
    config, listen = CONFIGS["modbus-tcp"]
    with emulator(config, listen.format(port=0), comm_timeout_s=1.0) as (_, url):
        run = controller(config, url, tmp_path, "3h")
        try:
            wait_until(lambda: ticks_recorded(tmp_path) >= 120, 60, "ten simulated minutes")
            stalled = [run.pid, *children(run.pid)]  # the writer too: a whole host stalls
            for pid in stalled:
                os.kill(pid, signal.SIGSTOP)
            time.sleep(4.0)  # the scenario: 4 s of wall time without a heartbeat
            for pid in stalled:
                os.kill(pid, signal.SIGCONT)
            _, err = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 0, err
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        went_safe = con.execute(
            "SELECT t_s FROM events WHERE kind = 'device' AND message LIKE "
            "'device went to its safe state: no heartbeat reached it for %'").fetchall()
        alarms = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm' AND message LIKE "
            "'device went to its safe state%'")]
        assert len(went_safe) == 1
        (coldest,) = con.execute("SELECT MIN(temperature_c) FROM ticks WHERE t_s > ?",
                                 went_safe[0]).fetchone()
        (last,) = con.execute("SELECT temperature_c FROM ticks ORDER BY t_s DESC LIMIT 1"
                              ).fetchone()
    assert [(a["alarm"], a["active"], a["priority"]) for a in alarms] == [
        ("device_went_safe", True, "medium")]
    assert last > coldest + 1.0 and last > 36.0, (coldest, last)  # heating again


def test_a_control_period_longer_than_the_watchdog_does_not_trip_it(tmp_path: Path) -> None:
    """Legal but dangerous: a 30 min control period at 600x is 3 s of wall time between ticks,
    more than the device's comm timeout (2 s). Heartbeats came only with the ticks, so the device
    went to its safe state every period; now they keep their own second between the ticks."""
    config, listen = CONFIGS["modbus-tcp"]
    slow = tmp_path / "slow.toml"
    slow.write_text((REPO / "configs" / config).read_text().replace(
        "control_period_s = 5.0", "control_period_s = 1800.0"))
    with emulator(config, listen.format(port=0), comm_timeout_s=2.0) as (_, url):
        run = controller(str(slow), url, tmp_path, "3h")
        _, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ticks"] >= 5
    went_safe = count_rows(tmp_path / "run.sqlite", "SELECT COUNT(*) FROM events WHERE kind = "
                           "'device' AND message LIKE 'device went to its safe state%'")
    assert went_safe == 0
