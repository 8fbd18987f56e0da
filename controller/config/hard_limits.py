"""The hard limits (over-temperature, volume, pH far out) as data: the one table both the
interlocks that enforce them (controller/control/interlocks.py) and the config check that keeps
setpoints clear of them (controller/config/safety_check.py) read.

In the config layer, not the control layer, because the config may not import control
(import-linter): the numbers are defined once, here, and imported by both.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Interlock:
    """Trips when the value reaches `trip_at` (from below if `high`, from above if not) and
    resets only once it is back past `reset_at`: hysteresis, so it does not chatter.

    While tripped it caps outputs (`caps`: output -> highest value allowed; 0 stops a pump or
    the heater) or, with `to_safe_state`, applies the reactor's whole safe state.

    `latched`: once tripped it stays tripped (its caps keep acting) after the value is back past
    `reset_at`, until an operator's signed `reset_interlock` (refused while the value is not
    back past `reset_at`, or not GOOD). Defaults and why: docs/faults.md, "Latching"; a reactor
    changes them in `[reactor.interlocks.latch]`."""

    name: str
    channel: str
    high: bool
    trip_at: float
    reset_at: float
    caps: tuple[tuple[str, float], ...] = ()
    to_safe_state: bool = False
    latched: bool = False

    def trips(self, value: float) -> bool:
        return value >= self.trip_at if self.high else value <= self.trip_at

    def resets(self, value: float) -> bool:
        return value < self.reset_at if self.high else value > self.reset_at


def default_interlocks() -> list[Interlock]:
    """[est] limits for a CD34+ culture at 37 C (science sheet: heat kills above ~41.5 C).

    The over-temperature tiers latch: heat that came back by itself after a trip is how a
    stuck heater or a failed sensor cooks a culture, so a person looks first. Volume and pH far
    out do not: their caps only stop a pump or limit the CO2 the controller's own actions then
    correct, giving the pump back is not a hazard, and a latched one would leave an unattended
    culture unfed (volume_low: never harvested) for hours; their alarms call a person anyway
    (docs/faults.md, "Latching").

    `overtemp_cut` opens the heater relay as well as zeroing the drive: the path a stuck heater
    drive cannot ignore, and one the temperature loop never uses (issue 10)."""
    return [
        Interlock("overtemp_limit", "temperature_c", True, 38.0, 37.6,
                  caps=(("heater_pct", 20.0),), latched=True),
        Interlock("overtemp_cut", "temperature_c", True, 38.5, 37.8,
                  caps=(("heater_pct", 0.0), ("heater_relay", 0.0)), latched=True),
        Interlock("overtemp_safe", "temperature_c", True, 39.5, 37.8, to_safe_state=True,
                  latched=True),
        Interlock("volume_high", "volume_ml", True, 150.0, 140.0,
                  caps=(("feed_ml_per_h", 0.0), ("base_ml_per_h", 0.0))),
        Interlock("volume_low", "volume_ml", False, 20.0, 25.0,
                  caps=(("harvest_ml_per_h", 0.0),)),
        Interlock("ph_far_high", "ph", True, 7.9, 7.7, caps=(("base_ml_per_h", 0.0),)),
        Interlock("ph_far_low", "ph", False, 6.7, 6.9, caps=(("co2_pct", 2.0),)),
    ]


HARD_LIMIT_NAMES = tuple(lock.name for lock in default_interlocks())


def configured_interlocks(latch: Mapping[str, bool]) -> list[Interlock]:
    """The hard limits with a reactor's `[reactor.interlocks.latch]` applied (name -> latched;
    names not given keep their defaults)."""
    return [replace(lock, latched=latch.get(lock.name, lock.latched))
            for lock in default_interlocks()]
