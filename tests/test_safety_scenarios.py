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


def test_a_stuck_heater_trips_the_over_temperature_tiers_in_order(tmp_path: Path) -> None:
    summary = run_with("heater_stuck_on@2h", tmp_path, duration="6h")
    reactor = summary["reactors"]["hsc-1"]
    trips = [(t["name"], t["t_s"]) for t in reactor["interlocks"] if t["tripped"]]
    assert [name for name, _ in trips] == ["overtemp_limit", "overtemp_cut", "overtemp_safe"]
    assert 2 * HOUR < trips[0][1] < trips[1][1] < trips[2][1] < 3 * HOUR
    assert "temperature_high" in first_raised(summary)
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        heater_after = con.execute(
            "SELECT MAX(heater_pct) FROM ticks WHERE t_s > ?", (trips[2][1] + 1,)).fetchone()[0]
    assert heater_after == 0.0  # the whole safe state from the third tier on


def test_a_runaway_feed_pump_trips_volume_high(tmp_path: Path) -> None:
    summary = run_with("pump_runaway@1h:pump=feed", tmp_path, duration="6h")
    trips = [t["name"] for t in summary["reactors"]["hsc-1"]["interlocks"] if t["tripped"]]
    assert "volume_high" in trips


def test_interlocks_ignore_bad_readings_and_reset_with_hysteresis() -> None:
    from controller.interlocks import InterlockSet, default_interlocks
    from drivers import Quality, Reading

    locks = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    hot_but_bad = {"temperature_c": Reading(45.0, "degC", 0.0, Quality.IMPLAUSIBLE)}
    commands = {"heater_pct": 80.0}
    assert locks.apply(hot_but_bad, commands, 0.0) == [] and commands["heater_pct"] == 80.0
    commands = {"heater_pct": 80.0}
    locks.apply({"temperature_c": Reading(38.1, "degC", 1.0)}, commands, 1.0)
    assert commands["heater_pct"] == 20.0 and locks.tripped == {"overtemp_limit"}
    commands = {"heater_pct": 80.0}
    locks.apply({"temperature_c": Reading(37.8, "degC", 2.0)}, commands, 2.0)  # not yet reset
    assert commands["heater_pct"] == 20.0
    commands = {"heater_pct": 80.0}
    trips = locks.apply({"temperature_c": Reading(37.5, "degC", 3.0)}, commands, 3.0)
    assert [t.tripped for t in trips] == [False] and commands["heater_pct"] == 80.0
