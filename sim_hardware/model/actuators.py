"""What the chamber's actuators can physically do with the outputs a controller requests.

The datasheet range says what a controller may ask for; this module says what the hardware
delivers: pumps saturate at their maximum rate, the heater at its maximum power, and the gas mixer
cannot deliver more than 100 % of gas in total (the balance is N2).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sim_hardware.model.parameters import ModelParameters


@dataclass(slots=True)
class ActuatorInputs:
    """The physical inputs the chamber sees; held until the next write changes them.

    Treat as immutable: build a new one (`apply_outputs`, `dataclasses.replace`) to change an
    input, so the model can tell which inputs changed. Not frozen only because a frozen
    dataclass costs twice as long to build, and one is built on every controller write.
    """

    heater_pct: float = 0.0
    o2_pct: float = 20.95
    co2_pct: float = 0.0
    feed_ml_per_h: float = 0.0
    harvest_ml_per_h: float = 0.0
    base_ml_per_h: float = 0.0
    heater_relay: float = 1.0
    """1 closed, 0 open. The chamber core, not the model, applies it: the model sees the heater
    power that reaches the element (`Chamber._physical`)."""
    leak_ml_per_h: float = 0.0
    """No actuator: culture leaving the chamber through no pump (the `chamber_leak` fault), so
    no controller output sets it and no totaliser counts it."""

    @property
    def n2_pct(self) -> float:
        return 100.0 - self.o2_pct - self.co2_pct


def apply_outputs(
    current: ActuatorInputs, outputs: Mapping[str, float], params: ModelParameters
) -> ActuatorInputs:
    """The inputs after `outputs` (a subset of the output channels) pass through the hardware.

    Channels not written keep their value. If O2 + CO2 exceed 100 % the mixer scales both down
    in proportion: it has no gas left for N2 and cannot deliver more than the total flow.
    (Clipping is written out inline: this runs on every controller write.)
    """
    get = outputs.get
    heater = float(get("heater_pct", current.heater_pct))
    heater = 0.0 if heater < 0.0 else 100.0 if heater > 100.0 else heater
    o2 = float(get("o2_pct", current.o2_pct))
    o2 = 0.0 if o2 < 0.0 else 100.0 if o2 > 100.0 else o2
    co2 = float(get("co2_pct", current.co2_pct))
    co2 = 0.0 if co2 < 0.0 else 100.0 if co2 > 100.0 else co2
    if o2 + co2 > 100.0:
        scale = 100.0 / (o2 + co2)
        o2 *= scale
        co2 *= scale
    feed = float(get("feed_ml_per_h", current.feed_ml_per_h))
    feed_max = params.feed_pump_max_ml_per_h
    feed = 0.0 if feed < 0.0 else feed_max if feed > feed_max else feed
    harvest = float(get("harvest_ml_per_h", current.harvest_ml_per_h))
    harvest_max = params.harvest_pump_max_ml_per_h
    harvest = 0.0 if harvest < 0.0 else harvest_max if harvest > harvest_max else harvest
    base = float(get("base_ml_per_h", current.base_ml_per_h))
    base_max = params.base_pump_max_ml_per_h
    base = 0.0 if base < 0.0 else base_max if base > base_max else base
    relay = 1.0 if get("heater_relay", current.heater_relay) >= 0.5 else 0.0
    return ActuatorInputs(heater, o2, co2, feed, harvest, base, relay)
