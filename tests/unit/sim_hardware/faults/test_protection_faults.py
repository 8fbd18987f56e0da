"""The protection faults on the emulated device alone (issue 10): a welded relay that neither
the controller nor the cut-out can open, a cut-out that never trips, a mass-flow readback that
reads BAD. Through the whole controller: tests/system/test_protection_scenarios.py."""
from __future__ import annotations

import math

from plugins.sim_device import H, make, trace

from drivers.contract.reading import Quality


async def test_a_welded_relay_heats_through_the_open_command_and_the_cutout() -> None:
    driver, clock = await make(["heater_stuck_on@30m", "heater_relay_welded@30m"])
    rows = await trace(driver, clock, 2 * H, step_s=5.0, commands={"heater_relay": 0.0})
    assert max(t for _, _, t, _ in rows) > driver.params.cutout_c + 3.0
    assert driver.chamber.cutout  # tripped, but its relay cannot open
    assert driver.model.inputs.heater_pct == 100.0


async def test_a_failed_cutout_never_trips_and_reads_armed() -> None:
    driver, clock = await make(["heater_stuck_on@30m", "cutout_failed@30m"])
    rows = await trace(driver, clock, 2 * H, step_s=5.0)
    assert max(t for _, _, t, _ in rows) > driver.params.cutout_c + 3.0
    assert not driver.chamber.cutout
    assert (await driver.read())["heater_cutout"].value == 0.0


async def test_a_failed_mass_flow_readback_reads_bad_only_for_its_gas() -> None:
    driver, clock = await make(["mass_flow_readback_failed@1h:gas=o2,duration=1h"])
    await driver.write({"o2_pct": 30.0})
    clock.t_s = 1.5 * H
    readings = await driver.read()
    assert readings["o2_flow_pct"].quality is Quality.BAD
    assert math.isnan(readings["o2_flow_pct"].value)
    assert readings["co2_flow_pct"].quality is Quality.GOOD
    assert driver.model.inputs.o2_pct == 30.0  # the gas flows; only its readback failed
    clock.t_s = 2.5 * H
    assert (await driver.read())["o2_flow_pct"].value == 30.0
