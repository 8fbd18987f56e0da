"""Typed driver errors, so a policy (retry, hold, safe state) can tell them apart."""


class DriverError(Exception):
    """Base of every error a driver raises."""


class DriverNotFoundError(DriverError):
    """No driver is registered for a device URL's scheme."""


class NotConnectedError(DriverError):
    """read/write/heartbeat before connect(), or after close()."""


class ChannelError(DriverError):
    """A write names a channel the device does not have, or one that is not an output."""


class OutOfRangeError(DriverError):
    """An output value lies outside the channel's datasheet range."""


class DeviceError(DriverError):
    """The device answered, but with an error (an exception reply, a refused write)."""


class DeviceHeldError(DeviceError):
    """Another controller session holds the device's lease (one master per device): control
    requests are refused until that session stops heartbeating for the device's comm timeout.
    Reads still work; the controller keeps trying to take the lease."""


class CommTimeoutError(DriverError):
    """The device did not answer within the timeout (after the configured retries)."""


class FrameError(DriverError):
    """A reply that cannot be trusted: bad CRC or checksum, truncated, garbage, wrong length."""


class ConnectionLostError(DriverError):
    """The link is down; the driver reconnects with backoff on later calls."""


class ReadbackError(DriverError):
    """An actuator write was accepted but reading it back gave a different value."""
