"""Fault injection: the catalogue, spec parsing, and one scenario per fault type at the
emulator level (SimDriver on a hand-driven clock)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from plugins.configs import REPO
from plugins.sim_device import FakeClock, H, make, trace

from drivers import CommTimeoutError, DeviceError, FrameError, Quality
from sim_hardware.device.emulate import DeviceClock, chamber_from_config
from sim_hardware.faults.catalogue import CATALOGUE, FAULTS, catalogue_markdown
from sim_hardware.faults.specs import FaultSpec, fault_from_table, parse_fault


# ------------------------------------------------------------------------------ catalogue
def test_the_catalogue_has_every_required_fault_with_docs() -> None:
    required = {"sensor_stuck", "sensor_drift", "sensor_spike", "sensor_dropout", "sensor_noise",
                "heater_failed_off", "heater_stuck_on", "pump_clogged", "pump_runaway",
                "o2_supply_lost", "co2_supply_lost", "contamination", "comm_timeout",
                "comm_corrupt", "comm_exception"}
    assert required <= set(FAULTS)
    assert len(CATALOGUE) >= 15
    for f in CATALOGUE:
        assert f.effect and f.detection and f.reaction, f.name
    table = catalogue_markdown()
    assert all(f"`{name}`" in table for name in FAULTS)


def test_docs_list_every_fault() -> None:
    text = (REPO / "docs" / "faults.md").read_text()
    for name in FAULTS:
        assert f"`{name}`" in text, name


def test_the_docs_table_is_the_generated_catalogue() -> None:
    # Regenerate with: replace the table in docs/faults.md by catalogue_markdown().
    text = (REPO / "docs" / "faults.md").read_text()
    assert catalogue_markdown() in text


def test_every_fault_names_a_scenario_test_that_exists() -> None:
    """Each row's detection and reaction are asserted by a whole-controller scenario test;
    the row must name it, and it must be there (a parametrized one with that id). A name is
    looked up in test_safety_scenarios.py unless it says `other_file.py::test_name`."""
    here = REPO / "tests" / "system"
    for fault in CATALOGUE:
        names = [n.strip() for n in fault.scenario.split(",") if n.strip()]
        assert names, fault.name
        for name in names:
            module, _, name = name.rpartition("::")
            source = (here / (module or "test_safety_scenarios.py")).read_text()
            function, _, param_id = name.partition("[")
            assert f"def {function}(" in source, (fault.name, name)
            if param_id:
                assert f'id="{param_id.rstrip("]")}"' in source, (fault.name, name)


# --------------------------------------------------------------------------------- parsing
def test_parse_fault_command_line_forms() -> None:
    assert parse_fault("co2_supply_lost@3d") == FaultSpec("co2_supply_lost", 3 * 86400.0,
                                                          params={"residual_pct": 0.0})
    stuck = parse_fault("sensor_stuck@2d:channel=ph")
    assert stuck.params == {"channel": "ph"} and stuck.duration_s is None
    drift = parse_fault("sensor_drift@1d:channel=ph,rate_per_h=0.002,duration=12h")
    assert drift.at_s == 86400.0 and drift.duration_s == 12 * H
    assert drift.params == {"channel": "ph", "rate_per_h": 0.002}
    assert drift.end_s == 86400.0 + 12 * H
    # Per-channel defaults.
    assert parse_fault("sensor_noise@0:channel=temperature_c").params["std"] == 0.2
    assert parse_fault("pump_clogged@1h:pump=base").params == {"pump": "base"}


def test_fault_from_table() -> None:
    spec = fault_from_table({"name": "sensor_drift", "at": "1d", "duration": 3600,
                             "channel": "ph", "rate_per_h": 0.01})
    assert spec == FaultSpec("sensor_drift", 86400.0, 3600.0, {"channel": "ph",
                                                               "rate_per_h": 0.01})
    assert fault_from_table({"name": "contamination", "at": 0}).params["doubling_h"] == 1.0


@pytest.mark.parametrize(("spec", "words"), [
    ("no_such_fault@1h", ["no_such_fault", "known faults", "sensor_stuck", "comm_corrupt"]),
    ("sensor_stuck@1h:channel=ph_probe", ["sensor_stuck", "channel", "ph_probe",
                                          "temperature_c"]),
    ("sensor_stuck@1h", ["sensor_stuck", "channel: required key missing"]),
    ("sensor_drift@1h:channel=ph,rate_per_h=fast", ["sensor_drift", "rate_per_h", "fast",
                                                    "number"]),
    ("sensor_drift@1h:channel=ph,speed=2", ["sensor_drift", "speed", "unknown key",
                                            "allowed here", "rate_per_h"]),
    ("co2_supply_lost@soon", ["co2_supply_lost", "at", "soon", "30s"]),
    ("co2_supply_lost@1h:duration=-2h", ["co2_supply_lost", "duration", "-2h"]),
    ("co2_supply_lost", ["co2_supply_lost", "missing start time"]),
    ("pump_runaway@1h:pump=oxygen", ["pump_runaway", "pump", "oxygen", "feed, harvest, base"]),
    ("comm_corrupt@0:probability=1.5", ["comm_corrupt", "probability", "1.5", "<= 1"]),
    ("contamination@1d:duration=2h", ["contamination", "duration", "not allowed"]),
    ("sensor_spike@0:channel=ph,period_s=0", ["sensor_spike", "period_s", "greater than 0"]),
])
def test_parse_errors_name_the_fault_the_key_and_the_value(spec, words) -> None:
    with pytest.raises(ValueError) as info:
        parse_fault(spec)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_spec_without_a_start_time_shows_an_example_with_its_name() -> None:
    with pytest.raises(ValueError) as info:
        parse_fault("sensor_stuck:channel=ph")
    assert "e.g. sensor_stuck@36h" in str(info.value)
    assert "{name}" not in str(info.value)


def test_table_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="missing key name"):
        fault_from_table({"at": 0})
    with pytest.raises(ValueError,
                       match=r"sensor_noise: 1 problem\(s\)\n  at: required key missing"):
        fault_from_table({"name": "sensor_noise", "channel": "ph"})
    with pytest.raises(ValueError, match=r"std = 'x'"):
        fault_from_table({"name": "sensor_noise", "at": 0, "channel": "ph", "std": "x"})


async def test_the_driver_rejects_a_bad_fault_option_naming_it() -> None:
    with pytest.raises(ValueError, match=r"(?s)sensor_stuck.*channel.*'nope'"):
        await make(["sensor_stuck@1h:channel=nope"])
    with pytest.raises(ValueError, match="faults"):
        await make("co2_supply_lost@1h")  # a string, not a list


# ------------------------------------------------------------------------- sensor faults
async def test_sensor_stuck_freezes_the_reading_while_the_truth_moves() -> None:
    driver, clock = await make(["sensor_stuck@1h:channel=temperature_c,duration=2h"])
    before = await trace(driver, clock, 1 * H - 60)
    during = await trace(driver, clock, 3 * H - 60, commands={"heater_pct": 0.0})
    after = await trace(driver, clock, 4 * H)
    assert len({v for _, v, _, _ in before}) > 10  # noise: never exactly equal
    stuck = [v for t, v, _, q in during if t >= H]
    assert len(set(stuck)) == 1 and all(q is Quality.GOOD for *_, q in during)
    truths = [tr for _, _, tr, _ in during]
    assert max(truths) - min(truths) > 2.0  # the chamber cooled by degrees meanwhile
    assert len({v for _, v, _, _ in after}) > 10
    assert abs(after[-1][1] - after[-1][2]) < 1.0  # follows the truth again


async def _clean_and_faulted(spec: list, until_s: float, channel: str, step_s: float = 60.0,
                             commands: dict | None = None):
    clean, cc = await make([])
    faulted, fc = await make(spec)
    a = await trace(clean, cc, until_s, step_s, channel, commands)
    b = await trace(faulted, fc, until_s, step_s, channel, commands)
    return a, b


async def test_sensor_drift_adds_rate_times_time_while_active() -> None:
    a, b = await _clean_and_faulted(
        ["sensor_drift@2h:channel=ph,rate_per_h=0.01,duration=10h"], 14 * H, "ph")
    for (t, va, _, _), (_, vb, _, _) in zip(a, b, strict=True):
        expected = 0.01 * (t - 2 * H) / H if 2 * H <= t < 12 * H else 0.0
        assert vb - va == pytest.approx(expected, abs=1e-9), t
    assert b[-1][1] == a[-1][1]  # ended


async def test_sensor_spike_gives_isolated_spikes_every_period() -> None:
    a, b = await _clean_and_faulted(
        ["sensor_spike@1h:channel=temperature_c,magnitude=5,period_s=600,duration=2h"],
        4 * H, "temperature_c")
    diffs = {round(t): vb - va for (t, va, _, _), (_, vb, _, _) in zip(a, b, strict=True)}
    spiked = {t for t, d in diffs.items() if abs(d) > 1e-9}
    assert spiked == {round(H + k * 600) for k in range(12)}
    assert all(abs(abs(diffs[t]) - 5.0) < 1e-9 for t in spiked)
    signs = {math.copysign(1, diffs[t]) for t in spiked}
    assert signs == {1.0, -1.0}  # seeded random signs


async def test_sensor_dropout_is_bad_nan_then_recovers() -> None:
    driver, clock = await make(["sensor_dropout@1h:channel=do_pct_air,duration=30m"])
    rows = await trace(driver, clock, 2 * H, channel="do_pct_air")
    for t, v, _, q in rows:
        if H <= t < 1.5 * H:
            assert q is Quality.BAD and math.isnan(v)
        else:
            assert q is Quality.GOOD and math.isfinite(v)


async def test_sensor_noise_adds_the_given_std_and_is_repeatable() -> None:
    spec = ["sensor_noise@0:channel=ph,std=0.1,duration=20h"]
    a, b = await _clean_and_faulted(spec, 20 * H, "ph")
    extra = np.array([vb - va for (_, va, _, _), (_, vb, _, _) in zip(a, b, strict=True)])
    assert extra.std() == pytest.approx(0.1, rel=0.1)
    _, again = await _clean_and_faulted(spec, 20 * H, "ph")
    assert [v for _, v, _, _ in again] == [v for _, v, _, _ in b]


# ----------------------------------------------------------------------- actuator faults
async def test_heater_failed_off_cools_towards_ambient_while_outputs_show_the_command() -> None:
    driver, clock = await make(["heater_failed_off@1h:duration=6h"])
    await trace(driver, clock, H - 60, commands={"heater_pct": 60.0})
    t37 = driver.model.temperature_c
    rows = await trace(driver, clock, 7 * H - 60)
    ambient = driver.params.ambient_temperature_c
    assert driver.model.temperature_c < t37 - 5.0
    assert driver.model.temperature_c < ambient + 4.0
    assert (await driver.read_outputs())["heater_pct"] == 60.0
    assert driver.model.inputs.heater_pct == 0.0
    assert (await driver.diagnostics())["fault_heater_failed_off_active"] == 1.0
    assert rows[-1][1] < 32.0  # the reading shows it
    await trace(driver, clock, 10 * H)
    assert driver.model.inputs.heater_pct == 60.0  # ended: the command holds again
    assert (await driver.diagnostics())["fault_heater_failed_off_active"] == 0.0
    assert driver.model.temperature_c > 35.0


async def test_heater_stuck_on_heats_with_the_drive_commanded_off_until_the_relay_opens(
        ) -> None:
    """The fault fails the drive, not the relay: with the relay closed the chamber heats until
    the device's own cut-out opens the relay at cutout_c; with it open nothing heats at all."""
    driver, clock = await make(["heater_stuck_on@30m"])
    temperatures = [t for _, _, t, _ in
                    await trace(driver, clock, 6 * H, step_s=5.0, commands={"heater_pct": 0.0})]
    assert (await driver.read_outputs())["heater_pct"] == 0.0
    cutout_c = driver.params.cutout_c
    assert cutout_c <= max(temperatures) < cutout_c + 0.1
    assert driver.chamber.cutout and driver.model.inputs.heater_pct == 0.0
    assert driver.model.temperature_c < 30.0  # latched open: cooling towards ambient

    opened, clock = await make(["heater_stuck_on@30m"])
    await opened.write({"heater_relay": 0.0})
    temperatures = [t for _, _, t, _ in await trace(opened, clock, 2 * H)]
    assert max(temperatures[30:]) < 37.1 and opened.model.inputs.heater_pct == 0.0
    assert not opened.chamber.cutout


async def test_pump_clogged_delivers_nothing() -> None:
    driver, clock = await make(["pump_clogged@0:pump=feed,duration=2h"])
    v0 = driver.model.volume_ml
    await trace(driver, clock, 2 * H - 60, commands={"feed_ml_per_h": 10.0})
    assert driver.model.volume_ml == pytest.approx(v0)  # the seeding samples left before v0
    assert (await driver.read_outputs())["feed_ml_per_h"] == 10.0
    await trace(driver, clock, 3 * H)
    assert driver.model.volume_ml > v0 + 9.0  # flows again after the clog clears


async def test_sensor_offset_adds_a_constant_step_while_active() -> None:
    a, b = await _clean_and_faulted(
        ["sensor_offset@2h:channel=volume_ml,offset=-1.5,duration=4h"], 8 * H, "volume_ml")
    for (t, va, _, _), (_, vb, _, _) in zip(a, b, strict=True):
        assert vb - va == pytest.approx(-1.5 if 2 * H <= t < 6 * H else 0.0, abs=1e-9), t


async def test_pump_line_disconnected_is_counted_by_its_totaliser_but_never_arrives() -> None:
    driver, clock = await make(["pump_line_disconnected@1h:pump=feed,duration=1h"])
    await trace(driver, clock, 3 * H, commands={"feed_ml_per_h": 6.0})
    assert (await driver.read())["feed_delivered_ml"].value == pytest.approx(18.0)  # 3 h ran
    assert driver.model.ledger()["volume"]["fed"] == pytest.approx(12.0)  # 1 h on the floor


async def test_chamber_leak_drains_the_chamber_past_every_totaliser() -> None:
    driver, clock = await make(["chamber_leak@1h:rate_ml_per_h=2,duration=1h"])
    v0 = driver.model.volume_ml
    await trace(driver, clock, 3 * H)
    readings = await driver.read()
    assert [readings[f"{pump}_delivered_ml"].value for pump in ("feed", "harvest", "base")] \
        == [0.0, 0.0, 0.0]
    assert driver.model.volume_ml == pytest.approx(v0 - 2.0)


async def test_heater_degraded_delivers_its_fraction_while_outputs_show_the_command() -> None:
    driver, clock = await make(["heater_degraded@1h:fraction=0.25"])
    await trace(driver, clock, 2 * H, commands={"heater_pct": 30.0})  # below the cut-out
    assert driver.model.inputs.heater_pct == pytest.approx(7.5)
    assert (await driver.read_outputs())["heater_pct"] == 30.0


async def test_pump_runaway_runs_at_maximum() -> None:
    driver, clock = await make(["pump_runaway@1h:pump=harvest"])
    v0 = driver.model.volume_ml
    await trace(driver, clock, H)
    assert driver.model.volume_ml == pytest.approx(v0)
    await trace(driver, clock, 1.5 * H)
    assert driver.model.inputs.harvest_ml_per_h == driver.params.harvest_pump_max_ml_per_h
    assert (await driver.read_outputs())["harvest_ml_per_h"] == 0.0
    rows = await trace(driver, clock, 3 * H, channel="volume_ml")
    assert driver.model.volume_ml <= driver.params.min_volume_ml + 1.0
    assert rows[-1][1] < v0 - 20.0


async def test_o2_supply_lost_starves_the_culture_of_o2() -> None:
    driver, clock = await make(["o2_supply_lost@1h"])
    before = await trace(driver, clock, H - 60, channel="do_pct_air",
                         commands={"o2_pct": 20.0})
    rows = await trace(driver, clock, 4 * H, channel="do_pct_air")
    assert before[-1][2] > 50.0
    assert rows[-1][2] < 5.0 and rows[-1][1] < 10.0
    assert (await driver.read_outputs())["o2_pct"] == 20.0


async def test_co2_supply_lost_turns_the_medium_alkaline() -> None:
    driver, clock = await make(["co2_supply_lost@1h"])
    before = await trace(driver, clock, H - 60, channel="ph", commands={"co2_pct": 10.0})
    rows = await trace(driver, clock, 7 * H, channel="ph")
    assert before[-1][2] < 7.4
    crossed = [t for t, _, truth, _ in rows if truth > 7.6]
    assert crossed and crossed[0] - H < 4 * H
    assert rows[-1][1] > 7.6  # the probe shows it
    assert (await driver.read_outputs())["co2_pct"] == 10.0
    assert driver.model.inputs.co2_pct == 0.0


async def test_co2_supply_lost_leaves_the_carrier_gas_co2() -> None:
    """ISS cabin air carries ~0.5 % CO2: without the supply the gas is that, not 0."""
    driver, clock = await make(["co2_supply_lost@1h:residual_pct=0.5"])
    await trace(driver, clock, 2 * H, channel="ph", commands={"co2_pct": 10.0})
    assert driver.model.inputs.co2_pct == 0.5
    assert (await driver.read_outputs())["co2_pct"] == 10.0
    with pytest.raises(ValueError, match=r"residual_pct.*<= 20"):
        parse_fault("co2_supply_lost@1h:residual_pct=30")


# ------------------------------------------------------------------------- contamination
async def test_contamination_eats_glucose_and_shows_only_in_the_optical_count() -> None:
    clean, cc = await make([])
    dirty, dc = await make(["contamination@1d:cells_per_ml=100"])
    for driver, clock in ((clean, cc), (dirty, dc)):
        await trace(driver, clock, 2.5 * 86400, step_s=300.0,
                    commands={"feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0})
    c, d = clean.model, dirty.model
    assert c.contaminant_cells_per_ml == 0.0
    assert d.contaminant_cells_per_ml > 1e6
    assert d.glucose_mm < c.glucose_mm - 2.0
    assert d.total_cells_per_ml > 2 * d.viable_cells_per_ml + d.dead_cells_per_ml
    readings = await dirty.read()
    assert readings["total_cells_per_ml"].value > 2 * readings["viable_cells_per_ml"].value
    # The viable HSC count does not include the contaminant.
    assert d.viable_cells_per_ml <= c.viable_cells_per_ml * 1.01
    assert (await dirty.diagnostics())["fault_contamination_active"] == 1.0
    for name, residual in d.balance_residuals().items():
        assert abs(residual) < 1e-9, name
    ledger = d.ledger()["contaminant_cells"]
    assert ledger["fed"] == pytest.approx(100 * 50.0, rel=0.05)  # the inoculum
    assert ledger["harvested"] > 0.0 and ledger["produced"] > ledger["fed"]


async def test_contamination_before_any_read_is_still_inoculated_at_its_time() -> None:
    driver, clock = await make(["contamination@2h:cells_per_ml=1000,doubling_h=1"])
    clock.t_s = 2 * H + 1
    await driver.read()
    volume_ml = 50.0 - driver.chamber.sampled_ml  # less the samples drawn at seeding
    assert driver.model.ledger()["contaminant_cells"]["fed"] == pytest.approx(1000 * volume_ml)
    clock.t_s = 12 * H  # one lazy jump: grows ~2^10 meanwhile
    await driver.read()
    assert driver.model.contaminant_cells_per_ml > 2e5


# -------------------------------------------------------------------------------- comms
async def test_comm_timeout_raises_on_every_link_call_while_active() -> None:
    driver, clock = await make(["comm_timeout@1h:duration=10m"])
    clock.t_s = H
    t_model = driver.model.t_s
    for call in (driver.read(), driver.write({"heater_pct": 10.0}), driver.heartbeat(),
                 driver.read_outputs()):
        with pytest.raises(CommTimeoutError):
            await call
    assert driver.model.t_s == t_model  # raised before doing anything
    assert (await driver.diagnostics())["fault_comm_timeout_active"] == 1.0
    clock.t_s = H + 600
    await driver.read()
    await driver.write({"heater_pct": 10.0})
    await driver.heartbeat()


async def test_comm_exception_is_a_device_busy_error() -> None:
    driver, clock = await make(["comm_exception@0:duration=1m"])
    with pytest.raises(DeviceError, match="device busy"):
        await driver.read()
    with pytest.raises(DeviceError, match="device busy"):
        await driver.write({"o2_pct": 5.0})
    clock.t_s = 60.0
    await driver.read()


async def _corrupt_pattern(seed: int) -> list[bool]:
    driver, clock = await make(["comm_corrupt@0:probability=0.3,duration=1h"], seed=seed)
    pattern = []
    for _ in range(400):
        clock.t_s += 1.0
        try:
            await driver.read()
            pattern.append(False)
        except FrameError:
            pattern.append(True)
    return pattern


async def test_comm_corrupt_fails_with_the_probability_seeded() -> None:
    a = await _corrupt_pattern(3)
    assert 0.22 < sum(a) / len(a) < 0.38
    assert await _corrupt_pattern(3) == a
    assert await _corrupt_pattern(4) != a


# ----------------------------------------------------------------- general behaviour
async def test_a_faulted_run_is_repeatable() -> None:
    spec = ["sensor_spike@10m:channel=ph,period_s=300", "sensor_noise@0:channel=do_pct_air",
            "contamination@1h", "co2_supply_lost@2h:duration=1h"]
    runs = []
    for _ in range(2):
        driver, clock = await make(spec)
        rows = []
        for _ in range(400):
            clock.t_s += 60.0
            r = await driver.read()
            rows.append((r["ph"].value, r["do_pct_air"].value, r["total_cells_per_ml"].value))
        runs.append(rows)
    assert runs[0] == runs[1]


async def test_no_faults_reads_like_before_and_flags_are_zero() -> None:
    a, _ = await make([])
    b, _ = await make(None)
    assert a.faults is None and b.faults is None
    assert await a.read() == await b.read()
    diag = await a.diagnostics()
    assert all(diag[f"fault_{name}_active"] == 0.0 for name in FAULTS)


async def test_fault_specs_and_tables_mix_in_the_option() -> None:
    driver, _ = await make(["sensor_stuck@1h:channel=ph",
                            {"name": "pump_clogged", "at": "2h", "pump": "base"}])
    assert driver.faults is not None
    assert [s.name for s in driver.faults.specs] == ["sensor_stuck", "pump_clogged"]


# ------------------------------------------------------------------------------ emulate
def test_emulate_reads_fault_tables_and_command_line_faults(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('[run]\nseed = 5\n\n[[reactor]]\n[reactor.chamber]\nmicrogravity = true\n'
                      '\n[[fault]]\nname = "sensor_drift"\nat = "1d"\nchannel = "ph"\n'
                      'rate_per_h = 0.002\nduration = "12h"\n')
    chamber = chamber_from_config(config, seed=None, clock=DeviceClock(), comm_timeout_s=5.0,
                                  faults=["co2_supply_lost@3d"])
    specs = chamber.chamber.faults.specs
    assert [s.name for s in specs] == ["sensor_drift", "co2_supply_lost"]
    assert specs[0].duration_s == 12 * H and specs[1].at_s == 3 * 86400.0
    with pytest.raises(ValueError, match="bogus"):
        chamber_from_config(config, seed=None, clock=DeviceClock(), comm_timeout_s=5.0,
                            faults=["bogus@1h"])


def test_the_emulate_command_line_takes_repeated_faults() -> None:
    import argparse

    from sim_hardware.device.emulate import add_command
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers())
    args = parser.parse_args(["emulate", "--listen", "serial://pty", "--fault",
                              "co2_supply_lost@3d", "--fault", "sensor_stuck@2d:channel=ph"])
    assert args.fault == ["co2_supply_lost@3d", "sensor_stuck@2d:channel=ph"]


async def test_the_served_watchdog_still_reaches_the_safe_state_during_a_comm_fault() -> None:
    from sim_hardware.device.served_chamber import ServedChamber
    clock, wall = FakeClock(), FakeClock()
    chamber = ServedChamber({"faults": ["comm_timeout@10s"]}, seed=1, now=clock, wall=wall,
                            comm_timeout_s=5.0)
    await chamber.start()
    chamber.write_outputs({"heater_pct": 80.0})
    chamber.heartbeat(1)
    clock.t_s = wall.t_s = 20.0
    with pytest.raises(CommTimeoutError):
        chamber.read_inputs()
    assert chamber.check_watchdog()
    assert chamber.read_outputs()["heater_pct"] == 0.0
