"""A slow link is visible within a minute: `bioreactor run` against `bioreactor emulate` over
Modbus TCP through a proxy that adds latency each way (tests/plugins/delay_proxy.py).

Both run at 10x, so a 0.5 s (wall) timeout is 5 simulated seconds and a minute of the run is
six seconds of the test."""
from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from plugins.configs import REPO
from plugins.delay_proxy import DelayProxy
from plugins.hil import emulator
from plugins.processes import BIN
from plugins.waiting import wait_until

SPEED = 10
CONFIG = "hil_modbus_tcp.toml"


def run_through_proxy(tmp: Path, latency_s: float, duration: str) -> dict:
    """The run summary of the shipped Modbus TCP config (timeout 0.5 s, one retry) through a
    proxy that adds `latency_s` each way once the run has made its first ticks (a link slow
    from the start is a start-up failure, not this test's subject)."""
    with emulator(CONFIG, "modbus-tcp://127.0.0.1:0", speed=SPEED) as (_, url), \
            DelayProxy(int(url.rsplit(":", 1)[1]), latency_s=0.0) as proxy:
        run = subprocess.Popen(
            [BIN / "bioreactor", "run", str(REPO / "configs" / CONFIG), "--device",
             f"modbus-tcp://127.0.0.1:{proxy.port}", "--speed", str(SPEED), "--duration",
             duration, "--quiet", "--db", str(tmp / "run.sqlite"), "--summary-json",
             str(tmp / "summary.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Connected, and a few ticks made (each is 4-5 requests and their replies).
            wait_until(lambda: proxy.chunks >= 40, 60, "the first ticks over the proxy")
            proxy.latency_s = latency_s
            _, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert run.returncode == 0, err
    return json.loads((tmp / "summary.json").read_text())["reactors"]["hsc-1"]


def slow_since_t_s(tmp: Path) -> float:
    """The simulated time of the last tick before the first failure: the link was slow from no
    earlier than that (the proxy's latency is switched on in wall time, between ticks)."""
    with sqlite3.connect(tmp / "run.sqlite") as con:
        (first_failure_s,) = con.execute(
            "SELECT MIN(t_s) FROM events WHERE kind = 'comm'").fetchone()
        (last_good_s,) = con.execute(
            "SELECT MAX(t_s) FROM ticks WHERE t_s < ?", (first_failure_s,)).fetchone()
    return float(last_good_s)


@pytest.mark.parametrize("latency_s", [0.3, 1.0])
def test_latency_beyond_the_timeout_is_reported_and_alarmed_within_a_minute(
        tmp_path: Path, latency_s: float) -> None:
    """0.3 s each way (the issue's slow link: a 0.6 s round trip against a 0.5 s timeout) and
    1 s each way (replies later than the whole 1 s deadline of a try and its retry): timeouts,
    retries and late replies are counted, and comm_loss is raised within 60 simulated seconds
    of the last tick before the link went slow."""
    reactor = run_through_proxy(tmp_path, latency_s, "180s")
    faults = reactor["link_faults"]
    assert faults["timeouts"] > 0 and faults["late_replies"] > 0, faults
    assert reactor["errors"]["read"] > 0 and reactor["comm_losses"] >= 1
    raised = {a["name"]: a["first_raised_t_s"] for a in reactor["alarms"]}
    slow_since_s = slow_since_t_s(tmp_path)
    assert "comm_loss" in raised, raised
    assert raised["comm_loss"] - slow_since_s <= 60.0, (raised, slow_since_s)


def test_latency_below_the_timeout_raises_no_alarm(tmp_path: Path) -> None:
    """0.03 s each way: every operation answered in time, well within the 5 s period."""
    reactor = run_through_proxy(tmp_path, 0.03, "120s")
    assert reactor["link_faults"] == {"timeouts": 0, "late_replies": 0, "retries": 0}
    assert reactor["errors"] == {"read": 0, "write": 0, "tick": 0}
    assert reactor["comm_losses"] == 0 and reactor["alarms"] == [], reactor["alarms"]
