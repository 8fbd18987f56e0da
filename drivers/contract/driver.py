"""The Driver interface every device backend implements: in-process emulator, Modbus, serial.

The controller only ever talks to this interface, so a backend can be swapped without touching
it. Drivers are async; an in-process driver simply never suspends.
"""
from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from typing import NoReturn

from drivers.contract.datasheet import CHANNELS, Channel, Direction, channel
from drivers.contract.errors import ChannelError, DeviceError, OutOfRangeError
from drivers.contract.reading import Reading
from drivers.contract.status import DeviceStatus


class Driver(abc.ABC):
    """One device (one culture chamber) behind some transport."""

    datasheet: tuple[Channel, ...] = CHANNELS
    session_token: int | None = None
    """The token a device's lease knows this controller session by (one master per device;
    None: the device has no lease). A restarted controller of the same run sets it from its
    checkpoint before `connect`, so it is the same master and is not held out by its own dead
    predecessor's lease (docs/recovery.md)."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the transport; raises a DriverError if the device cannot be reached."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the transport. Idempotent."""

    @abc.abstractmethod
    async def read(self) -> dict[str, Reading]:
        """Every input channel's latest reading. A failed read yields readings of bad quality."""

    @abc.abstractmethod
    async def read_outputs(self) -> dict[str, float]:
        """The value every output channel holds now, as the device reports it.

        The controller starts its loops from these, so taking over a running device is bumpless.
        """

    @abc.abstractmethod
    async def write(self, outputs: Mapping[str, float]) -> None:
        """Set output channels (actuator values). Validated against the datasheet first."""

    @abc.abstractmethod
    async def heartbeat(self) -> None:
        """Tell the device the controller is alive (its comm-loss watchdog is fed by this)."""

    async def read_status(self) -> DeviceStatus | None:
        """The device's status bits (`DeviceStatus`), or None: the device reports no status.

        A restarted controller reads it before its first heartbeat (which clears
        `COMM_LOSS_SAFE`): a device whose watchdog put every actuator in its safe state while
        nobody controlled it has the loops restart from the process, not from the checkpointed
        outputs (docs/recovery.md). Raises a DriverError if the link fails. The default: None.
        """
        return None

    async def reset_cutout(self) -> bool:
        """Re-arm the device-local over-temperature cut-out (status HEATER_CUTOUT, input
        `heater_cutout`): True if it was tripped and is re-armed, False if it was not tripped.
        A DeviceError if the device refuses (still too hot) or has no cut-out (the default).
        Only an operator's audited command calls this: the cut-out is the last layer."""
        raise DeviceError("this device has no resettable over-temperature cut-out")

    async def diagnostics(self) -> dict[str, float]:
        """Ground truth a device may expose (an emulator does; real hardware usually not)."""
        return {}

    def link_faults(self) -> dict[str, int]:
        """What the link absorbed without failing an operation, counted since the driver was
        built: `timeouts` (attempts), `replies_stale` (late replies), `retries` (resends).
        Local and cheap (the controller reads it every heartbeat). The default: none (a driver
        with no link)."""
        return {}


DriverFactory = Callable[..., Driver]
"""`factory(address, *, now, seed, options, time_scale)` builds a Driver; an entry point.

`now` is the controller's clock (seconds since the run's epoch); `seed` feeds any randomness the
backend has; `options` is the reactor's backend table from the config (`[reactor.chamber]`),
passed through untouched so the controller never needs to know a backend's settings; a bad
option is a ValueError naming the key. `time_scale` is how many clock seconds pass per wall
second (1 in real time, N at `--speed N`): a wire driver multiplies its timeouts, which are wall
seconds because links are, by it before waiting on the clock.
"""


_OUTPUT_RANGES = {c.name: (c.minimum, c.maximum) for c in CHANNELS
                  if c.direction is Direction.OUTPUT}
"""Each output's allowed range, looked up once per value: this runs on every write."""


def validate_outputs(outputs: Mapping[str, float]) -> None:
    """Raise ChannelError/OutOfRangeError for an output value the datasheet does not allow."""
    ranges = _OUTPUT_RANGES
    for name, value in outputs.items():
        limits = ranges.get(name)
        if limits is None:
            _refuse_channel(name)
        if not limits[0] <= value <= limits[1]:
            ch = channel(name)
            raise OutOfRangeError(
                f"{name}={value!r} outside its range [{ch.minimum}, {ch.maximum}] {ch.unit}"
            )


def _refuse_channel(name: str) -> NoReturn:
    try:
        channel(name)
    except KeyError as exc:
        raise ChannelError(str(exc.args[0])) from None
    raise ChannelError(f"channel {name!r} is an input; only outputs can be written")
