"""The emulated chamber's Modbus server (device side): Modbus TCP, and RTU over a socket, a pty or
a serial port.

Registers are not a copy refreshed by a timer: every request is answered from the chamber at
that instant (the chamber integrates lazily to its clock's now), through a pymodbus `SimDevice`
action hook that fills the registers a read covers and applies a write before pymodbus touches
its own store. The rules (what is legal where) come from drivers.codecs.modbus_map, so the
controller's driver and this server cannot disagree about the layout.

Written against pymodbus 3.16 (the project pins <3.17); the pymodbus internals used are named
where they are used.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import tty
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerRTU, FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.codecs.modbus_map import (
    AGE_SUFFIX,
    COMM_TIMEOUT,
    CUTOUT_RESET,
    CUTOUT_RESET_MAGIC,
    HEARTBEAT,
    LEASE_HOLDER,
    LEASE_REFUSED,
    MAP_VERSION,
    QUALITY_SUFFIX,
    REGISTER_SPACE,
    STATUS,
    ExceptionCode,
    Table,
    check_read,
    check_write,
    decode,
    encode_span,
    fields_in,
)
from drivers.contract.errors import ChannelError, DeviceError, DeviceHeldError, OutOfRangeError
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import (
    BAUD,
    BYTESIZE,
    PARITY,
    SERIAL_LINE,
    STOPBITS,
    DeviceAddress,
    modbus_unit,
    parse_device_url,
)
from sim_hardware.device.served_chamber import WireReading

log = logging.getLogger(__name__)

RTU_STALE_S = 0.05
"""A partial RTU frame older than this is dropped when new bytes arrive. RTU delimits frames by
3.5 characters of silence (2 ms at 19200 Bd); OS, USB-serial and socket jitter make a few ms
meaningless on a PC, so the gap is lengthened, still far below any master's reply timeout."""

_RTU_UNIT = modbus_unit(True)
_FUNCTION_TABLE = {4: Table.INPUT, 3: Table.HOLDING, 6: Table.HOLDING, 16: Table.HOLDING,
                   22: Table.HOLDING, 23: Table.HOLDING}


class ServedDevice(Protocol):
    """What the server needs from a chamber; device/served_chamber.py's ServedChamber is one."""

    status: DeviceStatus
    comm_timeout_s: float
    heartbeat_count: int
    watchdog_trips: int
    lease_holder: int

    @property
    def now_s(self) -> float: ...

    def read_inputs(self) -> Mapping[str, WireReading]: ...

    def read_outputs(self) -> Mapping[str, float]: ...

    def write_outputs(self, outputs: Mapping[str, float]) -> Mapping[str, float]: ...

    def heartbeat(self, token: int) -> int: ...

    def check_control(self, token: int | None) -> None: ...

    def reset_cutout(self) -> bool: ...


class Session:
    """One master's connection: the session token its last accepted heartbeat presented."""

    token: int | None = None


class RegisterBank:
    """The chamber seen as registers: answers reads and applies writes. No pymodbus here, so the
    rules can be exercised without a socket.

    `session` is the connection whose request is being answered (the server sets it before
    each request; one connection by default): a write is the lease holder's or refused.
    """

    def __init__(self, chamber: ServedDevice) -> None:
        self.chamber = chamber
        self.requests = 0
        self.exception_replies = 0
        self.session = Session()

    # --------------------------------------------------------------------------- reads
    def read(self, table: Table, address: int, count: int) -> list[int] | ExceptionCode:
        if (code := check_read(table, address, count)) is not None:
            return code
        return encode_span(table, address, count, self._values(table, address, count))

    def _values(self, table: Table, address: int, count: int) -> dict[str, float | int]:
        """Current values of the fields the span touches; the chamber is asked once."""
        touched = fields_in(table, address, count)
        chamber = self.chamber
        values: dict[str, float | int] = {}
        if table is Table.HOLDING:
            if any(f.channel for f in touched):
                values.update(chamber.read_outputs())
            values[HEARTBEAT] = chamber.heartbeat_count
            values[COMM_TIMEOUT] = chamber.comm_timeout_s
            return values
        if any(f.channel for f in touched):
            for name, r in chamber.read_inputs().items():
                values[name] = r.value
                values[name + QUALITY_SUFFIX] = int(r.quality)
                values[name + AGE_SUFFIX] = r.age_s
        if any(not f.channel for f in touched):
            now = chamber.now_s
            now = now if now > 0 and math.isfinite(now) else 0.0
            whole = int(now)
            values.update({
                "map_version": MAP_VERSION, STATUS: int(chamber.status),
                "device_time_s": whole, "device_time_ms": min(int((now - whole) * 1000), 999),
                "watchdog_trips": chamber.watchdog_trips, "requests": self.requests,
                "exception_replies": self.exception_replies,
                LEASE_HOLDER: chamber.lease_holder,
            })
        return values

    # --------------------------------------------------------------------------- writes
    def write(self, table: Table, address: int, registers: list[int]) -> ExceptionCode | None:
        """Apply a write of holding registers; an exception code refuses it and changes nothing.

        A multi-setpoint write goes to the chamber as one write, so it is all or nothing. The
        heartbeat register takes the session's lease; every other write needs it (LEASE_REFUSED
        while another session holds the device).
        """
        if (code := check_write(table, address, len(registers))) is not None:
            return code
        touched = {f.name: decode(f, registers[f.address - address:f.end - address])
                   for f in fields_in(table, address, len(registers))}
        token = touched.pop(HEARTBEAT, None)
        if token is not None and (code := self._take_lease(int(token))):
            return code
        if touched:
            try:
                self.chamber.check_control(self.session.token)
            except DeviceHeldError as exc:
                log.info("refused write %s: %s", sorted(touched), exc)
                return LEASE_REFUSED
        if CUTOUT_RESET in touched and (code := self._reset_cutout(touched.pop(CUTOUT_RESET))):
            return code
        outputs = {name: float(value) for name, value in touched.items()}
        if outputs:
            try:
                self.chamber.write_outputs(outputs)
            except (OutOfRangeError, ChannelError) as exc:
                log.info("refused write %s: %s", outputs, exc)
                return ExceptionCode.ILLEGAL_DATA_VALUE
        return None

    def _take_lease(self, token: int) -> ExceptionCode | None:
        if token == 0:
            log.info("refused heartbeat: session token 0")
            return ExceptionCode.ILLEGAL_DATA_VALUE
        try:
            self.chamber.heartbeat(token)
        except DeviceHeldError as exc:
            log.info("refused heartbeat of session %04X: %s", token, exc)
            return LEASE_REFUSED
        self.session.token = token
        return None

    def _reset_cutout(self, value: float | int) -> ExceptionCode | None:
        """Re-arm the heater cut-out. A wrong value is ILLEGAL_DATA_VALUE; a refusal (still
        hot) is ILLEGAL_FUNCTION, the code the Modbus spec gives a server "in the wrong state
        to process a request of this type"."""
        if value != CUTOUT_RESET_MAGIC:
            log.info("refused cut-out reset: value %#06x is not %#06x", value, CUTOUT_RESET_MAGIC)
            return ExceptionCode.ILLEGAL_DATA_VALUE
        try:
            self.chamber.reset_cutout()
        except DeviceError as exc:
            log.info("refused cut-out reset: %s", exc)
            return ExceptionCode.ILLEGAL_FUNCTION
        return None

    # --------------------------------------------------------------------------- pymodbus glue
    async def action(self, function_code: int, start_address: int, address: int, count: int,
                     registers: list[int], set_values: list[int] | list[bool] | None
                     ) -> ExcCodes | None:
        """pymodbus SimDevice action: runs before pymodbus reads or writes its register list.

        Must return a pymodbus ExcCodes (anything else truthy is taken as register data) and
        never raise (pymodbus would answer SERVER_DEVICE_FAILURE and log a traceback).
        """
        try:
            table = _FUNCTION_TABLE.get(function_code)
            if table is None:  # coils and discrete inputs: the chamber has none
                return ExcCodes.ILLEGAL_FUNCTION
            if set_values is not None:
                code = self.write(table, address, [int(v) for v in set_values])
                return None if code is None else ExcCodes(int(code))
            if function_code == 6:
                # pymodbus reads the register back to build the FC6 reply, which must echo the
                # request: leave the value pymodbus just stored, not the heartbeat count.
                return None
            result = self.read(table, address, count)
            if isinstance(result, ExceptionCode):
                return ExcCodes(int(result))
            offset = address - start_address
            registers[offset:offset + count] = result
            return None
        except Exception:
            log.exception("register action failed (fc %s, address %s)", function_code, address)
            return ExcCodes.DEVICE_FAILURE

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus trace hook: counts requests in and exception replies out."""
        if not sending:
            self.requests += 1
        elif pdu.isError():
            self.exception_replies += 1
        return pdu

    def sim_device(self) -> SimDevice:
        """One pymodbus device, id 0 (answers every unit id; an RTU connection filters by its
        own unit first), over the whole address space.

        A single shared block: input and holding tables are told apart by function code in
        `action`, which also decides legality, so pymodbus' own per-register flags stay unused.
        """
        block = SimData(0, count=REGISTER_SPACE, datatype=DataType.REGISTERS)
        return SimDevice(0, simdata=[block], action=self.action)


# ------------------------------------------------------------------------------- connections
def _mbap_plausible(buf: bytes) -> bool:
    """An MBAP header with protocol id 0 and a length a Modbus ADU can have (unit + fc .. 254)."""
    return buf[2:4] == b"\x00\x00" and 2 <= int.from_bytes(buf[4:6], "big") <= 254


class _Connection(ServerRequestHandler):
    """pymodbus' per-connection handler plus resynchronisation after garbage.

    Stock pymodbus 3.16 keeps bytes it cannot frame until 264 of them pile up, so after one burst
    of garbage on a TCP connection, or a truncated RTU frame, good requests go unanswered for a
    while. Here a TCP buffer whose MBAP header is implausible is dropped at once, and an RTU
    partial frame is dropped after RTU_STALE_S of silence, as a real RTU device does.
    (Relies on ModbusProtocol.recv_buffer/datagram_received, pymodbus 3.16 internals.)
    """

    def __init__(self, owner: Any) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
        self._rtu = issubclass(owner.framer, FramerRTU)
        self._last_rx = -math.inf
        self._request_fc = 0
        self._bank: RegisterBank = owner.bank
        self._unit: int | None = owner.unit
        self._session = Session()

    async def handle_request(self) -> None:
        if self._unit is not None and self.last_pdu and self.last_pdu.dev_id != self._unit:
            return  # another unit's request (or a broadcast): an RTU device stays silent
        # The bank answers for this connection's session. pymodbus runs the request down to the
        # bank's action without suspending (the action is synchronous under its async face), so
        # no other connection's request can run in between.
        self._bank.session = self._session
        await super().handle_request()

    def datagram_received(self, data: bytes, addr: tuple | None) -> None:
        if self._rtu:
            now = time.monotonic()
            if self.recv_buffer and now - self._last_rx > RTU_STALE_S:
                self.recv_buffer = b""
            self._last_rx = now
        else:
            buf = self.recv_buffer + data
            if len(buf) >= 6 and not _mbap_plausible(buf):
                self.recv_buffer = b""
                return
        super().datagram_received(data, addr)

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        # Remember the request's function code: pymodbus 3.16 answers a PDU it cannot decode
        # (unknown function, or a read count outside 1-125) with function code 0x80 and
        # exception 01, where the standard wants fc | 0x80, and 03 for a bad count.
        at = 1 if self._rtu else 7
        self._request_fc = data[at] if len(data) > at else 0
        return super().callback_data(data, addr)

    def server_send(self, pdu: ModbusPDU | None, addr: tuple | None) -> None:
        fc = self._request_fc & 0x7F
        if pdu is not None and pdu.function_code == 0x80 and fc:
            pdu.function_code = 0x80 | fc
            if fc in _FUNCTION_TABLE:  # a known function that failed to decode: a bad count
                pdu.exception_code = ExcCodes.ILLEGAL_VALUE
        super().server_send(pdu, addr)


class _HuntingFramerRTU(FramerRTU):
    """RTU framing that finds a good frame behind garbage.

    pymodbus 3.16 gives up on the whole buffer at the first candidate whose CRC fails, and
    nearly any byte >= 0x80 looks like the function code of an exception reply, so noise glued
    to a request costs the request. Here every offset is tried; the first complete frame with a
    good CRC wins and what precedes it is dropped. With none, the bytes wait for more (or for
    RTU_STALE_S of silence, which drops them).
    """

    def decode(self, data: bytes) -> tuple[int, int, int, bytes]:
        for start in range(len(data) - self.MIN_SIZE + 1):
            if data[start + 1] & 0x80:  # exception replies are not requests
                continue
            candidate = data[start:]
            pdu_class = self.decoder.lookupPduClass(candidate)
            if pdu_class is None:
                continue
            try:
                size = pdu_class.calculateRtuFrameSize(candidate)
            except Exception:
                continue
            end = start + size
            if not size or end > len(data):
                continue
            if self.check_CRC(data[start:end - 2], int.from_bytes(data[end - 2:end], "big")):
                return end, data[start], 0, data[start + 1:end - 2]
        return 0, 0, 0, self.EMPTY


class _TcpServer(ModbusTcpServer):
    def __init__(self, bank: RegisterBank, **kwargs: Any) -> None:
        super().__init__(bank.sim_device(), trace_pdu=bank.trace_pdu, **kwargs)
        self.bank = bank
        self.unit = None  # Modbus TCP: any unit id is this device

    def callback_new_connection(self) -> ServerRequestHandler:
        return _Connection(self)


class _SerialServer(ModbusSerialServer):
    """RTU: the device answers its own unit id only and stays silent for any other, as a
    device on a shared RS-485 bus must (the master sees a timeout, not another device)."""

    def __init__(self, bank: RegisterBank, unit: int, **kwargs: Any) -> None:
        super().__init__(bank.sim_device(), trace_pdu=bank.trace_pdu, **kwargs)
        self.bank = bank
        self.unit = unit
        self.framer = _HuntingFramerRTU  # each connection builds its framer from this class

    def callback_new_connection(self) -> ServerRequestHandler:
        return _Connection(self)


class _PtyBridge:
    """Two pty pairs joined master to master, like `socat pty pty`.

    A pty has one named end (the slave); its master is only a file descriptor, which pymodbus'
    serial server cannot be given. So the server opens slave A by path, the controller opens
    slave B by path, and bytes are pumped between the masters. The slaves stay open here too, so
    a master never sees a hang-up (and spins on EIO) while a side reopens.
    """

    def __init__(self) -> None:
        self._a_master, self._a_slave = os.openpty()
        self._b_master, self._b_slave = os.openpty()
        for fd in (self._a_slave, self._b_slave, self._a_master, self._b_master):
            tty.setraw(fd)
        for fd in (self._a_master, self._b_master):
            os.set_blocking(fd, False)
        self.device_path = os.ttyname(self._a_slave)
        self.client_path = os.ttyname(self._b_slave)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._a_master, self._pump, self._a_master, self._b_master)
        self._loop.add_reader(self._b_master, self._pump, self._b_master, self._a_master)

    @staticmethod
    def _pump(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the other side is mid-reopen; nothing to forward
            return
        while data:
            try:
                data = data[os.write(dst, data):]
            except BlockingIOError:  # the reader is not draining: a line drops bytes too
                return

    def close(self) -> None:
        if self._loop is not None:
            for fd in (self._a_master, self._b_master):
                self._loop.remove_reader(fd)
        for fd in (self._a_master, self._a_slave, self._b_master, self._b_slave):
            with contextlib.suppress(OSError):
                os.close(fd)


# ------------------------------------------------------------------------------- serve
def _rtu_settings(address: DeviceAddress) -> dict[str, Any]:
    """The unit id and pyserial's keyword arguments from the URL's parameters (each checked
    against what a serial line allows: urls.SERIAL_LINE)."""
    address.require_known(p.key for p in (*SERIAL_LINE, _RTU_UNIT))
    return {"unit": address.get(_RTU_UNIT, 1), "baudrate": address.get(BAUD, 19200),
            "parity": address.get(PARITY, "N"),
            "stopbits": address.get(STOPBITS, 1), "bytesize": address.get(BYTESIZE, 8)}


def _bound_port(server: ModbusTcpServer | ModbusSerialServer) -> int:
    # After listen(), pymodbus keeps the asyncio.Server as `transport` (3.16 internals).
    return int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]


def _connect_host(host: str) -> str:
    """The host a client should dial for a server bound to `host` (a wildcard is not dialable)."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else host


async def serve(chamber: ServedDevice, address: DeviceAddress, *,
                ready: Callable[[str], None]) -> None:
    """Serve `chamber` at `address` until cancelled; `ready(url)` once a client can connect.

    modbus-tcp://HOST:PORT; modbus-rtu://socket://HOST:PORT (RTU frames over TCP, no hardware);
    modbus-rtu://pty (a pty pair; ready gets the path a controller opens); modbus-rtu:///dev/X
    (a serial port; ?baud=&parity=&stopbits=&bytesize=). An RTU device answers only its unit
    (?unit=, default 1). PORT 0 picks a free port.
    """
    bank = RegisterBank(chamber)
    async with contextlib.AsyncExitStack() as stack:
        if address.scheme == "modbus-tcp":
            if address.params:
                raise address.fail("modbus-tcp takes no parameters")
            host, port = address.host_port(free_port_ok=True)
            server: ModbusTcpServer | ModbusSerialServer = _TcpServer(bank, address=(host, port))
            await server.serve_forever(background=True)
            stack.push_async_callback(server.shutdown)
            url = f"modbus-tcp://{_connect_host(host)}:{_bound_port(server)}"
        elif address.scheme == "modbus-rtu":
            settings = _rtu_settings(address)
            unit = settings.pop("unit")
            suffix = f"?{address.query}" if address.query else ""
            location = address.location
            nested = address.socket_host_port(free_port_ok=True)
            if nested is not None:
                host, port = nested
                server = _SerialServer(bank, unit, framer=FramerType.RTU,
                                       port=f"socket://{host}:{port}", **settings)
                await server.serve_forever(background=True)
                stack.push_async_callback(server.shutdown)
                url = f"modbus-rtu://socket://{_connect_host(host)}:{_bound_port(server)}{suffix}"
            else:
                if location == "pty":
                    bridge = _PtyBridge()
                    stack.callback(bridge.close)
                    bridge.start()
                    device, url = bridge.device_path, f"modbus-rtu://{bridge.client_path}{suffix}"
                elif location.startswith("/"):
                    device, url = location, address.url
                else:
                    raise ValueError(f"{address.url!r}: expected modbus-rtu://socket://HOST:PORT, "
                                     "modbus-rtu://pty or modbus-rtu:///dev/DEVICE")
                server = _SerialServer(bank, unit, framer=FramerType.RTU, port=device,
                                       **settings)
                await server.serve_forever(background=True)
                stack.push_async_callback(server.shutdown)
        else:
            raise ValueError(f"{address.url!r}: the Modbus server serves modbus-tcp or modbus-rtu")
        ready(url)
        await asyncio.Event().wait()  # until cancelled; the exit stack shuts the server down


@contextlib.asynccontextmanager
async def running(chamber: ServedDevice, listen_url: str) -> AsyncIterator[str]:
    """Serve `chamber` in a background task for the duration of the block; yields the URL a
    client should use. The server is always stopped on exit, even when the block raises, and a
    server that fails to start raises here instead of hanging the caller."""
    loop = asyncio.get_running_loop()
    url: asyncio.Future[str] = loop.create_future()

    def ready(u: str) -> None:
        if not url.done():
            url.set_result(u)

    task = asyncio.create_task(serve(chamber, parse_device_url(listen_url), ready=ready))
    waited: set[asyncio.Future[Any]] = {task, url}
    try:
        done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises why it stopped
            raise RuntimeError(f"Modbus server at {listen_url} stopped before it was ready")
        yield url.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
