"""The Modbus driver's one deadline per operation, over a slow link: a real `bioreactor emulate`
device behind a TCP proxy that adds latency each way (tests/plugins/delay_proxy.py)."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from plugins.delay_proxy import DelayProxy
from plugins.hil import emulator
from plugins.waiting import async_wait_until

from drivers.contract.errors import CommTimeoutError
from drivers.contract.urls import parse_device_url
from drivers.wire.modbus_driver import ModbusDriver


@contextlib.asynccontextmanager
async def slow_device(latency_s: float, query: str) -> AsyncIterator[ModbusDriver]:
    """A driver (not yet connected; closed at the end) to an emulated device behind a proxy
    adding `latency_s` each way; `query` holds the URL's timeout and retries."""
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0") as (_, url), \
            DelayProxy(int(url.rsplit(":", 1)[1]), latency_s) as proxy:
        driver = ModbusDriver(parse_device_url(f"modbus-tcp://127.0.0.1:{proxy.port}?{query}"),
                              now=lambda: 0.0, seed=0, options={})
        try:
            yield driver
        finally:
            await driver.close()


async def test_a_reply_later_than_the_deadline_is_a_timeout_and_counted_late() -> None:
    """0.15 s each way against a 0.2 s timeout, no retries: every operation times out (the
    driver's own deadline, not pymodbus's retries), and each reply that arrives after its
    request was given up is counted, not taken for the next request's answer."""
    async with slow_device(0.15, "timeout=0.2&retries=0") as driver:
        with pytest.raises(CommTimeoutError, match=r"no reply within 0\.2 s"):
            await driver.connect()
        with pytest.raises(CommTimeoutError):
            await driver.read()
        with pytest.raises(CommTimeoutError):
            await driver.heartbeat()
        await async_wait_until(lambda: driver.counters.replies_stale >= 3, 5,
                               "every late reply counted")
        diagnostics = await driver.diagnostics()
        assert (diagnostics["timeouts"], diagnostics["retries"]) == (3, 0)
        assert diagnostics["link_up"] == 1.0  # slow is not lost: no reconnect churn


async def test_retries_are_the_drivers_and_counted() -> None:
    """0.15 s each way against a 0.2 s timeout with one retry: the re-sent request carries a
    new transaction id, so the first attempt's late reply is counted and refused as its
    answer; the operation ends at its one deadline (2 x 0.2 s)."""
    async with slow_device(0.15, "timeout=0.2&retries=1") as driver:
        with pytest.raises(CommTimeoutError, match=r"no reply within 0\.4 s, the operation's"):
            await driver.connect()
        await async_wait_until(lambda: driver.counters.replies_stale >= 2, 5,
                               "both late replies counted")
        assert (driver.counters.timeouts, driver.counters.retries) == (2, 1)
        assert driver.link_faults() == {"timeouts": 2, "replies_stale": 2, "retries": 1}


async def test_latency_below_the_timeout_costs_nothing() -> None:
    async with slow_device(0.02, "timeout=0.5&retries=1") as driver:
        await driver.connect()
        await driver.read()
        await driver.heartbeat()
        assert driver.link_faults() == {"timeouts": 0, "replies_stale": 0, "retries": 0}
