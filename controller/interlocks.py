"""Interlocks: hard limits that override the loops and the schedule, outside the PID code path.

They act on the judged readings (an interlock never trips on a bad value, and never resets on
one either) after the loops and the schedule have computed their commands, and before anything
is written. Precedence of actuator states, highest first: shutdown safe state (runtime), the
device's own comm-loss safe state (device side), interlocks (here), a loop holding on bad input
(loop.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers.reading import Quality, Reading


@dataclass(frozen=True)
class Interlock:
    name: str
    channel: str
    trips: Callable[[float], bool]
    resets: Callable[[float], bool]
    """Hysteresis: an interlock resets only well inside the limit, not at it."""
    action: str
    """What it does: `heater_max:<pct>`, `safe_state`, `stop:<output>,...`, `max:<output>:<v>`."""


def default_interlocks() -> list[Interlock]:
    """[est] limits for a CD34+ culture at 37 C (science sheet: heat kills above ~41.5 C)."""
    return [
        Interlock("overtemp_limit", "temperature_c", lambda t: t >= 38.0, lambda t: t < 37.6,
                  "heater_max:20"),
        Interlock("overtemp_cut", "temperature_c", lambda t: t >= 38.5, lambda t: t < 37.8,
                  "heater_max:0"),
        Interlock("overtemp_safe", "temperature_c", lambda t: t >= 39.5, lambda t: t < 37.8,
                  "safe_state"),
        Interlock("volume_high", "volume_ml", lambda v: v >= 150.0, lambda v: v < 140.0,
                  "stop:feed_ml_per_h,base_ml_per_h"),
        Interlock("volume_low", "volume_ml", lambda v: v <= 20.0, lambda v: v > 25.0,
                  "stop:harvest_ml_per_h"),
        Interlock("ph_far_high", "ph", lambda p: p >= 7.9, lambda p: p < 7.7, "stop:base_ml_per_h"),
        Interlock("ph_far_low", "ph", lambda p: p <= 6.7, lambda p: p > 6.9, "max:co2_pct:2"),
    ]


@dataclass(frozen=True)
class Trip:
    name: str
    t_s: float
    tripped: bool
    """True when it trips, False when it resets."""
    value: float


class InterlockSet:
    def __init__(self, interlocks: list[Interlock], safe_state: Mapping[str, float]) -> None:
        self.interlocks = interlocks
        self.safe_state = dict(safe_state)
        self.tripped: set[str] = set()
        self.history: list[Trip] = []

    def apply(self, readings: Mapping[str, Reading], commands: dict[str, float],
              t_s: float) -> list[Trip]:
        """Update the trip states from good readings, then override `commands` in place."""
        changes = []
        for lock in self.interlocks:
            reading = readings.get(lock.channel)
            if reading is None or reading.quality is not Quality.GOOD:
                continue  # neither trip nor reset on a value we do not trust
            value = reading.value
            if lock.name not in self.tripped and lock.trips(value):
                self.tripped.add(lock.name)
                changes.append(Trip(lock.name, t_s, True, value))
            elif lock.name in self.tripped and lock.resets(value):
                self.tripped.discard(lock.name)
                changes.append(Trip(lock.name, t_s, False, value))
        self.history += changes
        if self.tripped:
            self._override(commands)
        return changes

    def _override(self, commands: dict[str, float]) -> None:
        for lock in self.interlocks:
            if lock.name not in self.tripped:
                continue
            kind, _, arg = lock.action.partition(":")
            if kind == "safe_state":
                commands.update(self.safe_state)
            elif kind == "heater_max":
                commands["heater_pct"] = min(commands.get("heater_pct", 0.0), float(arg))
            elif kind == "stop":
                for output in arg.split(","):
                    commands[output] = 0.0
            elif kind == "max":
                output, _, limit = arg.partition(":")
                commands[output] = min(commands.get(output, 0.0), float(limit))
