"""`[reactor.schedule]`: the perfusion rates over time and the boluses on top."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.contract.datasheet import PUMPS, channel
from drivers.contract.validation import Seconds, StrictModel


class PerfusionPoint(StrictModel):
    """From `at` on, the pump rates given here (rates not given keep their previous value)."""

    at: Seconds
    feed_ml_per_h: float | None = Field(default=None, ge=0)
    harvest_ml_per_h: float | None = Field(default=None, ge=0)
    base_ml_per_h: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _within_pump_range(self) -> PerfusionPoint:
        for name in PUMPS:
            value = getattr(self, name)
            if value is not None and not channel(name).contains(value):
                ch = channel(name)
                raise ValueError(f"{name} {value} outside [{ch.minimum}, {ch.maximum}] {ch.unit}")
        return self


class Bolus(StrictModel):
    """A volume pumped once, at `at`, on top of the perfusion rate."""

    at: Seconds
    volume_ml: float = Field(gt=0, le=100)
    channel: Literal["feed_ml_per_h", "base_ml_per_h"] = "feed_ml_per_h"
    rate_ml_per_h: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _rate_within_pump(self) -> Bolus:
        ch = channel(self.channel)
        if self.rate_ml_per_h is not None and self.rate_ml_per_h > ch.maximum:
            raise ValueError(
                f"rate_ml_per_h {self.rate_ml_per_h} above {self.channel}'s maximum {ch.maximum}"
            )
        return self


class DeliveryConfig(StrictModel):
    """`[reactor.schedule.delivery]`: how measured delivery (the pump totalisers) is judged
    against what was commanded, and what a short bolus does.

    The tolerance is max(`tolerance_ml`, `tolerance_fraction` x commanded). 0.2 mL is well above
    what the one-tick lag of a totaliser reading can account for (the fastest pump, 60 mL/h, moves
    0.083 mL in a 5 s tick) and 10 % is the accuracy of a peristaltic pump on worn tubing, so
    a healthy pump never trips it while a clogged one (0 %) or one at half rate does at once.
    """

    on_short: Literal["stop", "complete"] = "stop"
    """`stop`: never command more than the bolus's volume; a short bolus stays open and
    alarmed. `complete`: keep pumping until the measured volume is in, up to
    `max_commanded_factor` x the volume commanded, then stop (open and alarmed). `stop` is the
    default: a failed totaliser reads short while the pump delivers, and `complete` would then
    over-feed by up to the factor."""
    max_commanded_factor: float = Field(default=2.0, ge=1.0, le=5.0)
    tolerance_ml: float = Field(default=0.2, gt=0)
    tolerance_fraction: float = Field(default=0.1, gt=0, lt=1)
    window_s: Seconds = Field(default=3600.0, gt=0)
    """The perfusion check: each pump's commanded and measured mL are compared over windows of
    this length (1 h: 1 mL at the smallest perfusion rate used, 1 mL/h)."""

    def tolerance(self, commanded_ml: float) -> float:
        return max(self.tolerance_ml, self.tolerance_fraction * commanded_ml)


class ScheduleConfig(StrictModel):
    perfusion: list[PerfusionPoint] = Field(default_factory=list)
    bolus: list[Bolus] = Field(default_factory=list)
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)

    @field_validator("perfusion")
    @classmethod
    def _in_time_order(cls, points: list[PerfusionPoint]) -> list[PerfusionPoint]:
        times = [p.at for p in points]
        if times != sorted(times):
            raise ValueError(f"perfusion points must be in time order, got at = {times} s")
        return points
