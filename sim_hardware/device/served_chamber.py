"""The emulated chamber as a stand-alone device: what both wire servers (Modbus, serial) serve.

It stands on the chamber core (`sim_hardware.chamber.core`: the same physics and seed rules as
the in-process driver) and adds what a real device has and an in-process one does not: a
comm-loss watchdog fed by the controller's heartbeat, a lease that gives control to one
controller session at a time, status bits, and a device-side view of sample ages. Protocol
servers call these synchronous methods from their request handlers; nothing here knows a wire
format.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.contract.datasheet import SAFE_STATE
from drivers.contract.errors import DeviceHeldError
from drivers.contract.reading import Reading
from drivers.contract.status import DeviceStatus
from sim_hardware.chamber.core import Chamber

DEFAULT_COMM_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class WireReading:
    """A reading as a device sends it: no absolute time, only how old the value is."""

    value: float
    quality: int
    age_s: float


class ServedChamber:
    """One emulated chamber behind a wire protocol.

    `now` is the device's own clock (physics time, possibly scaled); `wall` is a monotonic wall
    clock in seconds for the comm watchdog, because a link's silence is measured in real time
    whatever speed the physics runs at. `chamber_options`: the `[reactor.chamber]` table or
    checked `ChamberOptions`.
    """

    def __init__(
        self,
        chamber_options: Any,
        *,
        seed: int,
        now: Callable[[], float],
        wall: Callable[[], float],
        comm_timeout_s: float = DEFAULT_COMM_TIMEOUT_S,
        safe_state: Mapping[str, float] | None = None,
        boot_id: int | None = None,
    ) -> None:
        if not comm_timeout_s > 0:
            raise ValueError(f"comm_timeout_s={comm_timeout_s!r} must be > 0")
        self.chamber = Chamber(chamber_options, seed=seed, now=now, boot_id=boot_id)
        self._now = now
        self._wall = wall
        self.comm_timeout_s = comm_timeout_s
        self.safe_state = {**SAFE_STATE, **(safe_state or {})}
        self._flags = DeviceStatus(0)
        self.heartbeat_count = 0
        self._last_heartbeat_wall: float | None = None
        self.watchdog_trips = 0
        self.lease_token: int | None = None
        """The session token whose heartbeats hold the device (one master per device)."""
        self.lease_refusals = 0

    async def start(self) -> None:
        self.chamber.start()
        self._flags |= DeviceStatus.RUNNING

    @property
    def status(self) -> DeviceStatus:
        """The status bits now; HEATER_CUTOUT follows the chamber's cut-out latch. The device
        scans first, so a status request never reports a cut-out its physics has already
        reached as armed (between scan cycles the latch alone would lag)."""
        self.chamber.scan()
        if self.chamber.cutout:
            return self._flags | DeviceStatus.HEATER_CUTOUT
        return self._flags

    def reset_cutout(self) -> bool:
        """Re-arm the cut-out (`Chamber.reset_cutout`: DeviceError while still hot)."""
        return self.chamber.reset_cutout()

    def scan(self) -> None:
        """The device's own scan cycle, called periodically by the server whether or not a
        controller talks to it: the cut-out acts on the chamber's temperature by itself."""
        self.chamber.scan()

    @property
    def now_s(self) -> float:
        return self._now()

    def read_inputs(self) -> dict[str, WireReading]:
        readings = self.chamber.read()
        now = self._now()  # after the read, so no age comes out negative
        return {name: _to_wire(r, now) for name, r in readings.items()}

    def read_outputs(self) -> dict[str, float]:
        return self.chamber.outputs()

    def write_outputs(self, outputs: Mapping[str, float]) -> dict[str, float]:
        """Apply `outputs` (validated against the datasheet: ChannelError/OutOfRangeError);
        returns every output as the hardware now holds it, after physical limits."""
        self.chamber.write(outputs)
        held = self.chamber.outputs()
        limited = any(abs(held[name] - value) > 1e-9 for name, value in outputs.items())
        if limited:
            self._flags |= DeviceStatus.COMMAND_LIMITED
        else:
            self._flags &= ~DeviceStatus.COMMAND_LIMITED
        return held

    def lease_held_by_other(self, token: int | None) -> bool:
        """Whether a session other than `token` holds a live lease. A lease lives as long as
        the comm watchdog would: it ends comm_timeout_s after its holder's last heartbeat, so a
        restarted controller (a new token) takes over once the old one is silent that long."""
        holder, last = self.lease_token, self._last_heartbeat_wall
        if holder is None or holder == token or last is None:
            return False
        return self._wall() - last <= self.comm_timeout_s

    @property
    def lease_holder(self) -> int:
        """The token holding a live lease, 0 when none."""
        return self.lease_token or 0 if self.lease_held_by_other(None) else 0

    def check_control(self, token: int | None) -> None:
        """DeviceHeldError if a control request (write, cut-out reset) from the session
        `token` (None: a connection that never heartbeated) must be refused. With no live
        lease anyone may write: a device waiting for its controller obeys a bench tool."""
        if self.lease_held_by_other(token):
            self.lease_refusals += 1
            raise DeviceHeldError(self._held_message())

    def _held_message(self) -> str:
        return (f"device held by controller session {self.lease_token:04X}; its lease ends "
                f"{self.comm_timeout_s:g} s after its last heartbeat")

    def heartbeat(self, token: int) -> int:
        """The session `token` is alive: take or renew the lease, feed the watchdog, clear a
        comm-loss trip; returns a count. DeviceHeldError while another session's lease lives
        (its heartbeats alone feed the watchdog, so a refused master cannot keep it awake)."""
        if self.lease_held_by_other(token):
            self.lease_refusals += 1
            raise DeviceHeldError(self._held_message())
        self.lease_token = token
        self._last_heartbeat_wall = self._wall()
        self.heartbeat_count = (self.heartbeat_count + 1) & 0xFFFF
        self._flags &= ~DeviceStatus.COMM_LOSS_SAFE
        return self.heartbeat_count

    def check_watchdog(self) -> bool:
        """Trip to the safe state if the heartbeat is older than the comm timeout.

        Called periodically by the server. Before the first heartbeat nothing is armed: a device
        waiting for its controller keeps whatever state it was set up in. Returns True on a trip.
        """
        last = self._last_heartbeat_wall
        if last is None or self._flags & DeviceStatus.COMM_LOSS_SAFE:
            return False
        if self._wall() - last <= self.comm_timeout_s:
            return False
        # Device-side, not over the link: an injected comm fault must not stop the watchdog.
        self.chamber.actuate(self.safe_state)
        self._flags |= DeviceStatus.COMM_LOSS_SAFE
        self.watchdog_trips += 1
        return True

    def ground_truth(self) -> dict[str, float]:
        return self.chamber.snapshot()


def _to_wire(reading: Reading, now: float) -> WireReading:
    age = now - reading.timestamp_s
    return WireReading(reading.value, int(reading.quality), age if age == age else 0.0)


