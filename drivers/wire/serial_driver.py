"""The chamber over its ASCII serial line protocol (`serial://`): the controller's side.

URLs: `serial://socket://HOST:PORT` (TCP carrying the serial line, e.g. an emulator or a
serial-to-Ethernet box) or `serial:///dev/ttyUSB0` (a real port or a pty); query parameters
`timeout` (wall seconds per attempt, default 0.5), `retries` (resends after a timeout or a
garbled reply, default 1) and `baud` (default 115200). Every operation has one deadline,
`timeout x (retries + 1)`; a reply that comes after its request was given up is counted
(`replies_stale`), never taken for another request's answer.

One request is in flight at a time and every reply names the request it answers, so the driver
pairs replies with requests without sequence numbers. The tick must never stall on a dead link:
a lost transport is closed at once, and until the backoff delay has passed every call raises
ConnectionLostError immediately instead of trying again (drivers.wire.link).

One master per device: the driver's heartbeats carry a session token drawn at random when it is
built; the first takes the device's lease and each renews it. A device held by another session
answers ERR 9 to HB, SET and RESET_CUTOUT, raised as DeviceHeldError; reads still work.
`connect()` sends no HB: the first heartbeat clears the device's COMM_LOSS_SAFE bit, which a
restarted controller must read first (docs/recovery.md).
"""
from __future__ import annotations

import asyncio
import math
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from drivers.codecs.serial_protocol import (
    ERRORS,
    PROTOCOL_VERSION,
    Decoded,
    ErrorReply,
    FrameDecoder,
    FrameFault,
    HeartbeatReply,
    IdentityReply,
    OkReply,
    OutputsReply,
    ReadReply,
    Request,
    RequestKind,
    ResetCutoutReply,
    SetReply,
    StatusReply,
    encode_request,
    error_for_reply,
    parse_reply,
    reply_kind,
)
from drivers.contract.datasheet import INPUTS, OUTPUTS
from drivers.contract.driver import Driver, validate_outputs
from drivers.contract.errors import (
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DriverError,
    FrameError,
    NotConnectedError,
    ReadbackError,
)
from drivers.contract.reading import Reading
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import BAUD, RETRIES, TIMEOUT, DeviceAddress
from drivers.wire.backoff import Backoff
from drivers.wire.link import LinkCounters, ReconnectGate

DEFAULT_TIMEOUT_S = 0.5
DEFAULT_RETRIES = 1
DEFAULT_BAUD = 115200
READBACK_REL_TOL = 1e-9
_PARAMS = (TIMEOUT, RETRIES, BAUD)
_DIAGNOSTICS = ("requests", "retries", "timeouts", "frames_bad", "replies_stale",
                "device_errors", "reconnects")
_R = TypeVar("_R", bound=OkReply)


class _LinkDown(Exception):
    """The transport under the line closed; internal, surfaced as ConnectionLostError."""


class _Link(asyncio.Protocol):
    """An open line: received bytes go straight into the frame decoder, so stale input can be
    dropped without a read that waits, and a hang-up is known the moment it happens."""

    def __init__(self) -> None:
        self.decoder = FrameDecoder()
        self.items: deque[Decoded] = deque()
        self.transport: asyncio.WriteTransport | None = None
        self.lost: BaseException | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._wakeup: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.items.extend(self.decoder.feed(data))
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc or ConnectionResetError("the device closed the link")
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def drop_stale(self) -> int:
        """Forget anything received so far: it answers no request still waiting. Returns how
        many whole replies were dropped (late replies, for the driver's count)."""
        late = sum(not isinstance(item, FrameFault) for item in self.items)
        self.items.clear()
        self.decoder.clear()
        return late

    def send(self, data: bytes) -> None:
        if self.lost is not None or self.transport is None or self.transport.is_closing():
            raise _LinkDown(self.lost or "link closed")
        self.transport.write(data)

    async def next_item(self) -> Decoded:
        while not self.items:
            if self.lost is not None:
                raise _LinkDown(self.lost)
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        return self.items.popleft()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class SerialDriver(Driver):
    """One chamber on a serial line (or TCP carrying one)."""

    def __init__(self, address: DeviceAddress, *, now: Callable[[], float], seed: int,
                 options: Mapping[str, Any], time_scale: float = 1.0) -> None:
        """`seed` and `options` (the chamber's model settings) belong to the device, not the
        link, and are ignored; the link's settings are the URL's query parameters."""
        address.require_known(p.key for p in _PARAMS)
        if not address.location:
            raise address.fail("expected serial://socket://HOST:PORT or serial:///dev/PATH")
        address.socket_host_port()  # a nested socket:// URL must be well formed
        if not (isinstance(time_scale, (int, float)) and 0 < time_scale < math.inf):
            raise ValueError(f"time_scale={time_scale!r} must be a positive finite number")
        self.address = address
        self.timeout_s = address.get(TIMEOUT, DEFAULT_TIMEOUT_S)
        self.retries = address.get(RETRIES, DEFAULT_RETRIES)
        self.baud = address.get(BAUD, DEFAULT_BAUD)
        self._now = now
        self._time_scale = float(time_scale)
        self._wait_s = self.timeout_s * self._time_scale  # the loop's clock may run N x wall
        self.counters = LinkCounters()
        self._gate = ReconnectGate(address.url, now=now, time_scale=self._time_scale,
                                   backoff=Backoff(), counters=self.counters)
        self._lock = asyncio.Lock()
        self._link: _Link | None = None
        self._closing: set[_Link] = set()  # dropped links whose transports are still closing
        self._wanted = False  # between connect() and close()
        self.identity: IdentityReply | None = None
        self.session_token: int = secrets.randbelow(0xFFFF) + 1
        """Drawn, not seeded: two controllers built from one config must not share it."""

    # --------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        """Open the line and check the device speaks this protocol (ID).

        On failure the driver stays wanted: later calls retry after the backoff delay, so a
        device that comes up late is picked up without a restart.
        """
        self._wanted = True
        async with self._lock:
            if self._link is not None and self._link.lost is not None:
                self._drop_link(f"link lost: {self._link.lost}")
            if self._link is None:
                await self._open()

    async def close(self) -> None:
        """Release the line, and wait (up to one timeout) until every transport this driver
        opened has really closed, so nothing is left running behind the caller."""
        self._wanted = False
        link, self._link = self._link, None
        if link is not None:
            link.close()
            self._closing.add(link)
        closing = [ln.closed for ln in self._closing if not ln.closed.done()]
        self._closing.clear()
        if closing:
            await asyncio.wait(closing, timeout=self._wait_s)

    async def _open(self) -> None:
        from serial_asyncio_fast import create_serial_connection

        # create_serial_connection (the library's protocol API under open_serial_connection):
        # a protocol of our own gets each byte as it arrives, see _Link.
        loop = asyncio.get_running_loop()
        try:
            _, link = await asyncio.wait_for(
                create_serial_connection(loop, _Link, url=self.address.location,
                                         baudrate=self.baud), self._wait_s)
        except (OSError, ValueError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            self._gate.failed(reason)
            raise ConnectionLostError(f"{self.address.url}: cannot open "
                                      f"{self.address.location}: {reason}") from exc
        self._link = cast(_Link, link)  # the protocol _Link made (the library types a Protocol)
        try:
            ident = await self._exchange(Request(RequestKind.ID), IdentityReply,
                                         self._deadline())
            if ident.protocol != PROTOCOL_VERSION:
                raise DeviceError(f"{self.address.url}: device {ident.model} speaks serial "
                                  f"protocol {ident.protocol}; this driver speaks "
                                  f"{PROTOCOL_VERSION}")
        except DriverError as exc:
            if self._link is not None:  # a lost link was already dropped
                self._drop_link(str(exc))
            raise
        self.identity = ident
        self._gate.connected()

    def _drop_link(self, reason: str) -> None:
        link, self._link = self._link, None
        if link is not None:
            link.close()
            self._closing = {ln for ln in self._closing if not ln.closed.done()} | {link}
        self._gate.schedule(reason)

    async def _ensure_link(self) -> _Link:
        if not self._wanted:
            raise NotConnectedError(f"{self.address.url}: not connected; call connect() first")
        link = self._link
        if link is not None and link.lost is None:
            return link
        if link is not None:
            self._drop_link(f"link lost: {link.lost}")
        self._gate.check()
        await self._open()
        assert self._link is not None
        return self._link

    # ---------------------------------------------------------------------------- requests
    async def _transact(self, request: Request, expect: type[_R]) -> _R:
        """One operation within its one deadline, `timeout x (retries + 1)` from its start:
        a reconnect spends from it, and no attempt waits past it."""
        deadline = self._deadline()
        async with self._lock:
            await self._ensure_link()
            return await self._exchange(request, expect, deadline)

    def _deadline(self) -> float:
        """When an operation starting now must be over, on the loop's clock."""
        return asyncio.get_running_loop().time() + self._wait_s * (self.retries + 1)

    async def _exchange(self, request: Request, expect: type[_R], deadline: float) -> _R:
        """Send `request` and return its reply, resending after a timeout, a garbled reply or
        an ERR saying our frame arrived garbled; every other ERR is raised as its typed error.
        Every request is idempotent (SET sends absolute values), so a resend is safe."""
        link = self._link
        assert link is not None
        frame = encode_request(request)
        name = request.kind.value
        attempts = self.retries + 1
        self.counters.requests += 1
        last: DriverError | None = None
        for attempt in range(1, attempts + 1):
            left_s = deadline - asyncio.get_running_loop().time()
            if attempt > 1:
                if left_s <= 0:
                    break  # the operation's deadline is spent: no resend
                self.counters.retries += 1
            try:
                self.counters.replies_stale += link.drop_stale()
                link.send(frame)
                reply = await asyncio.wait_for(self._reply(link, request.kind),
                                               max(0.0, min(self._wait_s, left_s)))
            except _LinkDown as exc:
                self._drop_link(f"link lost: {exc}")
                raise ConnectionLostError(f"{self.address.url}: link lost during {name}: "
                                          f"{exc}") from None
            except TimeoutError:
                self.counters.timeouts += 1
                last = CommTimeoutError(f"{self.address.url}: no reply to {name} within "
                                        f"{self.timeout_s:g} s (attempt {attempt} of "
                                        f"{attempts})")
                continue
            except FrameError as exc:
                self.counters.frames_bad += 1
                last = FrameError(f"{self.address.url}: garbled reply to {name} (attempt "
                                  f"{attempt} of {attempts}): {exc}")
                continue
            if isinstance(reply, ErrorReply):
                self.counters.device_errors += 1
                error = error_for_reply(reply, f"{self.address.url}: {name}")
                if ERRORS[reply.code].retry:
                    last = error
                    continue
                raise error
            if not isinstance(reply, expect):
                raise FrameError(f"{self.address.url}: {name} answered by {reply!r}")
            return reply
        assert last is not None
        raise last

    async def _reply(self, link: _Link, kind: RequestKind) -> OkReply | ErrorReply:
        """The next reply that answers a request of `kind`; a late OK to an earlier request
        (of another kind) is skipped. A bad line raises FrameError at once: waiting on for a good
        one would only spend the tick's time."""
        while True:
            item = await link.next_item()
            if isinstance(item, FrameFault):
                raise item.error()
            reply = parse_reply(item.payload)
            if isinstance(reply, ErrorReply) or reply_kind(reply) is kind:
                return reply
            self.counters.replies_stale += 1

    # ------------------------------------------------------------------- the Driver contract
    async def read(self) -> dict[str, Reading]:
        reply = await self._transact(Request(RequestKind.READ), ReadReply)
        now = self._now()
        self._require_all(reply.inputs, INPUTS, RequestKind.READ)
        # The device's ages are device seconds; device and controller clocks run at the same
        # speed factor, so an age is also controller-clock seconds. A negative age would date a
        # value in the future and make it look fresh for longer than it is: read it as zero.
        return {c.name: Reading(v.value, c.unit, now - max(0.0, v.age_s), v.quality)
                for c in INPUTS for v in (reply.inputs[c.name],)}

    async def read_outputs(self) -> dict[str, float]:
        reply = await self._transact(Request(RequestKind.OUTPUTS), OutputsReply)
        self._require_all(reply.outputs, OUTPUTS, RequestKind.OUTPUTS)
        return {c.name: reply.outputs[c.name] for c in OUTPUTS}

    async def write(self, outputs: Mapping[str, float]) -> None:
        """Validate, SET, then check the held values the device sends back: a value the
        hardware limited (or a digit garbled in transit that the XOR checksum missed) is a
        ReadbackError naming the channel, the commanded and the held value."""
        validate_outputs(outputs)
        if not outputs:
            return
        reply = await self._transact(Request.set(outputs), SetReply)
        wrong = []
        for name, value in outputs.items():
            held = reply.held.get(name)
            if held is None or not math.isclose(held, value, rel_tol=READBACK_REL_TOL):
                wrong.append(f"{name} commanded {float(value)!r}, device holds {held!r}")
        if wrong:
            raise ReadbackError(f"{self.address.url}: write not held: {'; '.join(wrong)}")

    async def heartbeat(self) -> None:
        """Renew (or take) the lease and feed the device's watchdog; DeviceHeldError while
        another session holds the device."""
        await self._transact(Request.heartbeat(self.session_token), HeartbeatReply)

    async def status(self) -> StatusReply:
        """The device's status bits, heartbeat count and clock (not part of the contract)."""
        return await self._transact(Request(RequestKind.STATUS), StatusReply)

    async def read_status(self) -> DeviceStatus:
        """The status bits of the STATUS reply (the contract's `read_status`)."""
        return (await self.status()).status

    async def reset_cutout(self) -> bool:
        """RESET_CUTOUT; the device's ERR 8 (still too hot) is raised as a DeviceError
        carrying its message (the temperature and the re-arm limit)."""
        return (await self._transact(Request(RequestKind.RESET_CUTOUT), ResetCutoutReply)
                ).was_tripped

    def link_faults(self) -> dict[str, int]:
        return self.counters.faults()

    async def diagnostics(self) -> dict[str, float]:
        """Link counters only: a device on a wire exposes no ground truth. No I/O."""
        link_up = self._link is not None and self._link.lost is None
        return {**self.counters.report(_DIAGNOSTICS), "link_up": float(link_up)}

    def _require_all(self, values: Mapping[str, Any], channels: tuple[Any, ...],
                     kind: RequestKind) -> None:
        missing = [c.name for c in channels if c.name not in values]
        if missing:
            raise DeviceError(f"{self.address.url}: {kind.value} reply lacks "
                              f"{', '.join(missing)}: the device's datasheet differs from ours")
