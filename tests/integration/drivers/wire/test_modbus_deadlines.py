"""The Modbus driver's one deadline per operation, over a slow link: a real `bioreactor emulate`
device behind a TCP proxy that adds latency each way (tests/plugins/delay_proxy.py)."""
from __future__ import annotations

import pytest
from plugins.delay_proxy import DelayProxy
from plugins.hil import emulator
from plugins.waiting import async_wait_until

from drivers.contract.errors import CommTimeoutError
from drivers.contract.urls import parse_device_url
from drivers.wire.modbus_driver import ModbusDriver


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("?")[0])


async def test_a_reply_later_than_the_deadline_is_a_timeout_and_counted_late() -> None:
    """0.15 s each way against a 0.2 s timeout, no retries: every operation times out (the
    driver's own deadline, not pymodbus's retries), and each reply that arrives after its
    request was given up is counted, not taken for the next request's answer."""
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0") as (_, url), \
            DelayProxy(_port(url), latency_s=0.15) as proxy:
        driver = ModbusDriver(
            parse_device_url(f"modbus-tcp://127.0.0.1:{proxy.port}?timeout=0.2&retries=0"),
            now=lambda: 0.0, seed=0, options={})
        with pytest.raises(CommTimeoutError, match=r"no reply within 0\.2 s"):
            await driver.connect()
        try:
            with pytest.raises(CommTimeoutError):
                await driver.read()
            with pytest.raises(CommTimeoutError):
                await driver.heartbeat()
            await async_wait_until(lambda: driver.counters.replies_stale >= 3, 5,
                                   "every late reply counted")
            diagnostics = await driver.diagnostics()
            assert (diagnostics["timeouts"], diagnostics["retries"]) == (3, 0)
            assert diagnostics["link_up"] == 1.0  # slow is not lost: no reconnect churn
        finally:
            await driver.close()


async def test_retries_are_the_drivers_and_counted() -> None:
    """0.15 s each way against a 0.2 s timeout with one retry: the re-sent request carries a
    new transaction id, so the first attempt's late reply is counted and refused as its
    answer; the operation ends at its one deadline (2 x 0.2 s)."""
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0") as (_, url), \
            DelayProxy(_port(url), latency_s=0.15) as proxy:
        driver = ModbusDriver(
            parse_device_url(f"modbus-tcp://127.0.0.1:{proxy.port}?timeout=0.2&retries=1"),
            now=lambda: 0.0, seed=0, options={})
        with pytest.raises(CommTimeoutError, match=r"no reply within 0\.4 s, the operation's"):
            await driver.connect()
        try:
            await async_wait_until(lambda: driver.counters.replies_stale >= 2, 5,
                                   "both late replies counted")
            assert (driver.counters.timeouts, driver.counters.retries) == (2, 1)
        finally:
            await driver.close()


async def test_latency_below_the_timeout_costs_nothing() -> None:
    with emulator("hil_modbus_tcp.toml", "modbus-tcp://127.0.0.1:0") as (_, url), \
            DelayProxy(_port(url), latency_s=0.02) as proxy:
        driver = ModbusDriver(
            parse_device_url(f"modbus-tcp://127.0.0.1:{proxy.port}?timeout=0.5&retries=1"),
            now=lambda: 0.0, seed=0, options={})
        await driver.connect()
        try:
            await driver.read()
            await driver.heartbeat()
            diagnostics = await driver.diagnostics()
            assert {k: diagnostics[k] for k in ("timeouts", "retries", "replies_stale")} == {
                "timeouts": 0, "retries": 0, "replies_stale": 0}
        finally:
            await driver.close()
