"""`[run]`: how long, how fast, how often, from which seed; and the one parser of a speed."""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from drivers.contract.validation import Seconds, StrictModel

VIRTUAL = "max"
"""The speed of virtual time: as fast as the machine can go, the same run from the same seed."""


def parse_speed(text: str | float) -> float | None:
    """`max` -> None (virtual time); a positive number -> that speed factor (1 = real time)."""
    if isinstance(text, str) and text.strip().lower() == VIRTUAL:
        return None
    refused = ValueError(f"speed must be 'max' or a positive finite number, got {text!r}")
    if isinstance(text, bool):  # float(True) is 1.0: `speed = true` is a slip, not real time
        raise refused
    try:
        speed = float(text)
    except (TypeError, ValueError):
        raise refused from None
    if not (speed > 0 and math.isfinite(speed)):
        raise refused
    return speed


def format_speed(speed: float | None) -> str:
    """A parsed speed as a config would write it (`max` or the factor)."""
    return VIRTUAL if speed is None else f"{speed:g}"


class RunConfig(StrictModel):
    duration: Seconds = Field(default=14 * 86400.0, gt=0)
    control_period_s: float = Field(default=1.0, ge=0.01, le=3600)
    seed: int = Field(default=1, ge=0, lt=2**63)
    speed: float | None = Field(
        default=None, description="`max` (virtual time), parsed to None; or a speed factor "
        "(1 = real time)")
    flush_interval_s: float = Field(default=60.0, gt=0, description="historian batch period")
    diagnostics_interval_s: float = Field(default=600.0, gt=0)
    band_after_s: Seconds = Field(default=3600.0, ge=0, description="control bands count after")
    restart_policy: Literal["resume", "hold"] = Field(
        default="resume", description="after a crash, restarted with the same run id: `resume` "
        "carries on; `hold` keeps the loops regulating but pauses the feed schedule until an "
        "operator resumes it (docs/recovery.md)")
    checkpoint_interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="clock seconds between routine checkpoints; "
        "every feed-ledger change, operator command and alarm change is checkpointed at once")

    @field_validator("speed", mode="before")
    @classmethod
    def _parse_speed(cls, value: Any) -> float | None:
        """None passes: a RunConfig revalidated from its own dump (command-line overrides)."""
        return None if value is None else parse_speed(value)
