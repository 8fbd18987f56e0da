"""What the emulated device knows of its own hardware (issue 10): the heater relay and the
device-local cut-out, pump totalisers, gas mass-flow readbacks and supply pressures, the boot id
and uptime. Through the in-process driver, on a fake clock."""
from __future__ import annotations

import pytest
from plugins.sim_device import FakeClock

from drivers import DeviceError, parse_device_url
from drivers.contract.status import DeviceStatus
from sim_hardware.inprocess.sim_driver import SimDriver

H = 3600.0


async def chamber(faults: list[str] | None = None,
                  **options: object) -> tuple[SimDriver, FakeClock]:
    clock = FakeClock()
    opts = dict(options)
    if faults:
        opts["faults"] = faults
    driver = SimDriver(parse_device_url("sim://"), now=clock, seed=5, options=opts)
    await driver.connect()
    return driver, clock


async def values(driver: SimDriver, *names: str) -> list[float]:
    readings = await driver.read()
    return [readings[name].value for name in names]


async def test_totalisers_integrate_the_flow_the_pumps_really_delivered() -> None:
    driver, clock = await chamber(["pump_clogged@1h:pump=feed,duration=30m"])
    await driver.write({"feed_ml_per_h": 6.0, "harvest_ml_per_h": 3.0, "base_ml_per_h": 1.5})
    clock.t_s = 0.5 * H
    assert await values(driver, "feed_delivered_ml", "harvest_delivered_ml",
                        "base_delivered_ml") == pytest.approx([3.0, 1.5, 0.75])
    await driver.write({"feed_ml_per_h": 12.0})  # a rate change mid-way is integrated exactly
    clock.t_s = 2.0 * H  # 0.5 h at 12, then clogged 30 min, then 0.5 h at 12 again
    feed, harvest = await values(driver, "feed_delivered_ml", "harvest_delivered_ml")
    assert feed == pytest.approx(3.0 + 6.0 + 0.0 + 6.0)
    assert harvest == pytest.approx(6.0)
    assert (await driver.read_outputs())["feed_ml_per_h"] == 12.0  # the command is unchanged


async def test_the_heater_relay_cuts_the_power_the_drive_asks_for() -> None:
    driver, clock = await chamber()
    await driver.write({"heater_pct": 80.0, "heater_relay": 0.0})
    clock.t_s = 60.0
    await driver.read()
    assert driver.model.inputs.heater_pct == 0.0
    await driver.write({"heater_relay": 1.0})
    assert driver.model.inputs.heater_pct == 80.0
    assert (await driver.read_outputs())["heater_relay"] == 1.0


async def test_the_cutout_opens_the_relay_latches_and_rearms_only_when_cool() -> None:
    driver, clock = await chamber()
    await driver.write({"heater_pct": 100.0, "heater_relay": 1.0})
    peak = 0.0
    while not driver.chamber.cutout:
        clock.t_s += 5.0
        await driver.read()
        peak = max(peak, driver.model.temperature_c)
        assert clock.t_s < 2 * H, "the cut-out never tripped"
    assert driver.params.cutout_c <= peak < driver.params.cutout_c + 0.1
    assert (await values(driver, "heater_cutout")) == [1.0]
    assert await driver.read_status() == DeviceStatus.RUNNING | DeviceStatus.HEATER_CUTOUT
    await driver.write({"heater_pct": 100.0, "heater_relay": 1.0})  # writes cannot close it
    assert driver.model.inputs.heater_pct == 0.0
    with pytest.raises(DeviceError, match="re-arms below 38"):
        await driver.reset_cutout()
    while driver.model.temperature_c >= driver.params.cutout_reset_below_c:
        clock.t_s += 60.0
        await driver.read()
    assert await driver.reset_cutout() is True
    assert driver.model.inputs.heater_pct == 100.0  # the relay follows its command again
    assert await driver.reset_cutout() is False  # nothing left to re-arm
    assert await driver.read_status() == DeviceStatus.RUNNING


async def test_an_open_relay_wins_over_a_stuck_drive() -> None:
    driver, clock = await chamber(["heater_stuck_on@0"])
    await driver.write({"heater_relay": 0.0})
    clock.t_s = H
    await driver.read()
    assert driver.model.inputs.heater_pct == 0.0  # the relay wins over a stuck drive


async def test_gas_readbacks_show_what_the_mixer_delivers_and_the_supply_pressure() -> None:
    driver, clock = await chamber(["co2_supply_lost@1h:residual_pct=0.5"])
    await driver.write({"o2_pct": 95.0, "co2_pct": 10.0})  # the mixer scales to 100 % in total
    clock.t_s = 60.0
    assert await values(driver, "o2_flow_pct", "co2_flow_pct", "o2_supply_kpa",
                        "co2_supply_kpa") == pytest.approx([95 / 1.05, 10 / 1.05, 200.0, 200.0])
    await driver.write({"o2_pct": 21.0, "co2_pct": 5.0})
    clock.t_s = 2 * H
    assert await values(driver, "o2_flow_pct", "co2_flow_pct", "o2_supply_kpa",
                        "co2_supply_kpa") == pytest.approx([21.0, 0.5, 200.0, 0.0])


async def test_the_boot_id_holds_and_a_reboot_restarts_it_the_totalisers_and_the_outputs(
        ) -> None:
    driver, clock = await chamber()
    await driver.write({"feed_ml_per_h": 6.0, "heater_relay": 1.0})
    clock.t_s = H
    boot, uptime, feed = await values(driver, "device_boot_id", "device_uptime_s",
                                      "feed_delivered_ml")
    assert (uptime, feed) == pytest.approx((H, 6.0))
    again, _ = await chamber()
    assert (await values(again, "device_boot_id"))[0] == boot  # seeded: repeatable
    driver.chamber.reboot()
    clock.t_s = H + 60.0
    new_boot, uptime, feed = await values(driver, "device_boot_id", "device_uptime_s",
                                          "feed_delivered_ml")
    assert new_boot != boot
    assert (uptime, feed) == pytest.approx((60.0, 0.0))
    outputs = await driver.read_outputs()
    assert outputs["feed_ml_per_h"] == 0.0 and outputs["heater_relay"] == 0.0


async def test_a_fault_due_before_the_chamber_started_acts_at_the_start() -> None:
    """A served device's clock may start past a fault's `at` (`@0` at 600x): the fault acts
    from the start instead of the model being asked to go back in time."""
    clock = FakeClock()
    clock.t_s = 40.0
    driver = SimDriver(parse_device_url("sim://"), now=clock, seed=5,
                       options={"faults": ["heater_stuck_on@0"]})
    await driver.connect()
    clock.t_s = 100.0
    await driver.read()
    assert driver.model.inputs.heater_pct == 100.0
