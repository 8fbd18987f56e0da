"""The Modbus driver against the real server (TCP, RTU over a socket, RTU over a pty), and against
fake devices that misbehave on purpose."""
from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest
from plugins.waiting import async_wait_until
from pymodbus.framer import FramerRTU

from drivers.codecs.modbus_map import DEVICE_BLOCK, MAP_VERSION, to_float32
from drivers.contract.datasheet import INPUTS, OUTPUTS, Kind
from drivers.contract.errors import (
    ChannelError,
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DeviceHeldError,
    FrameError,
    NotConnectedError,
    OutOfRangeError,
    ReadbackError,
)
from drivers.contract.reading import Quality
from drivers.contract.registry import driver_factory
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import parse_device_url
from drivers.wire.modbus_driver import ModbusDeviceError, ModbusDriver
from sim_hardware.device.modbus_server import running
from sim_hardware.device.served_chamber import ServedChamber


class Clock:
    """A hand-wound clock: the device's physics time and the controller's now()."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_driver(url: str, now: Callable[[], float] = lambda: 0.0,
                time_scale: float = 1.0) -> ModbusDriver:
    return ModbusDriver(parse_device_url(url), now=now, seed=0, options={},
                        time_scale=time_scale)


@pytest.fixture
def device_clock() -> Clock:
    return Clock()


@pytest.fixture
async def chamber(device_clock: Clock) -> ServedChamber:
    c = ServedChamber({}, seed=3, now=device_clock, wall=time.monotonic)
    await c.start()
    return c


LISTEN = {"tcp": "modbus-tcp://127.0.0.1:0", "rtu": "modbus-rtu://socket://127.0.0.1:0",
          "pty": "modbus-rtu://pty"}


@pytest.fixture(params=["tcp", "rtu"])
async def served_url(request: pytest.FixtureRequest, chamber: ServedChamber
                     ) -> AsyncIterator[str]:
    async with running(chamber, LISTEN[request.param]) as url:
        yield url


@contextlib.asynccontextmanager
async def connected(url: str, now: Callable[[], float] = lambda: 0.0
                    ) -> AsyncIterator[ModbusDriver]:
    driver = make_driver(url + ("&" if "?" in url else "?") + "timeout=1", now=now)
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()


# ----------------------------------------------------------------------------- happy paths
def test_entry_points_load_the_driver() -> None:
    assert driver_factory("modbus-tcp") is ModbusDriver
    assert driver_factory("modbus-rtu") is ModbusDriver


async def test_read_write_read_outputs_heartbeat(served_url: str, chamber: ServedChamber
                                                 ) -> None:
    async with connected(served_url) as driver:
        readings = await driver.read()
        assert list(readings) == [c.name for c in INPUTS]
        for c in INPUTS:
            assert readings[c.name].unit == c.unit
        temperature = readings["temperature_c"]
        assert temperature.quality is Quality.GOOD and 30 < temperature.value < 45
        assert temperature.timestamp_s == 0.0
        assert readings["glucose_mm"].quality is Quality.BAD  # no assay result yet
        assert math.isnan(readings["glucose_mm"].value)

        await driver.write({"heater_pct": 40.0, "feed_ml_per_h": 1.25})
        assert chamber.read_outputs()["heater_pct"] == 40.0
        outputs = await driver.read_outputs()
        assert set(outputs) == {c.name for c in OUTPUTS}
        assert outputs["heater_pct"] == 40.0 and outputs["feed_ml_per_h"] == 1.25

        count = chamber.heartbeat_count
        await driver.heartbeat()
        await driver.heartbeat()
        assert chamber.heartbeat_count == count + 2
        assert await driver.read_status() & DeviceStatus.RUNNING


async def test_over_a_pty(chamber: ServedChamber) -> None:
    async with running(chamber, LISTEN["pty"]) as url:
        assert url.startswith("modbus-rtu:///dev/")
        async with connected(url) as driver:
            await driver.write({"o2_pct": 12.5})
            assert (await driver.read_outputs())["o2_pct"] == 12.5
            assert (await driver.read())["ph"].quality is Quality.GOOD


async def test_values_are_fresh_and_sampled_readings_carry_their_draw_time(
        served_url: str, chamber: ServedChamber, device_clock: Clock) -> None:
    controller_now = Clock(0.0)
    async with connected(served_url, now=controller_now) as driver:
        device_clock.t = controller_now.t = 10 * 3600.0  # the chamber integrates up to here
        truth = chamber.read_inputs()
        readings = await driver.read()
        for c in INPUTS:
            if c.kind is Kind.SAMPLED:  # a continuous sensor draws fresh noise on each read
                age = truth[c.name].age_s
                assert readings[c.name].value == to_float32(truth[c.name].value)
                assert age > 0 and readings[c.name].quality is Quality.GOOD
                assert readings[c.name].timestamp_s == controller_now.t - to_float32(age)
            else:
                assert readings[c.name].timestamp_s == controller_now.t


async def test_one_request_per_read_and_per_run_of_setpoints(served_url: str) -> None:
    async with connected(served_url) as driver:
        async def requests_for(call: Callable[[], object]) -> float:
            before = (await driver.diagnostics())["requests"]
            await call()  # type: ignore[misc]
            return (await driver.diagnostics())["requests"] - before

        assert await requests_for(driver.read) == 1
        assert await requests_for(driver.read_outputs) == 1
        assert await requests_for(driver.heartbeat) == 1
        every = {c.name: c.minimum for c in OUTPUTS}
        assert await requests_for(lambda: driver.write(every)) == 2  # one FC16 + read-back
        sparse = {"heater_pct": 5.0, "co2_pct": 5.0, "base_ml_per_h": 0.5}
        assert await requests_for(lambda: driver.write(sparse)) == 4  # three runs + read-back


# ----------------------------------------------------------------------------- refusals
async def test_readback_mismatch_names_channel_commanded_and_held(served_url: str) -> None:
    async with connected(served_url) as driver:
        with pytest.raises(ReadbackError, match=r"o2_pct commanded 90\.0, holds 81\.8"):
            await driver.write({"o2_pct": 90.0, "co2_pct": 20.0})  # the mixer scales to 100 %


async def test_out_of_range_is_refused_before_sending(served_url: str, chamber: ServedChamber
                                                      ) -> None:
    async with connected(served_url) as driver:
        before = await driver.diagnostics()
        with pytest.raises(OutOfRangeError, match="heater_pct"):
            await driver.write({"heater_pct": 150.0})
        with pytest.raises(ChannelError, match="input"):
            await driver.write({"temperature_c": 37.0})
        with pytest.raises(OutOfRangeError):
            await driver.write({"o2_pct": math.nan})
        assert await driver.diagnostics() == before


async def test_device_exception_reply_is_a_typed_device_error(served_url: str,
                                                              chamber: ServedChamber) -> None:
    def narrower_device(commands: object) -> dict[str, float]:
        raise OutOfRangeError("this unit's heater stops at 80 %")

    chamber.write_outputs = narrower_device  # type: ignore[method-assign]
    async with connected(served_url) as driver:
        with pytest.raises(ModbusDeviceError) as caught:
            await driver.write({"heater_pct": 90.0})
        assert isinstance(caught.value, DeviceError)
        assert (caught.value.function_code, caught.value.exception_code) == (16, 3)
        assert "03 ILLEGAL_DATA_VALUE" in str(caught.value)

        def broken() -> dict[str, float]:
            raise RuntimeError("actuator board unplugged")

        chamber.read_outputs = broken  # type: ignore[method-assign]
        with pytest.raises(ModbusDeviceError, match="SERVER_DEVICE_FAILURE"):
            await driver.read_outputs()
        assert (await driver.diagnostics())["device_errors"] == 2


async def test_not_connected() -> None:
    driver = make_driver("modbus-tcp://127.0.0.1:9")
    with pytest.raises(NotConnectedError):
        await driver.read()
    await driver.close()
    await driver.close()  # idempotent


# ----------------------------------------------------------------------------- link failures
@pytest.mark.parametrize("scheme", ["tcp", "rtu"])
async def test_server_killed_then_restarted_on_the_same_port(
        scheme: str, chamber: ServedChamber) -> None:
    now = Clock(0.0)
    async with running(chamber, LISTEN[scheme]) as url:
        driver = make_driver(url + "?timeout=1&reconnect_delay=0.5&reconnect_delay_max=2",
                             now=now)
        await driver.connect()
        await driver.read()
    # The server is gone (the context stopped it): fail fast, not after the timeout.
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionLostError):
            await driver.read()
        with pytest.raises(ConnectionLostError, match="next reconnect attempt"):
            await driver.write({"heater_pct": 1.0})  # within the backoff: no attempt at all
        assert time.monotonic() - started < 0.5
        diag = await driver.diagnostics()
        assert diag["link_up"] == 0.0 and diag["connect_failures"] == 0

        now.t = 0.6  # past the first delay, still nobody listening: one failed attempt
        with pytest.raises(ConnectionLostError):
            await driver.read()
        assert (await driver.diagnostics())["connect_failures"] == 1

        async with running(chamber, url):  # the same port again
            now.t = 0.7  # the backoff doubled to 1.0 s after the failed attempt
            with pytest.raises(ConnectionLostError, match="next reconnect attempt"):
                await driver.read()
            now.t = 1.7
            readings = await driver.read()
            assert readings["temperature_c"].quality is Quality.GOOD
            diag = await driver.diagnostics()
            assert diag["reconnects"] == 1 and diag["link_up"] == 1.0
    finally:
        await driver.close()


async def test_connect_to_nobody_raises_and_later_calls_back_off() -> None:
    now = Clock(0.0)
    port = await free_port()
    driver = make_driver(f"modbus-tcp://127.0.0.1:{port}?reconnect_delay=1", now=now)
    with pytest.raises(ConnectionLostError, match="cannot connect"):
        await driver.connect()
    with pytest.raises(ConnectionLostError, match="next reconnect attempt in 1 s"):
        await driver.read()
    await driver.close()


async def free_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


def _map_version_reply(request: bytes, rtu: bool, map_version: int) -> bytes:
    """An answer to the driver's connect-time read of the device area."""
    registers = [map_version] + [0] * (DEVICE_BLOCK.count - 1)
    pdu = bytes([4, 2 * len(registers)]) + struct.pack(f">{len(registers)}H", *registers)
    if rtu:
        body = request[:1] + pdu
        return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
    return request[:4] + (len(pdu) + 1).to_bytes(2, "big") + request[6:7] + pdu


@contextlib.asynccontextmanager
async def fake_device(reply: Callable[[bytes], bytes | None], scheme: str = "modbus-tcp://",
                      map_version: int = MAP_VERSION) -> AsyncIterator[int]:
    """A TCP peer that answers the driver's connect-time map-version read (with this map's
    version unless told otherwise), then each chunk it receives with `reply(chunk)` (None:
    silence)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        if data := await reader.read(512):
            writer.write(_map_version_reply(data, scheme.startswith("modbus-rtu"), map_version))
        while data := await reader.read(512):
            if (answer := reply(data)) is not None:
                writer.write(answer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()


@pytest.mark.parametrize("scheme", ["modbus-tcp://", "modbus-rtu://socket://"])
async def test_a_device_with_another_map_version_is_refused_at_connect(scheme: str) -> None:
    """Version 1 reserved (read 0, quality 0 = GOOD) what version 2 maps: never mix them."""
    async with fake_device(lambda data: None, scheme, map_version=1) as port:
        driver = make_driver(f"{scheme}127.0.0.1:{port}?timeout=0.2&retries=0")
        try:
            with pytest.raises(DeviceError, match=f"map version 1; this driver speaks "
                               f"{MAP_VERSION}"):
                await driver.connect()
        finally:
            await driver.close()


@pytest.mark.parametrize("scheme", ["modbus-tcp://", "modbus-rtu://socket://"])
async def test_silent_device_is_a_comm_timeout(scheme: str) -> None:
    async with fake_device(lambda data: None, scheme) as port:
        driver = make_driver(f"{scheme}127.0.0.1:{port}?timeout=0.2&retries=0")
        await driver.connect()
        try:
            started = time.monotonic()
            with pytest.raises(CommTimeoutError, match=r"no reply within 0\.2 s"):
                await driver.read()
            assert 0.19 <= time.monotonic() - started < 0.5
            assert (await driver.diagnostics())["timeouts"] == 1
        finally:
            await driver.close()


async def test_timeouts_are_wall_seconds_times_the_time_scale() -> None:
    async with fake_device(lambda data: None) as port:
        # 0.1 wall s at time_scale 3 = 0.3 s of loop time; this test's loop runs in real time.
        driver = make_driver(f"modbus-tcp://127.0.0.1:{port}?timeout=0.1&retries=0",
                             time_scale=3.0)
        await driver.connect()
        try:
            started = time.monotonic()
            with pytest.raises(CommTimeoutError):
                await driver.read()
            assert 0.29 <= time.monotonic() - started < 0.6
        finally:
            await driver.close()


def _bad_crc(data: bytes) -> bytes:
    reply = bytes([data[0], 0x04, 0x04, 0x42, 0x14, 0x00, 0x00])
    return reply + b"\x00\x00"


def _wrong_protocol_id(data: bytes) -> bytes:
    return data[:2] + b"\x00\x07\x00\x07" + data[6:8] + b"\x04\x42\x14\x00\x00"


@pytest.mark.parametrize(("scheme", "reply"), [("modbus-rtu://socket://", _bad_crc),
                                               ("modbus-tcp://", _wrong_protocol_id)])
async def test_garbled_reply_is_a_frame_error(scheme: str,
                                              reply: Callable[[bytes], bytes]) -> None:
    async with fake_device(reply, scheme) as port:
        driver = make_driver(f"{scheme}127.0.0.1:{port}?timeout=0.2&retries=1")
        await driver.connect()
        try:
            with pytest.raises(FrameError, match="garbled reply"):
                await driver.read_status()
            diagnostics = await driver.diagnostics()
            # The driver re-sent once itself (retries=1): both attempts came back garbled.
            assert (diagnostics["frames_bad"], diagnostics["retries"]) == (2, 1)
        finally:
            await driver.close()


# ----------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(("url", "message"), [
    ("modbus-tcp://127.0.0.1:5020?speed=9", "unknown parameter"),
    ("modbus-tcp://127.0.0.1:5020?unit=300", "unit='300' must be 0-255"),
    ("modbus-tcp://127.0.0.1:5020?timeout=-1", "timeout='-1' must be a positive"),
    ("modbus-tcp://127.0.0.1:99999", "expected HOST:PORT"),
    ("modbus-rtu://socket://127.0.0.1?baud=9600", "expected HOST:PORT"),
    ("modbus-rtu://ttyUSB0", "expected modbus-rtu:///dev/DEVICE"),
    ("modbus-tcp://127.0.0.1:5020?baud=9600", "unknown parameter"),
    ("modbus-rtu://socket://127.0.0.1:5020?unit=0", "unit='0' must be 1-247"),
    ("modbus-rtu:///dev/ttyUSB0?parity=X", "parity='X' must be N, E or O"),
    ("modbus-rtu:///dev/ttyUSB0?reconnect_delay=2&reconnect_delay_max=1", "reconnect_delay_max"),
    ("sim://", "modbus-tcp or modbus-rtu"),
])
def test_bad_urls_name_the_key(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make_driver(url)


def test_good_urls() -> None:
    s = make_driver("modbus-tcp://plc.local").settings
    assert (s.port, s.tcp_port, s.unit, s.timeout_s, s.retries) == ("plc.local", 502, 1, 0.5, 1)
    s = make_driver("modbus-rtu:///dev/ttyUSB0?baud=9600&parity=e&unit=7").settings
    assert (s.port, s.baud, s.parity, s.unit) == ("/dev/ttyUSB0", 9600, "E", 7)
    s = make_driver("modbus-rtu://socket://127.0.0.1:5021?baud=19200&unit=1").settings
    assert s.port == "socket://127.0.0.1:5021"


# ------------------------------------------------------------------- one master per device
async def test_one_master_a_second_session_is_refused_until_the_first_falls_silent(
        served_url: str, chamber: ServedChamber) -> None:
    chamber.comm_timeout_s = 0.5  # wall seconds: the lease lapses with the watchdog
    async with connected(served_url) as first, connected(served_url) as second:
        await first.heartbeat()  # takes the lease
        await first.write({"heater_pct": 20.0})
        with pytest.raises(DeviceHeldError, match="heartbeat refused"):
            await second.heartbeat()
        with pytest.raises(DeviceHeldError, match="refused"):
            await second.write({"heater_pct": 80.0})
        assert (await second.read_outputs())["heater_pct"] == 20.0  # looking is allowed
        late = make_driver(served_url + ("&" if "?" in served_url else "?") + "timeout=1")
        with pytest.raises(DeviceHeldError, match=f"{first.session_token:04X}"):
            await late.connect()  # told at connect, the link kept: it may read
        assert (await late.read())["temperature_c"].good
        await late.close()
        await async_wait_until(lambda: chamber.lease_holder == 0, 5, "the first lease to lapse")
        await second.heartbeat()  # the restarted-controller case: it takes over
        await second.write({"heater_pct": 80.0})
        assert chamber.read_outputs()["heater_pct"] == 80.0
        with pytest.raises(DeviceHeldError):
            await first.heartbeat()
        assert chamber.lease_holder == second.session_token


async def test_an_rtu_device_answers_its_own_unit_only(chamber: ServedChamber) -> None:
    async with running(chamber, "modbus-rtu://socket://127.0.0.1:0?unit=3") as url:
        assert url.endswith("?unit=3")
        async with connected(url) as right:
            assert (await right.read())["temperature_c"].good
        wrong = make_driver(url.replace("unit=3", "unit=9") + "&timeout=0.2&retries=0")
        with pytest.raises(CommTimeoutError):
            await wrong.connect()  # silence, never another unit's answer
        await wrong.close()
