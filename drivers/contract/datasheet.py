"""The culture chamber's datasheet: every channel with its unit, range and direction.

This table is the contract between the controller and any device, emulated or real. The register
map and the serial command set (later) are derived from it, so a channel is declared once, here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType


class Direction(str, Enum):
    """Whether the controller reads a channel (sensor) or writes it (actuator)."""

    INPUT = "input"
    OUTPUT = "output"


class Kind(str, Enum):
    """How a sensor delivers values.

    CONTINUOUS sensors give a fresh value every read. SAMPLED ones (at-line assays) give a result
    every few hours, some time after the sample was drawn; the reading's timestamp is when the
    sample was drawn, so a reader can tell a new result from a repeated one.
    """

    CONTINUOUS = "continuous"
    SAMPLED = "sampled"


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    unit: str
    minimum: float
    maximum: float
    direction: Direction
    kind: Kind = Kind.CONTINUOUS
    description: str = ""
    safe: float | None = None
    """Outputs only: the value that keeps a culture alive while nobody controls it (heater off,
    pumps stopped, gas at the incubator's air-like mix). The device's comm watchdog, the
    controller's shutdown and its top interlock all apply these; a config may change them."""

    def contains(self, value: float) -> bool:
        return self.minimum <= value <= self.maximum


_IN, _OUT = Direction.INPUT, Direction.OUTPUT
_SAMPLED = Kind.SAMPLED

CHANNELS: tuple[Channel, ...] = (
    # Sensors
    Channel("temperature_c", "degC", 0.0, 60.0, _IN, description="Pt100 in the chamber wall"),
    Channel("do_pct_air", "% air sat", 0.0, 300.0, _IN, description="optical dissolved O2"),
    Channel("ph", "pH", 5.5, 8.5, _IN, description="optical pH (phenol red)"),
    Channel("total_cells_per_ml", "cells/mL", 0.0, 2.0e7, _IN,
            description="optical density, live and dead cells"),
    Channel("volume_ml", "mL", 0.0, 500.0, _IN, description="load cell"),
    Channel("viable_cells_per_ml", "cells/mL", 0.0, 2.0e7, _IN, _SAMPLED,
            description="at-line count with viability stain"),
    Channel("glucose_mm", "mM", 0.0, 60.0, _IN, _SAMPLED, description="at-line analyser"),
    Channel("lactate_mm", "mM", 0.0, 60.0, _IN, _SAMPLED, description="at-line analyser"),
    # Product quality and the offline reference (issue 12): each result stamped with the time
    # its sample was drawn, published when the assay has run.
    Channel("cd34_pct", "%", 0.0, 100.0, _IN, _SAMPLED,
            description="flow cytometry: CD34+ share of viable cells"),
    Channel("cd34_cd90_pct", "%", 0.0, 100.0, _IN, _SAMPLED,
            description="flow cytometry: CD34+CD90+ (primitive) share of viable cells"),
    Channel("viability_pct", "%", 0.0, 100.0, _IN, _SAMPLED,
            description="at-line count: viable share of all cells"),
    Channel("bga_ph", "pH", 6.0, 8.5, _IN, _SAMPLED,
            description="blood-gas analyser (offline reference) pH"),
    Channel("bga_po2_mmhg", "mmHg", 0.0, 800.0, _IN, _SAMPLED,
            description="blood-gas analyser pO2"),
    Channel("bga_pco2_mmhg", "mmHg", 0.0, 200.0, _IN, _SAMPLED,
            description="blood-gas analyser pCO2"),
    # The device's own view of its actuators: what real hardware reports besides the culture
    # (issue 10). Totalisers count from the device's boot; the boot id says which boot.
    Channel("feed_delivered_ml", "mL", 0.0, 1.0e6, _IN,
            description="feed pump totaliser: mL actually delivered since the device booted"),
    Channel("harvest_delivered_ml", "mL", 0.0, 1.0e6, _IN,
            description="harvest pump totaliser: mL actually delivered since the device booted"),
    Channel("base_delivered_ml", "mL", 0.0, 1.0e6, _IN,
            description="base pump totaliser: mL actually delivered since the device booted"),
    Channel("sampled_ml", "mL", 0.0, 1.0e6, _IN,
            description="culture drawn by at-line sampling since the device booted"),
    Channel("o2_flow_pct", "% gas", 0.0, 100.0, _IN,
            description="O2 mass-flow readback: the O2 fraction actually delivered"),
    Channel("co2_flow_pct", "% gas", 0.0, 20.0, _IN,
            description="CO2 mass-flow readback: the CO2 fraction actually delivered"),
    Channel("o2_supply_kpa", "kPa", 0.0, 1000.0, _IN,
            description="O2 supply pressure at the mixer inlet (gauge)"),
    Channel("co2_supply_kpa", "kPa", 0.0, 1000.0, _IN,
            description="CO2 supply pressure at the mixer inlet (gauge)"),
    Channel("heater_cutout", "-", 0.0, 1.0, _IN,
            description="device-local over-temperature cut-out: 1 tripped (relay held open, "
            "latched until reset_cutout), 0 armed"),
    Channel("device_boot_id", "-", 0.0, 65535.0, _IN,
            description="changes every time the device boots (totalisers restart from 0)"),
    Channel("device_uptime_s", "s", 0.0, 1.0e9, _IN, description="device seconds since boot"),
    # Actuators, each with its safe value
    Channel("heater_pct", "%", 0.0, 100.0, _OUT, description="heater power, % of maximum",
            safe=0.0),
    Channel("o2_pct", "% gas", 0.0, 100.0, _OUT, description="O2 in the gas mix, balance N2",
            safe=21.0),
    Channel("co2_pct", "% gas", 0.0, 20.0, _OUT, description="CO2 in the gas mix, balance N2",
            safe=5.0),
    Channel("feed_ml_per_h", "mL/h", 0.0, 60.0, _OUT, description="fresh medium pump", safe=0.0),
    Channel("harvest_ml_per_h", "mL/h", 0.0, 60.0, _OUT,
            description="harvest pump (cells and medium)", safe=0.0),
    Channel("base_ml_per_h", "mL/h", 0.0, 10.0, _OUT, description="bicarbonate base pump",
            safe=0.0),
    Channel("heater_relay", "-", 0.0, 1.0, _OUT,
            description="heater power relay, separate from the drive: 1 closed, 0 open (>= 0.5 "
            "closes it); the device's cut-out holds it open", safe=0.0),
)

_BY_NAME = {c.name: c for c in CHANNELS}
INPUTS: tuple[Channel, ...] = tuple(c for c in CHANNELS if c.direction is _IN)
OUTPUTS: tuple[Channel, ...] = tuple(c for c in CHANNELS if c.direction is _OUT)
PUMPS: tuple[str, ...] = tuple(c.name for c in OUTPUTS if c.unit == "mL/h")
"""The pump outputs (feed, harvest, base): what a feed schedule drives."""
TOTALISERS: Mapping[str, str] = MappingProxyType(
    {pump: pump.removesuffix("_ml_per_h") + "_delivered_ml" for pump in PUMPS})
"""Each pump output -> the input channel that totals what that pump actually delivered."""
RELAY_CLOSED = 1.0
"""`heater_relay` closed: the heater drive has power (the controller's normal command)."""
SAFE_STATE: Mapping[str, float] = MappingProxyType(
    {c.name: c.safe for c in OUTPUTS if c.safe is not None})
"""Every output's safe value (read-only: copy it to change it)."""


def channel(name: str) -> Channel:
    """The channel called `name`; a KeyError that lists the known names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise KeyError(f"unknown channel {name!r}; known channels: {known}") from None
