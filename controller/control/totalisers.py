"""What the pumps actually delivered, from the device's totalisers.

A totaliser counts mL since the device booted. What a pump delivered between two ticks is its
growth since the last good reading; a reading that is not good adds nothing now and is caught
up by the next good one. A changed boot id, or a totaliser that went backwards, means the device
rebooted: it counts from 0 again, so its whole value is new (never a negative volume, never one
counted twice). What the pump gave between the last good reading and the reboot is lost to the
record; the reboot itself is on record (controller/runtime/delivery.py).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.contract.datasheet import PUMPS, TOTALISERS
from drivers.contract.reading import Quality, Reading

_GOOD = Quality.GOOD
_PUMP_TOTALISERS: tuple[tuple[str, str], ...] = tuple((pump, TOTALISERS[pump]) for pump in PUMPS)
"""(pump, its totaliser's channel), read every tick: no lookup through the read-only proxy."""


class TotaliserBaseline:
    def __init__(self) -> None:
        self.boot_id: float | None = None
        """The boot the baseline counts from; None until the first good reading."""
        self.last_ml: dict[str, float | None] = dict.fromkeys(PUMPS)
        """Each pump's totaliser at its last good reading (None: not read yet)."""
        self.measured_ml: dict[str, float] = dict.fromkeys(PUMPS, 0.0)
        """What each pump delivered since the previous `measure` (mL): read by the caller."""
        self.fresh = False
        """Every totaliser read good at the last `measure` (its measurement is up to date)."""

    def measure(self, readings: Mapping[str, Reading]) -> bool:
        """Update `measured_ml` from this tick's readings; True if the device rebooted since
        the last good reading (its boot id changed or a totaliser went backwards)."""
        boot = readings.get("device_boot_id")
        rebooted = False
        if boot is not None and boot.quality is _GOOD:
            rebooted = self.boot_id is not None and boot.value != self.boot_id
            self.boot_id = boot.value
        measured = self.measured_ml
        last_ml = self.last_ml
        fresh = True
        for pump, totaliser in _PUMP_TOTALISERS:
            reading = readings.get(totaliser)
            if reading is None or reading.quality is not _GOOD:
                measured[pump] = 0.0
                fresh = False
                continue
            value = reading.value
            last = last_ml[pump]
            if last is not None and value < last:
                rebooted = True
            last_ml[pump] = value
            measured[pump] = 0.0 if last is None else value - last
        self.fresh = fresh
        if rebooted:  # every totaliser counts from 0 again: all of each value is new
            for pump, totaliser in _PUMP_TOTALISERS:
                reading = readings.get(totaliser)
                if reading is not None and reading.quality is _GOOD:
                    measured[pump] = reading.value
        return rebooted

    def snapshot(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id, "last_ml": dict(self.last_ml)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.boot_id = state["boot_id"]
        self.last_ml = {pump: state["last_ml"].get(pump) for pump in PUMPS}
