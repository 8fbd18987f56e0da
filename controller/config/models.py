"""The run configuration: TOML validated by pydantic, with errors that name key, value and rule.

A reactor's `chamber` table belongs to its device backend and passes through untouched: the
controller does not know an emulator's parameters, the backend validates them itself.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.contract import validation
from drivers.contract.datasheet import Direction, Kind, channel
from drivers.contract.validation import Seconds, StrictModel, check_channel

DEFAULT_CONFIG = Path("configs/hsc_expansion.toml")

class ConfigError(ValueError):
    """A config that cannot be run; the message lists every problem, one per line."""


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


class PerfusionPoint(StrictModel):
    """From `at` on, the pump rates given here (rates not given keep their previous value)."""

    at: Seconds
    feed_ml_per_h: float | None = Field(default=None, ge=0)
    harvest_ml_per_h: float | None = Field(default=None, ge=0)
    base_ml_per_h: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _within_pump_range(self) -> PerfusionPoint:
        for name in ("feed_ml_per_h", "harvest_ml_per_h", "base_ml_per_h"):
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


class QualityConfig(StrictModel):
    """Plausibility limits of one input channel (`[reactor.quality.<channel>]`). The keys a table
    sets replace the defaults' (controller/control/quality.py DEFAULT_LIMITS) one by one; a value far
    beyond anything the probe can do (e.g. 1e9) turns a check off."""

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
    """A gas supply that stopped delivering, detected from its loop (controller/control/interlocks.py):
    the loop's output at its maximum for `for_s` while the PV stays more than `margin` on the
    wrong side of the setpoint and does not come back by `recovery`. Defaults: docs/faults.md."""

    enabled: bool = True
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

    @model_validator(mode="after")
    def _reset_inside_margin(self) -> SupplyLostConfig:
        if self.reset_margin >= self.margin:
            raise ValueError(f"reset_margin must be below margin {self.margin} (allowed: "
                             f"0 <= value < {self.margin}), or it would reset while still lost")
        return self


_SUPPLY_LOST_DEFAULTS: dict[str, dict[str, float]] = {
    # DO 5 % air under setpoint (2.5x the DO band); perfusion 7 mL/h because fresh medium carries
    # O2 (measured: controller/control/interlocks.py, supply_interlocks); 21 % O2 (air) for its return.
    "o2_supply_lost": {"margin": 5.0, "recovery": 1.0, "reset_margin": 2.5,
                       "perfusion_ml_per_h": 7.0, "hold_output": 21.0},
    # pH 0.15 over setpoint (3x the pH band); perfusion stopped: fresh medium is alkaline.
    "co2_supply_lost": {"margin": 0.15, "recovery": 0.02, "reset_margin": 0.1,
                        "perfusion_ml_per_h": 0.0},
}


class InterlocksConfig(StrictModel):
    """`[reactor.interlocks.*]`: the interlocks that need tuning to the culture. The hard limits
    (over-temperature, volume, pH far out) are fixed in controller/control/interlocks.py. A table gives
    only the keys it changes; the rest keep their defaults (_SUPPLY_LOST_DEFAULTS)."""

    o2_supply_lost: SupplyLostConfig
    co2_supply_lost: SupplyLostConfig

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
    def _gas_within_mixer(self) -> InterlocksConfig:
        for key, mv in (("o2_supply_lost", "o2_pct"), ("co2_supply_lost", "co2_pct")):
            value = getattr(self, key).hold_output
            if value is not None and not channel(mv).contains(value):
                ch = channel(mv)
                raise ValueError(f"{key} hold_output = {value}: outside {mv}'s range "
                                 f"[{ch.minimum}, {ch.maximum}]")
        return self


# --- alarms --------------------------------------------------------------------------------------
# The alarm models live here rather than in controller/alarms/board.py (which runs them) because a
# reactor's config holds its alarms, and controller/alarms/board.py imports this module.

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
            check_channel(self.channel, Direction.INPUT)
        if self.kind in VALUE_KINDS:
            if self.limit is None:
                raise ValueError(f"limit missing: a {self.kind} alarm needs one")
            ch = channel(self.channel)  # type: ignore[arg-type]
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
    Union[Annotated[AlarmConfig, Tag("AlarmConfig")],
          Annotated[AlarmRemoval, Tag("AlarmRemoval")]],
    Discriminator(_alarm_entry_tag),
]
"""A `[[reactor.alarm]]` table: an alarm, or (`enabled = false`) a default taken away."""
_TAGGED_MODELS: dict[str, type[BaseModel]] = {"AlarmConfig": AlarmConfig,
                                              "AlarmRemoval": AlarmRemoval}
"""Union members pydantic names in error locations; the error formatter steps over them."""


class AlarmBoardConfig(StrictModel):
    """`[reactor.alarm_board]`: flood summarising, and how far operators may silence alarms."""

    flood_threshold: int = Field(default=10, ge=1, le=1000, description="more activations than "
                                 "this within flood_window_s is a flood: one summary instead")
    flood_window_s: Seconds = Field(default=600.0, gt=0, le=86400)
    flood_exempt: list[Priority] = Field(default_factory=lambda: ["critical"], description=
                                         "priorities that notify one by one even in a flood")
    max_shelve_s: Seconds = Field(default=DEFAULT_MAX_SHELVE_S, gt=0, le=7 * 86400,
                                  description="longest shelf an operator may set on any alarm "
                                  "(an alarm's own max_shelve_s may be shorter)")
    unshelvable_priorities: list[Priority] = Field(
        default_factory=lambda: ["critical"], description="priorities an operator may not "
        "shelve (they can still be removed from service, e.g. for a probe swap)")


def default_safe_state() -> dict[str, float]:
    """Heater off, pumps stopped, gas at the incubator's air-like mix that keeps cells alive."""
    return {"heater_pct": 0.0, "o2_pct": 21.0, "co2_pct": 5.0,
            "feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}


class ReactorConfig(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    device: str = "sim://"
    chamber: dict[str, Any] = Field(default_factory=dict)
    loops: dict[str, LoopConfig] = Field(default_factory=dict)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    safe_state: dict[str, float] = Field(default_factory=default_safe_state)
    quality: dict[str, QualityConfig] = Field(default_factory=dict)
    interlocks: InterlocksConfig = Field(default_factory=lambda: InterlocksConfig())
    alarm: list[AlarmEntry] = Field(
        default_factory=list, description="`[[reactor.alarm]]`: alarms on top of the defaults; "
        "one named like a default replaces it, `enabled = false` removes that default")
    alarm_board: AlarmBoardConfig = Field(default_factory=AlarmBoardConfig)

    @field_validator("alarm")
    @classmethod
    def _alarms_fit_the_reactor(cls, entries: list[AlarmConfig | AlarmRemoval],
                                info: ValidationInfo) -> list[AlarmConfig | AlarmRemoval]:
        """Errors start `[i].key = value:` so the message points at the table (see
        format_validation_error). Needs the loops (declared above): a deviation alarm compares
        with a loop's setpoint, and the default alarms to remove come from the loops."""
        seen: dict[str, int] = {}
        for i, entry in enumerate(entries):
            if entry.name in seen:
                raise ValueError(f"[{i}].name = {entry.name!r}: already used by alarm"
                                 f"[{seen[entry.name]}]; one table per alarm name")
            seen[entry.name] = i
        loops = info.data.get("loops")
        if loops is None:  # the loops have their own errors
            return entries
        pvs = sorted({loop.pv for loop in loops.values()})
        for i, entry in enumerate(entries):
            if isinstance(entry, AlarmConfig) and entry.kind == "deviation" \
                    and entry.channel not in pvs:
                raise ValueError(f"[{i}].channel = {entry.channel!r}: a deviation alarm "
                                 "compares with a loop's setpoint, and no loop here measures "
                                 f"it (allowed: a loop's pv: {', '.join(pvs) or 'no loops'})")
        removals = [(i, e) for i, e in enumerate(entries) if isinstance(e, AlarmRemoval)]
        if removals:
            from controller.alarms.board import default_alarms  # imports this module: not at the top

            try:
                defaults = [a.name for a in default_alarms(loops)]
            except ValueError:  # a setpoint outside the default limits: the run start says so
                return entries
            for i, removal in removals:
                if removal.name not in defaults:
                    raise ValueError(f"[{i}].name = {removal.name!r}: enabled = false removes a "
                                     "default alarm, and there is none by that name (allowed: "
                                     f"{', '.join(defaults)})")
        return entries

    @field_validator("quality")
    @classmethod
    def _quality_on_inputs(cls, tables: dict[str, QualityConfig]) -> dict[str, QualityConfig]:
        for name, table in tables.items():
            check_channel(name, Direction.INPUT)
            if table.noise_sd_max is not None and channel(name).kind is Kind.SAMPLED:
                raise ValueError(f"{name}.noise_sd_max: {name} is an at-line result, sampled "
                                 "hours apart; the noise check is for continuous probes")
        return tables

    @field_validator("safe_state")
    @classmethod
    def _safe_state_complete(cls, state: dict[str, float]) -> dict[str, float]:
        merged = {**default_safe_state(), **state}
        for name, value in merged.items():
            ch = channel(check_channel(name, Direction.OUTPUT))
            if not ch.contains(value):
                raise ValueError(f"{name} {value} outside [{ch.minimum}, {ch.maximum}] {ch.unit}")
        return merged

    @model_validator(mode="after")
    def _one_loop_per_output(self) -> ReactorConfig:
        owners: dict[str, str] = {}
        for name, loop in self.loops.items():
            if loop.mv in owners:
                raise ValueError(f"loops {owners[loop.mv]!r} and {name!r} both drive {loop.mv}")
            owners[loop.mv] = name
        scheduled = {"feed_ml_per_h", "harvest_ml_per_h", "base_ml_per_h"} & owners.keys()
        if scheduled and (self.schedule.perfusion or self.schedule.bolus):
            raise ValueError(f"{sorted(scheduled)} driven by both a loop and the schedule")
        return self


class MqttConfig(StrictModel):
    """Telemetry and remote operation over MQTT; absent means the historian is the only record."""

    url: str = Field(description="mqtt://[USER:PASS@]HOST:PORT or mqtts://...")
    client_id: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    outbox: str = Field(default="runs/outbox.sqlite",
                        description="durable store-and-forward queue (kept across restarts)")
    max_skew_s: float = Field(default=30.0, gt=0, le=3600,
                              description="commands older or newer than this are refused")

    @field_validator("url")
    @classmethod
    def _mqtt_scheme(cls, v: str) -> str:
        if not (v.startswith("mqtt://") or v.startswith("mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v


class OperatorConfig(StrictModel):
    """Someone allowed to send commands; commands are HMAC-SHA256 signed with this key."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    key_hex: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2}){16,}$",
                                description="at least 16 bytes, hex")
    key_file: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> OperatorConfig:
        if (self.key_hex is None) == (self.key_file is None):
            raise ValueError("key_hex or key_file: give exactly one")
        if self.key_file is not None:
            try:
                key = bytes.fromhex(Path(self.key_file).read_text().strip())
            except (OSError, ValueError) as exc:
                raise ValueError(f"key_file {self.key_file}: cannot read a hex key ({exc})") from None
            if len(key) < 16:
                raise ValueError(f"key_file {self.key_file}: key shorter than 16 bytes")
        return self

    def key(self) -> bytes:
        if self.key_hex is not None:
            return bytes.fromhex(self.key_hex)
        return bytes.fromhex(Path(self.key_file).read_text().strip())  # type: ignore[arg-type]


class RunConfig(StrictModel):
    duration: Seconds = Field(default=14 * 86400.0, gt=0)
    control_period_s: float = Field(default=1.0, ge=0.01, le=3600)
    seed: int = Field(default=1, ge=0, lt=2**63)
    speed: str = "max"
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

    @field_validator("speed")
    @classmethod
    def _speed_ok(cls, v: str) -> str:
        from controller.clock import parse_speed

        parse_speed(v)
        return v


class Config(StrictModel):
    run: RunConfig = Field(default_factory=RunConfig)
    reactor: list[ReactorConfig] = Field(min_length=1)
    mqtt: MqttConfig | None = None
    operator: list[OperatorConfig] = Field(default_factory=list)
    fault: list[dict[str, Any] | str] = Field(
        default_factory=list,
        description="faults to inject into an emulated chamber (docs/faults.md); each table may "
                    "name its `reactor` (default: the first); the emulator validates the rest")

    def faults_for(self, index: int) -> list[Any]:
        """The `[[fault]]` entries aimed at reactor `index`, without their `reactor` key."""
        reactor_id = self.reactor[index].id
        chosen = []
        for entry in self.fault:
            if isinstance(entry, str):  # NAME@TIME[:k=v,...] from the command line
                target = self.reactor[0].id
            else:
                target = entry.get("reactor", self.reactor[0].id)
                entry = {k: v for k, v in entry.items() if k != "reactor"}
            if target == reactor_id:
                chosen.append(entry)
        return chosen

    @model_validator(mode="after")
    def _faults_name_known_reactors(self) -> Config:
        ids = {r.id for r in self.reactor}
        for i, table in enumerate(self.fault):
            target = table.get("reactor") if isinstance(table, dict) else None
            if target is not None and target not in ids:
                raise ValueError(f"fault[{i}].reactor {target!r} is not a reactor id "
                                 f"(known: {sorted(ids)})")
        return self

    @field_validator("reactor")
    @classmethod
    def _unique_ids(cls, reactors: list[ReactorConfig]) -> list[ReactorConfig]:
        ids = [r.id for r in reactors]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"reactor ids must be unique; repeated: {duplicates}")
        return reactors


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML config; ConfigError lists every problem with its key."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """The config's problems, one per line, worded as the device's options are too."""
    return validation.format_validation_error(exc, source, Config, _TAGGED_MODELS)
