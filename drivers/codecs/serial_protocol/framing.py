"""The serial line protocol's framing: one checksummed ASCII line per message.

A frame is one line a technician can type::

    PAYLOAD*HH\\r\\n

PAYLOAD is printable ASCII (0x20..0x7E) without `*`; HH is the XOR of the payload bytes as two
hex digits (NMEA style); a frame is at most MAX_FRAME_BYTES long, terminator included. Framing
knows nothing of what a payload means, so a line is checked (and a bad one skipped) before
anyone parses it, and a receiver resynchronises on the next CRLF whatever came before.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum
from functools import reduce
from operator import xor
from typing import TypeAlias

from drivers.contract.errors import FrameError

MAX_FRAME_BYTES = 2048
"""Longest frame, `*HH` and CRLF included. The longest reply (READ, every input with the
longest float text) is about 1200 bytes since issue 10's device channels (protocol 2; it was
1024 in protocol 1); a bound lets a receiver drop a runaway line early. Values keep their exact
round-trip text rather than a shorter, lossy one: a record must hold what the device measured."""

TERMINATOR = b"\r\n"
CHECKSUM_MARK = "*"
_TRAILER_BYTES = len(CHECKSUM_MARK) + 2 + len(TERMINATOR)
MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - _TRAILER_BYTES
_RAW_KEEP = 64  # bytes of an offending line kept in a fault, for logs

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


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


class FaultKind(StrEnum):
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


# ---------------------------------------------------------------------- a technician's helper
def main(argv: list[str] | None = None) -> int:
    """`python -m drivers.codecs.serial_protocol 'SET heater_pct 42.5'` prints the framed line
    and its bytes, for whoever talks to a device by hand from a terminal."""
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
