"""The wire side of bioreactor-hil: the device datasheet and the Driver interface.

`drivers` imports neither `controller` nor `sim_hardware`; both depend on it.
"""
from drivers.datasheet import CHANNELS, Channel, Direction, Kind, channel
from drivers.driver import Driver, DriverFactory
from drivers.errors import (
    ChannelError,
    DeviceError,
    DriverError,
    DriverNotFoundError,
    NotConnectedError,
    OutOfRangeError,
)
from drivers.reading import Quality, Reading
from drivers.registry import DeviceAddress, driver_factory, parse_device_url

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelError",
    "DeviceAddress",
    "DeviceError",
    "Direction",
    "Driver",
    "DriverError",
    "DriverFactory",
    "DriverNotFoundError",
    "Kind",
    "NotConnectedError",
    "OutOfRangeError",
    "Quality",
    "Reading",
    "channel",
    "driver_factory",
    "parse_device_url",
]
