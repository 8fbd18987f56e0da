"""Fault injection for the emulated chamber: the catalogue (data), spec parsing, and `FaultSet`.

A fault is a `FaultSpec`: a catalogue name, a start `at` (seconds on the driver's clock), an
optional `duration` (None: until the end of the run) and parameters. The in-process driver
(`SimDriver`) owns one `FaultSet` built from its chamber option `faults` and applies it:

* sensor faults transform the readings after the sensor model (the truth is untouched);
* actuator faults change what the chamber physically receives, while the driver's
  `outputs_now()` keeps reporting what was commanded (a stuck heater is not visible in the
  setpoint registers);
* process faults change the culture itself (contamination: a competitor in the model);
* comm faults raise a driver error from read/write/heartbeat before anything else happens.

Specs come from the command line (`NAME@TIME[:key=value,...]`, `parse_fault`) or from TOML
`[[fault]]` tables (`fault_from_table`). Every error is a ValueError naming the fault, the key,
the value and what is allowed. Every random draw (spike signs, extra noise, corrupted frames)
comes from the run's seed, so a faulted run is as repeatable as a clean one.

This module never imports the controller: it has its own small duration parser.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from drivers.datasheet import INPUTS, channel
from drivers.errors import CommTimeoutError, DeviceError, FrameError
from drivers.reading import Quality, Reading
from sim_hardware.actuators import ActuatorInputs
from sim_hardware.parameters import ModelParameters

SENSOR_CHANNELS = tuple(c.name for c in INPUTS)
PUMPS = ("feed", "harvest", "base")
_BAD = Quality.BAD
_GOOD = Quality.GOOD
_OUT = Quality.OUT_OF_RANGE

# Per-channel defaults for the sensor faults whose size depends on the channel's unit.
_DRIFT_PER_H = {"temperature_c": 0.05, "do_pct_air": 0.5, "ph": 0.005,
                "total_cells_per_ml": 2.0e4, "volume_ml": 0.1, "viable_cells_per_ml": 2.0e4,
                "glucose_mm": 0.05, "lactate_mm": 0.05}
_SPIKE = {"temperature_c": 5.0, "do_pct_air": 30.0, "ph": 0.5, "total_cells_per_ml": 1.0e6,
          "volume_ml": 10.0, "viable_cells_per_ml": 1.0e6, "glucose_mm": 5.0,
          "lactate_mm": 5.0}
_NOISE = {"temperature_c": 0.2, "do_pct_air": 3.0, "ph": 0.05, "total_cells_per_ml": 5.0e4,
          "volume_ml": 1.0, "viable_cells_per_ml": 5.0e4, "glucose_mm": 0.5, "lactate_mm": 0.5}


@dataclass(frozen=True)
class FaultParam:
    """One parameter of a fault type. `default` None: required. `by_channel`: the default
    depends on the faulted channel (its unit)."""

    name: str
    unit: str
    description: str
    default: float | str | None = None
    by_channel: Mapping[str, float] | None = None
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    """Values must be > minimum (strictly) when set."""
    maximum: float | None = None

    def describe_default(self) -> str:
        if self.by_channel is not None:
            return "per channel: " + ", ".join(f"{k} {v:g}" for k, v in self.by_channel.items())
        if self.default is None:
            return "required"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


@dataclass(frozen=True)
class FaultType:
    """A row of the catalogue."""

    name: str
    kind: str
    """sensor, actuator, process or comm."""
    target: str
    """Which channel/actuator it hits ("channel=" / "pump=": chosen by a parameter)."""
    effect: str
    params: tuple[FaultParam, ...] = ()
    detection: str = ""
    """What a controller should see, and how fast."""
    reaction: str = ""
    allows_duration: bool = True


_CH = FaultParam("channel", "", "the sensor channel", choices=SENSOR_CHANNELS)
_PUMP = FaultParam("pump", "", "which pump", choices=PUMPS)

CATALOGUE: tuple[FaultType, ...] = (
    FaultType("sensor_stuck", "sensor", "channel=",
              "the reading freezes at its value when the fault starts (the first read at or "
              "after `at`), quality GOOD, fresh timestamps, while the truth moves",
              (_CH,),
              "flat-line: zero variance over a window where noise is expected (pH noise "
              "0.005: 5-10 min of identical values), or disagreement with the model/other "
              "sensors (pH vs CO2 %, temperature vs heater duty) within ~1 h",
              "mark the channel BAD, freeze the loop it feeds (hold the last actuator value "
              "or run open-loop on a model), alarm"),
    FaultType("sensor_drift", "sensor", "channel=",
              "adds rate_per_h x hours since `at` to the reading",
              (_CH, FaultParam("rate_per_h", "channel unit/h", "drift rate (signed)",
                               by_channel=_DRIFT_PER_H)),
              "slow: residual against the at-line/offline check or a redundant probe grows; "
              "pH 0.005/h reaches the 0.05 check tolerance in ~10 h",
              "recalibrate against the offline sample (offset correction), alarm if the "
              "correction exceeds the probe's expected drift"),
    FaultType("sensor_spike", "sensor", "channel=",
              "isolated spikes: the first read at or after each `at + k*period_s` is off by "
              "+/- magnitude (seeded sign); the reads between are normal",
              (_CH, FaultParam("magnitude", "channel unit", "spike size",
                               by_channel=_SPIKE, minimum=0.0),
               FaultParam("period_s", "s", "time between spikes", default=600.0,
                          minimum=0.0)),
              "one-sample outliers: a rate-of-change or median filter sees it on the sample "
              "itself (one tick)",
              "reject the sample (median of 3 / rate limit); never act on a single reading"),
    FaultType("sensor_dropout", "sensor", "channel=",
              "reading quality BAD, value NaN",
              (_CH,),
              "immediate: quality BAD on the next read",
              "hold the loop's output (or go to its safe value) while BAD; alarm if it lasts "
              "more than a few minutes"),
    FaultType("sensor_noise", "sensor", "channel=",
              "adds extra white noise N(0, std) per read (seeded)",
              (_CH, FaultParam("std", "channel unit", "standard deviation", by_channel=_NOISE,
                               minimum=0.0)),
              "variance over a window above the probe's datasheet noise (minutes)",
              "filter harder / lower loop gain; alarm and mark the channel degraded"),
    FaultType("heater_failed_off", "actuator", "heater_pct",
              "the heater delivers 0 % whatever is commanded; the temperature falls towards "
              "ambient with the chamber's thermal time constant",
              (),
              "temperature below setpoint with the heater commanded high (loop saturated) "
              "for ~5-10 min; a 1 degC error within ~10-20 min",
              "alarm (cannot be fixed by software); keep the culture as warm as possible, "
              "reduce feed of cold medium; crew/ground action"),
    FaultType("heater_stuck_on", "actuator", "heater_pct",
              "the heater delivers 100 % whatever is commanded (the setpoint register still "
              "shows the command)",
              (),
              "temperature above setpoint while the command is at 0 (loop saturated low); "
              "+1 degC within ~10-20 min",
              "interlock: cut heater power (a hardware relay), alarm; above ~39 degC the "
              "cells die"),
    FaultType("pump_clogged", "actuator", "pump=",
              "the pump delivers 0 mL/h whatever is commanded",
              (_PUMP,),
              "volume does not follow the fed/harvested balance (load cell): a feed or harvest "
              "clog shows as a volume trend of the pump's rate within ~1 h; base: pH keeps "
              "falling while the base pump runs",
              "alarm, switch to the spare line if any; stop the opposing pump to keep volume"),
    FaultType("pump_runaway", "actuator", "pump=",
              "the pump runs at its maximum whatever is commanded",
              (_PUMP,),
              "volume (feed/base: rising, harvest: falling to the dip tube) changes at the "
              "pump's maximum rate: minutes at 60 mL/h in 50 mL; base: pH rises fast",
              "interlock on volume limits: cut the pump's power; alarm"),
    FaultType("o2_supply_lost", "actuator", "o2_pct",
              "o2_pct actually delivered is 0 whatever is commanded (the mixer delivers N2 "
              "instead); DO falls towards 0 at the cells' uptake and kLa",
              (),
              "DO below setpoint with o2_pct commanded high (loop saturated); at kLa 4/h the "
              "DO halves within ~15-30 min",
              "alarm; reduce O2 demand (stop feeding, lower temperature slightly); crew action"),
    FaultType("co2_supply_lost", "actuator", "co2_pct",
              "co2_pct actually delivered is 0 whatever is commanded: dissolved CO2 strips "
              "out and the bicarbonate medium goes alkaline (pH > 7.6 within hours)",
              (),
              "pH above setpoint with co2_pct commanded at its maximum (loop saturated), "
              "within ~30-60 min; pH > 7.6 within a few hours",
              "alarm; no base; consider switching to a HEPES-buffered feed; crew action"),
    FaultType("contamination", "process", "chamber",
              "a fast-growing competitor (doubling ~1 h [est]) inoculated at `at`: it consumes "
              "glucose (to lactate) and O2, and adds to the optical total cell count but not "
              "to the viable HSC count; booked in the ledger as contaminant_cells. It does "
              "not end (no duration)",
              (FaultParam("cells_per_ml", "cells/mL", "inoculum", default=100.0, minimum=0.0),
               FaultParam("doubling_h", "h", "doubling time", default=1.0, minimum=0.0),
               FaultParam("q_glc_pmol_per_cell_h", "pmol/cell/h", "glucose uptake",
                          default=0.005, minimum=-1e-300),
               FaultParam("q_o2_pmol_per_cell_h", "pmol/cell/h", "O2 uptake", default=0.01,
                          minimum=-1e-300),
               FaultParam("max_cells_per_ml", "cells/mL", "carrying capacity",
                          default=1.0e9, minimum=0.0)),
              "optical total count rising faster than the HSCs can double (and above the "
              "at-line viable count), DO demand (O2 % needed) rising, glucose falling and "
              "lactate rising faster than the cell count explains: ~12-20 h after a 100/mL "
              "inoculum",
              "alarm, stop the run or isolate the chamber (no harvest into the product); "
              "a contamination cannot be controlled away",
              allows_duration=False),
    FaultType("comm_timeout", "comm", "link",
              "read/write/heartbeat raise drivers.CommTimeoutError while active",
              (),
              "immediate: the first call times out (after the driver's retries)",
              "hold outputs, retry with backoff; the device's own watchdog takes the safe "
              "state after its comm timeout; alarm after N failures"),
    FaultType("comm_corrupt", "comm", "link",
              "each read/write/heartbeat raises drivers.FrameError with `probability` "
              "(seeded)",
              (FaultParam("probability", "", "chance per call", default=0.1, minimum=0.0,
                          maximum=1.0),),
              "immediate per call; a rate of bad frames above ~1 % over minutes",
              "retry the call; alarm on a sustained error rate"),
    FaultType("comm_exception", "comm", "link",
              "read/write/heartbeat raise drivers.DeviceError('device busy') while active",
              (),
              "immediate: an exception reply on the first call",
              "retry with backoff, hold outputs; alarm if it lasts"),
)

FAULTS: dict[str, FaultType] = {f.name: f for f in CATALOGUE}
_COMMON_KEYS = ("name", "at", "duration")


# ------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class FaultSpec:
    """One fault to inject: a catalogue name, when, for how long, with which parameters."""

    name: str
    at_s: float
    duration_s: float | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.at_s + self.duration_s

    @property
    def type(self) -> FaultType:
        return FAULTS[self.name]

    def active(self, t_s: float) -> bool:
        return self.at_s <= t_s < self.end_s

    def label(self) -> str:
        """The spec in command-line form (for messages and reports)."""
        parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in self.params.items()]
        if self.duration_s is not None:
            parts.append(f"duration={self.duration_s:g}s")
        return f"{self.name}@{self.at_s:g}s" + (":" + ",".join(parts) if parts else "")


_UNITS_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|min|m|h|d)?\s*$")


def parse_seconds(value: Any, what: str) -> float:
    """A time as seconds: a number (seconds) or a string like 30s, 90m, 36h, 3d, 1.5h, 120."""
    if isinstance(value, bool):
        raise ValueError(f"{what}={value!r} is not a time; use seconds or 30s/90m/36h/3d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNITS_S[m.group(2) or "s"]
    else:
        raise ValueError(f"{what}={value!r} is not a time; use seconds or a number with a "
                         "unit s, m (or min), h or d, e.g. 30s, 90m, 36h, 3d")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what}={value!r} must be a finite time >= 0")
    return seconds


def _known() -> str:
    return ", ".join(FAULTS)


def _check_param(fault: FaultType, p: FaultParam, value: Any) -> Any:
    where = f"fault {fault.name}: {p.name}={value!r}"
    if p.choices is not None:
        if value not in p.choices:
            raise ValueError(f"{where} is not allowed; {p.name} must be one of "
                             f"{', '.join(p.choices)}")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{where} must be a number"
                             + (f" in {p.unit}" if p.unit else "")) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number" + (f" in {p.unit}" if p.unit else ""))
    value = float(value)
    if p.minimum is not None and not value > p.minimum:
        raise ValueError(f"{where} must be > {p.minimum:g}")
    if p.maximum is not None and value > p.maximum:
        raise ValueError(f"{where} must be <= {p.maximum:g}")
    return value


def make_fault(name: Any, at: Any, duration: Any = None, **params: Any) -> FaultSpec:
    """A checked FaultSpec; missing parameters take their (per-channel) defaults."""
    if name not in FAULTS:
        raise ValueError(f"unknown fault {name!r}; known faults: {_known()}")
    ft = FAULTS[name]
    at_s = parse_seconds(at, f"fault {name}: at")
    duration_s = None
    if duration is not None:
        if not ft.allows_duration:
            raise ValueError(f"fault {name}: duration={duration!r} is not allowed; a "
                             f"{name} does not end (omit duration)")
        duration_s = parse_seconds(duration, f"fault {name}: duration")
        if duration_s <= 0:
            raise ValueError(f"fault {name}: duration={duration!r} must be > 0")
    allowed = {p.name: p for p in ft.params}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        keys = ", ".join(f"{k}={params[k]!r}" for k in unknown)
        raise ValueError(f"fault {name}: unknown key(s) {keys}; allowed keys: "
                         f"{', '.join([*allowed, 'duration']) or 'duration'}")
    checked: dict[str, Any] = {}
    for p in ft.params:  # choices first, so per-channel defaults can use the channel
        if p.name in params:
            checked[p.name] = _check_param(ft, p, params[p.name])
        elif p.by_channel is not None:
            checked[p.name] = p.by_channel[checked["channel"]]
        elif p.default is None:
            raise ValueError(f"fault {name}: missing key {p.name}; "
                             + (f"one of {', '.join(p.choices)}" if p.choices else p.description))
        else:
            checked[p.name] = p.default
    return FaultSpec(name, at_s, duration_s, checked)


def parse_fault(spec: str) -> FaultSpec:
    """`NAME@TIME[:key=value,...]`, e.g. `co2_supply_lost@3d`, `sensor_stuck@2d:channel=ph`,
    `sensor_drift@1d:channel=ph,rate_per_h=0.002,duration=12h`."""
    if not isinstance(spec, str):
        raise ValueError(f"fault spec {spec!r} must be a string NAME@TIME[:key=value,...]")
    head, sep, tail = spec.strip().partition(":")
    name, at_sep, at = head.partition("@")
    name = name.strip()
    if name not in FAULTS:
        raise ValueError(f"fault spec {spec!r}: unknown fault {name!r}; known faults: "
                         f"{_known()}")
    if not at_sep or not at.strip():
        raise ValueError(f"fault spec {spec!r}: missing start time; write {name}@TIME, "
                         "e.g. {name}@36h")
    params: dict[str, str] = {}
    if sep:
        for item in tail.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"fault spec {spec!r}: {item!r} is not key=value")
            params[key.strip()] = value.strip()
    duration = params.pop("duration", None)
    return make_fault(name, at.strip(), duration, **params)


def fault_from_table(table: Mapping[str, Any]) -> FaultSpec:
    """A TOML `[[fault]]` table: {name, at, duration?, ...params}."""
    if not isinstance(table, Mapping):
        raise ValueError(f"[[fault]] entry {table!r} must be a table with name and at")
    if "name" not in table:
        raise ValueError(f"[[fault]] {dict(table)!r}: missing key name; known faults: "
                         f"{_known()}")
    name = table["name"]
    if name not in FAULTS:
        raise ValueError(f"[[fault]] name={name!r}: unknown fault; known faults: {_known()}")
    if "at" not in table:
        raise ValueError(f"fault {name}: missing key at (start: seconds or 30s/90m/36h/3d)")
    params = {k: v for k, v in table.items() if k not in _COMMON_KEYS}
    return make_fault(name, table["at"], table.get("duration"), **params)


def parse_faults(entries: Any) -> tuple[FaultSpec, ...]:
    """The chamber option `faults`: a list of spec strings, tables or FaultSpecs."""
    if entries is None:
        return ()
    if isinstance(entries, (str, Mapping)) or not isinstance(entries, Iterable):
        raise ValueError(f"chamber option faults={entries!r} must be a list of fault specs "
                         "(NAME@TIME[:key=value,...]) or tables {name, at, ...}")
    out = []
    for entry in entries:
        if isinstance(entry, FaultSpec):
            out.append(make_fault(entry.name, entry.at_s, entry.duration_s, **entry.params))
        elif isinstance(entry, str):
            out.append(parse_fault(entry))
        else:
            out.append(fault_from_table(entry))
    return tuple(out)


# ------------------------------------------------------------------------ the fault set
class _Active:
    """Run-time state of one fault."""

    __slots__ = ("spec", "rng", "frozen", "next_spike_s")

    def __init__(self, spec: FaultSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        self.frozen: float | None = None
        self.next_spike_s = spec.at_s


class FaultSet:
    """The faults of one chamber, applied by the driver.

    The driver calls `check_comm` first thing in read/write/heartbeat, stops its integration at
    every time in `transition_times` (there it calls `physical` and, at a contamination's
    start, `starts_at`), and passes its readings through `apply_readings`.
    """

    def __init__(self, specs: Iterable[FaultSpec], seed: np.random.SeedSequence,
                 params: ModelParameters) -> None:
        self.specs = tuple(specs)
        children = seed.spawn(len(self.specs)) if self.specs else []
        faults = [_Active(s, np.random.default_rng(c)) for s, c in zip(self.specs, children)]
        self._sensor = [f for f in faults if f.spec.type.kind == "sensor"]
        self._actuator = [f.spec for f in faults if f.spec.type.kind == "actuator"]
        self._comm = [f for f in faults if f.spec.type.kind == "comm"]
        self._process = [f.spec for f in faults if f.spec.type.kind == "process"]
        self._max = {"feed": params.feed_pump_max_ml_per_h,
                     "harvest": params.harvest_pump_max_ml_per_h,
                     "base": params.base_pump_max_ml_per_h}
        times = {s.at_s for s in self._actuator + self._process}
        times |= {s.end_s for s in self._actuator if math.isfinite(s.end_s)}
        self.transition_times = tuple(sorted(times))
        """When the chamber's physical inputs change (actuator faults) or a process starts."""

    def __bool__(self) -> bool:
        return bool(self.specs)

    # ---------------------------------------------------------------------------- comm
    def check_comm(self, now: float) -> None:
        """Raise the driver error of an active comm fault (before the call does anything)."""
        for f in self._comm:
            s = f.spec
            if not s.at_s <= now < s.end_s:
                continue
            if s.name == "comm_timeout":
                raise CommTimeoutError(f"sim://: no reply (injected fault {s.label()})")
            if s.name == "comm_exception":
                raise DeviceError(f"sim://: device busy (injected fault {s.label()})")
            if f.rng.random() < s.params["probability"]:
                raise FrameError(f"sim://: corrupted frame (injected fault {s.label()})")

    # ------------------------------------------------------------------------ actuators
    def physical(self, commanded: ActuatorInputs, t_s: float) -> ActuatorInputs:
        """What the chamber receives at `t_s` when `commanded` was commanded."""
        changes: dict[str, float] = {}
        for s in self._actuator:
            if not s.at_s <= t_s < s.end_s:
                continue
            name = s.name
            if name == "heater_failed_off":
                changes["heater_pct"] = 0.0
            elif name == "heater_stuck_on":
                changes["heater_pct"] = 100.0
            elif name == "o2_supply_lost":
                changes["o2_pct"] = 0.0
            elif name == "co2_supply_lost":
                changes["co2_pct"] = 0.0
            else:
                pump = s.params["pump"]
                changes[f"{pump}_ml_per_h"] = (0.0 if name == "pump_clogged"
                                               else self._max[pump])
        return replace(commanded, **changes) if changes else commanded

    def starts_at(self, t_s: float) -> list[FaultSpec]:
        """Process faults (contamination) that start exactly at `t_s`."""
        return [s for s in self._process if s.at_s == t_s]

    # -------------------------------------------------------------------------- sensors
    def apply_readings(self, readings: dict[str, Reading], now: float) -> dict[str, Reading]:
        """Readings as the faulty sensors report them (in place; returns `readings`)."""
        for f in self._sensor:
            s = f.spec
            if not s.at_s <= now < s.end_s:
                continue
            p = s.params
            name = p["channel"]
            r = readings[name]
            kind = s.name
            if kind == "sensor_dropout":
                readings[name] = Reading(math.nan, r.unit, r.timestamp_s, _BAD)
                continue
            if kind == "sensor_stuck":
                if f.frozen is None:
                    f.frozen = r.value
                readings[name] = Reading(f.frozen, r.unit, r.timestamp_s,
                                         _GOOD if f.frozen == f.frozen else _BAD)
                continue
            if kind == "sensor_drift":
                age_s = r.timestamp_s - s.at_s  # an at-line result: when its sample was drawn
                value = r.value + p["rate_per_h"] * (age_s if age_s > 0.0 else 0.0) / 3600.0
            elif kind == "sensor_noise":
                value = r.value + p["std"] * float(f.rng.standard_normal())
            else:  # sensor_spike
                if now < f.next_spike_s:
                    continue
                k = math.floor((now - s.at_s) / p["period_s"]) + 1
                f.next_spike_s = s.at_s + k * p["period_s"]
                sign = 1.0 if f.rng.random() < 0.5 else -1.0
                value = r.value + sign * p["magnitude"]
            readings[name] = _clipped(name, value, r)
        return readings

    # ---------------------------------------------------------------------- diagnostics
    def flags(self, now: float) -> dict[str, float]:
        """`fault_<name>_active` for every catalogue fault (1.0 while one of that name is)."""
        out = {f"fault_{name}_active": 0.0 for name in FAULTS}
        for s in self.specs:
            if s.active(now):
                out[f"fault_{s.name}_active"] = 1.0
        return out


def _clipped(name: str, value: float, r: Reading) -> Reading:
    if value != value:  # NaN in (at-line before its first result): stays as it was
        return r
    ch = channel(name)
    if value < ch.minimum:
        return Reading(ch.minimum, r.unit, r.timestamp_s, _OUT)
    if value > ch.maximum:
        return Reading(ch.maximum, r.unit, r.timestamp_s, _OUT)
    return Reading(value, r.unit, r.timestamp_s, r.quality)


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (docs/faults.md is generated from this)."""
    rows = ["| fault | kind | target | parameters (default, unit) | effect | detection | "
            "reaction |", "|---|---|---|---|---|---|---|"]
    for f in CATALOGUE:
        params = "; ".join(f"`{p.name}` ({p.describe_default()}"
                           + (f", {p.unit}" if p.unit else "")
                           + (f"; {'/'.join(p.choices)}" if p.choices else "") + ")"
                           for p in f.params) or "-"
        rows.append(f"| `{f.name}` | {f.kind} | {f.target} | {params} | {f.effect} | "
                    f"{f.detection} | {f.reaction} |")
    return "\n".join(rows)
