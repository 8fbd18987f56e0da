"""What an alarm is, as a config gives it: the `[[reactor.alarm]]` and `[reactor.alarm_board]`
tables, with the names, kinds and priorities the board runs on.

Kept apart from the board (which runs these) and from the config (which holds them) so that
neither imports the other: the config imports this module, and so does the board.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from controller.alarms.estimate_channels import input_channel
from drivers.contract.validation import Seconds, StrictModel

AlarmKind = Literal["high", "low", "deviation", "rate", "stale", "bad_quality", "comm_loss",
                    "comm_errors"]
SYSTEM_KINDS = frozenset({"comm_loss", "comm_errors"})
"""Alarms on the link, not on a channel."""
Priority = Literal["low", "medium", "high", "critical"]
VALUE_KINDS = frozenset({"high", "low", "deviation", "rate"})
FLOOD = "flood"
"""Reserved alarm name of the flood summary transitions."""
DEFAULT_MAX_SHELVE_S = 8 * 3600.0
"""One shift: a shelf should end on its own before the people who set it have gone home."""
_ALARM_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class AlarmConfig(StrictModel):
    """One alarm. Value alarms (high/low/deviation/rate) need `channel` and `limit`.

    - high: pv > limit; returns when pv <= limit - deadband.
    - low: pv < limit; returns when pv >= limit + deadband.
    - deviation: |pv - setpoint| > limit; returns when |pv - setpoint| <= limit - deadband.
    - rate: |dpv/dt| > limit (channel unit per hour, least-squares slope over `rate_window_s`);
      returns when <= limit - deadband.
    - stale: no reading, a STALE one, or (if `limit` is given) one older than `limit` seconds.
    - bad_quality: reading quality neither GOOD, STALE nor COMM_ERROR (so BAD, OUT_OF_RANGE
      and any quality added later), or a non-finite value. COMM_ERROR is left to the
      comm_loss alarm so a dropped link raises one alarm, not one per channel.
    - stale and bad_quality hold (neither raise nor clear) on a COMM_ERROR reading: the comm
      alarms speak for a link problem, one alarm rather than one per channel.
    - comm_loss: system alarm (channel None), condition = the caller's `comm_ok` is False.
    - comm_errors: system alarm, condition = the share of failed reads over `rate_window_s`
      is above `limit` (0-1): a link that mostly works but keeps failing (corrupted frames,
      exception replies) never stays down long enough for comm_loss.

    In a config it is a `[[reactor.alarm]]` table; `enabled = true` may be written but is the
    only value this model takes (`enabled = false` is an `AlarmRemoval`).
    """

    name: str = Field(pattern=_ALARM_NAME)
    channel: str | None = None
    kind: AlarmKind
    limit: float | None = None
    deadband: float = Field(default=0.0, ge=0)
    on_delay_s: Seconds = Field(default=0.0, ge=0)
    off_delay_s: Seconds = Field(default=0.0, ge=0)
    priority: Priority = "medium"
    latched: bool = False
    rate_window_s: Seconds = Field(default=600.0, gt=0, description="rate alarms: slope window")
    max_shelve_s: Seconds = Field(default=86400.0, gt=0,
                                  description="longest shelf an operator may set")
    description: str = ""
    enabled: Literal[True] = True

    @model_validator(mode="after")
    def _consistent(self) -> AlarmConfig:
        if self.name == FLOOD:
            raise ValueError(f"name {self.name!r} is reserved for the flood summary")
        if self.kind in SYSTEM_KINDS:
            if self.channel is not None:
                raise ValueError(f"channel {self.channel!r}: a {self.kind} alarm is a system "
                                 "alarm and takes no channel")
            if self.kind == "comm_errors" and (self.limit is None or not 0 < self.limit < 1):
                raise ValueError(f"limit {self.limit}: a comm_errors alarm needs the share of "
                                 "failed reads that raises it, between 0 and 1 (e.g. 0.05)")
        else:
            if self.channel is None:
                raise ValueError(f"channel missing: a {self.kind} alarm needs an input channel")
            input_channel(self.channel)  # a device's input or a soft-sensor estimate
        if self.kind in VALUE_KINDS:
            if self.limit is None:
                raise ValueError(f"limit missing: a {self.kind} alarm needs one")
            ch = input_channel(self.channel)  # type: ignore[arg-type]
            if self.kind in ("high", "low") and not ch.minimum < self.limit < ch.maximum:
                raise ValueError(f"limit {self.limit} must lie inside {ch.name}'s range "
                                 f"({ch.minimum}, {ch.maximum}) or the alarm could never fire")
            if self.kind in ("deviation", "rate"):
                if self.limit <= 0:
                    raise ValueError(f"limit {self.limit} must be > 0 for a {self.kind} alarm")
                if self.deadband >= self.limit:
                    raise ValueError(f"deadband {self.deadband} must be below the limit "
                                     f"{self.limit} or the alarm could never return")
        elif self.kind == "stale":
            if self.limit is not None and self.limit <= 0:
                raise ValueError(f"limit {self.limit} (max reading age, s) must be > 0")
        elif self.limit is not None and self.kind != "comm_errors":
            raise ValueError(f"limit {self.limit}: a {self.kind} alarm takes no limit")
        if self.kind not in VALUE_KINDS and self.deadband:
            raise ValueError(f"deadband {self.deadband}: a {self.kind} alarm is on/off; "
                             "use off_delay_s against chattering")
        return self


class AlarmRemoval(StrictModel):
    """`[[reactor.alarm]]` with `enabled = false`: the default alarm of that name is not built
    (a reactor without that probe, a limit that means nothing for this culture). Only a default
    can be removed: a configured alarm is removed by deleting its table."""

    name: str = Field(pattern=_ALARM_NAME)
    enabled: Literal[False]
    description: str = Field(default="", description="why it is off, for the next reader")


def _alarm_entry_tag(value: Any) -> str:
    enabled = value.get("enabled", True) if isinstance(value, dict) else \
        getattr(value, "enabled", True)
    return "AlarmRemoval" if enabled is False else "AlarmConfig"


AlarmEntry = Annotated[
    Annotated[AlarmConfig, Tag("AlarmConfig")] | Annotated[AlarmRemoval, Tag("AlarmRemoval")],
    Discriminator(_alarm_entry_tag),
]
"""A `[[reactor.alarm]]` table: an alarm, or (`enabled = false`) a default taken away."""
ALARM_ENTRY_MODELS: dict[str, type[BaseModel]] = {"AlarmConfig": AlarmConfig,
                                                  "AlarmRemoval": AlarmRemoval}
"""Union members pydantic names in error locations; the error formatter steps over them."""




def _critical_only() -> list[Priority]:
    return ["critical"]


class AlarmBoardConfig(StrictModel):
    """`[reactor.alarm_board]`: flood summarising, and how far operators may silence alarms."""

    flood_threshold: int = Field(default=10, ge=1, le=1000, description="more activations than "
                                 "this within flood_window_s is a flood: one summary instead")
    flood_window_s: Seconds = Field(default=600.0, gt=0, le=86400)
    flood_exempt: list[Priority] = Field(default_factory=_critical_only, description=
                                         "priorities that notify one by one even in a flood")
    max_shelve_s: Seconds = Field(default=DEFAULT_MAX_SHELVE_S, gt=0, le=7 * 86400,
                                  description="longest shelf an operator may set on any alarm "
                                  "(an alarm's own max_shelve_s may be shorter)")
    unshelvable_priorities: list[Priority] = Field(
        default_factory=_critical_only, description="priorities an operator may not "
        "shelve (they can still be removed from service, e.g. for a probe swap)")
