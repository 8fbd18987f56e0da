"""The serial line protocol's framing: one checksummed ASCII line per message.

A frame is one line a technician can type::

    $PAYLOAD*HH\\r\\n

PAYLOAD is printable ASCII (0x20..0x7E) without `*` or `$`; HH is the XOR of the payload bytes
as two hex digits (NMEA style); a frame is at most MAX_FRAME_BYTES long, `$` and terminator
included. Framing knows nothing of what a payload means, so a line is checked (and a bad one
skipped) before anyone parses it.

The `$` start-of-frame marker (protocol 3) is what makes resynchronisation true: a frame starts
at a `$` whatever came before it (line noise with or without CR LF, a frame cut short, one ended
by LF alone), and a byte no frame holds (a control byte, another `$`) ends the frame it
interrupts. Without the marker, noise glued to the front of a frame cost that frame too.
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

MAX_FRAME_BYTES = 4096
"""Longest frame, `$`, `*HH` and CRLF included. The longest reply (READ, every input with the
longest float text) is about 1650 bytes since issue 12's assays (protocol 4; 2048 in protocols
2-3, 1024 in protocol 1), within 60 % of a frame; a bound lets a receiver drop a runaway line
early. Values keep their exact round-trip text rather than a shorter, lossy one: a record must
hold what the device measured."""

START = b"$"
TERMINATOR = b"\r\n"
CHECKSUM_MARK = "*"
_TRAILER_BYTES = len(START) + len(CHECKSUM_MARK) + 2 + len(TERMINATOR)
MAX_PAYLOAD_BYTES = MAX_FRAME_BYTES - _TRAILER_BYTES
_RAW_KEEP = 64  # bytes of an offending line kept in a fault, for logs

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")
_START = START[0]
_CR = TERMINATOR[0]
_IN_FRAME = bytes(b for b in range(0x20, 0x7F) if b != _START)
"""Every byte a frame holds between its `$` and its CR LF."""


def checksum(payload: bytes) -> int:
    """XOR of the payload bytes (NMEA style): one byte a terminal user can work out by hand."""
    return reduce(xor, payload, 0)


def encode_frame(payload: str) -> bytes:
    """`$payload*HH\\r\\n`; a ValueError for a payload no receiver would accept."""
    refused = f"payload {payload!r} must be printable ASCII without '*' or '$'"
    if not payload.isascii():
        raise ValueError(refused)
    data = payload.encode("ascii")
    if not _PRINTABLE.fullmatch(data) or CHECKSUM_MARK in payload or "$" in payload:
        raise ValueError(refused)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return b"$%s*%02X\r\n" % (data, checksum(data))


@dataclass(frozen=True, slots=True)
class Frame:
    """A line that passed framing and checksum: its payload, still to be parsed."""

    payload: str


class FaultKind(StrEnum):
    BAD_CHECKSUM = "bad checksum"
    MALFORMED = "malformed"
    """No `*HH` trailer, a trailer that is not two hex digits, `*` inside the payload, or a
    line of plain text without the `$` start (a technician who typed a frame without it)."""
    NON_ASCII = "non-ascii"
    """A byte outside printable ASCII: line noise, a wrong baud rate, a binary protocol."""
    TOO_LONG = "too long"
    CUT = "cut short"
    """A frame interrupted before its CR LF by a byte no frame holds (a control byte, LF
    alone, a new `$`): what follows is decoded afresh."""


@dataclass(frozen=True, slots=True)
class FrameFault:
    """A line that failed framing. The decoder has already skipped it: what follows is decoded
    afresh, so one bad line never costs more than itself."""

    kind: FaultKind
    detail: str
    raw: bytes = b""
    """The start of the offending line (at most 64 bytes), for logs."""

    @property
    def garbage(self) -> bool:
        """Noise rather than a request: a device skips it without an ERR reply."""
        return self.kind in (FaultKind.NON_ASCII, FaultKind.TOO_LONG, FaultKind.CUT)

    def error(self) -> FrameError:
        return FrameError(f"{self.kind.value} frame: {self.detail} (raw {self.raw!r})")


Decoded: TypeAlias = Frame | FrameFault


def decode_line(line: bytes, max_frame_bytes: int = MAX_FRAME_BYTES) -> Decoded:
    """A frame's text between its `$` and its CR LF, as a Frame or the reason it is not one."""
    raw = bytes(line[:_RAW_KEEP])
    if len(line) + len(START) + len(TERMINATOR) > max_frame_bytes:
        return FrameFault(FaultKind.TOO_LONG, f"{len(line) + 3} bytes > {max_frame_bytes}", raw)
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
    """Bytes in, frames out: buffers partial frames, resynchronises on every `$`.

    Outside a frame, bytes are noise and dropped (counted in `noise_bytes`), except that a
    CR LF-ended line of plain text without a `$` is reported as MALFORMED, so a technician who
    forgot the `$` is told. Inside a frame (from its `$`), a byte no frame holds ends it at once
    (FaultKind.CUT) and decoding starts afresh at that byte, so no garbage, with or without
    CR LF, costs the frame after it. Memory stays bounded by MAX_FRAME_BYTES plus one feed.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        """`max_frame_bytes` other than the protocol's is for tests that probe the limit."""
        if max_frame_bytes < _TRAILER_BYTES + 1:
            raise ValueError(f"max_frame_bytes={max_frame_bytes} leaves no room for a payload")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._noise_is_text = True
        """The noise line held so far is plain text (worth a MALFORMED at its CR LF)."""
        self.noise_bytes = 0
        """Bytes dropped outside any frame since the decoder was built."""

    @property
    def pending(self) -> int:
        """Bytes held waiting for the end of a frame or line."""
        return len(self._buffer)

    def clear(self) -> None:
        """Forget any partial frame (the driver calls this before each request)."""
        self._buffer.clear()
        self._noise_is_text = True

    def feed(self, data: bytes) -> list[Decoded]:
        buffer = self._buffer
        buffer += data
        out: list[Decoded] = []
        while buffer:
            decoded = self._frame(out) if buffer[0] == _START else self._noise(out)
            if not decoded:
                break
        return out

    def _frame(self, out: list[Decoded]) -> bool:
        """Decode the frame at the front of the buffer (it starts with `$`); False: it needs
        more bytes."""
        buffer = self._buffer
        rest = bytes(buffer[1:])
        outsiders = rest.translate(None, _IN_FRAME)
        end = 1 + rest.index(outsiders[0]) if outsiders else len(buffer)
        if end + len(TERMINATOR) > self.max_frame_bytes:
            out.append(FrameFault(FaultKind.TOO_LONG, f"no CR LF within "
                                  f"{self.max_frame_bytes} bytes", rest[:_RAW_KEEP]))
            self._drop(end)
            self._noise_is_text = False  # the runaway line's tail is no request
            return bool(outsiders)
        if not outsiders:  # every byte so far fits in a frame
            return False
        if buffer[end:end + 2] == TERMINATOR:
            out.append(decode_line(rest[:end - 1], self.max_frame_bytes))
            del buffer[:end + 2]
            self._noise_is_text = True
            return True
        if buffer[end] == _CR and end + 1 == len(buffer):
            return False  # the LF of the CR LF may come in the next feed
        out.append(FrameFault(FaultKind.CUT, f"byte 0x{buffer[end]:02X} before the frame's "
                              "CR LF", rest[:min(end - 1, _RAW_KEEP)]))
        self._drop(end)
        self._noise_is_text = True
        return True

    def _noise(self, out: list[Decoded]) -> bool:
        """Drop the noise at the front of the buffer up to the next `$` or CR LF; False: it
        needs more bytes."""
        buffer = self._buffer
        start = buffer.find(START)
        eol = buffer.find(TERMINATOR)
        if eol >= 0 and (start < 0 or eol < start):
            line = bytes(buffer[:eol])
            if (line and self._noise_is_text and _PRINTABLE.fullmatch(line)
                    and len(line) + len(TERMINATOR) <= self.max_frame_bytes):
                detail = "no start mark before the payload (a frame starts with 0x24 since " \
                         "protocol 3)"
                out.append(FrameFault(FaultKind.MALFORMED, detail, line[:_RAW_KEEP]))
            self._drop(eol + len(TERMINATOR))
            self._noise_is_text = True
            return True
        if start >= 0:
            self._drop(start)
            self._noise_is_text = True
            return True
        held = len(buffer) - (1 if buffer.endswith(b"\r") else 0)
        if not _PRINTABLE.fullmatch(buffer[:held]) or held + 2 > self.max_frame_bytes:
            self._noise_is_text = False
            self._drop(held)  # keep a trailing CR: it may start the CR LF that ends the line
        return False

    def _drop(self, count: int) -> None:
        self.noise_bytes += count
        del self._buffer[:count]


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
