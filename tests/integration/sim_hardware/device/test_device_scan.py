"""The served device acts on its own: `bioreactor emulate`'s watch task scans the chamber every
WATCHDOG_PERIOD_S, so the device-local cut-out trips with no controller connected (issue 10,
the last protection layer must not depend on anyone asking)."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from plugins.waiting import async_wait_until

from drivers import DeviceStatus, parse_device_url
from drivers.contract.registry import driver_factory
from sim_hardware.device.emulate import DeviceClock, serve_chamber
from sim_hardware.device.served_chamber import ServedChamber

DEVICE_SPEED = 600.0
"""Device seconds per wall second: a stuck heater reaches the cut-out in about 0.5 wall s."""


@contextlib.asynccontextmanager
async def served(chamber: ServedChamber, listen_url: str) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    server = asyncio.create_task(serve_chamber(chamber, listen_url, ready.set_result))
    try:
        yield await asyncio.wait_for(ready, 10)
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


@pytest.mark.parametrize("listen", ["modbus-tcp://127.0.0.1:0", "serial://socket://127.0.0.1:0"])
async def test_a_stuck_heater_trips_the_cutout_with_nobody_talking(listen: str) -> None:
    clock = DeviceClock(DEVICE_SPEED)
    # The fault starts a device minute after the chamber (a fault dated before the chamber's
    # start stops its integration: "time went backwards").
    chamber = ServedChamber({"faults": ["heater_stuck_on@1m"]}, seed=4, now=clock.now,
                            wall=clock.wall)
    await chamber.start()
    async with served(chamber, listen) as url:
        # `cutout` is the latch itself: looking at it integrates nothing, only the scan does.
        await async_wait_until(lambda: chamber.chamber.cutout, 30.0,
                               "the device's own scan to trip the cut-out")
        assert chamber.heartbeat_count == 0  # no controller has said a word
        address = parse_device_url(url)
        driver = driver_factory(address.scheme)(address, now=clock.now, seed=0, options={})
        await driver.connect()
        try:
            assert (await driver.read())["heater_cutout"].value == 1.0
            assert await driver.read_status() & DeviceStatus.HEATER_CUTOUT
            assert (await driver.read_outputs())["heater_relay"] == 1.0  # the command stands
        finally:
            await driver.close()
