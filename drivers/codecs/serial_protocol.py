"""The chamber's ASCII serial line protocol: the command set as data, and a sans-I/O codec.

Both ends use this module: the controller's `SerialDriver` and the emulated chamber's serial
server. It does no I/O and knows no event loop, so every rule of the wire is tested from byte
strings alone, and a third party can reuse it on any transport. The spec a human reads is
docs/serial-protocol.md; its example frames are asserted by tests/test_serial_protocol.py.

A frame is one line a technician can type::

    PAYLOAD*HH\\r\\n

PAYLOAD is printable ASCII (0x20..0x7E) without `*`; HH is the XOR of the payload bytes as two
hex digits (NMEA style); a frame is at most MAX_FRAME_BYTES long, terminator included.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import reduce
from operator import xor
from types import MappingProxyType
from typing import TypeAlias

from drivers.contract.errors import ChannelError, DeviceError, DriverError, FrameError, OutOfRangeError
from drivers.contract.reading import Quality
from drivers.contract.status import DeviceStatus

PROTOCOL_VERSION = 1
"""Sent in the ID reply; bumped on any change a version-1 peer could misread."""

MAX_FRAME_BYTES = 1024
"""Longest frame, `*HH` and CRLF included. The longest reply (READ, every input with the
longest float text) is about 600 bytes; a bound lets a receiver drop a runaway line early."""

TERMINATOR = b"\r\n"
CHECKSUM_MARK = "*"
_TRAILER_BYTES = len(CHECKSUM_MARK) + 2 + len(TERMINATOR)
MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - _TRAILER_BYTES
_RAW_KEEP = 64  # bytes of an offending line kept in a fault, for logs

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|nan")
_WORD = re.compile(r"[!-~]+")  # a field value: printable, no space
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


# ------------------------------------------------------------------------ the protocol as data
class Command(str, Enum):
    READ = "READ"
    OUTPUTS = "OUTPUTS"
    SET = "SET"
    HB = "HB"
    STATUS = "STATUS"
    ID = "ID"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    command: Command
    arguments: str
    reply: str
    summary: str


COMMANDS: Mapping[Command, CommandSpec] = MappingProxyType({spec.command: spec for spec in (
    CommandSpec(Command.READ, "", "OK READ name=value:quality:age_s ...",
                "every input channel: value, quality code (0 good .. 4 comm error) and the "
                "value's age in device seconds"),
    CommandSpec(Command.OUTPUTS, "", "OK OUTPUTS name=value ...",
                "the value every output channel holds now"),
    CommandSpec(Command.SET, "name value [name value ...]", "OK SET name=value ...",
                "set one or more outputs, all or none; the reply holds every output after "
                "the device's physical limits"),
    CommandSpec(Command.HB, "", "OK HB count=N",
                "heartbeat: feeds the device's comm-loss watchdog; N counts modulo 65536"),
    CommandSpec(Command.STATUS, "", "OK STATUS status=N running=B comm_loss_safe=B "
                "command_limited=B heartbeats=N watchdog_trips=N now_s=T",
                "device status bits (B is 0 or 1), counters and the device clock"),
    CommandSpec(Command.ID, "", "OK ID model=M protocol=1 firmware=F",
                "who the device is and which protocol version it speaks"),
)})


class ErrorCode(IntEnum):
    UNKNOWN_COMMAND = 1
    UNKNOWN_CHANNEL = 2
    OUT_OF_RANGE = 3
    NOT_WRITABLE = 4
    BAD_CHECKSUM = 5
    MALFORMED = 6
    DEVICE_FAULT = 7


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: ErrorCode
    meaning: str
    exception: type[DriverError]
    """What the driver raises for this reply."""
    retry: bool
    """Whether the driver resends: only a request garbled on the way is worth resending."""


ERRORS: Mapping[ErrorCode, ErrorSpec] = MappingProxyType({spec.code: spec for spec in (
    ErrorSpec(ErrorCode.UNKNOWN_COMMAND, "the command word is not one of the commands",
              DeviceError, False),
    ErrorSpec(ErrorCode.UNKNOWN_CHANNEL, "SET names a channel the device does not have",
              ChannelError, False),
    ErrorSpec(ErrorCode.OUT_OF_RANGE, "SET value outside the channel's datasheet range",
              OutOfRangeError, False),
    ErrorSpec(ErrorCode.NOT_WRITABLE, "SET names an input channel", ChannelError, False),
    ErrorSpec(ErrorCode.BAD_CHECKSUM, "the frame's checksum does not match its payload",
              FrameError, True),
    ErrorSpec(ErrorCode.MALFORMED, "no `*HH` checksum, bad syntax, a bad number or a "
              "repeated channel", DeviceError, False),
    ErrorSpec(ErrorCode.DEVICE_FAULT, "the device failed to carry out a valid request",
              DeviceError, False),
)})


class ProtocolError(FrameError):
    """A frame whose content breaks the protocol; `code` is the ERR code a device answers."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DeviceReplyError(DeviceError):
    """The device answered ERR with a code that maps to no more specific error."""

    def __init__(self, code: ErrorCode, device_message: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.device_message = device_message


# ----------------------------------------------------------------------------------- framing
def checksum(payload: bytes) -> int:
    """XOR of the payload bytes (NMEA style): one byte a terminal user can work out by hand."""
    return reduce(xor, payload, 0)


def encode_frame(payload: str) -> bytes:
    """`payload*HH\\r\\n`; a ValueError for a payload no receiver would accept."""
    if not payload.isascii():
        raise ValueError(f"payload {payload!r} must be printable ASCII without '*'")
    data = payload.encode("ascii")
    if not _PRINTABLE.fullmatch(data) or CHECKSUM_MARK in payload:
        raise ValueError(f"payload {payload!r} must be printable ASCII without '*'")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return b"%s*%02X\r\n" % (data, checksum(data))


@dataclass(frozen=True, slots=True)
class Frame:
    """A line that passed framing and checksum: its payload, still to be parsed."""

    payload: str


class FaultKind(str, Enum):
    BAD_CHECKSUM = "bad checksum"
    MALFORMED = "malformed"
    """No `*HH` trailer, a trailer that is not two hex digits, or `*` inside the payload."""
    NON_ASCII = "non-ascii"
    """A byte outside printable ASCII: line noise, a wrong baud rate, a binary protocol."""
    TOO_LONG = "too long"


@dataclass(frozen=True, slots=True)
class FrameFault:
    """A line that failed framing. The decoder has already skipped it: the next line is
    decoded afresh, so one bad line never costs more than itself."""

    kind: FaultKind
    detail: str
    raw: bytes = b""
    """The start of the offending line (at most 64 bytes), for logs."""

    @property
    def garbage(self) -> bool:
        """Noise rather than a request: a device skips it without an ERR reply."""
        return self.kind in (FaultKind.NON_ASCII, FaultKind.TOO_LONG)

    def error(self) -> FrameError:
        return FrameError(f"{self.kind.value} frame: {self.detail} (raw {self.raw!r})")


Decoded: TypeAlias = Frame | FrameFault


def decode_line(line: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> Decoded:
    """One line without its terminator, as a Frame or the reason it is not one."""
    raw = bytes(line[:_RAW_KEEP])
    if len(line) + len(TERMINATOR) > max_frame_bytes:
        return FrameFault(FaultKind.TOO_LONG, f"{len(line) + 2} bytes > {max_frame_bytes}", raw)
    if not _PRINTABLE.fullmatch(line):
        bad = next(b for b in line if not 0x20 <= b <= 0x7E)
        return FrameFault(FaultKind.NON_ASCII, f"byte 0x{bad:02X} is not printable ASCII", raw)
    # Details go into ERR replies, whose text cannot hold the checksum mark itself.
    payload, mark, trailer_bytes = line.rpartition(b"*")
    if not mark:
        return FrameFault(FaultKind.MALFORMED, "no checksum after the payload (its checksum "
                          f"would be {checksum(line):02X})", raw)
    if b"*" in payload:
        return FrameFault(FaultKind.MALFORMED, "more than one checksum mark", raw)
    trailer = trailer_bytes.decode("ascii")
    expected = checksum(payload)
    if not _HEX2.fullmatch(trailer):
        return FrameFault(FaultKind.MALFORMED, f"checksum {trailer!r} is not two hex digits "
                          f"(the payload's is {expected:02X})", raw)
    if int(trailer, 16) != expected:
        return FrameFault(FaultKind.BAD_CHECKSUM,
                          f"checksum {trailer} but the payload's is {expected:02X}", raw)
    return Frame(payload.decode("ascii"))


class FrameDecoder:
    """Bytes in, frames out: buffers partial lines, splits on CRLF, resynchronises.

    Any bad line (wrong checksum, noise, a runaway line without CRLF) is reported once as a
    FrameFault and dropped up to the next CRLF, so the decoder is back in step on the next
    line. Empty lines are ignored, so a sender may send a bare CRLF to flush a half line out of
    a receiver. Memory stays bounded by MAX_FRAME_BYTES plus one feed.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        """`max_frame_bytes` other than the protocol's is for tests that probe the limit."""
        if max_frame_bytes < _TRAILER_BYTES + 1:
            raise ValueError(f"max_frame_bytes={max_frame_bytes} leaves no room for a payload")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held waiting for a terminator."""
        return len(self._buffer)

    def clear(self) -> None:
        """Forget any partial line (the driver calls this before each request)."""
        self._buffer.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[Decoded]:
        buffer = self._buffer
        buffer += data
        out: list[Decoded] = []
        start = 0
        while (end := buffer.find(TERMINATOR, start)) >= 0:
            line = buffer[start:end]
            start = end + len(TERMINATOR)
            if self._discarding:  # the tail of a line already reported as too long
                self._discarding = False
            elif line:
                out.append(decode_line(line, self.max_frame_bytes))
        del buffer[:start]
        # No terminator left: is what remains already too long to become a frame?
        held = len(buffer) - (1 if buffer.endswith(b"\r") else 0)
        if held + len(TERMINATOR) > self.max_frame_bytes:
            if not self._discarding:
                out.append(FrameFault(FaultKind.TOO_LONG, f"no CRLF within "
                                      f"{self.max_frame_bytes} bytes", bytes(buffer[:_RAW_KEEP])))
                self._discarding = True
            del buffer[:held]  # keep a trailing CR: it may start the CRLF that ends the line
        return out


# ------------------------------------------------------------------------------------ values
def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (repr), so values round-trip exactly."""
    return repr(float(value))


def parse_number(text: str) -> float:
    """A decimal number, `inf`, `-inf` or `nan`; stricter than float() (no `_`, no spaces)."""
    if not _NUMBER.fullmatch(text):
        raise ProtocolError(ErrorCode.MALFORMED, f"{text!r} is not a number")
    return float(text)


def _parse_int(text: str, what: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ProtocolError(ErrorCode.MALFORMED, f"{what}={text!r} is not an integer")
    return int(text)


def _sanitize(message: str) -> str:
    """Free text made safe for a payload: printable ASCII, no `*`, one line."""
    return "".join(c if " " <= c <= "~" and c != "*" else "?" for c in message)


# ---------------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class Request:
    command: Command
    values: tuple[tuple[str, float], ...] = ()
    """SET only: (channel, value) pairs in the order sent."""

    @classmethod
    def set(cls, commands: Mapping[str, float]) -> Request:
        return cls(Command.SET, tuple((name, float(value)) for name, value in commands.items()))


def encode_request(request: Request) -> bytes:
    parts = [request.command.value]
    for name, value in request.values:
        parts += (name, format_number(value))
    return encode_frame(" ".join(parts))


def parse_request(payload: str) -> Request:
    """A request payload as a Request; ProtocolError (UNKNOWN_COMMAND or MALFORMED) if not one.

    The command word is case-insensitive (a technician may type `read`); channel names are
    not, since they are identifiers. Channel names are checked only for syntax: whether the
    device has the channel is the device's business.
    """
    words = payload.split()
    if not words:
        raise ProtocolError(ErrorCode.MALFORMED, "empty request")
    try:
        command = Command(words[0].upper())
    except ValueError:
        known = " ".join(c.value for c in Command)
        raise ProtocolError(ErrorCode.UNKNOWN_COMMAND,
                            f"unknown command {words[0]!r}; commands: {known}") from None
    args = words[1:]
    if command is not Command.SET:
        if args:
            raise ProtocolError(ErrorCode.MALFORMED, f"{command.value} takes no arguments")
        return Request(command)
    if not args or len(args) % 2:
        raise ProtocolError(ErrorCode.MALFORMED, "SET needs name value pairs")
    values: dict[str, float] = {}
    for name, text in zip(args[::2], args[1::2]):
        if not _NAME.fullmatch(name):
            raise ProtocolError(ErrorCode.MALFORMED, f"{name!r} is not a channel name")
        if name in values:
            raise ProtocolError(ErrorCode.MALFORMED, f"channel {name} given twice")
        values[name] = parse_number(text)
    return Request(command, tuple(values.items()))


# ----------------------------------------------------------------------------------- replies
@dataclass(frozen=True, slots=True)
class InputValue:
    value: float
    quality: Quality
    age_s: float
    """How long ago the value was true, in device seconds (a sampled assay's age is hours)."""


@dataclass(frozen=True)
class ReadReply:
    inputs: Mapping[str, InputValue]


@dataclass(frozen=True)
class OutputsReply:
    outputs: Mapping[str, float]


@dataclass(frozen=True)
class SetReply:
    held: Mapping[str, float]
    """Every output as the device holds it after the write (after its physical limits)."""


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    count: int


@dataclass(frozen=True, slots=True)
class StatusReply:
    status: DeviceStatus
    heartbeat_count: int
    watchdog_trips: int
    device_time_s: float


@dataclass(frozen=True, slots=True)
class IdentityReply:
    model: str
    protocol: int
    firmware: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    code: ErrorCode
    message: str = ""


OkReply: TypeAlias = (ReadReply | OutputsReply | SetReply | HeartbeatReply | StatusReply
                      | IdentityReply)
Reply: TypeAlias = OkReply | ErrorReply

_COMMAND_OF: dict[type, Command] = {
    ReadReply: Command.READ, OutputsReply: Command.OUTPUTS, SetReply: Command.SET,
    HeartbeatReply: Command.HB, StatusReply: Command.STATUS, IdentityReply: Command.ID,
}
_STATUS_FLAGS = tuple((flag, str(flag.name).lower()) for flag in DeviceStatus)


def reply_command(reply: OkReply) -> Command:
    """The command an OK reply answers (every OK reply names it, so a late reply to another
    request can be told apart)."""
    return _COMMAND_OF[type(reply)]


def _ok_fields(reply: OkReply) -> list[tuple[str, str]]:
    if isinstance(reply, ReadReply):
        return [(name, f"{format_number(v.value)}:{int(v.quality)}:{format_number(v.age_s)}")
                for name, v in reply.inputs.items()]
    if isinstance(reply, OutputsReply):
        return [(name, format_number(v)) for name, v in reply.outputs.items()]
    if isinstance(reply, SetReply):
        return [(name, format_number(v)) for name, v in reply.held.items()]
    if isinstance(reply, HeartbeatReply):
        return [("count", str(reply.count))]
    if isinstance(reply, StatusReply):
        flags = [(name, "1" if reply.status & flag else "0") for flag, name in _STATUS_FLAGS]
        return [("status", str(int(reply.status))), *flags,
                ("heartbeats", str(reply.heartbeat_count)),
                ("watchdog_trips", str(reply.watchdog_trips)),
                ("now_s", format_number(reply.device_time_s))]
    if isinstance(reply, IdentityReply):
        fields = [("model", reply.model), ("protocol", str(reply.protocol)),
                  ("firmware", reply.firmware)]
        for key, value in fields:
            if not _WORD.fullmatch(value) or "=" in value or "*" in value:
                raise ValueError(f"ID field {key}={value!r} must be printable, without space, "
                                 "'=' or '*'")
        return fields
    raise TypeError(f"not a reply: {reply!r}")


def encode_reply(reply: Reply) -> bytes:
    """The reply's frame. An ERR message is made wire-safe and cut to fit one frame, so a
    device can always report an error, whatever text the error carried."""
    if isinstance(reply, ErrorReply):
        head = f"ERR {int(reply.code)}"
        message = _sanitize(reply.message)
        room = MAX_PAYLOAD_BYTES - len(head) - 1
        if len(message) > room:
            message = message[:room - 3] + "..."
        return encode_frame(f"{head} {message}" if message else head)
    fields = " ".join(f"{k}={v}" for k, v in _ok_fields(reply))
    head = f"OK {reply_command(reply).value}"
    return encode_frame(f"{head} {fields}" if fields else head)


def _parse_fields(words: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for word in words:
        name, eq, value = word.partition("=")
        if not eq or not _NAME.fullmatch(name) or not value:
            raise ProtocolError(ErrorCode.MALFORMED, f"field {word!r} is not name=value")
        if name in fields:
            raise ProtocolError(ErrorCode.MALFORMED, f"field {name} given twice")
        fields[name] = value
    return fields


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    missing = [n for n in names if n not in fields]
    if missing:
        raise ProtocolError(ErrorCode.MALFORMED, f"reply lacks {', '.join(missing)}")
    return [fields[n] for n in names]


def _parse_input(name: str, text: str) -> InputValue:
    parts = text.split(":")
    if len(parts) != 3:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name}={text!r} is not value:quality:age")
    value, code, age = parts
    quality_code = _parse_int(code, f"{name} quality")
    if quality_code not in Quality._value2member_map_:
        raise ProtocolError(ErrorCode.MALFORMED, f"{name}: unknown quality code {quality_code}")
    return InputValue(parse_number(value), Quality(quality_code), parse_number(age))


def parse_reply(payload: str) -> Reply:
    """A reply payload as a typed Reply; ProtocolError (a FrameError) if it is not one.

    Unknown extra fields in STATUS and ID are ignored, so a newer device can add some; channel
    fields are returned as sent and the caller checks them against its datasheet.
    """
    if payload.startswith("ERR"):
        head, code, message = (payload.split(" ", 2) + ["", ""])[:3]
        if head != "ERR" or not code:
            raise ProtocolError(ErrorCode.MALFORMED, "ERR without a code")
        number = _parse_int(code, "ERR code")
        if number not in ErrorCode._value2member_map_:
            raise ProtocolError(ErrorCode.MALFORMED, f"unknown ERR code {number}")
        return ErrorReply(ErrorCode(number), message)
    words = payload.split()
    if len(words) < 2 or words[0] != "OK":
        raise ProtocolError(ErrorCode.MALFORMED, f"reply {payload[:40]!r} starts with neither "
                            "OK nor ERR")
    try:
        command = Command(words[1])
    except ValueError:
        raise ProtocolError(ErrorCode.MALFORMED, f"OK for unknown command {words[1]!r}") from None
    fields = _parse_fields(words[2:])
    if command is Command.READ:
        return ReadReply({n: _parse_input(n, t) for n, t in fields.items()})
    if command is Command.OUTPUTS:
        return OutputsReply({n: parse_number(t) for n, t in fields.items()})
    if command is Command.SET:
        return SetReply({n: parse_number(t) for n, t in fields.items()})
    if command is Command.HB:
        (count,) = _require(fields, "count")
        return HeartbeatReply(_parse_int(count, "count"))
    if command is Command.STATUS:
        status, beats, trips, now_s = _require(fields, "status", "heartbeats", "watchdog_trips",
                                               "now_s")
        return StatusReply(DeviceStatus(_parse_int(status, "status")),
                           _parse_int(beats, "heartbeats"), _parse_int(trips, "watchdog_trips"),
                           parse_number(now_s))
    model, protocol, firmware = _require(fields, "model", "protocol", "firmware")
    return IdentityReply(model, _parse_int(protocol, "protocol"), firmware)


def error_for_reply(reply: ErrorReply, context: str) -> DriverError:
    """The typed error a driver raises for an ERR reply; `context` names device and request."""
    spec = ERRORS[reply.code]
    text = (f"{context}: device replied ERR {int(reply.code)} ({reply.code.name.lower()}): "
            f"{reply.message}")
    if spec.exception is DeviceError:
        return DeviceReplyError(reply.code, reply.message, text)
    return spec.exception(text)


# ---------------------------------------------------------------------- a technician's helper
def main(argv: list[str] | None = None) -> int:
    """`python -m drivers.codecs.serial_protocol 'SET heater_pct 42.5'` prints the framed line and its
    bytes, for whoever talks to a device by hand from a terminal."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m drivers.codecs.serial_protocol 'PAYLOAD' ...", file=sys.stderr)
        return 2
    for payload in args:
        try:
            frame = encode_frame(payload)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(frame.decode("ascii").rstrip("\r\n"))
        print("  " + frame.hex(" ").upper())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
