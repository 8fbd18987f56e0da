"""The emulated chamber served over the ASCII serial line protocol (drivers/codecs/
serial_protocol/).

Three transports carry the same line protocol:
- `socket://HOST:PORT`: TCP carrying the serial line (what pyserial's `socket://` speaks), so
  tests and benches need no hardware; several clients may connect at once.
- `pty`: a pseudo-terminal pair; the controller opens the slave's path (`/dev/pts/N`) as if it
  were a USB serial adapter, which exercises the real serial stack.
- a device path (`/dev/ttyUSB0`, `?baud=`): the emulator on one end of a real cable.

Every transport only moves bytes; `DeviceSession` turns request bytes into reply bytes with the
shared codec, and `answer` carries out one request on the ServedChamber.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

from drivers.codecs.serial_protocol import (
    PROTOCOL_VERSION,
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
    Reply,
    Request,
    RequestKind,
    ResetCutoutReply,
    SetReply,
    StatusReply,
    encode_reply,
    parse_request,
)
from drivers.contract.datasheet import CHANNELS, INPUTS, Direction
from drivers.contract.errors import ChannelError, DeviceError, DeviceHeldError, OutOfRangeError
from drivers.contract.reading import Quality
from drivers.contract.urls import BAUD, DeviceAddress
from sim_hardware.device.served_chamber import ServedChamber

MODEL = "bioreactor-hil-chamber"
DEFAULT_BAUD = 115200
_READ_SIZE = 4096
_PTY_BACKLOG_MAX = 64 * 1024
_CHANNELS = {c.name: c for c in CHANNELS}


def identity() -> IdentityReply:
    try:
        firmware = version("bioreactor-hil")
    except PackageNotFoundError:
        firmware = "unknown"
    return IdentityReply(MODEL, PROTOCOL_VERSION, firmware)


# ------------------------------------------------------------------------- the device's logic
def answer(chamber: ServedChamber, request: Request, ident: IdentityReply,
           session: int | None = None) -> Reply:
    """Carry out one request on the chamber for the connection whose heartbeats presented the
    token `session` (None: none yet). Never raises: every failure is an ERR reply, because a
    device that dies on a bad request is worse than one that refuses it."""
    try:
        return _answer(chamber, request, ident, session)
    except DeviceHeldError as exc:
        return ErrorReply(ErrorCode.HELD, str(exc))
    except ProtocolError as exc:
        return ErrorReply(exc.code, exc.message)
    except ChannelError as exc:
        return ErrorReply(ErrorCode.UNKNOWN_CHANNEL, str(exc))
    except OutOfRangeError as exc:
        return ErrorReply(ErrorCode.OUT_OF_RANGE, str(exc))
    except Exception as exc:
        return ErrorReply(ErrorCode.DEVICE_FAULT, f"{type(exc).__name__}: {exc}")


def _answer(chamber: ServedChamber, request: Request, ident: IdentityReply,
            session: int | None) -> Reply:
    kind = request.kind
    if kind is RequestKind.READ:
        inputs = chamber.read_inputs()
        # An age below zero (clock read before the sample it dates) means "just now".
        return ReadReply({c.name: InputValue(w.value, Quality(w.quality), max(0.0, w.age_s))
                          for c in INPUTS if (w := inputs.get(c.name)) is not None})
    if kind is RequestKind.OUTPUTS:
        return OutputsReply(chamber.read_outputs())
    if kind is RequestKind.SET:
        for name, _ in request.values:
            ch = _CHANNELS.get(name)
            if ch is None:
                return ErrorReply(ErrorCode.UNKNOWN_CHANNEL,
                                  f"no channel {name}; outputs: {_output_names()}")
            if ch.direction is not Direction.OUTPUT:
                return ErrorReply(ErrorCode.NOT_WRITABLE, f"{name} is an input, not writable")
        chamber.check_control(session)
        return SetReply(chamber.write_outputs(dict(request.values)))
    if kind is RequestKind.HB:
        return HeartbeatReply(chamber.heartbeat(request.token))
    if kind is RequestKind.STATUS:
        return StatusReply(chamber.status, chamber.heartbeat_count, chamber.watchdog_trips,
                           chamber.now_s)
    if kind is RequestKind.RESET_CUTOUT:
        chamber.check_control(session)
        try:
            return ResetCutoutReply(chamber.reset_cutout())
        except DeviceError as exc:  # still too hot to re-arm
            return ErrorReply(ErrorCode.REFUSED, str(exc))
    return ident


def _output_names() -> str:
    return " ".join(c.name for c in CHANNELS if c.direction is Direction.OUTPUT)


class DeviceSession:
    """One connection's protocol state: bytes in, reply bytes out.

    Garbage (noise between frames, frames cut short, runaway lines) is skipped without a
    reply: answering line noise would put replies on the wire nobody asked for. A line that is
    text but has a bad or missing checksum (or no `$`) gets an ERR, so a technician typing by
    hand learns what is wrong.
    """

    def __init__(self, chamber: ServedChamber, ident: IdentityReply | None = None) -> None:
        self.chamber = chamber
        self.ident = ident or identity()
        self._decoder = FrameDecoder()
        self.requests = 0
        self.errors = 0
        self.garbage = 0
        self.token: int | None = None
        """The session token this connection's last accepted heartbeat presented."""

    @property
    def noise_bytes(self) -> int:
        """Bytes dropped outside any good frame (line noise, frames cut short)."""
        return self._decoder.noise_bytes

    def feed(self, data: bytes) -> bytes:
        replies = []
        for item in self._decoder.feed(data):
            reply = self._reply_to(item)
            if reply is not None:
                if isinstance(reply, ErrorReply):
                    self.errors += 1
                replies.append(encode_reply(reply))
        return b"".join(replies)

    def _reply_to(self, item: Frame | FrameFault) -> Reply | None:
        if isinstance(item, FrameFault):
            if item.garbage:
                self.garbage += 1
                return None
            code = (ErrorCode.BAD_CHECKSUM if item.kind is FaultKind.BAD_CHECKSUM
                    else ErrorCode.MALFORMED)
            return ErrorReply(code, item.detail)
        self.requests += 1
        try:
            request = parse_request(item.payload)
        except ProtocolError as exc:
            return ErrorReply(exc.code, exc.message)
        reply = answer(self.chamber, request, self.ident, self.token)
        if isinstance(reply, HeartbeatReply):
            self.token = request.token
        return reply


# ----------------------------------------------------------------------------- the transports
async def serve(chamber: ServedChamber, address: DeviceAddress, *,
                ready: Callable[[str], None]) -> None:
    """Serve `chamber` at `address` (scheme `serial`) until cancelled.

    `ready(url)` gets the URL a controller should open: the real port for `socket://HOST:0`,
    the slave's path for `pty`. The chamber must be started (serve_chamber does it).
    """
    location = address.location
    nested = address.socket_host_port(free_port_ok=True)
    if nested is not None:
        await _serve_tcp(chamber, *nested, ready)
    elif location == "pty":
        await _serve_pty(chamber, ready)
    elif location:
        await _serve_port(chamber, location, address.get(BAUD, DEFAULT_BAUD), ready)
    else:
        raise address.fail("expected serial://socket://HOST:PORT, serial://pty or "
                           "serial:///dev/PATH")


async def _pump(session: DeviceSession, reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    """Answer requests from one byte stream until it ends."""
    try:
        while data := await reader.read(_READ_SIZE):
            if out := session.feed(data):
                writer.write(out)
                await writer.drain()
    except (ConnectionError, OSError):
        pass  # the client went away: nothing to answer any more
    finally:
        writer.close()


async def _serve_tcp(chamber: ServedChamber, hostname: str, port: int,
                     ready: Callable[[str], None]) -> None:
    clients: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients[writer] = asyncio.current_task()  # type: ignore[assignment]
        try:
            await _pump(DeviceSession(chamber), reader, writer)
        finally:
            clients.pop(writer, None)

    server = await asyncio.start_server(client, hostname, port)
    try:
        port = server.sockets[0].getsockname()[1]
        host = hostname if hostname not in ("0.0.0.0", "::", "") else "127.0.0.1"
        ready(f"serial://socket://{f'[{host}]' if ':' in host else host}:{port}")
        await server.serve_forever()
    finally:
        # A stopped device drops its links at once, as a powered-off one would.
        server.close()
        handlers = list(clients.values())
        for writer in list(clients):
            writer.transport.abort()
        if handlers:  # they end on the aborted streams; wait so none outlives the server
            await asyncio.wait(handlers, timeout=1.0)
        with contextlib.suppress(Exception):
            await server.wait_closed()


class _FdWriter:
    """Non-blocking writes to a pty master; what the slave side does not read waits here
    (bounded, like a UART's buffer: beyond it the oldest replies are dropped)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd = fd
        self._backlog = bytearray()

    def write(self, data: bytes) -> None:
        if not self._backlog:
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(self._fd, data):]
            if not data:
                return
            self._loop.add_writer(self._fd, self._flush)
        self._backlog += data
        del self._backlog[:max(0, len(self._backlog) - _PTY_BACKLOG_MAX)]

    def _flush(self) -> None:
        try:
            del self._backlog[:os.write(self._fd, self._backlog)]
        except BlockingIOError:
            return
        except OSError:
            self._backlog.clear()
        if not self._backlog:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        self._loop.remove_writer(self._fd)


async def _serve_pty(chamber: ServedChamber, ready: Callable[[str], None]) -> None:
    master, slave = os.openpty()
    loop = asyncio.get_running_loop()
    writer = _FdWriter(loop, master)
    session = DeviceSession(chamber)

    def readable() -> None:
        try:
            data = os.read(master, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: nobody holds the slave; cannot happen while we keep it open
        if out := session.feed(data):
            writer.write(out)

    try:
        tty.setraw(master)
        tty.setraw(slave)  # no echo, no line editing, no CR/LF translation
        os.set_blocking(master, False)
        loop.add_reader(master, readable)
        # The slave stays open while serving: its path stays valid and the master never sees
        # a hang-up between one client closing and the next opening.
        ready("serial://" + os.ttyname(slave))
        await asyncio.Event().wait()
    finally:
        loop.remove_reader(master)
        writer.close()
        os.close(master)
        os.close(slave)


async def _serve_port(chamber: ServedChamber, path: str, baud: int,
                      ready: Callable[[str], None]) -> None:
    from serial_asyncio_fast import open_serial_connection

    reader, writer = await open_serial_connection(url=path, baudrate=baud)
    ready(f"serial://{path}?baud={baud}")
    await _pump(DeviceSession(chamber), reader, writer)
    # Only an unplugged adapter ends the stream: say so rather than serve nothing in silence.
    raise ConnectionError(f"{path}: serial port closed")


__all__ = ["DeviceSession", "answer", "identity", "serve"]
