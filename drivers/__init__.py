"""The wire side of bioreactor-hil: the device datasheet and the Driver interface.

`drivers` imports neither `controller` nor `sim_hardware`; both depend on it.
"""
from drivers.datasheet import CHANNELS, Channel, Direction, Kind, channel
from drivers.driver import Driver, DriverFactory
from drivers.errors import (
    ChannelError,
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DriverError,
    DriverNotFoundError,
    FrameError,
    NotConnectedError,
    OutOfRangeError,
    ReadbackError,
)
from drivers.reading import Quality, Reading
from drivers.status import DeviceStatus
from drivers.registry import DeviceAddress, driver_factory, parse_device_url

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelError",
    "CommTimeoutError",
    "ConnectionLostError",
    "DeviceAddress",
    "DeviceError",
    "DeviceStatus",
    "Direction",
    "Driver",
    "DriverError",
    "DriverFactory",
    "DriverNotFoundError",
    "Kind",
    "FrameError",
    "NotConnectedError",
    "OutOfRangeError",
    "Quality",
    "Reading",
    "ReadbackError",
    "channel",
    "driver_factory",
    "parse_device_url",
]
