"""The wire side of bioreactor-hil: the device datasheet and the Driver interface.

`drivers` imports neither `controller` nor `sim_hardware`; both depend on it.
"""
from drivers.contract.datasheet import CHANNELS, Channel, Direction, Kind, channel
from drivers.contract.driver import Driver, DriverFactory
from drivers.contract.errors import (
    ChannelError,
    CommTimeoutError,
    ConnectionLostError,
    DeviceError,
    DeviceHeldError,
    DriverError,
    DriverNotFoundError,
    FrameError,
    NotConnectedError,
    OutOfRangeError,
    ReadbackError,
)
from drivers.contract.reading import Quality, Reading
from drivers.contract.registry import driver_factory
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import DeviceAddress, parse_device_url

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelError",
    "CommTimeoutError",
    "ConnectionLostError",
    "DeviceAddress",
    "DeviceError",
    "DeviceHeldError",
    "DeviceStatus",
    "Direction",
    "Driver",
    "DriverError",
    "DriverFactory",
    "DriverNotFoundError",
    "FrameError",
    "Kind",
    "NotConnectedError",
    "OutOfRangeError",
    "Quality",
    "ReadbackError",
    "Reading",
    "channel",
    "driver_factory",
    "parse_device_url",
]
