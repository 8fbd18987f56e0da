"""The serial line protocol's payloads: requests and replies, to and from their text.

Sans-I/O like the framing under it: a payload is the text inside one frame. Values are written
so they read back as the same float, and parsing is strict, because a driver acts on what it
parses and a device refuses what it cannot.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from drivers.codecs.serial_protocol.framing import MAX_PAYLOAD_BYTES, encode_frame
from drivers.codecs.serial_protocol.messages import (
    ERRORS,
    DeviceReplyError,
    ErrorCode,
    ProtocolError,
    RequestKind,
)
from drivers.contract.errors import DeviceError, DriverError
from drivers.contract.reading import Quality
from drivers.contract.status import DeviceStatus

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf|nan")
_TOKEN = re.compile(r"[0-9A-Fa-f]{1,4}")
_WORD = re.compile(r"[!-~]+")  # a field value: printable, no space


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
    """Free text made safe for a payload: printable ASCII, no `*` or `$`, one line."""
    return "".join(c if " " <= c <= "~" and c not in "*$" else "?" for c in message)


# ---------------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class Request:
    kind: RequestKind
    values: tuple[tuple[str, float], ...] = ()
    """SET only: (channel, value) pairs in the order sent."""
    token: int = 0
    """HB only: the controller's session token (1..0xFFFF), whose lease the heartbeat takes."""

    @classmethod
    def heartbeat(cls, token: int) -> Request:
        if not 0 < token <= 0xFFFF:
            raise ValueError(f"session token {token!r} must be 1..0xFFFF")
        return cls(RequestKind.HB, token=token)

    @classmethod
    def set(cls, outputs: Mapping[str, float]) -> Request:
        return cls(RequestKind.SET, tuple((name, float(value)) for name, value in outputs.items()))


def encode_request(request: Request) -> bytes:
    parts = [request.kind.value]
    for name, value in request.values:
        parts += (name, format_number(value))
    if request.kind is RequestKind.HB:
        parts.append(f"{request.token:04X}")
    return encode_frame(" ".join(parts))


def parse_request(payload: str) -> Request:
    """A request payload as a Request; ProtocolError (UNKNOWN_REQUEST or MALFORMED) if not one.

    The request word is case-insensitive (a technician may type `read`); channel names are
    not, since they are identifiers. Channel names are checked only for syntax: whether the
    device has the channel is the device's business.
    """
    words = payload.split()
    if not words:
        raise ProtocolError(ErrorCode.MALFORMED, "empty request")
    try:
        kind = RequestKind(words[0].upper())
    except ValueError:
        known = " ".join(k.value for k in RequestKind)
        # The wire text predates the word "request"; kept, since devices in the field send it.
        raise ProtocolError(ErrorCode.UNKNOWN_REQUEST,
                            f"unknown command {words[0]!r}; commands: {known}") from None
    args = words[1:]
    if kind is RequestKind.HB:
        return Request(kind, token=_parse_token(args))
    if kind is not RequestKind.SET:
        if args:
            raise ProtocolError(ErrorCode.MALFORMED, f"{kind.value} takes no arguments")
        return Request(kind)
    if not args or len(args) % 2:
        raise ProtocolError(ErrorCode.MALFORMED, "SET needs name value pairs")
    values: dict[str, float] = {}
    for name, text in zip(args[::2], args[1::2], strict=True):
        if not _NAME.fullmatch(name):
            raise ProtocolError(ErrorCode.MALFORMED, f"{name!r} is not a channel name")
        if name in values:
            raise ProtocolError(ErrorCode.MALFORMED, f"channel {name} given twice")
        values[name] = parse_number(text)
    return Request(kind, tuple(values.items()))


def _parse_token(args: list[str]) -> int:
    text = args[0] if len(args) == 1 else ""
    if not _TOKEN.fullmatch(text) or int(text, 16) == 0:
        raise ProtocolError(ErrorCode.MALFORMED, "HB takes one session token: 1 to 4 hex "
                            "digits, not 0 (e.g. HB 1A2B)")
    return int(text, 16)


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
class ResetCutoutReply:
    was_tripped: bool
    """True: the cut-out was tripped and is re-armed; False: it was not tripped."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    code: ErrorCode
    message: str = ""


OkReply: TypeAlias = (ReadReply | OutputsReply | SetReply | HeartbeatReply | StatusReply
                      | IdentityReply | ResetCutoutReply)
Reply: TypeAlias = OkReply | ErrorReply

_KIND_OF: dict[type, RequestKind] = {
    ReadReply: RequestKind.READ, OutputsReply: RequestKind.OUTPUTS, SetReply: RequestKind.SET,
    HeartbeatReply: RequestKind.HB, StatusReply: RequestKind.STATUS, IdentityReply: RequestKind.ID,
    ResetCutoutReply: RequestKind.RESET_CUTOUT,
}
_STATUS_FLAGS = tuple((flag, str(flag.name).lower()) for flag in DeviceStatus)


def reply_kind(reply: OkReply) -> RequestKind:
    """The kind of request an OK reply answers (every OK reply names it, so a late reply to another
    request can be told apart)."""
    return _KIND_OF[type(reply)]


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
    if isinstance(reply, ResetCutoutReply):
        return [("was_tripped", "1" if reply.was_tripped else "0")]
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
    head = f"OK {reply_kind(reply).value}"
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
        head, code, message = [*payload.split(" ", 2), "", ""][:3]
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
        kind = RequestKind(words[1])
    except ValueError:
        raise ProtocolError(ErrorCode.MALFORMED, f"OK for unknown request {words[1]!r}") from None
    fields = _parse_fields(words[2:])
    if kind is RequestKind.READ:
        return ReadReply({n: _parse_input(n, t) for n, t in fields.items()})
    if kind is RequestKind.OUTPUTS:
        return OutputsReply({n: parse_number(t) for n, t in fields.items()})
    if kind is RequestKind.SET:
        return SetReply({n: parse_number(t) for n, t in fields.items()})
    if kind is RequestKind.HB:
        (count,) = _require(fields, "count")
        return HeartbeatReply(_parse_int(count, "count"))
    if kind is RequestKind.STATUS:
        status, beats, trips, now_s = _require(fields, "status", "heartbeats", "watchdog_trips",
                                               "now_s")
        return StatusReply(DeviceStatus(_parse_int(status, "status")),
                           _parse_int(beats, "heartbeats"), _parse_int(trips, "watchdog_trips"),
                           parse_number(now_s))
    if kind is RequestKind.RESET_CUTOUT:
        (was_tripped,) = _require(fields, "was_tripped")
        if was_tripped not in ("0", "1"):
            raise ProtocolError(ErrorCode.MALFORMED, f"was_tripped={was_tripped!r} is not 0 or 1")
        return ResetCutoutReply(was_tripped == "1")
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
