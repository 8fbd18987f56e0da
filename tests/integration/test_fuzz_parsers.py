"""Property tests: everything that parses bytes from outside takes any input without crashing.

Derandomized and bounded, so the file runs in seconds and fails the same way every time:
- the serial FrameDecoder: any bytes in any chunking give only Frame/FrameFault results, the
  same ones whatever the chunking, with bounded memory; parse_request/parse_reply of any
  frame raise only ProtocolError;
- the Modbus RTU framer of the simulated device (pure: `_HuntingFramerRTU.decode`), the
  register decode helpers, and a real modbus-tcp server fed garbage over a socket, which still
  answers a good request afterwards;
- controller.operator.verify.verify: any bytes, any JSON, and signed bodies with arbitrary field
  values raise nothing but CommandRefused.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugins.waiting import wait_until
from pymodbus.pdu import DecodePDU

from controller.operator.bounds import CommandBounds, LoopBounds
from controller.operator.protocol import Command, CommandRefused, sign
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from drivers.codecs import modbus_map
from drivers.codecs.serial_protocol import (
    MAX_FRAME_BYTES,
    FaultKind,
    Frame,
    FrameDecoder,
    FrameFault,
    ProtocolError,
    encode_frame,
    parse_reply,
    parse_request,
)
from sim_hardware.device.modbus_server import _HuntingFramerRTU, running
from sim_hardware.device.served_chamber import ServedChamber

FUZZ = settings(derandomize=True, max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- serial framing
def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _summary(results: list[Frame | FrameFault]) -> list[object]:
    """What must not depend on the chunking: frames exactly, faults by kind."""
    return [r if isinstance(r, Frame) else r.kind for r in results]


# Bytes that hit the interesting paths: terminators, checksum marks, hex digits, noise.
_LINE_BYTES = st.lists(
    st.one_of(st.sampled_from([b"\r\n", b"\r", b"\n", b"*", b"*00", b"READ", b" ", b"\x00", b"$",
                               b"\xff", b"OK READ t=1:0:0"]),
              st.binary(max_size=40)),
    max_size=30,
).map(b"".join)


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), _LINE_BYTES),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=12),
       max_frame=st.sampled_from([MAX_FRAME_BYTES, 7, 8, 16]))
def test_frame_decoder_takes_any_bytes_in_any_chunking(data: bytes, cuts: list[int],
                                                       max_frame: int) -> None:
    whole = FrameDecoder(max_frame).feed(data)
    decoder = FrameDecoder(max_frame)
    pieces: list[Frame | FrameFault] = []
    for chunk in _chunks(data, cuts):
        out = decoder.feed(chunk)
        assert isinstance(out, list)
        pieces.extend(out)
        assert decoder.pending <= max_frame  # bounded memory, whatever arrives
    for result in pieces:
        assert isinstance(result, Frame | FrameFault)
        if isinstance(result, Frame):
            # only a line that really was in the input, with its checksum, becomes a frame
            assert encode_frame(result.payload) in data
            assert len(encode_frame(result.payload)) <= max_frame
        else:
            assert isinstance(result.kind, FaultKind) and len(result.raw) <= 64
            assert str(result.error())
    assert _summary(pieces) == _summary(whole)


@FUZZ
@given(payloads=st.lists(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E,
                                                        exclude_characters="*$"),
                                 min_size=1, max_size=60), max_size=5),
       noise=st.binary(max_size=80))
def test_good_frames_survive_noise_before_them(payloads: list[str], noise: bytes) -> None:
    """Garbage, with or without a line end, then frames: every frame comes out (the `$` that
    starts each frame resynchronises the decoder)."""
    decoder = FrameDecoder()
    decoder.feed(noise)
    out = decoder.feed(b"".join(encode_frame(p) for p in payloads))
    frames = [r.payload for r in out if isinstance(r, Frame)]
    assert frames[len(frames) - len(payloads):] == payloads


_WORDS = st.sampled_from(["READ", "SET", "OUTPUTS", "HB", "STATUS", "ID", "OK", "ERR", "=", ":",
                          "temperature_c", "heater_pct", "1", "-2.5e3", "nan", "inf", "x=1",
                          "t=1:0:0", "count=3", "status=1", "99", "a=b=c", "::"])
_PAYLOADS = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120),
    st.lists(_WORDS, max_size=8).map(" ".join),
)


@FUZZ
@given(payload=_PAYLOADS)
def test_payload_parsers_raise_only_protocol_errors(payload: str) -> None:
    for parse in (parse_request, parse_reply):
        with contextlib.suppress(ProtocolError):
            parse(payload)


# ----------------------------------------------------------------------------- Modbus RTU framer
def _crc(body: bytes) -> bytes:
    crc = 0xFFFF
    for byte in body:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


GOOD_RTU = bytes.fromhex("01 04 00 64 00 02 30 14")  # docs/modbus.md, read-temperature
GOOD_TCP = bytes.fromhex("00 01 00 00 00 06 01 04 00 64 00 02")


@pytest.fixture(scope="module")
def rtu_framer() -> _HuntingFramerRTU:
    return _HuntingFramerRTU(DecodePDU(True))


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    # plausible starts: a unit id and a real function code, then anything
    st.tuples(st.integers(0, 247), st.sampled_from([1, 2, 3, 4, 5, 6, 15, 16, 22, 23, 43]),
              st.binary(max_size=40)).map(lambda t: bytes(t[:2]) + t[2]),
))
def test_rtu_framer_takes_any_bytes(rtu_framer: _HuntingFramerRTU, data: bytes) -> None:
    used, dev_id, _tid, pdu = rtu_framer.decode(data)
    assert 0 <= used <= len(data)
    if used:  # a frame was found: it ends at `used` and its CRC checks
        start = used - len(pdu) - 3
        assert start >= 0 and data[start] == dev_id
        assert _crc(data[start:used - 2]) == data[used - 2:used]
    else:
        assert pdu == b""


@FUZZ
@given(noise=st.binary(max_size=120))
def test_rtu_framer_finds_a_good_frame_behind_noise(rtu_framer: _HuntingFramerRTU,
                                                    noise: bytes) -> None:
    used, _dev, _tid, pdu = rtu_framer.decode(noise + GOOD_RTU)
    assert used > 0 and pdu  # the good frame, or an earlier one whose CRC happens to check
    if used == len(noise) + len(GOOD_RTU):
        assert pdu == GOOD_RTU[1:-2]


_FIELDS = list(modbus_map.FIELDS)
_REGISTER = st.integers(0, 0xFFFF)


@FUZZ
@given(index=st.integers(0, len(_FIELDS) - 1), registers=st.lists(_REGISTER, max_size=4))
def test_register_decoders_take_any_registers(index: int, registers: list[int]) -> None:
    f = _FIELDS[index]
    try:
        value = modbus_map.decode(f, registers)
    except ValueError:
        assert len(registers) != f.count
    else:
        assert len(registers) == f.count and isinstance(value, int | float)
    hi, lo = [*registers, 0, 0][:2]
    assert isinstance(modbus_map.decode_float32(hi, lo), float)


@FUZZ
@given(data=st.data())
def test_block_decoder_takes_any_registers(data: st.DataObject) -> None:
    block = data.draw(st.sampled_from([modbus_map.DEVICE_BLOCK, *_blocks()]))
    count = data.draw(st.sampled_from([block.count, block.count, 0, block.count + 1]))
    registers = data.draw(st.lists(_REGISTER, min_size=count, max_size=count))
    fields = [f for f in _FIELDS if f.table is block.table
              and block.start <= f.address and f.end <= block.end]
    try:
        out = modbus_map.decode_block(block, registers, fields)
    except ValueError:
        assert count != block.count
    else:
        assert set(out) == {f.name for f in fields}


def _blocks() -> list[modbus_map.Block]:
    return [v for v in vars(modbus_map).values() if isinstance(v, modbus_map.Block)]


# ----------------------------------------------------------------------------- a real server
@pytest.fixture(scope="module")
def tcp_server() -> Iterator[int]:
    """A real modbus-tcp server on its own event loop thread; yields its port."""
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    stop = asyncio.Event()

    async def serve() -> None:
        chamber = ServedChamber({}, seed=9, now=lambda: 0.0, wall=time.monotonic)
        await chamber.start()
        async with running(chamber, "modbus-tcp://127.0.0.1:0") as url:
            ready.append(int(url.rsplit(":", 1)[1]))
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    wait_until(lambda: ready or not thread.is_alive(), 10.0, "the Modbus server to start")
    assert ready, "the Modbus server did not start"
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10.0)
    loop.close()


def _ask(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
        s.sendall(request)
        reply = b""
        while len(reply) < 9 or len(reply) < 6 + int.from_bytes(reply[4:6], "big"):
            chunk = s.recv(260)
            assert chunk, "the server closed the connection instead of answering"
            reply += chunk
        return reply


@settings(derandomize=True, max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(garbage=st.one_of(
    st.binary(min_size=1, max_size=300),
    # a plausible MBAP header, then anything: the server must not wait on it forever
    st.tuples(st.integers(0, 0xFFFF), st.integers(2, 254), st.binary(max_size=60)).map(
        lambda t: t[0].to_bytes(2, "big") + b"\x00\x00" + t[1].to_bytes(2, "big") + t[2]),
    st.binary(max_size=40).map(lambda b: GOOD_TCP + b),
))
def test_a_tcp_server_fed_garbage_still_answers(tcp_server: int, garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", tcp_server), timeout=2.0) as bad:
        bad.sendall(garbage)
        # the garbage connection stays open while a good client asks: it must not block it
        reply = _ask(tcp_server, GOOD_TCP)
        assert reply[:2] == GOOD_TCP[:2] and reply[7] == 0x04, reply.hex(" ")
        bad.shutdown(socket.SHUT_WR)
        bad.settimeout(0.5)
        try:
            while bad.recv(4096):
                pass
        except (TimeoutError, ConnectionResetError):
            pass
    assert _ask(tcp_server, GOOD_TCP)[7] == 0x04  # and after it closes


# ----------------------------------------------------------------------------- signed commands
NOW = 1_767_225_600.0
KEY = bytes(range(32))
BOUNDS = CommandBounds("hsc-1", {"temperature": LoopBounds(35.0, 39.0, 0.0, 100.0)}, 20.0,
                       frozenset({"high_temp"}))

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                     st.sampled_from(["temperature", "auto", "manual", "feed_ml_per_h",
                                      "high_temp", "hsc-1", "alice", "a1" * 8]))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def _check(raw: bytes) -> None:
    try:
        command = verify(raw, {"alice": KEY}, ReplayGuard(), NOW, BOUNDS)
    except CommandRefused as refusal:
        assert refusal.code and isinstance(refusal.message, str)
        json.dumps(refusal.claimed)  # what the audit trail will store is JSON-able
    else:
        assert isinstance(command, Command)


@FUZZ
@given(raw=st.one_of(st.binary(max_size=300),
                     _JSON.map(lambda v: json.dumps(v).encode()),
                     st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_verify_refuses_any_bytes_with_command_refused_only(raw: bytes) -> None:
    _check(raw)


_ACTIONS = st.sampled_from(["set_setpoint", "set_mode", "set_output", "bolus",
                            "pause_schedule", "resume_schedule", "ack_alarm", "shelve_alarm",
                            "unshelve_alarm", "remove_alarm_from_service",
                            "return_alarm_to_service", "reset_interlock", "explode"])


@FUZZ
@given(action=st.one_of(_ACTIONS, _SCALARS),
       params=st.one_of(st.dictionaries(
           st.sampled_from(["loop", "value", "mode", "volume_ml", "channel", "alarm",
                            "duration_s", "interlock", "x"]),
           _SCALARS, max_size=4), _JSON),
       operator=st.one_of(st.just("alice"), _SCALARS),
       reactor=st.one_of(st.just("hsc-1"), _SCALARS),
       reason=st.one_of(st.just("fuzz"), _SCALARS),
       ts=st.one_of(st.just(NOW), _SCALARS),
       nonce=st.one_of(st.just("0123456789abcdef"), _SCALARS),
       extra=st.dictionaries(st.text(max_size=6), _SCALARS, max_size=2))
def test_verify_of_signed_arbitrary_bodies_raises_only_command_refused(
        action: object, params: object, operator: object, reactor: object, reason: object,
        ts: object, nonce: object, extra: dict) -> None:
    """Signed with the right key, so the checks after the signature are reached too."""
    body = {**extra, "operator": operator, "reactor": reactor, "action": action,
            "params": params, "reason": reason, "ts": ts, "nonce": nonce}
    try:
        signed = sign(body, KEY)
    except (ValueError, OverflowError):  # not canonicalisable: verify refuses it unsigned
        signed = {**body, "sig": "0" * 64}
    try:
        raw = json.dumps(signed).encode()
    except (ValueError, OverflowError):
        return
    _check(raw)
