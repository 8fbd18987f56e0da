"""Faults injected into the emulated chamber, seen through the whole controller: the expected
alarm within a stated detection time, the loops' reaction, no crash, the records complete."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG_PATH, load_config, run_config
from controller.cli import apply_overrides

HOUR = 3600.0


def run_with(fault: str, tmp_path: Path, duration: str = "12h") -> dict:
    config = apply_overrides(load_config(DEFAULT_CONFIG_PATH), duration=None, speed=None,
                             seed=None, faults=[fault])
    return run_config(config, tmp_path / "run.sqlite", duration=duration)


def first_raised(summary: dict) -> dict[str, float]:
    return {a["name"]: a["first_raised_t_s"] for a in summary["reactors"]["hsc-1"]["alarms"]}


@pytest.mark.parametrize(
    ("fault", "alarm", "start_s", "detect_within_s"),
    [
        # A stuck probe is FROZEN after 15 min without change; bad-quality on-delay 10 s.
        ("sensor_stuck@2h:channel=ph", "ph_bad_quality", 2 * HOUR, 900 + 10 + 5 + 5),
        ("sensor_dropout@2h:channel=temperature_c", "temperature_bad_quality", 2 * HOUR, 10 + 5 + 5),
        # Comm loss alarm: 30 s on-delay.
        ("comm_timeout@2h:duration=10m", "comm_loss", 2 * HOUR, 30 + 5 + 5),
        # Without CO2 the bicarbonate medium goes alkaline: pH high (7.6) within hours.
        ("co2_supply_lost@2h", "ph_high", 2 * HOUR, 4 * HOUR),
        # The chamber cools once the heater fails: 3x band for 5 min.
        ("heater_failed_off@2h", "temperature_deviation", 2 * HOUR, 15 * 60),
    ],
)
def test_each_fault_raises_its_alarm_in_time(
    fault: str, alarm: str, start_s: float, detect_within_s: float, tmp_path: Path
) -> None:
    summary = run_with(fault, tmp_path)
    raised = first_raised(summary)
    assert alarm in raised, raised
    assert start_s <= raised[alarm] <= start_s + detect_within_s, raised
    # No alarm before the fault: the clean part of the run is quiet.
    assert all(t >= start_s for t in raised.values()), raised
    assert summary["reactors"]["hsc-1"]["errors"]["tick"] == 0
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        (ticks,) = con.execute("SELECT COUNT(*) FROM ticks").fetchone()
        (events,) = con.execute(
            "SELECT COUNT(*) FROM events WHERE kind = 'alarm_state' AND message LIKE ?",
            (f"{alarm}: normal -> unack%",)).fetchone()
    assert ticks == summary["ticks"] == 12 * 3600
    assert events >= 1


def test_a_stuck_ph_probe_holds_the_ph_loop(tmp_path: Path) -> None:
    summary = run_with("sensor_stuck@2h:channel=ph", tmp_path)
    ph = summary["loops"]["ph"]
    # Held from detection (15 min after the fault) to the end: about 9.75 of 12 hours.
    assert ph["held_ticks"] >= 9.5 * 3600
    assert summary["loops"]["temperature"]["held_ticks"] == 0


def test_a_clean_run_raises_no_alarm(tmp_path: Path) -> None:
    summary = run_config(load_config(DEFAULT_CONFIG_PATH), tmp_path / "run.sqlite",
                         duration="12h")
    assert summary["reactors"]["hsc-1"]["alarms"] == []
