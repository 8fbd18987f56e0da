"""Probes standardised against the blood-gas reference, through the whole controller (issue 12,
part 3): a DO probe drifting fast alarmed as failing at the first reference after the drift
starts. (The default culture's true pH held at its setpoint is checked with the other numbers
of that run in test_culture_14d.py.)"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from plugins.configs import run_default_with_fault

HOUR, DAY = 3600.0, 86400.0


def test_a_do_probe_drifting_half_a_percent_an_hour_is_alarmed_as_failing_within_26_h(
        tmp_path: Path) -> None:
    """Before: first alarmed 62 h after the drift started, wrongly as DO high. Now the first
    daily blood-gas reference that shows the drift (at 48 h, 24 h after its start; the one at
    24 h saw none yet) raises `do_pct_air_probe_failing` and re-standardises the probe, so the
    true DO, which the loop had let fall by the drift (0.5 % air/h x 24 h), is brought back to
    its setpoint instead of sinking to 1 % air by day 3."""
    db = tmp_path / "run.sqlite"
    summary = run_default_with_fault("sensor_drift@1d:channel=do_pct_air", db, "3d")
    raised = {a["name"]: a for a in summary["reactors"]["hsc-1"]["alarms"]}
    failing = raised.get("do_pct_air_probe_failing")
    assert failing is not None, raised
    assert DAY < failing["first_raised_t_s"] <= DAY + 26 * HOUR
    assert failing["priority"] == "high"
    assert set(raised) == {"do_pct_air_probe_failing"}  # not DO high, nothing else
    with sqlite3.connect(db) as con:
        (true_do_low,) = con.execute(
            "SELECT MIN(value) FROM diagnostics WHERE name = 'do_pct_air'").fetchone()
        (after,) = con.execute(
            "SELECT value FROM diagnostics WHERE name = 'do_pct_air' AND t_s >= ? ORDER BY t_s "
            "LIMIT 1", (failing["first_raised_t_s"] + HOUR,)).fetchone()
        (message,) = con.execute(
            "SELECT message FROM events WHERE kind = 'alarm' AND message LIKE "
            "'do_pct_air_probe_failing%' ORDER BY t_s LIMIT 1").fetchone()
    assert true_do_low > 25.0 - 0.5 * 26 - 1.0, true_do_low  # one reference interval's drift
    assert after > 20.0, after  # re-standardised: the loop holds the true DO near 25 again
    assert "do_pct_air probe" in message
