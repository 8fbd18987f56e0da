"""A loop's setpoint ramp (a recipe phase's `ramp_per_h`): the setpoint moves a step a tick to
its target, an operator's setpoint ends it, and a checkpoint carries it over a restart."""
from __future__ import annotations

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller.config import load_config
from controller.control.control_loop import ControlLoop
from drivers import Reading


def do_loop() -> ControlLoop:
    config = load_config(DEFAULT_CONFIG_PATH).reactor[0].loops["do"]
    return ControlLoop("do", config, stats_after_s=0.0)


def steps(loop: ControlLoop, start_s: float, end_s: float, period_s: float = 5.0) -> None:
    t = start_s
    while t <= end_s:
        loop.step({"do_pct_air": Reading(25.0, "%", t)}, t)
        t += period_s


def test_the_setpoint_ramps_to_its_target_at_the_rate_and_stops_there() -> None:
    loop = do_loop()
    steps(loop, 0.0, 0.0)
    loop.ramp_to(12.0, 6.0 / 3600.0)  # 6 % air per hour down from 25
    steps(loop, 5.0, 3600.0)
    assert loop.setpoint == pytest.approx(19.0)
    steps(loop, 3605.0, 4 * 3600.0)
    assert loop.setpoint == 12.0 and loop.ramp is None


def test_an_operators_setpoint_ends_the_ramp() -> None:
    loop = do_loop()
    steps(loop, 0.0, 0.0)
    loop.ramp_to(12.0, 6.0 / 3600.0)
    steps(loop, 5.0, 600.0)
    loop.pid.setpoint = 30.0  # what a set_setpoint command does
    steps(loop, 605.0, 3600.0)
    assert loop.setpoint == 30.0 and loop.ramp is None


def test_a_checkpoint_carries_the_ramp_over_a_restart() -> None:
    loop = do_loop()
    steps(loop, 0.0, 0.0)
    loop.ramp_to(12.0, 6.0 / 3600.0)
    steps(loop, 5.0, 1800.0)
    again = do_loop()
    again.restore(loop.snapshot())
    assert again.setpoint == pytest.approx(22.0) and again.ramp == (12.0, 6.0 / 3600.0)
    steps(again, 2000.0, 2000.0)  # its first step after the restart: no time has run yet
    steps(again, 2005.0, 5 * 3600.0)
    assert again.setpoint == 12.0
