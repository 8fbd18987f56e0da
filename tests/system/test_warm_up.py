"""A chamber warming from ambient (25 C, as after the device's watchdog put it in its safe
state) to the 37 C setpoint under the temperature loop, through the whole controller in virtual
time: the steady ramp is the process moving, not a noisy probe (issue 10, item 5)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from plugins.configs import load_default, run_config

from drivers.contract.reading import Quality


@pytest.mark.parametrize("period_s", [1.0, 5.0])
def test_a_chamber_warming_at_full_power_is_never_noisy(period_s: float, tmp_path: Path) -> None:
    # The loop starts at full heater power (as it should after an outage that let the chamber
    # cool): ~1.4 C per minute early on, 0.12 C per 5 s step, whose square alone is above the
    # temperature's noise limit (2 x 0.06^2) when the noise estimate is not detrended.
    config = load_default(**{
        "control_period_s = 1.0": f"control_period_s = {period_s}",
        "initial_volume_ml = 50.0": "initial_volume_ml = 50.0\ninitial_temperature_c = 25.0",
        "ti_s = 720.0": "ti_s = 720.0\ninitial_output = 100.0",
    })
    db = tmp_path / "run.sqlite"
    summary = run_config(config, db, duration="2h")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT t_s, temperature_c, temperature_c_q, heater_pct FROM ticks "
                           "ORDER BY t_s").fetchall()
    assert summary["reactors"]["hsc-1"]["errors"]["tick"] == 0
    assert len(rows) == round(2 * 3600 / period_s)
    # The case is exercised: full power at the start, a fast ramp, 37 C reached.
    assert rows[0][3] == 100.0 and rows[0][1] < 25.5
    per_minute = round(60 / period_s)
    fastest = max(rows[i + per_minute][1] - rows[i][1] for i in range(len(rows) - per_minute))
    assert fastest > 1.2  # C per minute
    assert abs(rows[-1][1] - 37.0) < 0.3
    # No NOISY temperature reading, the probe trusted throughout, no false quality alarm.
    assert {q for _, _, q, _ in rows} == {int(Quality.GOOD)}
    raised = {a["name"] for a in summary["reactors"]["hsc-1"]["alarms"]}
    assert "temperature_bad_quality" not in raised, raised
    assert summary["loops"]["temperature"]["held_ticks"] == 0
