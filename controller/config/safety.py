"""The reactor's safety tables: plausibility limits per input (`[reactor.quality.*]`), the
tunable interlocks (`[reactor.interlocks.*]`) and the safe state outputs fall back to."""
from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from controller.config.hard_limits import HARD_LIMIT_NAMES
from drivers.contract.datasheet import SAFE_STATE, channel
from drivers.contract.validation import Seconds, StrictModel


class QualityConfig(StrictModel):
    """Plausibility limits of one input channel (`[reactor.quality.<channel>]`). The keys a table
    sets replace the defaults' (controller/control/quality.py DEFAULT_LIMITS) one by one; a value
    far beyond anything the probe can do (e.g. 1e9) turns a check off."""

    stale_after_s: float | None = Field(default=None, gt=0, description="older is STALE")
    minimum: float | None = None
    maximum: float | None = None
    frozen_after_s: float | None = Field(default=None, gt=0,
                                         description="no change beyond frozen_epsilon: FROZEN")
    frozen_epsilon: float = Field(default=0.0, ge=0)
    max_rate_per_s: float | None = Field(default=None, gt=0, description="faster: IMPLAUSIBLE")
    noise_sd_max: float | None = Field(
        default=None, gt=0, description="scatter of successive samples (a standard deviation, "
        "channel unit, over 60 s) above which the reading is NOISY; default ~4x the probe's "
        "own noise (controller/control/quality.py NOISE_SD_LIMITS)")


class SupplyLostConfig(StrictModel):
    """A gas supply that stopped delivering (controller/control/interlocks.py), seen first from
    the device's readbacks: its supply pressure below `min_supply_kpa`, or its mass-flow
    readback more than `flow_tolerance_pct` below the written output, for `readback_for_s`.
    Only while those readbacks are not GOOD, from its loop: the loop's output at its maximum
    for `for_s` while the PV stays more than `margin` on the wrong side of the setpoint and does
    not come back by `recovery`. Defaults: docs/faults.md."""

    enabled: bool = True
    latched: bool = Field(default=True, description="once tripped, stays tripped (its "
                          "reaction keeps acting) after the PV is back, until an operator's "
                          "signed reset_interlock: a person looks before the gas comes back")
    margin: float = Field(gt=0, description="PV units beyond the setpoint (DO below it, pH "
                          "above it) that, with the gas at its maximum, count as not delivered")
    for_s: Seconds = Field(default=600.0, ge=60, le=86400, description="how long before it trips")
    recovery: float = Field(gt=0, description="PV units back towards the setpoint that show the "
                            "gas works after all (restarts the wait)")
    reset_margin: float = Field(ge=0, description="resets once the PV is back within setpoint "
                                "+- this (the supply is back)")
    perfusion_ml_per_h: float | None = Field(
        default=None, ge=0, le=60, description="feed and harvest while tripped, boluses "
        "suspended (none: the schedule's)")
    hold_output: float | None = Field(
        default=None, ge=0, le=100, description="the gas % commanded while tripped (none: the "
        "loop's own, kept at its maximum)")
    min_supply_kpa: float = Field(
        default=100.0, gt=0, description="the device's supply pressure (`<gas>_supply_kpa`, "
        "GOOD) below this counts as the supply lost (nominal 200 kPa; a lost supply reads 0)")
    flow_tolerance_pct: float = Field(
        default=1.0, gt=0, description="the mass-flow readback (`<gas>_flow_pct`, GOOD) more "
        "than this many % gas below the written output counts as not delivered")
    readback_for_s: Seconds = Field(
        default=60.0, ge=5, le=3600, description="how long the readbacks must show the supply "
        "lost before it trips (rides out a mass-flow controller settling on a step)")

    @model_validator(mode="after")
    def _reset_inside_margin(self) -> SupplyLostConfig:
        if self.reset_margin >= self.margin:
            raise ValueError(f"reset_margin must be below margin {self.margin} (allowed: "
                             f"0 <= value < {self.margin}), or it would reset while still lost")
        return self


_SUPPLY_LOST_DEFAULTS: dict[str, dict[str, float]] = {
    # DO 5 % air under setpoint (2.5x the DO band); perfusion 7 mL/h because fresh medium carries
    # O2 (measured: controller/control/interlocks.py, supply_interlocks); 21 % O2 (air) for its
    # return.
    "o2_supply_lost": {"margin": 5.0, "recovery": 1.0, "reset_margin": 2.5,
                       "perfusion_ml_per_h": 7.0, "hold_output": 21.0},
    # pH 0.15 over setpoint (3x the pH band); perfusion stopped: fresh medium is alkaline.
    "co2_supply_lost": {"margin": 0.15, "recovery": 0.02, "reset_margin": 0.1,
                        "perfusion_ml_per_h": 0.0},
}


class InterlocksConfig(StrictModel):
    """`[reactor.interlocks.*]`: the interlocks that need tuning to the culture. The hard limits
    (over-temperature, volume, pH far out) are fixed in controller/config/hard_limits.py but for
    whether each latches (`latch`). A table
    gives only the keys it changes; the rest keep their defaults (_SUPPLY_LOST_DEFAULTS)."""

    o2_supply_lost: SupplyLostConfig
    co2_supply_lost: SupplyLostConfig
    latch: dict[str, bool] = Field(default_factory=dict, description="hard limit name -> "
                                   "whether it latches (controller/config/hard_limits.py; "
                                   "defaults: docs/faults.md, \"Latching\")")

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for key, defaults in _SUPPLY_LOST_DEFAULTS.items():
            given = filled.get(key, {})
            filled[key] = {**defaults, **given} if isinstance(given, dict) else given
        return filled

    @model_validator(mode="after")
    def _latch_names(self) -> InterlocksConfig:
        for name in self.latch:
            if name in _SUPPLY_LOST_DEFAULTS:
                raise ValueError(f"latch.{name}: set `latched` in [reactor.interlocks.{name}]")
            if name not in HARD_LIMIT_NAMES:
                raise ValueError(f"latch.{name}: no such hard limit (allowed: "
                                 f"{', '.join(HARD_LIMIT_NAMES)})")
        return self

    @model_validator(mode="after")
    def _gas_within_mixer(self) -> InterlocksConfig:
        for key, mv in (("o2_supply_lost", "o2_pct"), ("co2_supply_lost", "co2_pct")):
            value = getattr(self, key).hold_output
            if value is not None and not channel(mv).contains(value):
                ch = channel(mv)
                raise ValueError(f"{key} hold_output = {value}: outside {mv}'s range "
                                 f"[{ch.minimum}, {ch.maximum}]")
        return self


def default_safe_state() -> dict[str, float]:
    """Heater off, pumps stopped, gas at the incubator's air-like mix that keeps cells alive: the
    datasheet's safe values, as a dict a reactor's `[reactor.safe_state]` may override."""
    return dict(SAFE_STATE)
