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


class ScheduleConfig(StrictModel):
    perfusion: list[PerfusionPoint] = Field(default_factory=list)
    bolus: list[Bolus] = Field(default_factory=list)

    @field_validator("perfusion")
    @classmethod
    def _in_time_order(cls, points: list[PerfusionPoint]) -> list[PerfusionPoint]:
        times = [p.at for p in points]
        if times != sorted(times):
            raise ValueError(f"perfusion points must be in time order, got at = {times} s")
        return points
