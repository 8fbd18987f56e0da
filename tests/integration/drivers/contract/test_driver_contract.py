"""One contract, every driver: the in-process emulator and the real wires to a served emulator.

Each wire case starts the emulated chamber as a real server on a free loopback port and talks to
it through the real driver, so what passes here is what a controller meets on a bench. The
device's clock runs with the wall and jumps when a test lets device time pass, so physics that
takes device minutes (heating to the cut-out, cooling below its re-arm limit) takes no wall time
and a refusal "while still hot" cannot turn into an acceptance on a slow machine.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from drivers import (
    CHANNELS,
    ChannelError,
    DeviceError,
    DeviceStatus,
    Driver,
    NotConnectedError,
    OutOfRangeError,
    Quality,
    parse_device_url,
)
from drivers.contract.datasheet import INPUTS, OUTPUTS, RELAY_CLOSED, TOTALISERS, Kind
from drivers.contract.registry import driver_factory
from sim_hardware.device.emulate import DeviceClock, serve_chamber
from sim_hardware.device.served_chamber import ServedChamber

LISTEN = {
    "modbus-tcp": "modbus-tcp://127.0.0.1:0",
    "modbus-rtu": "modbus-rtu://socket://127.0.0.1:0",
    "serial": "serial://socket://127.0.0.1:0",
}


@dataclass
class Skew:
    """How far the device's clock has been pushed ahead of the wall."""

    offset_s: float = 0.0


@dataclass
class Bench:
    driver: Driver
    chamber: ServedChamber | None
    """The served device, for the wire kinds (None in-process)."""
    skew: Skew

    async def let_device_time_pass(self, device_s: float) -> None:
        self.skew.offset_s += device_s

    async def value(self, name: str) -> float:
        return (await self.driver.read())[name].value

    async def step_until(self, condition: Callable[[], Awaitable[bool]], what: str, *,
                         step_s: float = 10.0, budget_s: float = 3600.0) -> None:
        """Let device time pass in steps until `condition` holds; fail after `budget_s` of
        device time (physics that slow is a failure, whatever the machine's speed)."""
        passed_s = 0.0
        while not await condition():
            assert passed_s < budget_s, f"{what}: not within {budget_s:g} device s"
            await self.let_device_time_pass(step_s)
            passed_s += step_s


@pytest.fixture(params=["sim", "modbus-tcp", "modbus-rtu", "serial"])
async def bench(request: pytest.FixtureRequest) -> AsyncIterator[Bench]:
    kind = request.param
    loop = asyncio.get_running_loop()
    now = loop.time
    if kind == "sim":
        skew = Skew()
        driver = driver_factory("sim")(parse_device_url("sim://"), seed=3, options={},
                                       now=lambda: loop.time() + skew.offset_s)
        await driver.connect()
        try:
            yield Bench(driver, None, skew)
        finally:
            await driver.close()
        return
    clock, skew = DeviceClock(), Skew()
    chamber = ServedChamber({}, seed=3, now=lambda: clock.now() + skew.offset_s,
                            wall=clock.wall, comm_timeout_s=30.0)
    ready: asyncio.Future[str] = loop.create_future()
    server = asyncio.create_task(serve_chamber(chamber, LISTEN[kind], ready.set_result))
    try:
        url = await asyncio.wait_for(ready, 10)
        address = parse_device_url(url)
        driver = driver_factory(address.scheme)(address, now=now, seed=3, options={})
        await driver.connect()
        try:
            yield Bench(driver, chamber, skew)
        finally:
            await driver.close()
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def test_read_gives_every_input_with_unit_time_and_quality(bench: Bench) -> None:
    readings = await bench.driver.read()
    assert set(readings) == {c.name for c in INPUTS}
    now = asyncio.get_running_loop().time()
    for ch in INPUTS:
        reading = readings[ch.name]
        assert reading.unit == ch.unit
        assert reading.timestamp_s <= now + 1e-6
        if ch.kind is Kind.CONTINUOUS:
            assert reading.quality is Quality.GOOD, ch.name
            assert ch.minimum <= reading.value <= ch.maximum, ch.name
    assert 36.0 < readings["temperature_c"].value < 38.0
    assert 7.0 < readings["ph"].value < 7.6


async def test_outputs_read_back_what_was_written(bench: Bench) -> None:
    before = await bench.driver.read_outputs()
    assert set(before) == {c.name for c in OUTPUTS}
    await bench.driver.write({"heater_pct": 42.5, "feed_ml_per_h": 1.25})
    after = await bench.driver.read_outputs()
    assert math.isclose(after["heater_pct"], 42.5, rel_tol=1e-6)
    assert math.isclose(after["feed_ml_per_h"], 1.25, rel_tol=1e-6)
    assert math.isclose(after["o2_pct"], before["o2_pct"], rel_tol=1e-6)


@pytest.mark.parametrize(
    ("commands", "error"),
    [
        ({"heater_pct": 101.0}, OutOfRangeError),
        ({"co2_pct": -1.0}, OutOfRangeError),
        ({"stirrer_rpm": 10.0}, ChannelError),
        ({"temperature_c": 37.0}, ChannelError),
    ],
)
async def test_invalid_commands_are_refused_and_change_nothing(
    bench: Bench, commands: dict[str, float], error: type[Exception]
) -> None:
    before = await bench.driver.read_outputs()
    with pytest.raises(error):
        await bench.driver.write(commands)
    assert await bench.driver.read_outputs() == before


async def test_heartbeat_reaches_the_device(bench: Bench) -> None:
    await bench.driver.heartbeat()
    await bench.driver.heartbeat()
    if bench.chamber is not None:
        assert bench.chamber.heartbeat_count == 2


async def test_read_status_reports_the_device_and_its_comm_loss_trip(bench: Bench) -> None:
    """RUNNING once up; a device whose watchdog tripped says COMM_LOSS_SAFE until the next
    heartbeat (in-process there is no watchdog: always RUNNING, never COMM_LOSS_SAFE)."""
    await bench.driver.heartbeat()
    status = await bench.driver.read_status()
    assert status is not None
    assert status & DeviceStatus.RUNNING
    assert not status & DeviceStatus.COMM_LOSS_SAFE
    if bench.chamber is None:
        assert status == DeviceStatus.RUNNING
        return
    bench.chamber.comm_timeout_s = 0.05
    await asyncio.sleep(0.2)
    bench.chamber.check_watchdog()
    status = await bench.driver.read_status()
    assert status & DeviceStatus.COMM_LOSS_SAFE and status & DeviceStatus.RUNNING
    assert (await bench.driver.read_outputs())["heater_pct"] == 0.0  # its safe state
    await bench.driver.heartbeat()
    assert not (await bench.driver.read_status()) & DeviceStatus.COMM_LOSS_SAFE


async def test_the_physics_answers_the_actuators(bench: Bench) -> None:
    """Heater off: the chamber cools towards ambient (a few device minutes is enough)."""
    start = (await bench.driver.read())["temperature_c"].value
    await bench.driver.write({"heater_pct": 0.0})
    await bench.let_device_time_pass(600.0)
    assert (await bench.driver.read())["temperature_c"].value < start - 1.0


async def test_closed_driver_refuses_calls(bench: Bench) -> None:
    await bench.driver.close()
    await bench.driver.close()  # idempotent
    with pytest.raises(NotConnectedError):
        await bench.driver.read()
    with pytest.raises(NotConnectedError):
        await bench.driver.read_status()


def test_every_datasheet_channel_is_covered() -> None:
    assert {c.name for c in INPUTS} | {c.name for c in OUTPUTS} == {c.name for c in CHANNELS}


# ---------------------------------------------------------------- the device's own hardware
async def test_the_devices_own_channels_read_as_the_datasheet_says(bench: Bench) -> None:
    """Totalisers, gas readbacks, supply pressures, cut-out, boot id and uptime: each with its
    unit, GOOD, and the values a fresh, healthy device shows."""
    readings = await bench.driver.read()
    for name in (*TOTALISERS.values(), "o2_flow_pct", "co2_flow_pct", "o2_supply_kpa",
                 "co2_supply_kpa", "heater_cutout", "device_boot_id", "device_uptime_s"):
        assert readings[name].quality is Quality.GOOD, name
    assert readings["o2_supply_kpa"].value == readings["co2_supply_kpa"].value == 200.0
    assert readings["heater_cutout"].value == 0.0
    outputs = await bench.driver.read_outputs()
    assert readings["o2_flow_pct"].value == pytest.approx(outputs["o2_pct"], rel=1e-6)


async def test_the_heater_relay_is_written_and_read_back(bench: Bench) -> None:
    await bench.driver.write({"heater_relay": 0.0})
    assert (await bench.driver.read_outputs())["heater_relay"] == 0.0
    await bench.driver.write({"heater_relay": RELAY_CLOSED})
    assert (await bench.driver.read_outputs())["heater_relay"] == RELAY_CLOSED


@pytest.mark.parametrize("pump", sorted(TOTALISERS))
async def test_a_totaliser_grows_by_exactly_rate_times_time(bench: Bench, pump: str) -> None:
    """Measured against the device's own uptime, read in the same reply: float32 rounding
    (Modbus) is the only slack."""
    rate_ml_per_h = 6.0
    totaliser = TOTALISERS[pump]
    await bench.driver.write({pump: rate_ml_per_h})
    first = await bench.driver.read()
    await bench.let_device_time_pass(1800.0)
    second = await bench.driver.read()
    elapsed_s = second["device_uptime_s"].value - first["device_uptime_s"].value
    assert elapsed_s >= 1800.0
    delivered_ml = second[totaliser].value - first[totaliser].value
    assert delivered_ml == pytest.approx(rate_ml_per_h * elapsed_s / 3600.0, rel=1e-5)


async def test_the_cutout_trips_latches_and_rearms_only_once_cool(bench: Bench) -> None:
    driver = bench.driver
    await driver.write({"heater_pct": 100.0, "heater_relay": RELAY_CLOSED})

    async def tripped() -> bool:
        return await bench.value("heater_cutout") == 1.0

    await bench.step_until(tripped, "the cut-out trips at full heat", step_s=5.0)
    assert await driver.read_status() & DeviceStatus.HEATER_CUTOUT
    with pytest.raises(DeviceError, match="refused"):
        await driver.reset_cutout()  # the device time stood still: it is as hot as it tripped
    assert await bench.value("heater_cutout") == 1.0
    await driver.write({"heater_pct": 0.0})

    async def cool() -> bool:
        return await bench.value("temperature_c") < 37.0

    await bench.step_until(cool, "the chamber cools below the re-arm limit")
    assert await driver.reset_cutout() is True
    assert await bench.value("heater_cutout") == 0.0
    assert not await driver.read_status() & DeviceStatus.HEATER_CUTOUT
    assert await driver.reset_cutout() is False  # nothing left to re-arm


async def test_the_boot_id_is_stable_across_reads(bench: Bench) -> None:
    first = await bench.driver.read()
    await bench.let_device_time_pass(600.0)
    second = await bench.driver.read()
    assert second["device_boot_id"].value == first["device_boot_id"].value
    assert second["device_uptime_s"].value >= first["device_uptime_s"].value + 600.0


# ---------------------------------------------------- issue 12: assays and the sample volume
ASSAYS = ("cd34_pct", "cd34_cd90_pct", "viability_pct", "bga_ph", "bga_po2_mmhg",
          "bga_pco2_mmhg")


def drawn_at_uptime_s(readings: dict, name: str) -> float:
    """When `name`'s sample was drawn, in device seconds since boot: the driver dates a sampled
    reading `now - age`, and the uptime reading of the same reply is dated `now`."""
    uptime = readings["device_uptime_s"]
    return uptime.value - (uptime.timestamp_s - readings[name].timestamp_s)


async def test_assays_arrive_after_their_delay_dated_by_their_sample(bench: Bench) -> None:
    """Before its first result a sampled assay reads BAD; the blood gas is back within minutes
    and the cytometry within hours, each dated when its sample was drawn (at seeding, the
    device's boot here), over every wire."""
    first = await bench.driver.read()
    for name in ASSAYS:
        assert first[name].quality is Quality.BAD and math.isnan(first[name].value), name
    await bench.let_device_time_pass(0.2 * 3600.0)
    readings = await bench.driver.read()
    for name in ("bga_ph", "bga_po2_mmhg", "bga_pco2_mmhg"):
        assert readings[name].quality is Quality.GOOD, name
        assert drawn_at_uptime_s(readings, name) == pytest.approx(0.0, abs=1.0), name
    assert 7.0 < readings["bga_ph"].value < 7.7
    assert readings["cd34_pct"].quality is Quality.BAD
    await bench.let_device_time_pass(4 * 3600.0)
    readings = await bench.driver.read()
    for name in ("cd34_pct", "cd34_cd90_pct", "viability_pct"):
        assert readings[name].quality is Quality.GOOD, name
        assert readings[name].unit == "%"
        assert 0.0 <= readings[name].value <= 100.0, name
    assert drawn_at_uptime_s(readings, "cd34_pct") == pytest.approx(0.0, abs=1.0)
    assert drawn_at_uptime_s(readings, "viability_pct") == pytest.approx(0.0, abs=1.0)


async def test_the_sampling_totaliser_counts_every_sample_drawn(bench: Bench) -> None:
    """`sampled_ml` is GOOD and continuous, counts the seeding samples at once and the next
    count's sample 6 h later (the chamber losing that culture is the chamber tests' part)."""
    first = await bench.driver.read()
    assert first["sampled_ml"].quality is Quality.GOOD
    assert first["sampled_ml"].value == pytest.approx(0.1 + 0.3 + 0.15, rel=1e-6)
    await bench.let_device_time_pass(6 * 3600.0)
    second = await bench.driver.read()
    assert second["sampled_ml"].value == pytest.approx(0.55 + 0.1, rel=1e-6)
