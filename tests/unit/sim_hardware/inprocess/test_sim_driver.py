"""The in-process driver: the Driver contract, option validation, repeatability, actuators."""
from __future__ import annotations

import math

import pytest

from drivers import (
    CHANNELS,
    ChannelError,
    Direction,
    Kind,
    NotConnectedError,
    OutOfRangeError,
    Quality,
    parse_device_url,
)
from drivers.contract.registry import driver_factory
from sim_hardware.inprocess.sim_driver import SimDriver
from sim_hardware.model.parameters import PARAMETER_TABLE

INPUTS = [c for c in CHANNELS if c.direction is Direction.INPUT]


class FakeClock:
    """The controller's clock as the driver sees it: a callable returning seconds."""

    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def make(seed: int = 1, options: dict | None = None, clock: FakeClock | None = None
         ) -> tuple[SimDriver, FakeClock]:
    clock = clock or FakeClock()
    driver = SimDriver(parse_device_url("sim://"), now=clock, seed=seed, options=options or {})
    return driver, clock


async def test_the_sim_scheme_is_registered() -> None:
    assert driver_factory("sim") is SimDriver


async def test_nothing_works_before_connect_and_after_close() -> None:
    driver, _ = make()
    with pytest.raises(NotConnectedError):
        await driver.read()
    with pytest.raises(NotConnectedError):
        await driver.write({"heater_pct": 50.0})
    with pytest.raises(NotConnectedError):
        await driver.heartbeat()
    await driver.connect()
    await driver.read()
    await driver.close()
    await driver.close()  # idempotent
    with pytest.raises(NotConnectedError):
        await driver.read()


async def test_read_returns_every_input_channel_with_its_unit() -> None:
    driver, _ = make()
    await driver.connect()
    readings = await driver.read()
    assert set(readings) == {c.name for c in INPUTS}
    for c in INPUTS:
        r = readings[c.name]
        assert r.unit == c.unit
        if c.kind is Kind.CONTINUOUS:
            assert r.quality is Quality.GOOD and r.timestamp_s == 0.0
        else:  # no at-line result yet
            assert r.quality is Quality.BAD and math.isnan(r.value)
    assert readings["temperature_c"].value == pytest.approx(37.0, abs=0.3)
    assert readings["ph"].value == pytest.approx(7.30, abs=0.05)
    assert readings["do_pct_air"].value == pytest.approx(25.0, abs=3.0)
    assert readings["volume_ml"].value == pytest.approx(50.0, abs=1.0)


async def test_atline_results_arrive_after_the_delay_with_the_sample_time() -> None:
    driver, clock = make()
    await driver.connect()
    clock.t_s = 1799.0
    assert (await driver.read())["glucose_mm"].quality is Quality.BAD
    clock.t_s = 1800.0
    first = await driver.read()
    for name in ("viable_cells_per_ml", "glucose_mm", "lactate_mm"):
        assert first[name].quality is Quality.GOOD and first[name].timestamp_s == 0.0
    assert first["viable_cells_per_ml"].value == pytest.approx(1e5, rel=0.3)
    # A read long after several samples shows the latest finished assay, however rarely read.
    clock.t_s = 13 * 3600.0
    later = await driver.read()
    assert later["glucose_mm"].timestamp_s == 12 * 3600.0


async def test_write_validation_errors_are_typed() -> None:
    driver, _ = make()
    await driver.connect()
    with pytest.raises(ChannelError, match="unknown channel"):
        await driver.write({"stirrer_rpm": 100.0})
    with pytest.raises(ChannelError, match="input"):
        await driver.write({"ph": 7.0})
    with pytest.raises(OutOfRangeError, match=r"co2_pct=25\.0"):
        await driver.write({"co2_pct": 25.0})
    with pytest.raises(OutOfRangeError):
        await driver.write({"heater_pct": -1.0})


async def test_commands_apply_from_the_time_they_are_written() -> None:
    early, clock_a = make()
    late, clock_b = make()
    await early.connect()
    await late.connect()
    await early.write({"heater_pct": 100.0})
    clock_b.t_s = 600.0
    await late.write({"heater_pct": 100.0})
    clock_a.t_s = clock_b.t_s = 1200.0
    hot = (await early.diagnostics())["temperature_c"]
    warm = (await late.diagnostics())["temperature_c"]
    assert 37.0 < warm < hot


async def test_gas_mix_cannot_exceed_100_percent() -> None:
    driver, _ = make()
    await driver.connect()
    await driver.write({"o2_pct": 90.0, "co2_pct": 20.0})
    d = await driver.diagnostics()
    assert d["o2_pct"] + d["co2_pct"] == pytest.approx(100.0)
    assert d["o2_pct"] / d["co2_pct"] == pytest.approx(90.0 / 20.0)


async def test_harvest_pump_draws_gas_at_the_dip_tube() -> None:
    driver, clock = make()
    await driver.connect()
    await driver.write({"harvest_ml_per_h": 60.0})
    clock.t_s = 2 * 3600.0
    d = await driver.diagnostics()
    assert d["volume_ml"] == pytest.approx(5.0)


async def test_diagnostics_expose_the_ground_truth() -> None:
    driver, clock = make()
    await driver.connect()
    clock.t_s = 86400.0
    d = await driver.diagnostics()
    for key in ("fold_expansion", "viable_cells_per_ml", "dead_cells_per_ml", "volume_ml",
                "glucose_mm", "glutamine_mm", "lactate_mm", "ammonia_mm",
                "inhibitor_ng_per_ml", "ph", "do_pct_air", "temperature_c", "cells_harvested",
                "growth_rate_per_d"):
        assert isinstance(d[key], float) and math.isfinite(d[key]), key
    assert d["fold_expansion"] > 1.0
    assert d["time_s"] == 86400.0


async def test_heartbeat_records_the_time() -> None:
    driver, clock = make()
    await driver.connect()
    clock.t_s = 42.0
    await driver.heartbeat()
    assert driver.last_heartbeat_s == 42.0


async def _trace(seed: int, options: dict | None = None, ticks: int = 4000) -> list:
    driver, clock = make(seed, options)
    await driver.connect()
    out = []
    for k in range(ticks):
        clock.t_s = float(k)
        readings = await driver.read()
        out.append(tuple((r.value, r.quality) for r in readings.values()))
        await driver.write({"heater_pct": 54.0 + (k % 7), "feed_ml_per_h": 1.0,
                            "harvest_ml_per_h": 1.0})
    return out


async def test_same_seed_gives_identical_readings() -> None:
    first = await _trace(7)
    assert first == await _trace(7)
    assert first != await _trace(8)


async def test_donor_variability_is_seeded_and_biological_only() -> None:
    opts = {"donor_variability": True}
    a, _ = make(1, opts)
    b, _ = make(1, opts)
    c, _ = make(2, opts)
    plain, _ = make(1)
    assert a.params == b.params
    assert a.params != c.params
    for spec in PARAMETER_TABLE:
        va, vp = getattr(a.params, spec.name), getattr(plain.params, spec.name)
        if spec.donor_cv == 0.0:
            assert va == vp, spec.name
        assert spec.low <= va <= spec.high, spec.name
    assert sum(getattr(a.params, s.name) != getattr(plain.params, s.name)
               for s in PARAMETER_TABLE if s.donor_cv > 0) >= 10


async def test_microgravity_option_slows_growth() -> None:
    ground, clock_g = make(1)
    flight, clock_f = make(1, {"microgravity": True})
    await ground.connect()
    await flight.connect()
    clock_g.t_s = clock_f.t_s = 3 * 86400.0
    assert ((await flight.diagnostics())["fold_expansion"]
            < (await ground.diagnostics())["fold_expansion"])


async def test_initial_options_set_the_starting_chamber() -> None:
    driver, _ = make(1, {"initial_volume_ml": 80.0, "seeding_cells_per_ml": 2e5,
                         "initial_temperature_c": 30.0, "initial_o2_pct": 21.0,
                         "initial_co2_pct": 5.0, "parameters": {"kla_o2_per_h": 8.0}})
    await driver.connect()
    d = await driver.diagnostics()
    p = driver.params  # less the at-line samples drawn at seeding
    drawn_ml = p.atline_sample_ml + p.cytometry_sample_ml + p.bga_sample_ml
    assert d["volume_ml"] == pytest.approx(80.0 - drawn_ml)
    assert d["viable_cells_per_ml"] == pytest.approx(2e5)
    assert d["temperature_c"] == 30.0
    assert d["co2_pct"] == 5.0 and d["o2_pct"] == 21.0
    assert d["ph"] == pytest.approx(7.63, abs=0.02)
    assert driver.params.kla_o2_per_h == 8.0


@pytest.mark.parametrize("options, message", [
    ({"microgravty": True}, r"microgravty: unknown key \(allowed here: microgravity, "
                            r"donor_variability"),
    ({"microgravity": "yes"}, r"microgravity = 'yes': Input should be a valid boolean"),
    ({"parameters": {"mu_primitive_per_d": 7.0}},
     r"parameters\.mu_primitive_per_d = 7\.0: .*\(allowed: 0\.1 <= value <= 1\.0\)"),
    ({"parameters": {"mu_max": 0.5}}, r"parameters\.mu_max: unknown key \(allowed here: "
                                      r"mu_primitive_per_d, "),
    ({"parameters": {"kla_o2_per_h": "fast"}}, r"kla_o2_per_h = 'fast': .*valid number"),
    ({"parameters": {"ph_drift_min_per_week": 0.1, "ph_drift_max_per_week": 0.05}},
     r"ph_drift_min_per_week"),
    ({"initial_volume_ml": 0.0}, r"initial_volume_ml = 0\.0: .*\(allowed: 1\.0 <= value "
                                 r"<= 500\.0\)"),
    ({"initial_co2_pct": 30}, r"initial_co2_pct = 30: .*\(allowed: 0\.0 <= value <= 20\.0\)"),
    ({"parameters": [1, 2]}, r"parameters: Input should be a valid dictionary"),
])
async def test_option_errors_name_the_key_the_value_and_the_range(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        make(1, options)


async def test_seed_must_be_a_non_negative_integer() -> None:
    with pytest.raises(ValueError, match="seed"):
        make(-1)


async def test_a_day_at_one_second_ticks_runs_and_reads_sensibly() -> None:
    driver, clock = make(3, {"parameters": {"atline_interval_h": 12.0}})
    await driver.connect()
    last = None
    for k in range(86400):
        clock.t_s = float(k)
        last = await driver.read()
        await driver.write({"heater_pct": 54.0})
    assert last is not None
    assert last["viable_cells_per_ml"].timestamp_s == 12 * 3600.0
    assert all(r.quality is Quality.GOOD for r in last.values())
    d = await driver.diagnostics()
    assert all(abs(v) < 1e-9 for v in driver.model.balance_residuals().values())
    assert d["fold_expansion"] > 1.0


def test_sim_hardware_never_imports_the_controller() -> None:
    """The chamber must run alone as a device: no import of `controller` anywhere in it."""
    import ast
    from pathlib import Path

    import sim_hardware

    for path in Path(sim_hardware.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "controller" or n.startswith("controller.") for n in names), path
