"""The serial line protocol's message set as data: its requests and its error codes.

The tables here are what docs/serial-protocol.md lists (a test holds the page to them), what
the device answers an unknown request with, and how the driver maps each ERR code to the
typed error it raises and whether it resends.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType

from drivers.contract.errors import (
    ChannelError,
    DeviceError,
    DeviceHeldError,
    DriverError,
    FrameError,
    OutOfRangeError,
)

PROTOCOL_VERSION = 4
"""Sent in the ID reply; bumped on any change an older peer could misread. 2 (issue 10): frames
up to 2048 bytes (a version-1 receiver drops the longer READ reply), RESET_CUTOUT, ERR 8.
3 (issue 11): every frame starts with `$` (true resynchronisation after line noise); HB carries
the controller's session token and takes the device's lease; ERR 9 (held by another session).
4 (issue 12): the READ reply carries seven more inputs (cytometry, viability, the blood-gas
reference, `sampled_ml`), frames up to 4096 bytes (a version-3 receiver drops a READ reply
longer than 2048): a version-3 controller would refuse it as another datasheet."""


class RequestKind(StrEnum):
    """What a request asks for: its first word on the wire."""

    READ = "READ"
    OUTPUTS = "OUTPUTS"
    SET = "SET"
    HB = "HB"
    STATUS = "STATUS"
    ID = "ID"
    RESET_CUTOUT = "RESET_CUTOUT"


@dataclass(frozen=True, slots=True)
class RequestSpec:
    kind: RequestKind
    arguments: str
    reply: str
    summary: str


REQUESTS: Mapping[RequestKind, RequestSpec] = MappingProxyType({spec.kind: spec for spec in (
    RequestSpec(RequestKind.READ, "", "OK READ name=value:quality:age_s ...",
                "every input channel: value, quality code (0 good .. 4 comm error) and the "
                "value's age in device seconds"),
    RequestSpec(RequestKind.OUTPUTS, "", "OK OUTPUTS name=value ...",
                "the value every output channel holds now"),
    RequestSpec(RequestKind.SET, "name value [name value ...]", "OK SET name=value ...",
                "set one or more outputs, all or none; the reply holds every output after "
                "the device's physical limits"),
    RequestSpec(RequestKind.HB, "TOKEN", "OK HB count=N",
                "heartbeat with the controller's session token (1 to 4 hex digits, not 0): "
                "takes or renews the device's lease and feeds its comm-loss watchdog; N counts "
                "modulo 65536; ERR 9 while another session holds the lease"),
    RequestSpec(RequestKind.STATUS, "", "OK STATUS status=N running=B comm_loss_safe=B "
                "command_limited=B heater_cutout=B heartbeats=N watchdog_trips=N now_s=T",
                "device status bits (B is 0 or 1), counters and the device clock"),
    RequestSpec(RequestKind.ID, "", "OK ID model=M protocol=4 firmware=F",
                "who the device is and which protocol version it speaks"),
    RequestSpec(RequestKind.RESET_CUTOUT, "", "OK RESET_CUTOUT was_tripped=B",
                "re-arm the heater's over-temperature cut-out (B 1: it was tripped and is "
                "re-armed, 0: it was not tripped); ERR 8 while the chamber is too hot"),
)})


class ErrorCode(IntEnum):
    UNKNOWN_REQUEST = 1
    UNKNOWN_CHANNEL = 2
    OUT_OF_RANGE = 3
    NOT_WRITABLE = 4
    BAD_CHECKSUM = 5
    MALFORMED = 6
    DEVICE_FAULT = 7
    REFUSED = 8
    HELD = 9


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: ErrorCode
    meaning: str
    exception: type[DriverError]
    """What the driver raises for this reply."""
    retry: bool
    """Whether the driver resends: only a request garbled on the way is worth resending."""


ERRORS: Mapping[ErrorCode, ErrorSpec] = MappingProxyType({spec.code: spec for spec in (
    ErrorSpec(ErrorCode.UNKNOWN_REQUEST, "the request word is not one of the requests",
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
    ErrorSpec(ErrorCode.REFUSED, "a valid request the device's state forbids now (a cut-out "
              "reset while the chamber is too hot)", DeviceError, False),
    ErrorSpec(ErrorCode.HELD, "another controller session holds the device's lease: HB, "
              "SET and RESET_CUTOUT are refused until it stops heartbeating for the comm "
              "timeout", DeviceHeldError, False),
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
