"""`[reactor.loops.<name>]`: a PID loop's gains, limits and what it does on bad input."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from drivers.contract.datasheet import Direction, channel
from drivers.contract.validation import Seconds, StrictModel, check_channel


class LoopConfig(StrictModel):
    """A PID loop. Gains are in the ideal (ISA) form: u = kp*(e + 1/ti*int(e) + td*d(-pv)/dt)."""

    pv: str
    mv: str
    setpoint: float
    kp: float = Field(ge=0)
    ti_s: float = Field(gt=0, description="integral time; large means little integral action")
    td_s: float = Field(default=0.0, ge=0)
    d_filter_s: float = Field(default=0.0, ge=0, description="derivative low-pass time constant")
    output_raises_pv: bool = True
    out_min: float | None = None
    out_max: float | None = None
    rate_limit_per_s: float | None = Field(default=None, gt=0)
    band: float = Field(gt=0, description="+- band around the setpoint counted as on target")
    resume_after_good: int = Field(default=3, ge=1, le=1000,
                                   description="fresh good samples before a held loop acts again")
    stale_after_s: float = Field(default=10.0, gt=0, description="older input holds the loop")
    mode: Literal["auto", "manual"] = "auto"
    manual_output: float | None = None
    initial_output: float | None = None
    setpoint_min: float | None = Field(default=None, description="lowest setpoint an operator "
                                       "may command (default: the sensor's range)")
    setpoint_max: float | None = None
    on_bad_input: Literal["hold", "safe"] = Field(
        default="hold", description="input not GOOD (or stale): `hold` the last output with the "
        "integral frozen, or go to `safe_output` (after `safe_after_s`)")
    safe_output: float | None = Field(
        default=None, description="with on_bad_input = 'safe': the output while the input is "
        "bad (default: this actuator's value in [reactor.safe_state])")
    safe_after_s: Seconds = Field(
        default=0.0, ge=0, le=7 * 86400, description="with on_bad_input = 'safe': hold this "
        "long first (a short dropout should not bump the actuator), then go to safe_output")

    @field_validator("pv")
    @classmethod
    def _pv_is_input(cls, v: str) -> str:
        return check_channel(v, Direction.INPUT)

    @field_validator("mv")
    @classmethod
    def _mv_is_output(cls, v: str) -> str:
        return check_channel(v, Direction.OUTPUT)

    @model_validator(mode="after")
    def _within_datasheet(self) -> LoopConfig:
        pv, mv = channel(self.pv), channel(self.mv)
        if not pv.contains(self.setpoint):
            raise ValueError(
                f"setpoint {self.setpoint} outside {self.pv}'s range [{pv.minimum}, {pv.maximum}]"
            )
        for key in ("out_min", "out_max", "manual_output", "initial_output"):
            value = getattr(self, key)
            if value is not None and not mv.contains(value):
                raise ValueError(
                    f"{key} {value} outside {self.mv}'s range [{mv.minimum}, {mv.maximum}]"
                )
        if self.output_min >= self.output_max:
            raise ValueError(f"out_min {self.output_min} must be below out_max {self.output_max}")
        if not self.min_setpoint <= self.setpoint <= self.max_setpoint:
            raise ValueError(f"setpoint {self.setpoint} outside the operator bounds "
                             f"[{self.min_setpoint}, {self.max_setpoint}] (setpoint_min/max)")
        return self

    @property
    def min_setpoint(self) -> float:
        return channel(self.pv).minimum if self.setpoint_min is None else self.setpoint_min

    @property
    def max_setpoint(self) -> float:
        return channel(self.pv).maximum if self.setpoint_max is None else self.setpoint_max

    @property
    def output_min(self) -> float:
        return channel(self.mv).minimum if self.out_min is None else self.out_min

    @property
    def output_max(self) -> float:
        return channel(self.mv).maximum if self.out_max is None else self.out_max

    @model_validator(mode="after")
    def _bad_input_rule(self) -> LoopConfig:
        """safe_output/safe_after_s mean nothing when holding: say so rather than ignore them."""
        if self.on_bad_input == "hold":
            for key, unset in (("safe_output", None), ("safe_after_s", 0.0)):
                if getattr(self, key) != unset:
                    raise ValueError(f"{key} only applies with on_bad_input = 'safe' (this "
                                     "loop holds: 'hold')")
        elif self.safe_output is not None and not (
                self.output_min <= self.safe_output <= self.output_max):
            raise ValueError(f"safe_output outside the loop's output range "
                             f"[{self.output_min}, {self.output_max}] (out_min/out_max, "
                             f"default {self.mv}'s range)")
        return self
