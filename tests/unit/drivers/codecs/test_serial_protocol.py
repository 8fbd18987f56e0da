"""The serial line protocol from its byte frames, as the manual (docs/serial-protocol.md) gives
them: framing, checksum, resynchronisation, every request and ERR reply, and the manual's own
examples replayed against the emulated device, so the page stays true."""
from __future__ import annotations

import asyncio
import contextlib
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.configs import REPO

from drivers import CHANNELS, ChannelError, DeviceError, FrameError, OutOfRangeError, Quality
from drivers.codecs.serial_protocol import (
    ERRORS,
    MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    REQUESTS,
    DeviceReplyError,
    ErrorCode,
    ErrorReply,
    FaultKind,
    Frame,
    FrameDecoder,
    FrameFault,
    HeartbeatReply,
    IdentityReply,
    InputValue,
    OutputsReply,
    ProtocolError,
    ReadReply,
    Request,
    RequestKind,
    ResetCutoutReply,
    SetReply,
    StatusReply,
    checksum,
    encode_frame,
    encode_reply,
    encode_request,
    error_for_reply,
    format_number,
    main,
    parse_number,
    parse_reply,
    parse_request,
)
from drivers.contract.datasheet import INPUTS
from drivers.contract.status import DeviceStatus
from sim_hardware.device.serial_server import DeviceSession
from sim_hardware.device.served_chamber import ServedChamber

DOC = REPO / "docs" / "serial-protocol.md"


def decode(data: bytes) -> list[Frame | FrameFault]:
    return FrameDecoder().feed(data)


def only(data: bytes) -> Frame | FrameFault:
    items = decode(data)
    assert len(items) == 1, items
    return items[0]


# ----------------------------------------------------------------------- frames of the manual
@pytest.mark.parametrize(("request_", "frame"), [
    (Request(RequestKind.READ), b"$READ*12\r\n"),
    (Request(RequestKind.OUTPUTS), b"$OUTPUTS*4C\r\n"),
    (Request.heartbeat(0x1A2B), b"$HB 1A2B*2A\r\n"),
    (Request(RequestKind.STATUS), b"$STATUS*14\r\n"),
    (Request(RequestKind.ID), b"$ID*0D\r\n"),
    (Request.set({"heater_pct": 42.5}), b"$SET heater_pct 42.5*68\r\n"),
    (Request.set({"heater_pct": 42.5, "feed_ml_per_h": 1.25}),
     b"$SET heater_pct 42.5 feed_ml_per_h 1.25*23\r\n"),
])
def test_requests_encode_to_the_manuals_bytes_and_back(request_: Request, frame: bytes) -> None:
    assert encode_request(request_) == frame
    decoded = only(frame)
    assert isinstance(decoded, Frame)
    assert parse_request(decoded.payload) == request_


def test_the_checksum_is_the_xor_of_the_payload_as_worked_in_the_manual() -> None:
    assert 0x52 ^ 0x45 == 0x17 and 0x17 ^ 0x41 == 0x56 and 0x56 ^ 0x44 == 0x12
    assert checksum(b"READ") == 0x12
    assert checksum(b"") == 0
    assert encode_frame("READ") == bytes.fromhex("24 52 45 41 44 2A 31 32 0D 0A")


def test_a_set_reply_from_the_manual_parses_to_exact_values() -> None:
    frame = (b"$OK SET heater_pct=42.5 o2_pct=5.2 co2_pct=5.0 feed_ml_per_h=1.25 "
             b"harvest_ml_per_h=0.0 base_ml_per_h=0.0*1C\r\n")
    reply = parse_reply(only(frame).payload)  # type: ignore[union-attr]
    assert reply == SetReply({"heater_pct": 42.5, "o2_pct": 5.2, "co2_pct": 5.0,
                              "feed_ml_per_h": 1.25, "harvest_ml_per_h": 0.0,
                              "base_ml_per_h": 0.0})
    assert encode_reply(reply) == frame


def test_a_read_reply_carries_value_quality_and_age() -> None:
    frame = b"$OK READ temperature_c=37.012:0:0.0 glucose_mm=nan:3:8400.0*1A\r\n"
    assert encode_frame(frame[1:-5].decode()) == frame
    reply = parse_reply(only(frame).payload)  # type: ignore[union-attr]
    assert isinstance(reply, ReadReply)
    assert reply.inputs["temperature_c"] == InputValue(37.012, Quality.GOOD, 0.0)
    glucose = reply.inputs["glucose_mm"]
    assert math.isnan(glucose.value) and glucose.quality is Quality.BAD
    assert glucose.age_s == 8400.0


@pytest.mark.parametrize(("frame", "reply"), [
    (b"$OK HB count=1*61\r\n", HeartbeatReply(1)),
    (b"$OK ID model=bioreactor-hil-chamber protocol=4 firmware=0.1.0*5E\r\n",
     IdentityReply("bioreactor-hil-chamber", 4, "0.1.0")),
    (b"$OK STATUS status=1 running=1 comm_loss_safe=0 command_limited=0 heater_cutout=0 "
     b"heartbeats=1 watchdog_trips=0 now_s=30000.0*36\r\n",
     StatusReply(DeviceStatus.RUNNING, 1, 0, 30000.0)),
    (b"$OK RESET_CUTOUT was_tripped=1*5A\r\n", ResetCutoutReply(True)),
    (b"$ERR 3 heater_pct=120.0 outside its range [0.0, 100.0] %*3B\r\n",
     ErrorReply(ErrorCode.OUT_OF_RANGE, "heater_pct=120.0 outside its range [0.0, 100.0] %")),
    (b"$ERR 5 checksum 1F but the payload's is 12*33\r\n",
     ErrorReply(ErrorCode.BAD_CHECKSUM, "checksum 1F but the payload's is 12")),
    (b"$ERR 6 SET needs name value pairs*5D\r\n",
     ErrorReply(ErrorCode.MALFORMED, "SET needs name value pairs")),
])
def test_replies_from_the_manual(frame: bytes, reply: object) -> None:
    assert parse_reply(only(frame).payload) == reply  # type: ignore[union-attr]
    assert encode_reply(reply) == frame  # type: ignore[arg-type]


def test_status_flags_are_spelled_out_and_unknown_fields_ignored() -> None:
    text = encode_reply(StatusReply(DeviceStatus.RUNNING | DeviceStatus.COMM_LOSS_SAFE, 7, 2,
                                    1.5)).decode()
    assert ("status=3 running=1 comm_loss_safe=1 command_limited=0 heater_cutout=0 "
            "heartbeats=7") in text
    newer = "OK STATUS status=5 heartbeats=1 watchdog_trips=0 now_s=2.0 fan_rpm=1200"
    assert parse_reply(newer) == StatusReply(
        DeviceStatus.RUNNING | DeviceStatus.COMMAND_LIMITED, 1, 0, 2.0)


# ------------------------------------------------------------------------------- bad frames
@pytest.mark.parametrize(("data", "kind"), [
    (b"$READ*1F\r\n", FaultKind.BAD_CHECKSUM),
    (b"$READ*13\r\n", FaultKind.BAD_CHECKSUM),          # one bit flipped in the checksum
    (b"$REAE*12\r\n", FaultKind.BAD_CHECKSUM),          # one bit flipped in the payload
    (b"$READ\r\n", FaultKind.MALFORMED),                # no checksum
    (b"$READ*1\r\n", FaultKind.MALFORMED),              # truncated checksum
    (b"$READ*\r\n", FaultKind.MALFORMED),
    (b"$READ*1G\r\n", FaultKind.MALFORMED),             # not hex
    (b"$RE*AD*12\r\n", FaultKind.MALFORMED),            # a second checksum mark
])
def test_bad_frames_are_reported_once_each(data: bytes, kind: FaultKind) -> None:
    fault = only(data)
    assert isinstance(fault, FrameFault) and fault.kind is kind
    assert fault.raw == data[1:-2][:64]
    assert isinstance(fault.error(), FrameError)


def test_a_line_of_text_without_the_start_marker_is_malformed_so_a_person_is_told() -> None:
    fault = only(b"READ*12\r\n")
    assert isinstance(fault, FrameFault) and fault.kind is FaultKind.MALFORMED
    assert "0x24" in fault.detail and not fault.garbage


@pytest.mark.parametrize("data", [b"$READ\xe9*12\r\n", b"$READ\t*12\r\n", b"$READ*12\n"])
def test_a_frame_cut_by_a_byte_no_frame_holds_is_garbage(data: bytes) -> None:
    fault = only(data)
    assert isinstance(fault, FrameFault) and fault.kind is FaultKind.CUT and fault.garbage


def test_noise_between_frames_is_dropped_silently() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\xff\xfe\r\n\xff") == []
    assert decoder.noise_bytes == 6


def test_lower_case_checksum_digits_are_accepted() -> None:
    assert only(b"$OUTPUTS*4c\r\n") == Frame("OUTPUTS")


def test_a_truncated_frame_waits_for_its_terminator() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"$SET heater_pct 42.5*6") == []
    assert decoder.pending == len(b"$SET heater_pct 42.5*6")
    assert decoder.feed(b"8\r") == []
    assert decoder.feed(b"\n") == [Frame("SET heater_pct 42.5")]
    assert decoder.pending == 0


def test_a_frame_cut_short_by_a_new_line_is_a_fault_and_the_next_frame_decodes() -> None:
    items = decode(b"$SET heater_pct 4\r\n$HB 1*1B\r\n")
    assert isinstance(items[0], FrameFault) and items[0].kind is FaultKind.MALFORMED
    assert items[1] == Frame("HB 1")


def test_garbage_then_a_good_frame_resynchronises() -> None:
    assert decode(b"\x00\xffjunk\x13\r\n$READ*12\r\n") == [Frame("READ")]


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00", b"junk", b"$SET heater_pct 4",
                                     b"$READ*12\n", b"\r", b"\n", b"$$$", b"*12\r"])
def test_garbage_glued_to_a_frame_never_costs_that_frame(garbage: bytes) -> None:
    items = decode(garbage + b"$READ*12\r\n$HB 1*1B\r\n")
    assert [i for i in items if isinstance(i, Frame)] == [Frame("READ"), Frame("HB 1")]


def test_a_frame_ended_by_lf_alone_does_not_take_the_next_one_with_it() -> None:
    items = decode(b"$READ*12\n$HB 1*1B\r\n")
    assert len(items) == 2 and isinstance(items[0], FrameFault)
    assert items[0].kind is FaultKind.CUT and items[1] == Frame("HB 1")


def test_empty_lines_are_ignored() -> None:
    assert decode(b"\r\n\r\n$HB 1*1B\r\n\r\n") == [Frame("HB 1")]


def test_the_longest_frame_is_accepted_and_one_byte_more_is_not() -> None:
    payload = "ID " + "x" * (MAX_FRAME_BYTES - 6 - 3)
    frame = encode_frame(payload)
    assert len(frame) == MAX_FRAME_BYTES
    assert only(frame) == Frame(payload)
    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(payload + "x")
    too_long = b"$" + payload.encode() + b"x*00\r\n"
    fault = only(too_long)
    assert isinstance(fault, FrameFault) and fault.kind is FaultKind.TOO_LONG


def test_a_runaway_frame_is_dropped_up_to_the_next_frame_in_bounded_memory() -> None:
    decoder = FrameDecoder()
    items = decoder.feed(b"$")
    for _ in range(100):  # 100 kB without a line end
        items += decoder.feed(b"n" * 1000)
        assert decoder.pending <= MAX_FRAME_BYTES
    items += decoder.feed(b"more noise\r\n$HB 1*1B\r\n")
    assert [i.kind for i in items if isinstance(i, FrameFault)] == [FaultKind.TOO_LONG]
    assert items[-1] == Frame("HB 1")


def test_a_stream_split_anywhere_decodes_the_same() -> None:
    stream = (b"$READ*12\r\n\xff\r\n$SET heater_pct 42.5 feed_ml_per_h 1.25*23\r\n"
              b"$READ*1F\r\n$OK HB count=1*61\r\nREAD\r\n$RE\nx$ID*0D\r\n")
    whole = decode(stream)
    decoder = FrameDecoder()
    bytewise = [item for i in range(len(stream)) for item in decoder.feed(stream[i:i + 1])]
    assert bytewise == whole
    assert [type(i) for i in whole] == [Frame, Frame, FrameFault, Frame, FrameFault,
                                        FrameFault, Frame]


def test_clear_drops_a_partial_line() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"$OK READ temperature_c=3")
    decoder.clear()
    assert decoder.feed(b"$HB 1*1B\r\n") == [Frame("HB 1")]


def test_encode_frame_refuses_what_no_receiver_would_accept() -> None:
    for payload in ("READ*", "caf\u00e9", "two\r\nlines", "tab\there", "$READ"):
        with pytest.raises(ValueError):
            encode_frame(payload)


# ------------------------------------------------------------------------ request contents
@pytest.mark.parametrize(("payload", "code"), [
    ("FEED", ErrorCode.UNKNOWN_REQUEST),
    ("OK HB count=1", ErrorCode.UNKNOWN_REQUEST),
    ("", ErrorCode.MALFORMED),
    ("READ now", ErrorCode.MALFORMED),
    ("SET", ErrorCode.MALFORMED),
    ("SET heater_pct", ErrorCode.MALFORMED),
    ("SET heater_pct 4_2", ErrorCode.MALFORMED),
    ("SET heater_pct 0x10", ErrorCode.MALFORMED),
    ("SET heater_pct 1e", ErrorCode.MALFORMED),
    ("SET heater_pct 42 heater_pct 43", ErrorCode.MALFORMED),
    ("SET Heater_pct 42", ErrorCode.MALFORMED),
])
def test_bad_requests_name_their_error_code(payload: str, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_request(payload)
    assert info.value.code is code


def test_request_words_are_case_insensitive_and_numbers_flexible() -> None:
    assert parse_request("read") == Request(RequestKind.READ)
    assert checksum(b"read") == checksum(b"READ")  # an even number of letters keeps it
    assert parse_request("set heater_pct 42  o2_pct 1e1") == Request(
        RequestKind.SET, (("heater_pct", 42.0), ("o2_pct", 10.0)))
    assert parse_request("SET heater_pct -.5").values == (("heater_pct", -0.5),)


@pytest.mark.parametrize("payload", [
    "OK", "NO READ", "OK FOO a=1", "OK READ temperature_c=37.0:0", "OK READ ph=7.0:9:0.0",
    "OK READ ph=7.0:x:0.0", "OK HB", "OK HB count=-1", "OK OUTPUTS heater_pct", "ERR",
    "ERR 99 what", "ERR x", "OK OUTPUTS a=1 a=2", "OK ID model=x protocol=1",
])
def test_bad_replies_are_frame_errors(payload: str) -> None:
    with pytest.raises(FrameError):
        parse_reply(payload)


# ------------------------------------------------------------------------------- ERR mapping
@pytest.mark.parametrize(("code", "exception"), [
    (ErrorCode.UNKNOWN_REQUEST, DeviceReplyError),
    (ErrorCode.UNKNOWN_CHANNEL, ChannelError),
    (ErrorCode.OUT_OF_RANGE, OutOfRangeError),
    (ErrorCode.NOT_WRITABLE, ChannelError),
    (ErrorCode.BAD_CHECKSUM, FrameError),
    (ErrorCode.MALFORMED, DeviceReplyError),
    (ErrorCode.DEVICE_FAULT, DeviceReplyError),
])
def test_every_err_code_maps_to_a_typed_error(code: ErrorCode, exception: type) -> None:
    error = error_for_reply(ErrorReply(code, "why"), "serial://x: SET")
    assert type(error) is exception
    assert f"ERR {int(code)}" in str(error) and "why" in str(error)
    if isinstance(error, DeviceReplyError):
        assert isinstance(error, DeviceError) and error.code is code


def test_error_messages_are_made_safe_for_the_wire() -> None:
    frame = encode_reply(ErrorReply(ErrorCode.DEVICE_FAULT, "bad *thing*\nhappened \u00b0C"))
    assert parse_reply(only(frame).payload) == ErrorReply(  # type: ignore[union-attr]
        ErrorCode.DEVICE_FAULT, "bad ?thing??happened ?C")
    huge = encode_reply(ErrorReply(ErrorCode.DEVICE_FAULT, "x" * 5000))
    assert len(huge) == MAX_FRAME_BYTES and huge.endswith(b"...*" + huge[-4:-2] + b"\r\n")
    assert isinstance(only(huge), Frame)


# ---------------------------------------------------------------------------------- numbers
@settings(derandomize=True, max_examples=300)
@given(st.floats(allow_nan=False))
def test_numbers_round_trip_exactly(value: float) -> None:
    assert parse_number(format_number(value)) == value
    assert math.copysign(1.0, parse_number(format_number(value))) == math.copysign(1.0, value)


def test_special_numbers() -> None:
    assert math.isnan(parse_number("nan"))
    assert parse_number("-inf") == -math.inf
    assert format_number(20000000) == "20000000.0"
    assert format_number(1e-05) == "1e-05"


_names = st.sampled_from([c.name for c in CHANNELS])


@settings(derandomize=True, max_examples=200)
@given(st.dictionaries(_names, st.tuples(st.floats(allow_nan=False), st.sampled_from(Quality),
                                         st.floats(min_value=0, allow_infinity=False)),
                       max_size=len(INPUTS)))
def test_read_replies_round_trip(fields: dict) -> None:
    reply = ReadReply({name: InputValue(*v) for name, v in fields.items()})
    frame = encode_reply(reply)
    assert len(frame) <= MAX_FRAME_BYTES
    assert parse_reply(only(frame).payload) == reply  # type: ignore[union-attr]


def test_the_longest_read_reply_fits_in_a_frame() -> None:
    worst = -1.2345678901234567e-300  # the longest repr a float has
    reply = ReadReply({c.name: InputValue(worst, Quality.COMM_ERROR, worst) for c in INPUTS})
    assert len(encode_reply(reply)) <= MAX_FRAME_BYTES * 0.6


# ------------------------------------------------------------------ the decoder never breaks
_chunks = st.lists(st.binary(max_size=80), max_size=30)


@settings(derandomize=True, max_examples=400)
@given(_chunks)
def test_arbitrary_bytes_never_crash_the_decoder(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame_bytes=40)
    for chunk in chunks:
        for item in decoder.feed(chunk):
            assert isinstance(item, (Frame, FrameFault))
            if isinstance(item, Frame):
                for parse in (parse_request, parse_reply):
                    # a payload may be refused, but only with a ProtocolError
                    with contextlib.suppress(ProtocolError):
                        parse(item.payload)
        assert decoder.pending <= 40 + 80


def _key(item: Frame | FrameFault) -> tuple:
    return (item.payload,) if isinstance(item, Frame) else (item.kind,)


@settings(derandomize=True, max_examples=400)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=300), max_size=20))
def test_how_the_stream_is_split_never_changes_what_is_decoded(data: bytes,
                                                               cuts: list[int]) -> None:
    whole = [_key(i) for i in FrameDecoder(max_frame_bytes=24).feed(data)]
    decoder = FrameDecoder(max_frame_bytes=24)
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        pieces.append(data[start:cut])
        start = cut
    pieces.append(data[start:])
    split = [_key(i) for piece in pieces for i in decoder.feed(piece)]
    assert split == whole


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=3000))
def test_any_garbage_then_a_good_frame_gives_the_frame(garbage: bytes) -> None:
    for line_end in (b"", b"\r\n", b"\n", b"\r"):
        items = FrameDecoder().feed(garbage + line_end + b"$READ*12\r\n")
        assert items[-1] == Frame("READ")


# --------------------------------------------------------- the manual stays true (the doc)
_FRAME_LINE = re.compile(r"^([<>]) (.*)$")
_PAUSE_LINE = re.compile(r"^\.\.\. (\d+) device seconds later")
PAUSE = "..."
"""doc_frames' direction for device time passing; its bytes are the seconds, as digits."""


def _unescape(text: str) -> bytes:
    out = bytearray()
    for token in re.split(r"(\\r|\\n|\\x[0-9A-Fa-f]{2})", text):
        if token == "\\r":
            out += b"\r"
        elif token == "\\n":
            out += b"\n"
        elif token.startswith("\\x"):
            out.append(int(token[2:], 16))
        else:
            out += token.encode("ascii")
    return bytes(out)


def doc_frames() -> list[tuple[str, bytes]]:
    """Every example frame of the manual, in order: (direction, bytes). The text form and the
    hex dump under it must agree. A line `... N device seconds later` is (PAUSE, b"N")."""
    frames: list[tuple[str, bytes]] = []

    def close(current: tuple[str, bytes] | None, hex_bytes: bytearray) -> None:
        if current is not None:
            assert bytes(hex_bytes) == current[1], (current, bytes(hex_bytes))
            frames.append(current)

    for block in re.findall(r"```frames\n(.*?)```", DOC.read_text(), flags=re.S):
        current: tuple[str, bytes] | None = None
        hex_bytes = bytearray()
        for line in block.splitlines():
            if match := _FRAME_LINE.match(line):
                close(current, hex_bytes)
                current, hex_bytes = (match[1], _unescape(match[2])), bytearray()
            elif match := _PAUSE_LINE.match(line):
                close(current, hex_bytes)
                current, hex_bytes = None, bytearray()
                frames.append((PAUSE, match[1].encode()))
            elif line.startswith("  "):
                hex_bytes += bytes.fromhex(line)
            else:
                assert not line.strip(), line
        close(current, hex_bytes)
    return frames


def test_the_manual_has_examples_of_every_request_and_error() -> None:
    frames = doc_frames()
    sent = [f.payload.split()[0] for d, b in frames if d == ">"
            for f in decode(b) if isinstance(f, Frame)]
    assert set(sent) >= {c.value for c in RequestKind}
    replies = [parse_reply(only(b).payload) for d, b in frames if d == "<"]  # type: ignore
    codes = {r.code for r in replies if isinstance(r, ErrorReply)}
    assert codes == set(ErrorCode) - {ErrorCode.DEVICE_FAULT}  # a healthy emulator has no fault


def test_every_example_frame_in_the_manual_decodes_and_replies_are_canonical() -> None:
    for direction, data in doc_frames():
        if direction == PAUSE:
            continue
        items = decode(data)
        if direction == "<":
            (frame,) = items
            assert isinstance(frame, Frame)
            assert encode_reply(parse_reply(frame.payload)) == data
        elif len(items) == 1 and isinstance(items[0], Frame):
            try:
                request = parse_request(items[0].payload)
            except ProtocolError:
                continue  # an example of a refused request
            # A person may type `120` where the driver sends `120.0`: same request.
            assert parse_request(only(encode_request(request)).payload) == request  # type: ignore


def test_every_checksummed_line_quoted_in_the_manual_is_right() -> None:
    text = DOC.read_text()
    quoted = re.findall(r"`\$([^`*\n]+)\*([0-9A-F]{2})(?:\\r\\n)?`", text)
    quoted += re.findall(r"^\$((?:OK|ERR|READ|HB|ID|SET|STATUS|OUTPUTS)[^*\n]*)\*([0-9A-F]{2})$",
                         text, flags=re.M)
    assert len(quoted) >= 12
    for payload, hh in quoted:
        assert f"{checksum(payload.encode()):02X}" == hh, payload


def test_the_manual_lists_every_channel_request_and_error_code() -> None:
    text = DOC.read_text()
    for ch in CHANNELS:
        assert f"| `{ch.name}` | {ch.direction.value} | {ch.unit} |" in text
    for spec in REQUESTS.values():
        assert f"`{spec.reply}`" in text
    for spec in ERRORS.values():
        row = (f"| {int(spec.code)} | `{spec.code.name}` | {spec.meaning} | "
               f"{spec.exception.__name__} | {'yes' if spec.retry else 'no'} |")
        assert row in text


def doc_chamber() -> tuple[DeviceSession, list[float]]:
    """The device the manual's session was recorded on: seed 1, O2 5.2 % and CO2 5 % at the
    start, then its clock stopped at 30000 s (so ages and now_s are exact)."""
    clock = [0.0]
    chamber = ServedChamber({"initial_o2_pct": 5.2, "initial_co2_pct": 5.0}, seed=1,
                            now=lambda: clock[0], wall=lambda: clock[0])
    asyncio.run(chamber.start())
    clock[0] = 30000.0
    return DeviceSession(chamber, IdentityReply("bioreactor-hil-chamber", PROTOCOL_VERSION,
                                                "0.1.0")), clock


def test_the_manuals_session_replays_byte_for_byte_on_the_emulated_device() -> None:
    """Each request of the manual, fed to a device session in order, gets exactly the reply the
    manual shows, or none where it shows none. READ values come from the culture model and its
    sensor noise, so for READ only the shape is held to the manual."""
    session, clock = doc_chamber()
    frames = doc_frames()
    for i, (direction, data) in enumerate(frames):
        if direction == PAUSE:
            clock[0] += int(data)
        if direction != ">":
            continue
        expected = frames[i + 1][1] if i + 1 < len(frames) and frames[i + 1][0] == "<" else b""
        got = session.feed(data)
        if data == encode_request(Request(RequestKind.READ)):
            shown, sent = (parse_reply(only(x).payload) for x in (expected, got))  # type: ignore
            assert isinstance(shown, ReadReply) and isinstance(sent, ReadReply)
            assert list(sent.inputs) == list(shown.inputs) == [c.name for c in INPUTS]
            assert [v.age_s for v in sent.inputs.values()] == [
                v.age_s for v in shown.inputs.values()]
        else:
            assert got == expected, data
    assert session.garbage == 1  # the frame ended by LF alone
    assert session.noise_bytes == len(b"\xff\xfe\x00$READ*12\n")


def test_the_technicians_helper_prints_the_framed_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["SET heater_pct 42.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["$SET heater_pct 42.5*68",
                   "  24 53 45 54 20 68 65 61 74 65 72 5F 70 63 74 20 34 32 2E 35 2A 36 38 0D 0A"]
    assert out[0] in DOC.read_text()
    assert main(["READ*"]) == 2


# ------------------------------------------------------------------ the device's decisions
def test_a_set_with_one_bad_pair_writes_nothing() -> None:
    session, _ = doc_chamber()
    before = session.chamber.read_outputs()
    for payload in ("SET heater_pct 42.5 co2_pct 99", "SET heater_pct 42.5 ph 7.0",
                    "SET heater_pct 42.5 stirrer_rpm 1", "SET heater_pct nan"):
        reply = parse_reply(only(session.feed(encode_frame(payload))).payload)  # type: ignore
        assert isinstance(reply, ErrorReply), payload
    assert session.chamber.read_outputs() == before


def test_a_limited_write_is_ok_with_the_held_values_and_sets_the_status_bit() -> None:
    session, _ = doc_chamber()
    frame = encode_frame("SET o2_pct 90 co2_pct 20")
    reply = parse_reply(only(session.feed(frame)).payload)  # type: ignore[union-attr]
    assert isinstance(reply, SetReply)
    assert reply.held["o2_pct"] + reply.held["co2_pct"] == pytest.approx(100.0)
    assert reply.held["o2_pct"] < 90
    status = parse_reply(only(session.feed(b"$STATUS*14\r\n")).payload)  # type: ignore
    assert isinstance(status, StatusReply) and status.status & DeviceStatus.COMMAND_LIMITED


def test_outputs_reply_lists_every_output() -> None:
    session, _ = doc_chamber()
    reply = parse_reply(only(session.feed(b"$OUTPUTS*4C\r\n")).payload)  # type: ignore
    assert isinstance(reply, OutputsReply)
    assert list(reply.outputs) == [c.name for c in CHANNELS if c.direction.value == "output"]
