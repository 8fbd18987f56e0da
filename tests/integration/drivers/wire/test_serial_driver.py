"""SerialDriver against the real serial server (over socket:// and a pty) and against fake
devices that answer garbage, nothing, a bad checksum or an ERR: typed errors, retries, recovery
on the next call, and reconnection with backoff that never blocks the tick."""
from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest

from drivers import (
    ChannelError,
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DeviceHeldError,
    FrameError,
    NotConnectedError,
    OutOfRangeError,
    Quality,
    ReadbackError,
    parse_device_url,
)
from drivers.codecs.serial_protocol import (
    PROTOCOL_VERSION,
    ErrorCode,
    ErrorReply,
    Frame,
    FrameDecoder,
    HeartbeatReply,
    IdentityReply,
    InputValue,
    ReadReply,
    Request,
    SetReply,
    encode_reply,
    encode_request,
    parse_reply,
    parse_request,
)
from drivers.contract.datasheet import CHANNELS, INPUTS, OUTPUTS, Kind
from drivers.contract.registry import driver_factory
from drivers.contract.status import DeviceStatus
from drivers.wire.serial_driver import SerialDriver
from sim_hardware.device.emulate import DeviceClock, serve_chamber
from sim_hardware.device.serial_server import DeviceSession
from sim_hardware.device.served_chamber import ServedChamber

LOOPBACK = "serial://socket://127.0.0.1:0"


class ManualClock:
    """The controller's clock, moved by hand: backoff deadlines become exact."""

    def __init__(self, t_s: float = 0.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def make_chamber(**kwargs: float) -> ServedChamber:
    clock = DeviceClock(1.0)
    return ServedChamber({}, seed=1, now=clock.now, wall=DeviceClock.wall, **kwargs)


@contextlib.asynccontextmanager
async def serving(chamber: ServedChamber, listen: str) -> AsyncIterator[str]:
    """Serve `chamber` (through emulate's serve_chamber) and yield the URL to open; the server
    is always stopped on exit, test failure or not."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_chamber(chamber, listen, ready.set_result))
    try:
        await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # a start-up error surfaces here
        yield ready.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def driver_for(url: str, query: str = "", *, now: Callable[[], float] | None = None,
               time_scale: float = 1.0) -> SerialDriver:
    return SerialDriver(parse_device_url(url + query), now=now or DeviceClock(1.0).now, seed=0,
                        options={}, time_scale=time_scale)


@contextlib.asynccontextmanager
async def connected(driver: SerialDriver) -> AsyncIterator[SerialDriver]:
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture
async def chamber_url() -> AsyncIterator[tuple[ServedChamber, str]]:
    chamber = make_chamber()
    async with serving(chamber, LOOPBACK) as url:
        yield chamber, url


@pytest.fixture
async def driver(chamber_url: tuple[ServedChamber, str]) -> AsyncIterator[SerialDriver]:
    async with connected(driver_for(chamber_url[1])) as d:
        yield d


# ----------------------------------------------------------------------- a misbehaving device
Answer = bytes | Callable[[bytes, DeviceSession], bytes]


class FakeDevice:
    """A TCP device that misbehaves on cue. Each request line takes the next entry of `script`
    (bytes to send back, b"" for silence, or a function of the line and the real session);
    with the script empty it answers like the real device."""

    def __init__(self, session: DeviceSession) -> None:
        self.session = session
        self.script: deque[Answer] = deque()
        self.received: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                line = await reader.readuntil(b"\r\n")
                self.received.append(line)
                answer = self.script.popleft() if self.script else None
                if answer is None:
                    writer.write(self.session.feed(line))
                elif callable(answer):
                    writer.write(answer(line, self.session))
                elif answer:
                    writer.write(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def push(self, data: bytes) -> None:
        """Bytes nobody asked for, sent to every client."""
        for writer in self.writers:
            writer.write(data)


@contextlib.asynccontextmanager
async def fake_device() -> AsyncIterator[tuple[FakeDevice, str]]:
    chamber = make_chamber()
    await chamber.start()
    device = FakeDevice(DeviceSession(chamber))
    server = await asyncio.start_server(device.client, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield device, f"serial://socket://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in device.writers:
            writer.transport.abort()
        if device.tasks:
            await asyncio.wait(device.tasks, timeout=1.0)
        await server.wait_closed()


def elapsed_since(t0: float) -> float:
    return asyncio.get_running_loop().time() - t0


def loop_time() -> float:
    return asyncio.get_running_loop().time()


GARBAGE = b"$OK READ\x00\xff\xfe\x81 line noise \x13\r\n"
"""A reply cut short by line noise (noise between frames alone is skipped: no reply at all)."""
BAD_CHECKSUM = b"$OK READ temperature_c=37.0:0:0.0*00\r\n"


# ------------------------------------------------------------------------------ construction
async def test_the_serial_scheme_is_registered() -> None:
    assert driver_factory("serial") is SerialDriver


@pytest.mark.parametrize(("url", "message"), [
    ("serial://socket://127.0.0.1:1?speed=9", "unknown parameter"),
    ("serial://socket://127.0.0.1:1?timeout=0", "timeout"),
    ("serial://socket://127.0.0.1:1?timeout=abc", "timeout"),
    ("serial://socket://127.0.0.1:1?retries=-1", "retries"),
    ("serial://socket://127.0.0.1:1?baud=fast", "baud"),
    ("serial://", "expected"),
])
async def test_bad_urls_are_value_errors_naming_the_key(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        driver_for(url)


async def test_time_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        driver_for("serial://socket://127.0.0.1:1", time_scale=0)


async def test_nothing_works_before_connect_and_after_close(
        chamber_url: tuple[ServedChamber, str]) -> None:
    driver = driver_for(chamber_url[1])
    with pytest.raises(NotConnectedError):
        await driver.read()
    await driver.connect()
    await driver.heartbeat()
    await driver.close()
    await driver.close()  # idempotent
    with pytest.raises(NotConnectedError):
        await driver.write({"heater_pct": 1.0})


# ------------------------------------------------------------------ against the real device
async def test_read_gives_every_input_with_plausible_values(driver: SerialDriver) -> None:
    now = DeviceClock(1.0)  # a fresh clock: the driver's own started at the fixture
    readings = await driver.read()
    assert list(readings) == [c.name for c in INPUTS]
    assert driver.identity == IdentityReply("bioreactor-hil-chamber", PROTOCOL_VERSION,
                                            driver.identity.firmware)  # type: ignore[union-attr]
    for ch in INPUTS:
        r = readings[ch.name]
        assert r.unit == ch.unit
        if ch.kind is Kind.CONTINUOUS:
            assert r.quality is Quality.GOOD and ch.contains(r.value), (ch.name, r)
        else:  # no at-line sample is done a moment after start
            assert r.quality is Quality.BAD and math.isnan(r.value)
        assert r.timestamp_s <= now.now() + 5.0
    assert 36.0 < readings["temperature_c"].value < 38.5
    assert 6.8 < readings["ph"].value < 7.8
    assert 40.0 < readings["volume_ml"].value < 60.0


async def test_write_then_read_outputs_gives_the_exact_values(driver: SerialDriver) -> None:
    commands = {"heater_pct": 42.5, "feed_ml_per_h": 1.0 / 3.0, "o2_pct": 21.0,
                "co2_pct": 5.0, "base_ml_per_h": 0.0, "harvest_ml_per_h": 0.1,
                "heater_relay": 0.0}
    await driver.write(commands)
    held = await driver.read_outputs()
    assert held == commands  # exact: floats cross the wire as repr
    await driver.write({})  # nothing to write: no request at all


@pytest.mark.parametrize(("commands", "error"), [
    ({"heater_pct": 120.0}, OutOfRangeError),
    ({"heater_pct": math.nan}, OutOfRangeError),
    ({"ph": 7.0}, ChannelError),
    ({"stirrer_rpm": 100.0}, ChannelError),
])
async def test_a_bad_write_is_refused_before_anything_is_sent(
        commands: dict[str, float], error: type[Exception]) -> None:
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        sent_before = list(device.received)
        with pytest.raises(error):
            await driver.write(commands)
        assert device.received == sent_before
        assert (await driver.diagnostics())["requests"] == 1.0  # the ID at connect only


async def test_a_write_the_hardware_limits_is_a_readback_error(
        driver: SerialDriver, chamber_url: tuple[ServedChamber, str]) -> None:
    with pytest.raises(ReadbackError, match=r"o2_pct commanded 90\.0, device holds 8[0-9.]+"):
        await driver.write({"o2_pct": 90.0, "co2_pct": 20.0})  # the mixer scales to 100 %
    assert chamber_url[0].status & DeviceStatus.COMMAND_LIMITED


async def test_heartbeats_feed_the_chambers_watchdog() -> None:
    chamber = make_chamber(comm_timeout_s=0.15)
    async with serving(chamber, LOOPBACK) as url, connected(driver_for(url)) as driver:
        await driver.heartbeat()
        await driver.heartbeat()
        assert chamber.heartbeat_count == 2
        status = await driver.status()
        assert status.heartbeat_count == 2 and status.status == DeviceStatus.RUNNING
        await asyncio.sleep(0.3)  # silence past the comm timeout: the device goes safe
        assert (await driver.status()).status & DeviceStatus.COMM_LOSS_SAFE
        assert (await driver.read_outputs())["heater_pct"] == 0.0
        await driver.heartbeat()
        assert not (await driver.status()).status & DeviceStatus.COMM_LOSS_SAFE
        assert chamber.watchdog_trips == 1


async def test_two_controllers_read_at_once_but_only_the_lease_holder_controls(
        chamber_url: tuple[ServedChamber, str]) -> None:
    async with connected(driver_for(chamber_url[1])) as a, \
            connected(driver_for(chamber_url[1])) as b:
        ra, rb = await asyncio.gather(a.read(), b.read())
        assert set(ra) == set(rb) == {c.name for c in INPUTS}
        await a.heartbeat()  # takes the lease
        with pytest.raises(DeviceHeldError, match=f"held by controller session "
                                                  f"{a.session_token:04X}"):
            await b.heartbeat()
        with pytest.raises(DeviceHeldError):
            await b.write({"heater_pct": 90.0})
        await a.write({"heater_pct": 12.5})
        assert (await b.read_outputs())["heater_pct"] == 12.5  # b may still look
        assert chamber_url[0].heartbeat_count == 1


async def test_over_a_pty_like_a_usb_serial_adapter() -> None:
    chamber = make_chamber()
    async with serving(chamber, "serial://pty") as url:
        assert re.fullmatch(r"serial:///dev/pts/\d+", url), url
        async with connected(driver_for(url, "?baud=115200&timeout=1")) as driver:
            readings = await driver.read()
            assert readings["temperature_c"].good
            await driver.write({"heater_pct": 12.5})
            assert (await driver.read_outputs())["heater_pct"] == 12.5
            await driver.heartbeat()
            assert chamber.heartbeat_count == 1
        async with connected(driver_for(url)) as again:  # the path stays valid between clients
            assert (await again.read())["temperature_c"].good


# ------------------------------------------------------------------ against a misbehaving one
async def test_garbage_replies_are_frame_errors_and_the_next_call_recovers() -> None:
    async with fake_device() as (device, url), \
            connected(driver_for(url, "?timeout=0.5&retries=1")) as driver:
        device.script.extend([GARBAGE, GARBAGE])
        t0 = loop_time()
        with pytest.raises(FrameError, match="cut short"):
            await driver.read()
        assert elapsed_since(t0) < 0.4  # a bad line fails at once: no wait for the timeout
        assert (await driver.read())["temperature_c"].good
        diagnostics = await driver.diagnostics()
        assert diagnostics["frames_bad"] == 2.0 and diagnostics["retries"] == 1.0


async def test_a_bad_checksum_reply_is_a_frame_error() -> None:
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        device.script.extend([BAD_CHECKSUM, BAD_CHECKSUM])
        with pytest.raises(FrameError, match="checksum 00 but"):
            await driver.read()
        assert len(await driver.read()) == len(INPUTS)


async def test_one_garbled_reply_is_retried_without_the_caller_noticing() -> None:
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        device.script.append(GARBAGE)
        assert len(await driver.read()) == len(INPUTS)
        assert (await driver.diagnostics())["retries"] == 1.0


async def test_a_silent_device_times_out_after_the_retries_and_the_next_call_recovers() -> None:
    async with fake_device() as (device, url), \
            connected(driver_for(url, "?timeout=0.05&retries=2")) as driver:
        device.script.extend([b"", b"", b""])
        t0 = loop_time()
        with pytest.raises(CommTimeoutError, match="attempt 3 of 3"):
            await driver.read()
        assert 0.15 <= elapsed_since(t0) < 1.0
        assert len(device.received) == 1 + 3  # ID, then the READ sent three times
        assert len(await driver.read()) == len(INPUTS)
        assert (await driver.diagnostics())["timeouts"] == 3.0


async def test_timeouts_are_wall_seconds_times_the_speed_factor() -> None:
    async with fake_device() as (device, url), \
            connected(driver_for(url, "?timeout=0.25&retries=0", time_scale=4.0)) as driver:
        # 0.25 s, not less: the same timeout bounds opening the link, which a loaded CI
        # machine once took longer than 0.2 s of this loop's clock to do.
        device.script.append(b"")
        t0 = loop_time()
        with pytest.raises(CommTimeoutError):
            await driver.heartbeat()
        assert elapsed_since(t0) >= 1.0  # the loop's clock runs 4x the wall: 0.25 s -> 1.0


async def test_a_late_reply_to_another_request_is_skipped() -> None:
    late_hb = encode_reply(HeartbeatReply(7))
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        device.script.append(lambda line, session: late_hb + session.feed(line))
        assert len(await driver.read()) == len(INPUTS)
        assert (await driver.diagnostics())["replies_stale"] == 1.0


async def test_stale_bytes_are_dropped_before_a_request() -> None:
    old = encode_reply(ReadReply({c.name: InputValue(1.0, Quality.GOOD, 0.0) for c in INPUTS}))
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        device.push(old + b"OK REA")  # an unasked-for READ reply and half of another
        await asyncio.sleep(0.05)  # let it arrive in the driver's buffer
        readings = await driver.read()
        assert readings["temperature_c"].value != 1.0


@pytest.mark.parametrize(("code", "error"), [
    (ErrorCode.UNKNOWN_REQUEST, DeviceError),
    (ErrorCode.UNKNOWN_CHANNEL, ChannelError),
    (ErrorCode.OUT_OF_RANGE, OutOfRangeError),
    (ErrorCode.NOT_WRITABLE, ChannelError),
    (ErrorCode.BAD_CHECKSUM, FrameError),
    (ErrorCode.MALFORMED, DeviceError),
    (ErrorCode.DEVICE_FAULT, DeviceError),
])
async def test_err_replies_raise_typed_errors(code: ErrorCode, error: type[Exception]) -> None:
    err = encode_reply(ErrorReply(code, "refused by the device"))
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        resent = code is ErrorCode.BAD_CHECKSUM  # our frame arrived garbled: worth a resend
        device.script.extend([err] * (1 + resent))
        with pytest.raises(error, match=rf"ERR {int(code)} \(\w+\): refused by the device"):
            await driver.write({"heater_pct": 10.0})
        assert len(device.received) == 1 + 1 + resent
        await driver.write({"heater_pct": 10.0})  # and the link is still fine


async def test_ages_become_timestamps_on_the_controllers_clock() -> None:
    reply = ReadReply({c.name: InputValue(1.0, Quality.GOOD, 100.0 if c.kind is Kind.SAMPLED
                                          else -0.001) for c in INPUTS})
    clock = ManualClock(1000.0)
    async with fake_device() as (device, url), connected(driver_for(url, now=clock)) as driver:
        device.script.append(encode_reply(reply))
        readings = await driver.read()
        assert readings["glucose_mm"].timestamp_s == 900.0
        assert readings["temperature_c"].timestamp_s == 1000.0  # a negative age reads as 0


async def test_a_reply_lacking_a_channel_is_a_device_error() -> None:
    partial = ReadReply({c.name: InputValue(1.0, Quality.GOOD, 0.0) for c in INPUTS[:-1]})
    async with fake_device() as (device, url), connected(driver_for(url)) as driver:
        device.script.append(encode_reply(partial))
        with pytest.raises(DeviceError, match=INPUTS[-1].name):
            await driver.read()


async def test_a_device_speaking_another_protocol_version_is_refused() -> None:
    async with fake_device() as (device, url):
        device.script.append(encode_reply(IdentityReply("older-chamber", 1, "0.1.0")))
        driver = driver_for(url)
        with pytest.raises(DeviceError, match="protocol 1"):
            await driver.connect()
        await driver.close()


async def test_a_silent_device_fails_connect_with_a_timeout() -> None:
    async with fake_device() as (device, url):
        device.script.extend([b"", b""])
        driver = driver_for(url, "?timeout=0.05")
        with pytest.raises(CommTimeoutError):
            await driver.connect()
        await driver.close()


# ----------------------------------------------------------------- losing and finding the link
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_stopped_server_fails_fast_and_a_restarted_one_is_found_after_backoff() -> None:
    chamber = make_chamber()
    clock = ManualClock()
    async with serving(chamber, LOOPBACK) as url:
        driver = driver_for(url, "?timeout=2", now=clock)  # a timeout long enough to notice
        await driver.connect()
    try:
        t0 = loop_time()
        with pytest.raises(ConnectionLostError):
            await driver.read()
        with pytest.raises(ConnectionLostError, match=r"next reconnect attempt in 0\.1 s"):
            await driver.read()
        assert elapsed_since(t0) < 0.5  # no waiting: the tick goes on
        assert (await driver.diagnostics())["link_up"] == 0.0

        port = urlsplit(url.removeprefix("serial://")).port
        async with serving(chamber, f"serial://socket://127.0.0.1:{port}"):
            with pytest.raises(ConnectionLostError, match="next reconnect attempt"):
                await driver.read()  # the device is back, but the backoff has not passed
            clock.t_s += 0.1
            assert len(await driver.read()) == len(INPUTS)
            await driver.heartbeat()
            diagnostics = await driver.diagnostics()
            assert diagnostics["reconnects"] == 1.0 and diagnostics["link_up"] == 1.0
    finally:
        await driver.close()


async def test_an_absent_device_is_retried_with_a_growing_backoff() -> None:
    clock = ManualClock()
    driver = driver_for(f"serial://socket://127.0.0.1:{free_port()}", now=clock)
    try:
        t0 = loop_time()
        with pytest.raises(ConnectionLostError, match="cannot open"):
            await driver.connect()
        with pytest.raises(ConnectionLostError, match=r"in 0\.1 s"):
            await driver.read()
        clock.t_s += 0.1
        with pytest.raises(ConnectionLostError, match="cannot open"):
            await driver.read()  # tried again, refused again
        with pytest.raises(ConnectionLostError, match=r"in 0\.2 s"):
            await driver.read()
        assert elapsed_since(t0) < 0.5
    finally:
        await driver.close()


async def test_diagnostics_are_float_counters_and_need_no_link() -> None:
    driver = driver_for("serial://socket://127.0.0.1:1")
    diagnostics = await driver.diagnostics()
    assert {"frames_bad", "timeouts", "reconnects"} <= set(diagnostics)
    assert all(isinstance(v, float) for v in diagnostics.values())


def test_every_output_can_be_written_over_the_wire() -> None:
    """The datasheet and the protocol agree: every output name is a valid SET channel."""
    values = {c.name: c.maximum for c in OUTPUTS}
    frame = encode_request(Request.set(values))
    assert parse_request(frame[1:-5].decode()).values == tuple(values.items())
    assert {c.name for c in CHANNELS} >= set(values)


async def test_a_technician_with_socat_talks_to_the_device_as_the_manual_says(
        chamber_url: tuple[ServedChamber, str]) -> None:
    """docs/serial-protocol.md, "Trying it by hand": lines typed with LF, socat adds the CR."""
    port = urlsplit(chamber_url[1].removeprefix("serial://")).port
    typed = b"$ID*0D\n$HB 1*1B\n$SET heater_pct 42.5*68\n$READ\n"
    socat = await asyncio.create_subprocess_exec(
        "socat", "-t1", "-", f"TCP:127.0.0.1:{port},crlf",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(socat.communicate(typed), 10)
    lines = out.decode("ascii").splitlines()
    assert len(lines) == 4, lines
    replies = []
    for line in lines:
        (frame,) = FrameDecoder().feed(line.encode() + b"\r\n")
        assert isinstance(frame, Frame), line
        replies.append(parse_reply(frame.payload))
    assert isinstance(replies[0], IdentityReply) and replies[1] == HeartbeatReply(1)
    assert isinstance(replies[2], SetReply) and replies[2].held["heater_pct"] == 42.5
    assert replies[3] == ErrorReply(ErrorCode.MALFORMED,
                                    "no checksum after the payload (its checksum would be 12)")


# ------------------------------------------------------------------- resynchronisation, fuzzed
_LINE_ENDS = (b"", b"\r\n", b"\n", b"\r", b"\n\r")


async def test_after_any_garbage_up_to_1_kb_the_next_good_frame_is_answered(
        chamber_url: tuple[ServedChamber, str]) -> None:
    """Seeded random garbage (any bytes, with or without a line end, often with `$` and text
    that look like frames) then one good frame, over a real socket line to the served device:
    every good frame is answered."""
    rng = random.Random(11)
    port = urlsplit(chamber_url[1].removeprefix("serial://")).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    decoder = FrameDecoder()
    try:
        for trial in range(200):
            size = rng.randrange(0, 1025)
            pieces = [rng.randbytes(size), b"$SET heater_pct 4", b"READ*12", b"$", b"*"]
            garbage = b"".join(rng.sample(pieces, rng.randrange(1, 4)))[:1024]
            writer.write(garbage + rng.choice(_LINE_ENDS) + b"$ID*0D\r\n")
            await writer.drain()

            async def identity() -> IdentityReply:
                while True:
                    for item in decoder.feed(await reader.read(4096)):
                        if isinstance(item, Frame):
                            reply = parse_reply(item.payload)
                            if isinstance(reply, IdentityReply):
                                return reply

            reply = await asyncio.wait_for(identity(), 5)
            assert reply.protocol == PROTOCOL_VERSION, trial
    finally:
        writer.close()
