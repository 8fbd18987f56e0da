"""One contract, every driver: the in-process emulator and the real wires to a served emulator.

Each wire case starts the emulated chamber as a real server on a free loopback port and talks to
it through the real driver, so what passes here is what a controller meets on a bench.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from drivers import (
    CHANNELS,
    ChannelError,
    DeviceStatus,
    Driver,
    NotConnectedError,
    OutOfRangeError,
    Quality,
    parse_device_url,
)
from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind
from drivers.contract.registry import driver_factory
from sim_hardware.device.emulate import DeviceClock, serve_chamber
from sim_hardware.device.served_chamber import ServedChamber

DEVICE_SPEED = 600.0  # device seconds per wall second: physics moves visibly within a test
LISTEN = {
    "modbus-tcp": "modbus-tcp://127.0.0.1:0",
    "modbus-rtu": "modbus-rtu://socket://127.0.0.1:0",
    "serial": "serial://socket://127.0.0.1:0",
}


@dataclass
class Bench:
    driver: Driver
    chamber: ServedChamber | None
    """The served device, for the wire kinds (None in-process)."""
    offset_s: float = 0.0
    """In-process only: how far the driver's clock has been pushed ahead of the loop's."""

    async def let_device_time_pass(self, device_s: float) -> None:
        if self.chamber is None:
            self.offset_s += device_s
        else:
            await asyncio.sleep(device_s / DEVICE_SPEED)


@pytest.fixture(params=["sim", "modbus-tcp", "modbus-rtu", "serial"])
async def bench(request: pytest.FixtureRequest) -> AsyncIterator[Bench]:
    kind = request.param
    loop = asyncio.get_running_loop()
    now = loop.time
    if kind == "sim":
        holder: list[Bench] = []
        driver = driver_factory("sim")(parse_device_url("sim://"), seed=3, options={},
                                       now=lambda: loop.time() + holder[0].offset_s)
        holder.append(Bench(driver, None))
        await driver.connect()
        try:
            yield holder[0]
        finally:
            await driver.close()
        return
    clock = DeviceClock(DEVICE_SPEED)
    chamber = ServedChamber({}, seed=3, now=clock.now, wall=clock.wall, comm_timeout_s=30.0)
    ready: asyncio.Future[str] = loop.create_future()
    server = asyncio.create_task(serve_chamber(chamber, LISTEN[kind], ready.set_result))
    try:
        url = await asyncio.wait_for(ready, 10)
        address = parse_device_url(url)
        driver = driver_factory(address.scheme)(address, now=now, seed=3, options={})
        await driver.connect()
        try:
            yield Bench(driver, chamber)
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
