"""The runtime over short runs: repeatability, several reactors, failures, the command line."""
from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, load_default, run_config
from plugins.processes import BIN
from plugins.records import count_rows
from plugins.waiting import wait_until

from controller.clock import Clock
from controller.config import ConfigError, load_config
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.run import open_reactor_driver
from drivers import (
    CHANNELS,
    ConnectionLostError,
    DeviceError,
    Driver,
    Quality,
    ReadbackError,
    Reading,
)


def _without_timing(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "run_id", "db")}


@pytest.mark.timeout(600)  # several whole-day runs
def test_same_seed_same_summary(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    first = run_config(config, tmp_path / "a.sqlite", duration="1d", seed=7)
    second = run_config(config, tmp_path / "b.sqlite", duration="1d", seed=7)
    other = run_config(config, tmp_path / "c.sqlite", duration="1d", seed=8)
    assert _without_timing(first) == _without_timing(second)
    assert _without_timing(first) != _without_timing(other)


def _two_reactor_config():
    text = DEFAULT_CONFIG_PATH.read_text()
    head, reactor = text.split("[[reactor]]", 1)
    second = ("[[reactor]]" + reactor).replace('id = "hsc-1"', 'id = "hsc-2"').replace(
        "microgravity = false", "microgravity = true")
    from controller.config import parse_config

    return parse_config(head + "[[reactor]]" + reactor + "\n" + second)


@pytest.mark.timeout(600)  # several whole-day runs
def test_several_reactors_run_independently(tmp_path: Path) -> None:
    both = run_config(_two_reactor_config(), tmp_path / "two.sqlite", duration="2d")
    alone = run_config(load_config(DEFAULT_CONFIG_PATH), tmp_path / "one.sqlite", duration="2d")
    assert set(both["reactors"]) == {"hsc-1", "hsc-2"}
    # Reactor 1 does exactly what it does alone: a second reactor does not disturb it.
    assert both["reactors"]["hsc-1"]["loops"] == alone["reactors"]["hsc-1"]["loops"]
    assert both["reactors"]["hsc-1"]["fold_expansion"] == alone["fold_expansion"]
    assert (both["reactors"]["hsc-2"]["fold_expansion"]
            < both["reactors"]["hsc-1"]["fold_expansion"])
    with sqlite3.connect(tmp_path / "two.sqlite") as con:
        counts = dict(con.execute("SELECT reactor_id, COUNT(*) FROM ticks GROUP BY reactor_id"))
    assert counts == {"hsc-1": 2 * 86400, "hsc-2": 2 * 86400}


def test_bad_chamber_option_names_key_and_range() -> None:
    config = load_default(**{"initial_volume_ml = 50.0": "initial_volume_ml = -5.0"})
    with pytest.raises(ConfigError) as err:
        open_reactor_driver(config, 0, now=lambda: 0.0)
    message = str(err.value)
    assert "reactor[0].chamber" in message
    assert "initial_volume_ml" in message and "-5" in message


def test_unknown_device_scheme_is_a_config_error() -> None:
    config = load_default(**{'device = "sim://"': 'device = "carrier-pigeon://coop"'})
    with pytest.raises(ConfigError,
                       match=r"reactor\[0\]\.device.*carrier-pigeon.*available: .*sim"):
        open_reactor_driver(config, 0, now=lambda: 0.0)


class _FlakyDriver(Driver):
    """Fails reads 5-7 and every write that turns the heater on: pure logic for the tick's
    policy."""

    def __init__(self) -> None:
        self.reads = 0
        self.writes: list[dict[str, float]] = []
        self.closed = False

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def read(self) -> dict[str, Reading]:
        self.reads += 1
        if 5 <= self.reads <= 7:
            raise DeviceError("device busy")
        t = float(self.reads)
        return {c.name: Reading(36.0 if c.name == "temperature_c" else 50.0, c.unit, t)
                for c in CHANNELS if c.direction.value == "input"}

    async def read_outputs(self) -> dict[str, float]:
        return {c.name: 0.0 for c in CHANNELS if c.direction.value == "output"}

    async def write(self, commands: Mapping[str, float]) -> None:
        if "heater_pct" in commands and commands["heater_pct"] > 0:
            raise DeviceError("heater refused")
        self.writes.append(dict(commands))

    async def heartbeat(self) -> None:
        pass


async def test_tick_survives_device_errors_and_holds_loops(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    historian = Historian(tmp_path / "h.sqlite", RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "x")]))
    driver = _FlakyDriver()
    reactor = Reactor(config.reactor[0], driver, Clock(), historian,
                      control_period_s=1.0, stats_after_s=0.0)
    await reactor.start()
    for _ in range(9):
        await reactor.tick()
    await reactor.go_safe("test")
    historian.close()
    assert reactor.counters.ticks == 9 and reactor.counters.tick_errors == 0
    assert reactor.counters.read_errors == 3
    assert reactor.counters.write_errors >= 1
    temperature = reactor.loops[0]
    assert temperature.stats.held == 3  # the three comm-error ticks
    assert driver.closed
    assert driver.writes[-1] == config.reactor[0].safe_state
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        qualities = [q for (q,) in con.execute("SELECT temperature_c_q FROM ticks")]
        kinds = [k for (k,) in con.execute("SELECT kind FROM events")]
    assert qualities.count(int(Quality.COMM_ERROR)) == 3
    # One spell (the heater refused on every tick), its start and its end: not one per failure.
    assert kinds.count("comm") == 2 and "safe_state" in kinds


def test_cli_run_writes_summary_and_report(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    db = tmp_path / "run.sqlite"
    result = subprocess.run(
        [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--duration", "6h", "--seed", "3",
         "--db", str(db), "--summary-json", str(summary_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(summary_path.read_text())
    for key in ("fold_expansion", "viable_cells_per_ml_final", "simulated_seconds",
                "wall_seconds", "ticks"):
        assert key in summary
    assert summary["ticks"] == 6 * 3600
    assert set(summary["loops"]) == {"temperature", "do", "ph"}
    for loop in summary["loops"].values():
        assert {"setpoint", "within_band_fraction", "iae", "max_abs_error"} <= loop.keys()
    assert "fold expansion" in result.stdout and "temperature" in result.stdout
    assert "recipe expansion-timetable: running (phases seed)" in result.stdout
    assert summary["reactors"]["hsc-1"]["recipe"]["phases"][0]["ended_s"] is None
    assert "100.0%" in result.stderr  # the progress line reached the end

    out = tmp_path / "report"
    report = subprocess.run([BIN / "bioreactor", "report", str(db), "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    html = (out / "index.html").read_text()
    product = (out / "product.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) >= 7
    for name in pngs:  # each plot on one of the two pages
        assert (name in product) if name.endswith("-product.png") else (name in html), name
    assert "hsc-1-product.png" in pngs and "href='product.html'" in html


def test_cli_check_config_reports_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_CONFIG_PATH.read_text().replace("ti_s = 720.0", "ti_s = -1"))
    result = subprocess.run([BIN / "bioreactor", "check-config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "reactor[0].loops.temperature.ti_s = -1" in result.stderr
    assert "greater than 0" in result.stderr
    good = subprocess.run([BIN / "bioreactor", "check-config", str(DEFAULT_CONFIG_PATH)],
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "OK" in good.stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_puts_actuators_in_safe_state_and_keeps_records(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tmp_path / "run.sqlite"
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--speed", "200", "--quiet",
         "--db", str(db), "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        wait_until(lambda: count_rows(db, "SELECT COUNT(*) FROM ticks") > 100, 60,
                   "a hundred ticks of control on record")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == f"signal {sig.name}"
    safe = load_config(DEFAULT_CONFIG_PATH).reactor[0].safe_state
    with sqlite3.connect(db) as con:
        (ticks,) = con.execute("SELECT COUNT(*) FROM ticks").fetchone()
        (event,) = con.execute(
            "SELECT data_json FROM events WHERE kind = 'safe_state'").fetchone()
    assert ticks == summary["ticks"] > 100
    assert json.loads(event) == safe


class _LinkDownDriver(_FlakyDriver):
    """The link is down on ticks 3-5: reads and writes fail as on a real cable pull."""

    async def read(self) -> dict[str, Reading]:
        self.reads += 1
        if 3 <= self.reads <= 5:
            raise ConnectionLostError("link down")
        t = float(self.reads)
        return {c.name: Reading(37.0, c.unit, t) for c in CHANNELS if c.direction.value == "input"}

    async def write(self, commands: Mapping[str, float]) -> None:
        if 3 <= self.reads <= 5:
            raise ConnectionLostError("link down")
        self.writes.append(dict(commands))


async def test_comm_loss_is_one_link_event_per_outage_and_rewrites_outputs(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    historian = Historian(tmp_path / "h.sqlite", RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "x")]))
    driver = _LinkDownDriver()
    reactor = Reactor(config.reactor[0], driver, Clock(), historian,
                      control_period_s=1.0, stats_after_s=0.0)
    await reactor.start()
    for _ in range(5):
        await reactor.tick()
    writes_before_recovery = len(driver.writes)
    for _ in range(3):
        await reactor.tick()
    await reactor.go_safe("test")  # closes the spell: its 30 s of quiet never passed
    historian.close()
    assert reactor.counters.comm_losses == 1 and reactor.link.comm_ok
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        links = [(m, json.loads(d)) for m, d in con.execute(
            "SELECT message, data_json FROM events WHERE kind = 'comm' "
            "AND data_json LIKE '%\"link\"%'")]
    # One event when the spell starts, one when it ends, with the counts: not one per failure.
    # Reads only: a tick whose read found the link down does not try to write.
    assert links[0][0] == "comm loss: read failed: link down"
    assert re.fullmatch(r"comm restored: 3 failed operations over \S+ s \(read 3\)",
                        links[1][0]), links
    assert len(links) == 2
    assert links[1][1]["failed"] == {"read": 3}
    assert links[1][1]["errors"] == {"ConnectionLostError": 3}
    # The first tick after the outage writes every output again, not only the changed ones.
    assert set(driver.writes[writes_before_recovery]) == set(config.reactor[0].safe_state)


class _LimitingDriver(_FlakyDriver):
    """Holds the gas mix below what is asked: every write that sets o2_pct fails read-back."""

    async def write(self, commands: Mapping[str, float]) -> None:
        self.writes.append(dict(commands))
        if "o2_pct" in commands:
            raise ReadbackError("o2_pct commanded 90.0, holds 81.8")

    async def read(self) -> dict[str, Reading]:
        self.reads += 1
        return {c.name: Reading(37.0 if c.name == "temperature_c" else 10.0, c.unit,
                                float(self.reads))
                for c in CHANNELS if c.direction.value == "input"}


async def test_a_limited_write_is_recorded_once_and_not_resent(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    historian = Historian(tmp_path / "h.sqlite", RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "x")]))
    driver = _LimitingDriver()
    reactor = Reactor(config.reactor[0], driver, Clock(), historian,
                      control_period_s=1.0, stats_after_s=0.0)
    await reactor.start()
    for _ in range(5):
        await reactor.tick()
    historian.close()
    assert reactor.link.comm_ok and reactor.counters.comm_losses == 0
    assert reactor.counters.write_errors >= 1
    with sqlite3.connect(tmp_path / "h.sqlite") as con:
        limited = con.execute("SELECT COUNT(*) FROM events WHERE kind = 'device'").fetchone()[0]
    assert limited == 1
    # The command counts as sent (only a change is written again), unlike a link failure.
    last_o2 = [w["o2_pct"] for w in driver.writes if "o2_pct" in w][-1]
    assert reactor.link.written["o2_pct"] == last_o2


def test_a_device_refusing_for_minutes_is_logged_once_and_recorded_as_spells(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from controller.cli.main import apply_overrides, configure_logging

    configure_logging("warning")
    config = apply_overrides(load_config(DEFAULT_CONFIG_PATH), duration=None, speed=None,
                             seed=None, faults=["comm_exception@1h:duration=10m",
                                                "comm_exception@90m:duration=1m"])
    summary = run_config(config, tmp_path / "run.sqlite", duration="2h")
    assert summary["reactors"]["hsc-1"]["errors"]["read"] == 660
    log = capsys.readouterr().err
    # Once per refusal spell (two spells), not once per tick.
    assert log.count("read failed") == 2, log
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        spells = [(m, json.loads(d)) for m, d in con.execute(
            "SELECT message, data_json FROM events WHERE kind = 'comm' ORDER BY t_s")]
    # Each refusal spell on record twice, its start and its end with its counts: reads and
    # heartbeats refused for 600 and 60 ticks.
    assert [m.split(":")[0] for m, _ in spells] == ["comm failing", "comm restored"] * 2
    assert [d["failed"] for _, d in spells[1::2]] == [{"read": 600, "heartbeat": 600},
                                                      {"read": 60, "heartbeat": 60}]
