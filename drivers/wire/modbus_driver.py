"""The controller's Modbus driver: one chamber over Modbus TCP or Modbus RTU.

    modbus-tcp://HOST[:PORT][?unit=1&timeout=0.5&retries=1]
    modbus-rtu://socket://HOST:PORT?baud=19200&unit=1      (RTU frames over TCP, no hardware)
    modbus-rtu:///dev/ttyUSB0?baud=19200&parity=N&stopbits=1&bytesize=8

More query keys: reconnect_delay (0.1) and reconnect_delay_max (5.0), wall seconds.

The register layout is drivers.codecs.modbus_map, shared with the emulated device. pymodbus
moves the frames; this driver owns everything a control loop relies on: typed errors, a bounded
wait on every request, reconnection with backoff that never blocks a tick (drivers.wire.link),
read-back of every actuator write, and counters.

Deadlines: `timeout` bounds each attempt; `retries` is how often this driver re-sends a request
that timed out or came back garbled. pymodbus's own retries are off: it re-sent with the same
transaction id and took the first attempt's late reply as the answer, so a slow link never timed
out. Each operation (a read, a write with its read-back, a heartbeat) has one deadline,
`timeout x (retries + 1)`, past which it raises CommTimeoutError; a reply after its request was
given up is counted (`replies_stale`), never taken as another request's answer.

One master per device: the driver writes a session token, drawn at random when it is built, to
the heartbeat register, which takes the device's lease (renewed by every heartbeat). A device
held by another session answers exception 06 (LEASE_REFUSED) to the heartbeat and to every
control write, raised as DeviceHeldError; reads still work. `connect()` checks the holder
(input register `lease_holder`, in the block it reads anyway) without taking the lease: the
first heartbeat clears the device's COMM_LOSS_SAFE bit, which a restarted controller must read
first (docs/recovery.md).

Timeouts and backoff delays are wall seconds (links are), multiplied by `time_scale` before use,
because the controller's loop clock runs `time_scale` times faster than the wall.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from drivers.codecs.modbus_map import (
    ACTUATOR_BLOCK,
    ACTUATOR_FIELDS,
    AGE_SUFFIX,
    CUTOUT_RESET,
    CUTOUT_RESET_MAGIC,
    DEVICE_BLOCK,
    HEARTBEAT,
    LEASE_HOLDER,
    LEASE_REFUSED,
    MAP_VERSION,
    QUALITY_SUFFIX,
    SENSOR_BLOCK,
    STATUS,
    Block,
    ExceptionCode,
    Table,
    decode_block,
    encode_float32,
    field,
    to_float32,
    write_runs,
)
from drivers.contract.datasheet import INPUTS, Kind
from drivers.contract.driver import Driver, validate_outputs
from drivers.contract.errors import (
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DeviceHeldError,
    FrameError,
    NotConnectedError,
    ReadbackError,
)
from drivers.contract.reading import Quality, Reading
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import (
    BAUD,
    BYTESIZE,
    PARITY,
    RETRIES,
    SERIAL_LINE,
    STOPBITS,
    TIMEOUT,
    DeviceAddress,
    QueryParam,
    modbus_unit,
    wall_seconds,
)
from drivers.wire.backoff import Backoff
from drivers.wire.link import LinkCounters, ReconnectGate

SCHEMES = ("modbus-tcp", "modbus-rtu")
_RECONNECT_DELAY = wall_seconds("reconnect_delay")
_RECONNECT_DELAY_MAX = wall_seconds("reconnect_delay_max")
_COMMON: tuple[QueryParam[Any], ...] = (
    modbus_unit(False), TIMEOUT, RETRIES, _RECONNECT_DELAY, _RECONNECT_DELAY_MAX)
_GATEWAY_CODES = (ExceptionCode.GATEWAY_PATH_UNAVAILABLE, ExceptionCode.GATEWAY_TARGET_FAILED)
_HEARTBEAT_ADDRESS = field(Table.HOLDING, HEARTBEAT).address
_CUTOUT_RESET_ADDRESS = field(Table.HOLDING, CUTOUT_RESET).address
_MAP_VERSION = field(Table.INPUT, "map_version")
_LEASE_HOLDER = field(Table.INPUT, LEASE_HOLDER)
_DIAGNOSTICS = ("requests", "retries", "timeouts", "frames_bad", "replies_stale",
                "device_errors", "link_losses", "reconnects", "connect_failures")
_MBAP = struct.Struct(">HHH")
"""Modbus TCP's header: transaction id, protocol id, length of what follows (unit id + PDU)."""
_QUALITIES = {int(q): q for q in Quality}
_EXCEPTION_NAMES = {int(c): c.name for c in ExceptionCode}


class ModbusDeviceError(DeviceError):
    """The device answered with a Modbus exception reply."""

    def __init__(self, message: str, function_code: int, exception_code: int) -> None:
        super().__init__(message)
        self.function_code = function_code
        self.exception_code = exception_code


@dataclass(frozen=True)
class LinkSettings:
    """A Modbus device URL, checked. Times are wall seconds."""

    scheme: str
    port: str
    """TCP: the host; RTU: what pyserial opens (a device path or socket://HOST:PORT)."""
    tcp_port: int = 502
    unit: int = 1
    timeout_s: float = 0.5
    retries: int = 1
    reconnect_delay_s: float = 0.1
    reconnect_delay_max_s: float = 5.0
    baud: int = 19200
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @classmethod
    def from_address(cls, address: DeviceAddress) -> LinkSettings:
        """Every error is a ValueError naming the URL and the key, with what is allowed."""
        if address.scheme not in SCHEMES:
            raise address.fail(f"the Modbus driver takes {' or '.join(SCHEMES)}")
        rtu = address.scheme == "modbus-rtu"
        address.require_known(p.key for p in _COMMON + (SERIAL_LINE if rtu else ()))
        delay_s = address.get(_RECONNECT_DELAY, 0.1)
        delay_max_s = address.get(_RECONNECT_DELAY_MAX, 5.0)
        if delay_max_s < delay_s:
            raise address.fail("reconnect_delay_max must be >= reconnect_delay")
        link: dict[str, Any] = {
            "unit": address.get(modbus_unit(rtu), 1), "timeout_s": address.get(TIMEOUT, 0.5),
            "retries": address.get(RETRIES, 1), "reconnect_delay_s": delay_s,
            "reconnect_delay_max_s": delay_max_s}
        if not rtu:
            host, port = address.host_port(default_port=502)
            return cls(address.scheme, host, tcp_port=port, **link)
        if address.socket_host_port() is None and not address.location.startswith("/"):
            raise address.fail("expected modbus-rtu:///dev/DEVICE or "
                               "modbus-rtu://socket://HOST:PORT")
        return cls(address.scheme, address.location, baud=address.get(BAUD, 19200),
                   parity=address.get(PARITY, "N"), stopbits=address.get(STOPBITS, 1),
                   bytesize=address.get(BYTESIZE, 8), **link)


class ModbusDriver(Driver):
    """A chamber behind Modbus TCP or RTU (drivers.codecs.modbus_map is the register map)."""

    def __init__(self, address: DeviceAddress, *, now: Callable[[], float], seed: int,
                 options: Mapping[str, Any], time_scale: float = 1.0) -> None:
        """`seed` and `options` are accepted for the factory contract: the link has no
        randomness, and the chamber table configures the device, which reads its own config."""
        if not (time_scale > 0 and math.isfinite(time_scale)):
            raise ValueError(f"time_scale={time_scale!r} must be a positive finite number")
        self.address = address
        self.settings = LinkSettings.from_address(address)
        self._now = now
        self._scale = time_scale
        self.counters = LinkCounters()
        self._gate = ReconnectGate(
            address.url, now=now, time_scale=time_scale, counters=self.counters,
            backoff=Backoff(self.settings.reconnect_delay_s, self.settings.reconnect_delay_max_s))
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._open = False
        self._heard = b""
        self.session_token = secrets.randbelow(0xFFFF) + 1
        """Drawn, not seeded: two controllers built from one config must not share it."""
        self._lock = asyncio.Lock()
        self._decode_plan = [
            (c.name, c.unit,
             field(Table.INPUT, c.name).address - SENSOR_BLOCK.start,
             field(Table.INPUT, c.name + QUALITY_SUFFIX).address - SENSOR_BLOCK.start,
             (field(Table.INPUT, c.name + AGE_SUFFIX).address - SENSOR_BLOCK.start
              if c.kind is Kind.SAMPLED else None))
            for c in INPUTS
        ]

    # --------------------------------------------------------------------------- lifecycle
    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """A pymodbus client with its own reconnect off (reconnect_delay=0): this driver decides
        when to reconnect, on its clock, so a dead link never stalls a tick."""
        s = self.settings
        common: dict[str, Any] = {
            "timeout": s.timeout_s * self._scale, "retries": 0, "reconnect_delay": 0,
            "trace_packet": self._trace_packet, "trace_connect": self._trace_connect,
        }
        if s.scheme == "modbus-tcp":
            return AsyncModbusTcpClient(s.port, port=s.tcp_port, **common)
        nested = self.address.socket_host_port()
        if nested is not None:
            # RTU frames over TCP through asyncio, not pyserial's socket:// handler: that one
            # connects with a blocking call and sleeps 0.3 s in close(), freezing the loop.
            host, port = nested
            return AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, **common)
        return AsyncModbusSerialClient(s.port, framer=FramerType.RTU, baudrate=s.baud,
                                       parity=s.parity, stopbits=s.stopbits,
                                       bytesize=s.bytesize, **common)

    async def connect(self) -> None:
        """Open the link and check the device: its map version, and that no other session holds
        it (DeviceHeldError, with the link kept open: reads work, and every heartbeat tries the
        lease again). On a link failure raise ConnectionLostError; later calls retry with
        backoff."""
        async with self._operation("connect"):
            self._open = True
            if self._client is None:
                self._client = self._make_client()
            self._gate.open_now()
            await self._ensure_link()
            registers = await self._read_block("read map version", DEVICE_BLOCK)
        version = decode_block(DEVICE_BLOCK, registers, [_MAP_VERSION])[_MAP_VERSION.name]
        if version != MAP_VERSION:
            # A reserved register reads 0 and quality 0 is GOOD: an older map would pass off
            # the channels it lacks as good zeros.
            raise DeviceError(f"{self.address.url}: the device speaks register map version "
                              f"{version}; this driver speaks {MAP_VERSION} (docs/modbus.md)")
        holder = decode_block(DEVICE_BLOCK, registers, [_LEASE_HOLDER])[_LEASE_HOLDER.name]
        if holder not in (0, self.session_token):
            raise DeviceHeldError(f"{self.address.url}: held by another controller session "
                                  f"({holder:04X}); it is refused until that session's "
                                  "heartbeats stop for the device's comm timeout")

    async def close(self) -> None:
        async with self._lock:
            self._open = False
            if self._client is not None:
                self._client.close()
                self._client = None

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def _ensure_link(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        """The connected client; reconnect only once the backoff delay has passed."""
        client = self._client
        if not self._open or client is None:
            raise NotConnectedError(f"{self.address.url}: not connected; call connect() first")
        if client.connected:
            return client
        self._gate.check()
        try:
            ok = await client.connect()
        except (OSError, ModbusException):  # pyserial raises from socket:// and device opens
            ok = False
        if not ok or not client.connected:
            self._gate.failed("cannot connect")
            raise ConnectionLostError(f"{self.address.url}: cannot connect")
        self._gate.connected()
        return client

    def _trace_connect(self, connected: bool) -> None:
        """pymodbus hook: the peer went away. Fail the request in flight now rather than at its
        timeout (response_future is a pymodbus 3.16 internal; without it, the timeout fires)."""
        if connected:
            return
        self._gate.lost("connection lost")
        if (future := self._pending_reply()) is not None:
            future.set_exception(ConnectionException("connection lost"))

    def _pending_reply(self) -> asyncio.Future[Any] | None:
        """The reply pymodbus waits for, if it waits for one (a pymodbus 3.16 internal)."""
        future = getattr(getattr(self._client, "ctx", None), "response_future", None)
        return future if isinstance(future, asyncio.Future) and not future.done() else None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hook: remember bytes received, so a reply that never framed (bad CRC,
        garbage) is reported as a FrameError, not as silence; and count late replies, which
        pymodbus drops with no more than a log line."""
        if not sending:
            late = self._late_replies(data)
            self.counters.replies_stale += late
            if not late:  # a late reply is not a garbled answer to the request in flight
                self._heard = data
        return data

    def _late_replies(self, data: bytes) -> int:
        """Replies in `data` no request waits for: any bytes while none is in flight, or (TCP)
        whole frames with another transaction id. RTU frames carry none: a late RTU reply during
        a request shows as a garbled or mismatched answer (FrameError, re-sent)."""
        if self._pending_reply() is None:
            return 1
        if self.settings.scheme != "modbus-tcp":
            return 0
        expected = getattr(getattr(self._client, "ctx", None), "request_transaction_id", None)
        late, at = 0, 0
        while at + _MBAP.size <= len(data):
            tid, _, length = _MBAP.unpack_from(data, at)
            if at + _MBAP.size + length > len(data):
                break  # incomplete: counted once it is whole
            late += tid != expected
            at += _MBAP.size + length
        return late

    def _abandon_reply(self) -> None:
        """The operation's deadline passed: no request waits any more, so a reply arriving
        later is counted as late (`_late_replies`) instead of being taken by nobody."""
        if (future := self._pending_reply()) is not None:
            future.cancel()

    @contextlib.asynccontextmanager
    async def _operation(self, what: str) -> AsyncIterator[None]:
        """One driver operation: exclusive use of the link, within its one deadline."""
        s = self.settings
        deadline_s = s.timeout_s * (s.retries + 1)
        async with self._lock:
            try:
                async with asyncio.timeout(deadline_s * self._scale):
                    yield
            except TimeoutError:
                self._abandon_reply()
                if self._heard:  # what came in time never framed: garbled, not silent
                    raise self._garbled(what) from None
                self.counters.timeouts += 1
                raise CommTimeoutError(
                    f"{self.address.url}: {what}: no reply within {deadline_s:g} s, the "
                    f"operation's deadline (timeout {s.timeout_s:g} s x {s.retries + 1} "
                    "attempt(s))") from None

    # --------------------------------------------------------------------------- requests
    async def _call(self, what: str, request: Callable[[Any], Awaitable[ModbusPDU]]
                    ) -> ModbusPDU:
        """Run one request, re-sent by this driver (never by pymodbus) after a timeout or a
        garbled reply, up to `retries` times; every failure becomes a typed DriverError."""
        attempts = self.settings.retries + 1
        self.counters.requests += 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self.counters.retries += 1
            try:
                return await self._attempt(what, request, attempt, attempts)
            except (CommTimeoutError, FrameError):
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, what: str, request: Callable[[Any], Awaitable[ModbusPDU]],
                       attempt: int, attempts: int) -> ModbusPDU:
        client = await self._ensure_link()
        self._heard = b""
        try:
            reply = await request(client)
        except ModbusIOException as exc:
            if not client.connected:
                raise self._lost(what, exc) from None
            if self._heard:
                raise self._garbled(what, f" (attempt {attempt} of {attempts})") from None
            self.counters.timeouts += 1
            raise CommTimeoutError(
                f"{self.address.url}: {what}: no reply within {self.settings.timeout_s:g} s "
                f"(attempt {attempt} of {attempts})") from None
        except ConnectionException as exc:
            raise self._lost(what, exc) from None
        except ModbusException as exc:
            self.counters.frames_bad += 1
            raise FrameError(f"{self.address.url}: {what}: {exc}") from None
        except OSError as exc:
            raise self._lost(what, exc) from None
        if reply.isError():
            self.counters.device_errors += 1
            code = reply.exception_code
            name = _EXCEPTION_NAMES.get(code, "unknown")
            fc = reply.function_code & 0x7F
            message = f"{self.address.url}: {what}: exception reply to FC{fc}: {code:02X} {name}"
            if code in _GATEWAY_CODES:  # a gateway saying the device behind it is silent
                raise CommTimeoutError(message)
            if code == LEASE_REFUSED:
                raise DeviceHeldError(f"{self.address.url}: {what} refused: another controller "
                                      "session holds the device (its lease ends when its "
                                      "heartbeats stop for the device's comm timeout)")
            raise ModbusDeviceError(message, fc, code)
        return reply

    def _garbled(self, what: str, attempt: str = "") -> FrameError:
        """Bytes came but never framed as a reply (bad CRC, garbage): counted."""
        self.counters.frames_bad += 1
        return FrameError(f"{self.address.url}: {what}: garbled reply "
                          f"{self._heard[:32].hex(' ')}{attempt}")

    def _lost(self, what: str, exc: BaseException) -> ConnectionLostError:
        """Close and mark the link down; the next attempt waits for the backoff."""
        if self._client is not None:
            self._client.close()
        self._gate.down(f"{what}: link lost ({exc})")
        return ConnectionLostError(f"{self.address.url}: {what}: link lost ({exc})")

    async def _read_block(self, what: str, block: Block) -> list[int]:
        unit = self.settings.unit
        if block.table is Table.INPUT:
            reply = await self._call(what, lambda c: c.read_input_registers(
                block.start, count=block.count, device_id=unit))
        else:
            reply = await self._call(what, lambda c: c.read_holding_registers(
                block.start, count=block.count, device_id=unit))
        registers = list(reply.registers)
        if len(registers) != block.count:
            self.counters.frames_bad += 1
            raise FrameError(f"{self.address.url}: {what}: asked for {block.count} registers, "
                             f"got {len(registers)}")
        return registers

    # --------------------------------------------------------------------------- Driver API
    async def read(self) -> dict[str, Reading]:
        """Every sensor in one FC4 request. Sampled sensors are stamped when their sample was
        drawn (now - age; device and controller clocks run at the same speed)."""
        async with self._operation("read sensors"):
            registers = await self._read_block("read sensors", SENSOR_BLOCK)
        now = self._now()
        raw = struct.pack(f">{len(registers)}H", *registers)
        unpack = struct.unpack_from
        readings: dict[str, Reading] = {}
        for name, unit, value_at, quality_at, age_at in self._decode_plan:
            value = unpack(">f", raw, 2 * value_at)[0]
            code = unpack(">H", raw, 2 * quality_at)[0]
            quality = _QUALITIES.get(code, Quality.BAD)
            stamp = now if age_at is None else now - unpack(">f", raw, 2 * age_at)[0]
            readings[name] = Reading(value, unit, stamp, quality)
        return readings

    async def read_outputs(self) -> dict[str, float]:
        async with self._operation("read outputs"):
            registers = await self._read_block("read outputs", ACTUATOR_BLOCK)
        return {k: float(v) for k, v in
                decode_block(ACTUATOR_BLOCK, registers, ACTUATOR_FIELDS).items()}

    async def write(self, outputs: Mapping[str, float]) -> None:
        """FC16 per run of adjacent setpoints, then one FC3 read-back of their span.

        A held value that differs from the value written beyond float32 rounding (the device
        limited it, or something else wrote) is a ReadbackError naming channel, commanded and
        held.
        """
        validate_outputs(outputs)
        if not outputs:
            return
        unit = self.settings.unit
        runs = write_runs(outputs)
        async with self._operation("write"):
            for start, fields in runs:
                values = [r for f in fields for r in encode_float32(float(outputs[f.name]))]

                def request(c: Any, a: int = start, v: list[int] = values
                            ) -> Awaitable[ModbusPDU]:
                    return c.write_registers(a, v, device_id=unit)

                await self._call("write " + ", ".join(f.name for f in fields), request)
            span = Block(Table.HOLDING, runs[0][0], runs[-1][1][-1].end - runs[0][0])
            registers = await self._read_block("read back", span)
        held = decode_block(span, registers, [f for _, fs in runs for f in fs])
        wrong = [(name, outputs[name], float(held[name])) for name in outputs
                 if not _same_float32(float(outputs[name]), float(held[name]))]
        if wrong:
            raise ReadbackError(f"{self.address.url}: read-back differs: " + "; ".join(
                f"{name} commanded {want!r}, holds {got!r}" for name, want, got in wrong))

    async def heartbeat(self) -> None:
        """FC6 of the session token to the heartbeat register: takes or renews the device's
        lease and feeds its watchdog; DeviceHeldError while another session holds it."""
        address, unit, token = _HEARTBEAT_ADDRESS, self.settings.unit, self.session_token
        async with self._operation("heartbeat"):
            await self._call("heartbeat", lambda c: c.write_register(
                address, token, device_id=unit))

    async def read_status(self) -> DeviceStatus:
        """The device's status bits (DeviceStatus) from input register `status` (the contract's
        `read_status`: a Modbus device always reports them)."""
        async with self._operation("read status"):
            registers = await self._read_block("read status", DEVICE_BLOCK)
        return DeviceStatus(int(decode_block(DEVICE_BLOCK, registers,
                                             [field(Table.INPUT, STATUS)])[STATUS]))

    async def reset_cutout(self) -> bool:
        """Read the status (was the cut-out tripped?), then FC6 CUTOUT_RESET_MAGIC to the
        `cutout_reset` register. The device refuses with exception 01 while the chamber is too
        hot to re-arm; that becomes a DeviceError saying so."""
        async with self._operation("reset cut-out"):
            registers = await self._read_block("read status", DEVICE_BLOCK)
            status = DeviceStatus(int(decode_block(DEVICE_BLOCK, registers,
                                                   [field(Table.INPUT, STATUS)])[STATUS]))
            address, unit = _CUTOUT_RESET_ADDRESS, self.settings.unit
            try:
                await self._call("reset cut-out", lambda c: c.write_register(
                    address, CUTOUT_RESET_MAGIC, device_id=unit))
            except ModbusDeviceError as exc:
                if exc.exception_code != ExceptionCode.ILLEGAL_FUNCTION:
                    raise
                raise DeviceError(
                    f"{self.address.url}: cut-out reset refused: the chamber is still too hot "
                    "to re-arm (it re-arms once below its reset temperature); let it cool "
                    "and retry") from exc
        return bool(status & DeviceStatus.HEATER_CUTOUT)

    def link_faults(self) -> dict[str, int]:
        return self.counters.faults()

    async def diagnostics(self) -> dict[str, float]:
        """Link counters; local only, so it answers even with the link down."""
        return {**self.counters.report(_DIAGNOSTICS), "link_up": 1.0 if self.connected else 0.0}


def _same_float32(commanded: float, held: float) -> bool:
    """Equal once the value written is rounded to the float32 the wire carries (1 ulp of slack)."""
    want = to_float32(commanded)
    return want == held or abs(want - held) <= 2.0 ** -23 * max(abs(want), abs(held))
