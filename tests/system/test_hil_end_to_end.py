"""Hardware in the loop, end to end, as a user runs it: `bioreactor emulate` in one process,
`bioreactor run` in another, talking over a real wire on loopback. Processes are killed the hard
way to prove the safety behaviour on both sides."""
from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
SPEED = "600"
CONFIGS = {
    "modbus-tcp": ("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:{port}"),
    "modbus-rtu": ("hil_modbus_rtu.toml", "modbus-rtu://socket://127.0.0.1:{port}"),
    "serial": ("hil_serial.toml", "serial://socket://127.0.0.1:{port}"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def emulator(config: str, listen: str, comm_timeout_s: float = 2.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """A served chamber in its own process; yields it and the URL a controller should use."""
    proc = subprocess.Popen(
        [BIN / "bioreactor", "emulate", str(REPO / "configs" / config), "--listen", listen,
         "--speed", SPEED, "--comm-timeout", str(comm_timeout_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"serving the emulated chamber at (\S+)", line)
        assert match, f"emulator did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"  # type: ignore[union-attr]
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def controller(config: str, device: str, tmp: Path, duration: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(REPO / "configs" / config), "--device", device,
         "--duration", duration, "--quiet", "--db", str(tmp / "run.sqlite"),
         "--summary-json", str(tmp / "summary.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_a_culture_over_the_wire_holds_the_bands(kind: str, tmp_path: Path) -> None:
    """Six simulated hours at 600x (36 s of wall time) over each wire, bands after the first hour."""
    config, listen = CONFIGS[kind]
    with emulator(config, listen.format(port=0)) as (_, url):
        run = controller(config, url, tmp_path, "6h")
        out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    loops = summary["loops"]
    assert loops["temperature"]["within_band_fraction"] >= 0.99, loops
    assert loops["do"]["within_band_fraction"] >= 0.95, loops
    assert loops["ph"]["within_band_fraction"] >= 0.95, loops
    assert summary["reactors"]["hsc-1"]["comm_losses"] == 0
    assert summary["ticks"] >= 0.95 * 6 * 3600 / 5.0  # few ticks skipped for overruns


def test_killing_the_controller_puts_the_device_in_its_safe_state(tmp_path: Path) -> None:
    import asyncio

    from drivers import DeviceStatus, parse_device_url
    from drivers.wire.modbus_driver import ModbusDriver

    config, listen = CONFIGS["modbus-tcp"]
    comm_timeout_s = 1.0
    with emulator(config, listen.format(port=0), comm_timeout_s) as (device, url):
        run = controller(config, url, tmp_path, "2d")
        time.sleep(4.0)  # the controller is running and feeding the heartbeat
        assert run.poll() is None, run.stderr.read()  # type: ignore[union-attr]
        run.kill()  # kill -9: no chance to put anything in a safe state itself
        run.wait()
        killed_at = time.monotonic()

        async def device_state() -> tuple[DeviceStatus, dict[str, float]]:
            loop = asyncio.get_running_loop()
            driver = ModbusDriver(parse_device_url(url), now=loop.time, seed=0, options={})
            await driver.connect()
            try:
                return await driver.read_status(), await driver.read_outputs()
            finally:
                await driver.close()

        status, outputs = asyncio.run(device_state())
        while not status & DeviceStatus.COMM_LOSS_SAFE and time.monotonic() - killed_at < 5:
            time.sleep(0.1)
            status, outputs = asyncio.run(device_state())
        tripped_after_s = time.monotonic() - killed_at
        assert device.poll() is None
    assert status & DeviceStatus.COMM_LOSS_SAFE
    assert tripped_after_s <= comm_timeout_s + 1.0
    assert outputs == {"heater_pct": 0.0, "o2_pct": 21.0, "co2_pct": 5.0, "feed_ml_per_h": 0.0,
                       "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}


def test_controller_alarms_and_reconnects_when_the_device_restarts(tmp_path: Path) -> None:
    config, listen = CONFIGS["modbus-tcp"]
    port = free_port()
    with emulator(config, listen.format(port=port)) as (device, url):
        run = controller(config, url, tmp_path, "2d")
        time.sleep(3.0)
        device.kill()  # the device dies mid-run
        device.wait()
        time.sleep(2.0)
    with emulator(config, listen.format(port=port)):  # and comes back on the same port
        time.sleep(4.0)
        _, err = stop(run)
    assert run.returncode == 130, err
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        links = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'comm' AND data_json LIKE '%\"link\"%' "
            "ORDER BY t_s")]
        bad = con.execute("SELECT COUNT(*) FROM ticks WHERE temperature_c_q = 4").fetchone()[0]
        (last_q,) = con.execute(
            "SELECT temperature_c_q FROM ticks ORDER BY t_s DESC LIMIT 1").fetchone()
    assert links[0].startswith("comm loss") and links[1] == "comm restored", links
    assert bad > 0  # readings during the outage were marked as comm errors
    assert last_q == 0  # and good again after the reconnect
