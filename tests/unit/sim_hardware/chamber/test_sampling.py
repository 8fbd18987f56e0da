"""At-line sampling on the emulated chamber (issue 12): every sample takes its volume from the
culture (booked in the model's mass balance as an outflow), the device's `sampled_ml`
totaliser counts it from the boot, and results arrive after each assay's delay stamped with the
sample's time. Through the in-process driver, on a fake clock."""
from __future__ import annotations

import math

import pytest
from plugins.sim_device import FakeClock

from drivers import parse_device_url
from drivers.contract.reading import Quality
from sim_hardware.inprocess.sim_driver import SimDriver

H = 3600.0


async def chamber(**options: object) -> tuple[SimDriver, FakeClock]:
    clock = FakeClock()
    driver = SimDriver(parse_device_url("sim://"), now=clock, seed=3, options=dict(options))
    await driver.connect()
    return driver, clock


async def test_samples_leave_the_chamber_and_the_totaliser_counts_them() -> None:
    driver, clock = await chamber()
    p = driver.params
    day_ml = 4 * p.atline_sample_ml + p.cytometry_sample_ml + p.bga_sample_ml
    clock.t_s = 24 * H - 1.0  # samples at 0 (all three), 6, 12, 18 h (counts)
    readings = await driver.read()
    assert readings["sampled_ml"].value == pytest.approx(day_ml)
    assert readings["sampled_ml"].quality is Quality.GOOD
    ledger = driver.model.ledger()["volume"]
    assert ledger["harvested"] == pytest.approx(day_ml)  # booked as an outflow
    assert driver.model.volume_ml == pytest.approx(50.0 - day_ml)  # no pump ran
    for name, residual in driver.model.balance_residuals().items():
        assert abs(residual) < 1e-9, name
    clock.t_s = 24 * H  # the next day's samples, all three
    assert (await driver.read())["sampled_ml"].value == pytest.approx(
        day_ml + p.atline_sample_ml + p.cytometry_sample_ml + p.bga_sample_ml)


async def test_sampling_takes_cells_in_proportion_so_concentrations_hold() -> None:
    driver, clock = await chamber()
    model = driver.model
    clock.t_s = 6 * H - 1.0
    await driver.read()
    before = (model.viable_cells_per_ml, model.glucose_mm, model.volume_ml)
    cells_before = model.viable_cells_per_ml * model.volume_ml
    clock.t_s = 6 * H  # the count's sample: 0.1 mL
    await driver.read()
    assert model.volume_ml == pytest.approx(before[2] - driver.params.atline_sample_ml)
    assert model.viable_cells_per_ml == pytest.approx(before[0], rel=1e-3)
    assert model.glucose_mm == pytest.approx(before[1], rel=1e-3)
    assert model.viable_cells_per_ml * model.volume_ml < cells_before


async def test_a_reboot_restarts_the_sampling_totaliser() -> None:
    driver, clock = await chamber()
    clock.t_s = H
    assert (await driver.read())["sampled_ml"].value > 0.0
    driver.chamber.reboot()
    clock.t_s = 2 * H
    assert (await driver.read())["sampled_ml"].value == 0.0
    clock.t_s = 6 * H
    assert (await driver.read())["sampled_ml"].value == pytest.approx(
        driver.params.atline_sample_ml)


async def test_results_arrive_after_their_delay_stamped_with_the_sample_time() -> None:
    driver, clock = await chamber()
    clock.t_s = 0.05 * H
    readings = await driver.read()
    for name in ("cd34_pct", "cd34_cd90_pct", "viability_pct", "bga_ph", "bga_po2_mmhg",
                 "bga_pco2_mmhg"):
        assert readings[name].quality is Quality.BAD and math.isnan(readings[name].value), name
    clock.t_s = 0.2 * H  # the blood gas is back: the reference for pH, DO and CO2
    readings = await driver.read()
    m = driver.model
    assert readings["bga_ph"].quality is Quality.GOOD and readings["bga_ph"].timestamp_s == 0.0
    assert readings["bga_ph"].value == pytest.approx(m.ph, abs=0.1)
    assert readings["bga_po2_mmhg"].value == pytest.approx(m.do_pct_air * 1.494, rel=0.2)
    assert readings["bga_pco2_mmhg"].value == pytest.approx(
        m.dco2_mm / driver.params.co2_solubility_mm_per_mmhg, rel=0.1)
    assert readings["cd34_pct"].quality is Quality.BAD
    clock.t_s = 4 * H  # the cytometry result
    readings = await driver.read()
    assert readings["cd34_pct"].quality is Quality.GOOD
    assert readings["cd34_pct"].timestamp_s == 0.0
    assert 0.0 < readings["cd34_cd90_pct"].value < readings["cd34_pct"].value <= 100.0
    assert 80.0 < readings["viability_pct"].value <= 100.0


async def test_the_schedule_is_a_chamber_option_and_a_bad_one_names_its_key() -> None:
    driver, clock = await chamber(parameters={"bga_interval_h": 6.0, "bga_sample_ml": 0.5})
    clock.t_s = 6 * H
    p = driver.params
    assert (await driver.read())["sampled_ml"].value == pytest.approx(
        2 * p.atline_sample_ml + p.cytometry_sample_ml + 2 * 0.5)
    with pytest.raises(ValueError, match=r"bga_interval_h.*1.*168"):
        await chamber(parameters={"bga_interval_h": 500.0})
