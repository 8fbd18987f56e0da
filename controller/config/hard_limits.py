"""The hard limits (over-temperature, volume, pH far out) as data: the one table both the
interlocks that enforce them (controller/control/interlocks.py) and the config check that keeps
setpoints clear of them (controller/config/safety_check.py) read.

In the config layer, not the control layer, because the config may not import control
(import-linter): the numbers are defined once, here, and imported by both.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Interlock:
    """Trips when the value reaches `trip_at` (from below if `high`, from above if not) and
    resets only once it is back past `reset_at`: hysteresis, so it does not chatter.

    While tripped it caps outputs (`caps`: output -> highest value allowed; 0 stops a pump or
    the heater) or, with `to_safe_state`, applies the reactor's whole safe state."""

    name: str
    channel: str
    high: bool
    trip_at: float
    reset_at: float
    caps: tuple[tuple[str, float], ...] = ()
    to_safe_state: bool = False

    def trips(self, value: float) -> bool:
        return value >= self.trip_at if self.high else value <= self.trip_at

    def resets(self, value: float) -> bool:
        return value < self.reset_at if self.high else value > self.reset_at


def default_interlocks() -> list[Interlock]:
    """[est] limits for a CD34+ culture at 37 C (science sheet: heat kills above ~41.5 C)."""
    return [
        Interlock("overtemp_limit", "temperature_c", True, 38.0, 37.6,
                  caps=(("heater_pct", 20.0),)),
        Interlock("overtemp_cut", "temperature_c", True, 38.5, 37.8, caps=(("heater_pct", 0.0),)),
        Interlock("overtemp_safe", "temperature_c", True, 39.5, 37.8, to_safe_state=True),
        Interlock("volume_high", "volume_ml", True, 150.0, 140.0,
                  caps=(("feed_ml_per_h", 0.0), ("base_ml_per_h", 0.0))),
        Interlock("volume_low", "volume_ml", False, 20.0, 25.0,
                  caps=(("harvest_ml_per_h", 0.0),)),
        Interlock("ph_far_high", "ph", True, 7.9, 7.7, caps=(("base_ml_per_h", 0.0),)),
        Interlock("ph_far_low", "ph", False, 6.7, 6.9, caps=(("co2_pct", 2.0),)),
    ]
