"""Plant faults seen through the whole controller in virtual time: the chamber's mass balance
(controller/control/volume_balance.py) against a leak, a disconnected line and a volume probe
stepped off its calibration; and a degraded heater nothing detects, where nothing false may
happen either. Each fault's row in sim_hardware/faults/catalogue.py states what is asserted
here and what was measured."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from plugins.configs import load_default, run_config

from controller.cli.main import apply_overrides
from controller.config import Config

HOUR = 3600.0
EARLY_PERFUSION = {'when = "phase_time >= 2d"': 'when = "phase_time >= 1h"',
                   'after = "2d"': 'after = "3h"'}
"""The recipe's seed phase an hour long: perfusion (1 mL/h) from 1 h and the first 2 mL bolus
3 h into expand-1, at 4 h, so a few hours show them."""


def run_with(fault: str, tmp_path: Path, duration: str, config: Config | None = None) -> dict:
    config = apply_overrides(config or load_default(), duration=None, speed=None, seed=None,
                             faults=[fault])
    return run_config(config, tmp_path / "run.sqlite", duration=duration)


def reactor(summary: dict) -> dict:
    return summary["reactors"]["hsc-1"]


def first_raised(summary: dict) -> dict[str, float]:
    return {a["name"]: a["first_raised_t_s"] for a in reactor(summary)["alarms"]}


def balance_events(tmp_path: Path) -> list[tuple[float, str]]:
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        return con.execute("SELECT t_s, message FROM events WHERE message LIKE "
                           "'volume_balance:%' ORDER BY t_s").fetchall()


def gap_ml(message: str) -> float:
    found = re.search(r"gap ([-+.0-9]+) mL", message)
    assert found, message
    return float(found.group(1))


def test_a_leak_opens_a_gap_in_the_mass_balance(tmp_path: Path) -> None:
    summary = run_with("chamber_leak@3h:rate_ml_per_h=1", tmp_path, "6h")
    raised = first_raised(summary)
    # 1 mL/h passes the 1 mL tolerance after 1 h (a few minutes early or late with the load
    # cell's noise and the volume's 60-s steps); then the next sample, the next board.
    assert 3 * HOUR + 50 * 60 < raised["volume_balance"] <= 4 * HOUR + 10 * 60, raised
    assert raised["volume_balance"] < raised.get("volume_rate", 6 * HOUR), raised
    assert min(raised.values()) >= 3 * HOUR, raised  # nothing before the leak
    _, message = balance_events(tmp_path)[0]
    assert -1.15 < gap_ml(message) < -1.0 and "over 2 h" in message, message
    assert reactor(summary)["errors"]["tick"] == 0


def test_a_disconnected_feed_line_is_seen_only_by_the_balance(tmp_path: Path) -> None:
    """Perfusion runs, the feed line comes off at 3 h 30 min, a 2 mL bolus follows at 4 h:
    the feed totaliser counts it all (so the ledger books the bolus done), the chamber gets
    none of it, and only the mass balance says so before the volume_rate alarm."""
    summary = run_with("pump_line_disconnected@210m:pump=feed", tmp_path, "6h",
                       load_default(**EARLY_PERFUSION))
    raised = first_raised(summary)
    # 0.5 mL of perfusion missing by 4 h, then the bolus's 0.5 mL a minute: past 1 mL at ~4h1m.
    assert 4 * HOUR < raised["volume_balance"] <= 4 * HOUR + 3 * 60, raised
    assert raised.get("volume_rate", 6 * HOUR) > raised["volume_balance"], raised
    assert min(raised.values()) >= 3.5 * HOUR, raised
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        done = con.execute("SELECT message FROM events WHERE kind = 'feed' AND message LIKE "
                           "'%done%'").fetchall()
    assert done, "the bolus is booked done: the totaliser counted it"


def test_a_volume_offset_shows_in_the_balance_for_one_window(tmp_path: Path) -> None:
    """A load cell re-tared 2 mL high at 3 h: the balance sees the step at once and clears
    once the step has left its two-hour window; nothing else is raised."""
    summary = run_with("sensor_offset@3h:channel=volume_ml,offset=2", tmp_path, "6h")
    raised = first_raised(summary)
    assert 3 * HOUR <= raised["volume_balance"] <= 3 * HOUR + 70, raised
    assert set(raised) == {"volume_balance"}, raised
    events = balance_events(tmp_path)
    # The step, give or take the load cell's noise.
    assert gap_ml(events[0][1]) == pytest.approx(2.0, abs=0.25), events
    cleared = [t for t, message in events if "back within tolerance" in message]
    assert cleared and 5 * HOUR <= cleared[0] <= 5 * HOUR + 70, events


def heater_and_temperature(tmp_path: Path, start_s: float, end_s: float
                           ) -> tuple[float, float]:
    """Mean heater output and mean measured temperature over [start_s, end_s)."""
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        return con.execute("SELECT AVG(heater_pct), AVG(temperature_c) FROM ticks "
                           "WHERE t_s >= ? AND t_s < ?", (start_s, end_s)).fetchone()


def test_a_degraded_heater_is_compensated_and_raises_nothing(tmp_path: Path) -> None:
    """80 % of the heat from 2 h: not detected (no reading shows it), and nothing false: the
    temperature loop raises its output by 1/0.8 and holds the setpoint; no alarm, no trip."""
    summary = run_with("heater_degraded@2h:fraction=0.8", tmp_path, "6h")
    assert first_raised(summary) == {}
    assert reactor(summary)["interlocks"] == []
    before, _ = heater_and_temperature(tmp_path, 1 * HOUR, 2 * HOUR)
    after, temperature_after = heater_and_temperature(tmp_path, 4 * HOUR, 6 * HOUR)
    assert after / before == pytest.approx(1 / 0.8, rel=0.05), (before, after)
    assert temperature_after == pytest.approx(37.0, abs=0.02)


def test_a_heater_too_weak_for_the_setpoint_raises_temperature_deviation(
        tmp_path: Path) -> None:
    """Half the heat: the ~53 % the chamber needs would take 106 %, so the loop saturates and
    the temperature settles low; `temperature_deviation` says so, and it stands."""
    summary = run_with("heater_degraded@2h:fraction=0.5", tmp_path, "6h")
    raised = first_raised(summary)
    assert set(raised) == {"temperature_deviation"}, raised
    assert 2 * HOUR < raised["temperature_deviation"] <= 2 * HOUR + 10 * 60, raised
    heater, temperature = heater_and_temperature(tmp_path, 4 * HOUR, 6 * HOUR)
    assert heater > 99.0 and 36.0 < temperature < 36.7, (heater, temperature)
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        returned = con.execute("SELECT COUNT(*) FROM events WHERE message LIKE "
                               "'temperature_deviation: %rtn%'").fetchone()[0]
    assert returned == 0


LARGE_SAMPLES = {"seeding_cells_per_ml = 1.0e5": "seeding_cells_per_ml = 1.0e5\n"
                 "parameters = { bga_interval_h = 2.0, bga_sample_ml = 1.5 }"}
"""A 1.5 mL blood-gas sample every 2 h: each one alone is beyond the balance's 1 mL tolerance."""


def test_at_line_samples_are_booked_and_the_balance_stays_quiet(tmp_path: Path) -> None:
    """Every sample leaves the chamber and the device's `sampled_ml` counts it: the controller
    books it as an outflow, so sampling raises nothing, however large the samples."""
    summary = run_config(load_default(**LARGE_SAMPLES), tmp_path / "run.sqlite", duration="7h")
    assert "volume_balance" not in first_raised(summary), first_raised(summary)
    assert balance_events(tmp_path) == []
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        sampled_ml, volume_ml = con.execute(
            "SELECT sampled_ml, volume_ml FROM ticks ORDER BY t_s DESC LIMIT 1").fetchone()
    assert sampled_ml == pytest.approx(4 * 1.5 + 0.1 + 0.3 + 0.1)  # 0, 2, 4, 6 h; counts, cyto
    assert volume_ml < 50.0 - 6.0  # the samples left: no pump runs in the first 7 h


def test_samples_the_totaliser_missed_open_a_gap(tmp_path: Path) -> None:
    """The same run with `sampled_ml` frozen from 1 h (as if the controller ignored it): the
    sample at 2 h opens a 1.5 mL gap and the balance raises at once."""
    summary = run_with("sensor_stuck@1h:channel=sampled_ml", tmp_path, "3h",
                       load_default(**LARGE_SAMPLES))
    raised = first_raised(summary)
    assert 2 * HOUR <= raised["volume_balance"] <= 2 * HOUR + 70, raised
    _, message = balance_events(tmp_path)[0]
    assert gap_ml(message) == pytest.approx(-1.5, abs=0.25), message
