"""The Modbus server from raw bytes: frames written by hand, sent with a plain socket.

No Modbus library on this side, so the server is checked against the standard, not against
pymodbus agreeing with itself. The example frames come from docs/modbus.md: the doc stays true.
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest
from plugins.configs import REPO

from drivers.codecs.modbus_map import encode_float32
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import parse_device_url
from sim_hardware.device.modbus_server import running
from sim_hardware.device.served_chamber import ServedChamber, WireReading

DOC = REPO / "docs" / "modbus.md"
SILENCE_S = 0.2
"""How long 'no reply' is waited for (the server answers loopback requests in about 1 ms)."""


# ----------------------------------------------------------------------------- the doc's frames
def doc_examples() -> dict[str, dict[str, bytes]]:
    """{example: {"TCP request": bytes, ...}} from the ```frames blocks of docs/modbus.md."""
    examples: dict[str, dict[str, bytes]] = {}
    for block in re.findall(r"```frames\n(.*?)```", DOC.read_text(), re.S):
        name = re.search(r"# example: (\S+)", block).group(1)  # type: ignore[union-attr]
        examples[name] = {
            f"{m[1]} {m[2]}": bytes.fromhex(m[3])
            for m in re.finditer(r"^(TCP|RTU) (request|reply)\s+([0-9A-F ]+?)\s*$", block, re.M)
        }
        assert len(examples[name]) == 4, f"{name}: expected TCP/RTU request/reply lines"
    return examples


EXAMPLES = doc_examples()


def crc16_modbus(data: bytes) -> bytes:
    """CRC-16/MODBUS, bit by bit (independent of pymodbus' table), low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


def tcp_adu(tid: int, pdu: bytes, unit: int = 1) -> bytes:
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + \
        bytes([unit]) + pdu


def rtu_frame(pdu: bytes, unit: int = 1) -> bytes:
    body = bytes([unit]) + pdu
    return body + crc16_modbus(body)


def test_doc_has_the_four_required_examples() -> None:
    assert {"read-temperature", "write-heater", "heartbeat",
            "exception-out-of-range"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_doc_frames_are_self_consistent(name: str) -> None:
    """RTU CRCs check, MBAP lengths match, and TCP and RTU carry the same PDU."""
    ex = EXAMPLES[name]
    for kind in ("request", "reply"):
        rtu, tcp = ex[f"RTU {kind}"], ex[f"TCP {kind}"]
        assert crc16_modbus(rtu[:-2]) == rtu[-2:], f"{name} RTU {kind}: bad CRC"
        assert int.from_bytes(tcp[4:6], "big") == len(tcp) - 6
        assert tcp[2:4] == b"\x00\x00"
        assert tcp[6:] == rtu[:-2], f"{name} {kind}: TCP and RTU PDUs differ"


# ----------------------------------------------------------------------------- the device
class PinnedChamber(ServedChamber):
    """The real chamber, with temperature pinned to 37.0 so the doc's read example is exact,
    on a device clock that stands still unless a test moves it."""

    def __init__(self) -> None:
        self.clock_s = 0.0
        super().__init__({}, seed=7, now=lambda: self.clock_s, wall=time.monotonic)

    def read_inputs(self) -> dict[str, WireReading]:
        inputs = super().read_inputs()
        inputs["temperature_c"] = WireReading(37.0, 0, 0.0)
        return inputs

    def trip_cutout(self) -> None:
        """Full heat, relay closed, five device minutes: the cut-out trips and the chamber is
        still well above its re-arm temperature (the clock then stands still again)."""
        self.write_outputs({"heater_pct": 100.0, "heater_relay": 1.0})
        self.clock_s += 300.0
        assert self.status & DeviceStatus.HEATER_CUTOUT


@pytest.fixture
async def chamber() -> PinnedChamber:
    c = PinnedChamber()
    await c.start()
    return c


@pytest.fixture
async def tcp_port(chamber: PinnedChamber) -> AsyncIterator[int]:
    async with running(chamber, "modbus-tcp://127.0.0.1:0") as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture
async def rtu_port(chamber: PinnedChamber) -> AsyncIterator[int]:
    async with running(chamber, "modbus-rtu://socket://127.0.0.1:0") as url:
        yield int(parse_device_url(url).location.rsplit(":", 1)[1])


class Link:
    """A raw byte pipe to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Link:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, n: int, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(n), timeout)

    async def silent(self, timeout: float = SILENCE_S) -> bool:
        """True if nothing arrives (no byte, no close) within `timeout`."""
        try:
            await asyncio.wait_for(self.reader.read(1), timeout)
        except TimeoutError:
            return True
        return False

    async def tcp_exchange(self, adu: bytes) -> bytes:
        await self.send(adu)
        head = await self.recv(6)
        return head + await self.recv(int.from_bytes(head[4:6], "big"))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def tcp(tcp_port: int) -> AsyncIterator[Link]:
    link = await Link.open(tcp_port)
    try:
        yield link
    finally:
        await link.close()


@pytest.fixture
async def rtu(rtu_port: int) -> AsyncIterator[Link]:
    link = await Link.open(rtu_port)
    try:
        yield link
    finally:
        await link.close()


# ----------------------------------------------------------------------------- the doc, live
HOT_EXAMPLES = {"exception-rearm-refused"}
"""Examples the doc shows on a chamber whose cut-out has tripped and that is still hot."""


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_doc_example_over_tcp(name: str, tcp: Link, chamber: PinnedChamber) -> None:
    ex = EXAMPLES[name]
    if name in HOT_EXAMPLES:
        chamber.trip_cutout()
    assert await tcp.tcp_exchange(ex["TCP request"]) == ex["TCP reply"]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_doc_example_over_rtu(name: str, rtu: Link, chamber: PinnedChamber) -> None:
    ex = EXAMPLES[name]
    if name in HOT_EXAMPLES:
        chamber.trip_cutout()
    await rtu.send(ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]
    assert await rtu.silent(0.05)  # and nothing more


async def test_doc_writes_reach_the_chamber(tcp: Link, chamber: PinnedChamber) -> None:
    before = chamber.read_outputs()
    await tcp.tcp_exchange(EXAMPLES["exception-out-of-range"]["TCP request"])
    await tcp.tcp_exchange(EXAMPLES["exception-half-float"]["TCP request"])
    assert chamber.read_outputs() == before  # refused writes change nothing
    await tcp.tcp_exchange(EXAMPLES["write-heater"]["TCP request"])
    assert chamber.read_outputs()["heater_pct"] == 40.0
    count = chamber.heartbeat_count
    await tcp.tcp_exchange(EXAMPLES["heartbeat"]["TCP request"])
    assert chamber.heartbeat_count == count + 1
    # the heartbeat register reads the count, the setpoint reads what the chamber holds
    reply = await tcp.tcp_exchange(tcp_adu(9, bytes.fromhex("03 0000 0001")))
    assert reply[9:] == (count + 1).to_bytes(2, "big")
    reply = await tcp.tcp_exchange(tcp_adu(10, bytes.fromhex("03 0064 0002")))
    assert reply[9:] == bytes.fromhex("42 20 00 00")


# ----------------------------------------------------------------------------- exceptions
@pytest.mark.parametrize(("pdu", "reply"), [
    ("04 0032 0002", "84 02"),        # FC4 in the gap between device and sensor areas
    ("04 00EF 0002", "84 02"),        # FC4 past the end of the sensor area
    ("03 008C 0002", "83 02"),        # FC3 in the gap after the actuator area
    ("10 0065 0002 04 4220 0000", "90 02"),  # FC16 straddling two setpoints
    ("10 0064 0001 02 4220", "90 02"),       # FC16 of half a float
    ("10 0002 0002 04 4120 0000", "90 02"),  # comm timeout is read-only
    ("10 0072 0002 04 4120 0000", "90 02"),  # reserved actuator slot
    ("06 0004 0001", "86 02"),        # reserved holding register
    ("06 0001 0001", "86 03"),        # cut-out reset with a value other than 0x5253
    ("10 0064 0002 04 7FC0 0000", "90 03"),  # NaN setpoint
    ("10 0068 0002 04 C000 0000", "90 03"),  # negative harvest rate
    ("04 0064 0000", "84 03"),        # count 0
    ("04 0064 007E", "84 03"),        # count 126 > 125
    ("10 0064 0002 03 4220 00", "90 03"),    # byte count disagrees with the register count
    ("16 0064 FFFF 0000", "96 02"),   # FC22 mask write of half a float
    ("01 0000 0001", "81 01"),        # coils: the chamber has none
    ("05 0000 FF00", "85 01"),
])
async def test_exception_replies(pdu: str, reply: str, tcp: Link, chamber: PinnedChamber) -> None:
    before = chamber.read_outputs()
    got = await tcp.tcp_exchange(tcp_adu(0x1234, bytes.fromhex(pdu)))
    assert got == tcp_adu(0x1234, bytes.fromhex(reply))
    assert chamber.read_outputs() == before


async def test_exceptions_are_counted(tcp: Link) -> None:
    await tcp.tcp_exchange(tcp_adu(1, bytes.fromhex("04 0032 0002")))
    reply = await tcp.tcp_exchange(tcp_adu(2, bytes.fromhex("04 0000 000A")))
    regs = [int.from_bytes(reply[9 + 2 * i:11 + 2 * i], "big") for i in range(10)]
    assert regs[0] == 4                       # map version
    assert regs[1] & 0x0001                   # RUNNING
    assert (regs[6] << 16 | regs[7]) == 2     # requests, this one included
    assert (regs[8] << 16 | regs[9]) == 1     # exception replies


async def test_multi_setpoint_write_is_all_or_nothing(tcp: Link, chamber: PinnedChamber) -> None:
    before = chamber.read_outputs()
    good, bad = encode_float32(30.0), encode_float32(150.0)
    data = b"".join(r.to_bytes(2, "big") for r in (*good, *bad))
    got = await tcp.tcp_exchange(tcp_adu(3, bytes.fromhex("10 0064 0004 08") + data))
    assert got == tcp_adu(3, bytes.fromhex("90 03"))
    assert chamber.read_outputs() == before


async def test_unit_id_is_echoed(tcp: Link) -> None:
    got = await tcp.tcp_exchange(tcp_adu(4, bytes.fromhex("04 0064 0002"), unit=17))
    assert got == tcp_adu(4, bytes.fromhex("04 04 4214 0000"), unit=17)


# ----------------------------------------------------------------------------- broken frames
async def test_rtu_bad_crc_gets_no_reply(rtu: Link) -> None:
    frame = bytearray(EXAMPLES["read-temperature"]["RTU request"])
    frame[-1] ^= 0xFF
    await rtu.send(bytes(frame))
    assert await rtu.silent()
    ex = EXAMPLES["read-temperature"]  # and the line still works
    await rtu.send(ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]


async def test_rtu_truncated_frame_is_dropped_after_silence(rtu: Link) -> None:
    ex = EXAMPLES["write-heater"]
    await rtu.send(ex["RTU request"][:7])
    assert await rtu.silent()  # waits for the rest, which never comes
    await rtu.send(ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]


async def test_rtu_garbage_then_a_good_frame(rtu: Link) -> None:
    ex = EXAMPLES["read-temperature"]
    await rtu.send(bytes.fromhex("FF 00 13 37 C0 DE"))
    assert await rtu.silent(0.1)
    await rtu.send(ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]


@pytest.mark.parametrize("garbage", ["FF 00 13", "55 AA 55 AA", "01 90", "01 04 00"])
async def test_rtu_garbage_glued_to_a_good_frame(garbage: str, rtu: Link) -> None:
    ex = EXAMPLES["heartbeat"]
    await rtu.send(bytes.fromhex(garbage) + ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]
    assert await rtu.silent(0.05)


async def test_rtu_bad_crc_frame_glued_to_a_good_frame(rtu: Link) -> None:
    ex = EXAMPLES["read-temperature"]
    bad = bytearray(EXAMPLES["write-heater"]["RTU request"])
    bad[-2] ^= 0x01
    await rtu.send(bytes(bad) + ex["RTU request"])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]
    assert await rtu.silent(0.05)  # the bad write was neither answered nor applied


async def test_rtu_unknown_function_gets_no_reply(rtu: Link) -> None:
    """RTU has no length field: a frame of an unknown function cannot even be delimited."""
    await rtu.send(rtu_frame(bytes.fromhex("41 0000")))
    assert await rtu.silent()


async def test_rtu_frame_split_across_writes_is_reassembled(rtu: Link) -> None:
    ex = EXAMPLES["heartbeat"]
    await rtu.send(ex["RTU request"][:3])
    await asyncio.sleep(0.005)  # the gap between the two writes is the scenario
    await rtu.send(ex["RTU request"][3:])
    assert await rtu.recv(len(ex["RTU reply"])) == ex["RTU reply"]


async def test_tcp_garbage_then_a_good_frame(tcp: Link) -> None:
    ex = EXAMPLES["read-temperature"]
    await tcp.send(bytes.fromhex("DE AD BE EF 13 37 00 01 02 03"))  # protocol id 0xBEEF
    assert await tcp.silent()
    assert await tcp.tcp_exchange(ex["TCP request"]) == ex["TCP reply"]


async def test_tcp_truncated_adu_waits_for_the_rest(tcp: Link) -> None:
    ex = EXAMPLES["write-heater"]
    await tcp.send(ex["TCP request"][:9])
    assert await tcp.silent()
    await tcp.send(ex["TCP request"][9:])
    assert await tcp.recv(len(ex["TCP reply"])) == ex["TCP reply"]


async def test_tcp_wrong_protocol_id_is_not_answered(tcp: Link) -> None:
    adu = bytearray(EXAMPLES["heartbeat"]["TCP request"])
    adu[3] = 1
    await tcp.send(bytes(adu))
    assert await tcp.silent()


async def test_tcp_unknown_function_is_illegal_function(tcp: Link) -> None:
    got = await tcp.tcp_exchange(tcp_adu(6, bytes.fromhex("41 0000")))
    assert got == tcp_adu(6, bytes.fromhex("C1 01"))


async def test_a_rearm_is_refused_while_hot_and_accepted_once_cool(
        tcp: Link, chamber: PinnedChamber) -> None:
    rearm = EXAMPLES["rearm-cutout"]["TCP request"]
    chamber.trip_cutout()
    refused = await tcp.tcp_exchange(rearm)
    assert refused[7:] == bytes.fromhex("86 01")
    assert chamber.status & DeviceStatus.HEATER_CUTOUT
    chamber.write_outputs({"heater_pct": 0.0})
    chamber.clock_s += 1800.0
    assert await tcp.tcp_exchange(rearm) == EXAMPLES["rearm-cutout"]["TCP reply"]
    assert not chamber.status & DeviceStatus.HEATER_CUTOUT
    reply = await tcp.tcp_exchange(tcp_adu(7, bytes.fromhex("03 0001 0001")))
    assert reply[9:] == b"\x00\x00"  # a command register reads 0
