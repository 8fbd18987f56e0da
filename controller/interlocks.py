"""Interlocks: hard limits that override the loops and the schedule, outside the PID code path.

They act on the judged readings (an interlock never trips on a bad value, and never resets on
one either) after the loops and the schedule have computed their commands, and before anything
is written. Precedence of actuator states, highest first: shutdown safe state (runtime), the
device's own comm-loss safe state (device side), interlocks (here), a loop holding on bad input
(loop.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.reading import Quality, Reading


@dataclass(frozen=True)
class Interlock:
    """Trips when the value reaches `trip_at` (from below if `high`, from above if not) and
    resets only once it is back past `reset_at`: hysteresis, so it does not chatter."""

    name: str
    channel: str
    high: bool
    trip_at: float
    reset_at: float
    action: str
    """What it does: `heater_max:<pct>`, `safe_state`, `stop:<output>,...`, `max:<output>:<v>`."""

    def trips(self, value: float) -> bool:
        return value >= self.trip_at if self.high else value <= self.trip_at

    def resets(self, value: float) -> bool:
        return value < self.reset_at if self.high else value > self.reset_at


def default_interlocks() -> list[Interlock]:
    """[est] limits for a CD34+ culture at 37 C (science sheet: heat kills above ~41.5 C)."""
    return [
        Interlock("overtemp_limit", "temperature_c", True, 38.0, 37.6, "heater_max:20"),
        Interlock("overtemp_cut", "temperature_c", True, 38.5, 37.8, "heater_max:0"),
        Interlock("overtemp_safe", "temperature_c", True, 39.5, 37.8, "safe_state"),
        Interlock("volume_high", "volume_ml", True, 150.0, 140.0,
                  "stop:feed_ml_per_h,base_ml_per_h"),
        Interlock("volume_low", "volume_ml", False, 20.0, 25.0, "stop:harvest_ml_per_h"),
        Interlock("ph_far_high", "ph", True, 7.9, 7.7, "stop:base_ml_per_h"),
        Interlock("ph_far_low", "ph", False, 6.7, 6.9, "max:co2_pct:2"),
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
        # The band inside which no interlock can trip, per channel: the fast path of the tick.
        self._quiet: dict[str, tuple[float, float]] = {}
        for lock in interlocks:
            low, high = self._quiet.get(lock.channel, (float("-inf"), float("inf")))
            if lock.high:
                high = min(high, lock.trip_at)
            else:
                low = max(low, lock.trip_at)
            self._quiet[lock.channel] = (low, high)

    def apply(self, readings: Mapping[str, Reading], commands: dict[str, float],
              t_s: float) -> list[Trip]:
        """Update the trip states from good readings, then override `commands` in place."""
        if not self.tripped:
            for name, (low, high) in self._quiet.items():
                reading = readings.get(name)
                if reading is not None and not low < reading.value < high:
                    break
            else:
                return []  # nothing tripped and nothing near a limit
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
