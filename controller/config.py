"""The run configuration: TOML validated by pydantic, with errors that name key, value and rule.

A reactor's `chamber` table belongs to its device backend and passes through untouched: the
controller does not know an emulator's parameters, the backend validates them itself.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from controller.durations import parse_duration_s
from drivers.datasheet import Direction, channel

DEFAULT_CONFIG = Path("configs/hsc_expansion.toml")

Seconds = Annotated[float, BeforeValidator(parse_duration_s)]


class ConfigError(ValueError):
    """A config that cannot be run; the message lists every problem, one per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_channel(name: str, direction: Direction) -> str:
    try:
        ch = channel(name)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    if ch.direction is not direction:
        raise ValueError(f"channel {name!r} is an {ch.direction.value}, expected an {direction.value}")
    return name


class LoopConfig(_Strict):
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

    @field_validator("pv")
    @classmethod
    def _pv_is_input(cls, v: str) -> str:
        return _check_channel(v, Direction.INPUT)

    @field_validator("mv")
    @classmethod
    def _mv_is_output(cls, v: str) -> str:
        return _check_channel(v, Direction.OUTPUT)

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


class PerfusionPoint(_Strict):
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


class Bolus(_Strict):
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


class ScheduleConfig(_Strict):
    perfusion: list[PerfusionPoint] = Field(default_factory=list)
    bolus: list[Bolus] = Field(default_factory=list)

    @field_validator("perfusion")
    @classmethod
    def _in_time_order(cls, points: list[PerfusionPoint]) -> list[PerfusionPoint]:
        times = [p.at for p in points]
        if times != sorted(times):
            raise ValueError(f"perfusion points must be in time order, got at = {times} s")
        return points


class QualityConfig(_Strict):
    """Plausibility limits of one input channel (`[reactor.quality.<channel>]`); None = off."""

    stale_after_s: float | None = Field(default=None, gt=0, description="older is STALE")
    minimum: float | None = None
    maximum: float | None = None
    frozen_after_s: float | None = Field(default=None, gt=0,
                                         description="no change beyond frozen_epsilon: FROZEN")
    frozen_epsilon: float = Field(default=0.0, ge=0)
    max_rate_per_s: float | None = Field(default=None, gt=0, description="faster: IMPLAUSIBLE")


def _default_safe_state() -> dict[str, float]:
    """Heater off, pumps stopped, gas at the incubator's air-like mix that keeps cells alive."""
    return {"heater_pct": 0.0, "o2_pct": 21.0, "co2_pct": 5.0,
            "feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}


class ReactorConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    device: str = "sim://"
    chamber: dict[str, Any] = Field(default_factory=dict)
    loops: dict[str, LoopConfig] = Field(default_factory=dict)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    safe_state: dict[str, float] = Field(default_factory=_default_safe_state)
    quality: dict[str, QualityConfig] = Field(default_factory=dict)

    @field_validator("quality")
    @classmethod
    def _quality_on_inputs(cls, tables: dict[str, QualityConfig]) -> dict[str, QualityConfig]:
        for name in tables:
            _check_channel(name, Direction.INPUT)
        return tables

    @field_validator("safe_state")
    @classmethod
    def _safe_state_complete(cls, state: dict[str, float]) -> dict[str, float]:
        merged = {**_default_safe_state(), **state}
        for name, value in merged.items():
            ch = channel(_check_channel(name, Direction.OUTPUT))
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


class MqttConfig(_Strict):
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


class OperatorConfig(_Strict):
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


class RunConfig(_Strict):
    duration: Seconds = Field(default=14 * 86400.0, gt=0)
    control_period_s: float = Field(default=1.0, ge=0.01, le=3600)
    seed: int = Field(default=1, ge=0, lt=2**63)
    speed: str = "max"
    flush_interval_s: float = Field(default=60.0, gt=0, description="historian batch period")
    diagnostics_interval_s: float = Field(default=600.0, gt=0)
    band_after_s: Seconds = Field(default=3600.0, ge=0, description="control bands count after")

    @field_validator("speed")
    @classmethod
    def _speed_ok(cls, v: str) -> str:
        from controller.clock import parse_speed

        parse_speed(v)
        return v


class Config(_Strict):
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
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for error in exc.errors():
        loc = error["loc"]
        key = _dotted(loc)
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            model, _ = _walk(loc[:-1])
            allowed = ", ".join(getattr(model, "model_fields", {})) or "none"
            lines.append(f"  {key}: unknown key (allowed here: {allowed})")
        elif error["type"] == "missing":
            lines.append(f"  {key}: required key missing")
        else:
            message = error["msg"].removeprefix("Value error, ")
            first_word = message.split(" ", 1)[0]
            if isinstance(value, dict) and first_word in value:
                # A cross-field rule: point at the field the message is about.
                key, value = f"{key}.{first_word}", value[first_word]
                message = message.split(" ", 1)[1].removeprefix(f"{value} ")
            allowed = _allowed_range(loc)
            if allowed and error["type"] in _BOUND_ERRORS:
                message = f"{message} (allowed: {allowed})"
            if isinstance(value, (dict, list)):
                lines.append(f"  {key}: {message}")
            else:
                lines.append(f"  {key} = {value!r}: {message}")
    return "\n".join(lines)


_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                 "finite_number"}


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """(model, field) found by walking `loc` from the root Config; dict keys are skipped."""
    model: Any = Config
    field: Any = None
    skip_key = False
    for part in loc:
        if isinstance(part, int):
            continue
        if skip_key:  # the key of a dict of models (a loop's name): stay on the value model
            skip_key = False
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None, None
        inner = _model_in(field.annotation)
        skip_key = inner is not None and getattr(field.annotation, "__origin__", None) is dict
        if inner is not None:
            model = inner
    return model, field


def _allowed_range(loc: tuple[Any, ...]) -> str:
    """`0.01 <= value <= 3600` from the field's declared bounds, or '' if it has none."""
    _, field = _walk(loc)
    if field is None:
        return ""
    low = high = ""
    for rule in field.metadata:
        for attr, text in (("ge", "<="), ("gt", "<")):
            if getattr(rule, attr, None) is not None:
                low = f"{getattr(rule, attr)} {text} "
        for attr, text in (("le", "<="), ("lt", "<")):
            if getattr(rule, attr, None) is not None:
                high = f" {text} {getattr(rule, attr)}"
    return f"{low}value{high}" if low or high else ""


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
