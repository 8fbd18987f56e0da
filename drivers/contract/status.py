"""Device status bits, part of the device contract (Modbus status register, serial STATUS
reply)."""
from __future__ import annotations

from enum import IntFlag


class DeviceStatus(IntFlag):
    RUNNING = 0x0001
    """The device is up and its physics is running."""
    COMM_LOSS_SAFE = 0x0002
    """The heartbeat stopped for longer than the comm timeout: every actuator was put in its
    safe state. Cleared by the next heartbeat; the actuators stay safe until written again."""
    COMMAND_LIMITED = 0x0004
    """The last actuator write was limited by a physical limit (pump maximum, gas mix)."""
    HEATER_CUTOUT = 0x0008
    """The device-local over-temperature cut-out has tripped: the heater relay is held open
    whatever is written, until `reset_cutout` re-arms it (refused while the chamber is hot)."""
