"""Faults injected into a running chamber: each spec turned once, at load, into a typed effect.

The chamber core owns one `FaultSet` and applies it:

* sensor faults transform the readings after the sensor model (the truth is untouched);
* actuator faults force what the chamber physically receives, while the core's `outputs()`
  keeps reporting what the controller requested (a stuck heater is not visible in the setpoint
  registers);
* process faults change the culture itself (contamination: a competitor in the model);
* comm faults raise a driver error from the link-side calls before anything else happens.

Every random draw (spike signs, extra noise, corrupted frames) comes from the run's seed, one
generator per spec in spec order, so a faulted run is as repeatable as a clean one.
"""
from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from drivers.contract.datasheet import channel
from drivers.contract.errors import CommTimeoutError, DeviceError, DriverError, FrameError
from drivers.contract.reading import Quality, Reading
from sim_hardware.faults.catalogue import FAULTS
from sim_hardware.faults.specs import FaultSpec
from sim_hardware.model.actuators import ActuatorInputs
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import ModelParameters

_BAD = Quality.BAD
_GOOD = Quality.GOOD
_OUT = Quality.OUT_OF_RANGE


# ------------------------------------------------------------------------------ sensor faults
class SensorFault(abc.ABC):
    """A fault on one sensor channel while `at_s <= now < end_s`."""

    __slots__ = ("at_s", "channel", "end_s")

    def __init__(self, spec: FaultSpec) -> None:
        self.channel: str = spec.params["channel"]
        self.at_s = spec.at_s
        self.end_s = spec.end_s

    @abc.abstractmethod
    def apply(self, reading: Reading, now: float) -> Reading:
        """The reading as the faulty sensor reports it."""


class _Dropout(SensorFault):
    __slots__ = ()

    def apply(self, reading: Reading, now: float) -> Reading:
        return Reading(math.nan, reading.unit, reading.timestamp_s, _BAD)


class _Stuck(SensorFault):
    __slots__ = ("frozen",)

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.frozen: float | None = None
        """The value at the first read at or after the start."""

    def apply(self, reading: Reading, now: float) -> Reading:
        if self.frozen is None:
            self.frozen = reading.value
        frozen = self.frozen
        return Reading(frozen, reading.unit, reading.timestamp_s,
                       _GOOD if frozen == frozen else _BAD)


class _Drift(SensorFault):
    """Adds `offset` + `rate_per_h` x hours since the start: sensor_drift, sensor_offset."""

    __slots__ = ("offset", "rate_per_h")

    def __init__(self, spec: FaultSpec) -> None:
        super().__init__(spec)
        self.rate_per_h: float = spec.params.get("rate_per_h", 0.0)
        self.offset: float = spec.params.get("offset", 0.0)

    def apply(self, reading: Reading, now: float) -> Reading:
        age_s = reading.timestamp_s - self.at_s  # an at-line result: when its sample was drawn
        return _clipped(self.channel, reading.value + self.offset
                        + self.rate_per_h * (age_s if age_s > 0.0 else 0.0) / 3600.0, reading)


class _Noise(SensorFault):
    __slots__ = ("rng", "std")

    def __init__(self, spec: FaultSpec, rng: np.random.Generator) -> None:
        super().__init__(spec)
        self.std: float = spec.params["std"]
        self.rng = rng

    def apply(self, reading: Reading, now: float) -> Reading:
        return _clipped(self.channel,
                        reading.value + self.std * float(self.rng.standard_normal()), reading)


class _Spike(SensorFault):
    __slots__ = ("magnitude", "next_spike_s", "period_s", "rng")

    def __init__(self, spec: FaultSpec, rng: np.random.Generator) -> None:
        super().__init__(spec)
        self.magnitude: float = spec.params["magnitude"]
        self.period_s: float = spec.params["period_s"]
        self.rng = rng
        self.next_spike_s = spec.at_s

    def apply(self, reading: Reading, now: float) -> Reading:
        if now < self.next_spike_s:
            return reading
        k = math.floor((now - self.at_s) / self.period_s) + 1
        self.next_spike_s = self.at_s + k * self.period_s
        sign = 1.0 if self.rng.random() < 0.5 else -1.0
        return _clipped(self.channel, reading.value + sign * self.magnitude, reading)


def _clipped(name: str, value: float, r: Reading) -> Reading:
    if value != value:  # NaN in (at-line before its first result): stays as it was
        return r
    ch = channel(name)
    if value < ch.minimum:
        return Reading(ch.minimum, r.unit, r.timestamp_s, _OUT)
    if value > ch.maximum:
        return Reading(ch.maximum, r.unit, r.timestamp_s, _OUT)
    return Reading(value, r.unit, r.timestamp_s, r.quality)


# ----------------------------------------------------------------- actuator, process, comm
@dataclass(frozen=True, slots=True)
class ForcedOutput:
    """An actuator delivering `value` on `output` whatever is requested, while active."""

    output: str
    value: float
    at_s: float
    end_s: float
    fault: str = ""
    """The catalogue name of the fault that forces it."""
    fraction: float | None = None
    """Deliver this fraction of what is requested instead of `value` (a degraded actuator)."""


@dataclass(frozen=True, slots=True)
class Contamination:
    """A competitor inoculated at `at_s` (it does not end)."""

    at_s: float
    cells_per_ml: float
    doubling_h: float
    q_glc_pmol_per_cell_h: float
    q_o2_pmol_per_cell_h: float
    max_cells_per_ml: float

    def inoculate(self, model: ChamberModel) -> None:
        model.contaminate(self.cells_per_ml, doubling_h=self.doubling_h,
                          q_glc_pmol_per_cell_h=self.q_glc_pmol_per_cell_h,
                          q_o2_pmol_per_cell_h=self.q_o2_pmol_per_cell_h,
                          max_cells_per_ml=self.max_cells_per_ml)


@dataclass(frozen=True, slots=True)
class Reboot:
    """The device restarts at `at_s` (the core calls `Chamber.reboot` there)."""

    at_s: float


@dataclass(frozen=True, slots=True)
class CommFailure:
    """Link-side calls fail with `error(message)` while active: always, or with `probability`."""

    error: type[DriverError]
    message: str
    at_s: float
    end_s: float
    probability: float | None = None
    rng: np.random.Generator | None = None

    def check(self) -> None:
        if self.probability is None or self.rng.random() < self.probability:  # type: ignore[union-attr]
            raise self.error(self.message)


@dataclass(frozen=True, slots=True)
class FailedCutout:
    """The device's own over-temperature cut-out never trips while active."""

    at_s: float
    end_s: float


_Effect = SensorFault | ForcedOutput | Contamination | CommFailure | FailedCutout | Reboot


def _force(s: FaultSpec, output: str, value: float) -> ForcedOutput:
    return ForcedOutput(output, value, s.at_s, s.end_s, s.name)


def _pump(s: FaultSpec) -> str:
    return f"{s.params['pump']}_ml_per_h"


def _pump_max(s: FaultSpec, p: ModelParameters) -> float:
    return float(getattr(p, f"{s.params['pump']}_pump_max_ml_per_h"))


def _fail(s: FaultSpec, error: type[DriverError], what: str,
          rng: np.random.Generator | None = None) -> CommFailure:
    return CommFailure(error, f"sim://: {what} (injected fault {s.label()})", s.at_s, s.end_s,
                       None if rng is None else s.params["probability"], rng)


_Build = Callable[[FaultSpec, np.random.Generator, ModelParameters], "_Effect"]
_EFFECTS: dict[str, _Build] = {
    "sensor_stuck": lambda s, rng, p: _Stuck(s),
    "sensor_drift": lambda s, rng, p: _Drift(s),
    "sensor_spike": lambda s, rng, p: _Spike(s, rng),
    "sensor_dropout": lambda s, rng, p: _Dropout(s),
    "sensor_noise": lambda s, rng, p: _Noise(s, rng),
    "heater_failed_off": lambda s, rng, p: _force(s, "heater_pct", 0.0),
    "heater_stuck_on": lambda s, rng, p: _force(s, "heater_pct", 100.0),
    "heater_relay_welded": lambda s, rng, p: _force(s, "heater_relay", 1.0),
    "cutout_failed": lambda s, rng, p: FailedCutout(s.at_s, s.end_s),
    "mass_flow_readback_failed": lambda s, rng, p: _Dropout(
        replace(s, params={"channel": f"{s.params['gas']}_flow_pct"})),
    "pump_clogged": lambda s, rng, p: _force(s, _pump(s), 0.0),
    "pump_runaway": lambda s, rng, p: _force(s, _pump(s), _pump_max(s, p)),
    "totaliser_failed": lambda s, rng, p: _Stuck(
        replace(s, params={"channel": f"{s.params['pump']}_delivered_ml"})),
    "pump_underdelivery": lambda s, rng, p: ForcedOutput(_pump(s), 0.0, s.at_s, s.end_s,
                                                         s.name, s.params["fraction"]),
    "device_reboot": lambda s, rng, p: Reboot(s.at_s),
    "o2_supply_lost": lambda s, rng, p: _force(s, "o2_pct", 0.0),
    "co2_supply_lost": lambda s, rng, p: _force(s, "co2_pct", s.params["residual_pct"]),
    "contamination": lambda s, rng, p: Contamination(s.at_s, **s.params),
    "comm_timeout": lambda s, rng, p: _fail(s, CommTimeoutError, "no reply"),
    "comm_exception": lambda s, rng, p: _fail(s, DeviceError, "device busy"),
    "comm_corrupt": lambda s, rng, p: _fail(s, FrameError, "corrupted frame", rng),
    "chamber_leak": lambda s, rng, p: _force(s, "leak_ml_per_h", s.params["rate_ml_per_h"]),
    "sensor_offset": lambda s, rng, p: _Drift(s),
    "heater_degraded": lambda s, rng, p: ForcedOutput("heater_pct", 0.0, s.at_s, s.end_s,
                                                      s.name, s.params["fraction"]),
    "pump_line_disconnected": lambda s, rng, p: _force(s, _pump(s), 0.0),
}
"""How each catalogue fault acts on a chamber: built once per spec when the chamber loads."""


class FaultSet:
    """The faults of one chamber, applied by the chamber core.

    The core calls `check_comm` first thing in its link-side calls, stops its integration at
    every time in `transition_times` (there it calls `physical` and inoculates what
    `starts_at` returns), and passes its readings through `apply_readings`.
    """

    def __init__(self, specs: Iterable[FaultSpec], seed: np.random.SeedSequence,
                 params: ModelParameters) -> None:
        self.specs = tuple(specs)
        children = seed.spawn(len(self.specs)) if self.specs else []
        effects = [_EFFECTS[s.name](s, np.random.default_rng(c), params)
                   for s, c in zip(self.specs, children, strict=True)]
        self._sensor = [e for e in effects if isinstance(e, SensorFault)]
        self._forced = [e for e in effects if isinstance(e, ForcedOutput)]
        self._comm = [e for e in effects if isinstance(e, CommFailure)]
        self._contamination = [e for e in effects if isinstance(e, Contamination)]
        self._failed_cutouts = [e for e in effects if isinstance(e, FailedCutout)]
        self._reboots = [e for e in effects if isinstance(e, Reboot)]
        timed: list[ForcedOutput | Contamination | Reboot] = [
            *self._forced, *self._contamination, *self._reboots]
        times = {e.at_s for e in timed}
        times |= {e.end_s for e in self._forced if math.isfinite(e.end_s)}
        self.transition_times = tuple(sorted(times))
        """When the chamber's physical inputs change (actuator faults) or a process starts."""

    def __bool__(self) -> bool:
        return bool(self.specs)

    def check_comm(self, now: float) -> None:
        """Raise the driver error of an active comm fault (before the call does anything)."""
        for f in self._comm:
            if f.at_s <= now < f.end_s:
                f.check()

    def physical(self, requested: ActuatorInputs, t_s: float, *,
                 at_chamber: bool = True) -> ActuatorInputs:
        """What the chamber receives at `t_s` when `requested` was requested; with
        `at_chamber=False`, what the actuators deliver at their own end (a pump whose line is
        disconnected still pumps, and its totaliser counts it)."""
        changes = {f.output: f.value if f.fraction is None
                   else getattr(requested, f.output) * f.fraction
                   for f in self._forced if f.at_s <= t_s < f.end_s
                   and (at_chamber or f.fault != "pump_line_disconnected")}
        return replace(requested, **changes) if changes else requested

    def relay_welded(self, t_s: float) -> bool:
        """The heater relay's contacts are welded shut: closed whatever opens it."""
        return any(f.output == "heater_relay" and f.value >= 0.5 and f.at_s <= t_s < f.end_s
                   for f in self._forced)

    def cutout_failed(self, t_s: float) -> bool:
        """The device's own over-temperature cut-out cannot trip now."""
        return any(f.at_s <= t_s < f.end_s for f in self._failed_cutouts)

    def supply_lost(self, output: str, t_s: float) -> bool:
        """The supply of gas `output` (o2_pct, co2_pct) is gone: its pressure reads 0."""
        return any(f.output == output and f.fault.endswith("_supply_lost")
                   and f.at_s <= t_s < f.end_s for f in self._forced)

    def starts_at(self, t_s: float) -> list[Contamination]:
        """Process faults (contamination) that start exactly at `t_s`."""
        return [c for c in self._contamination if c.at_s == t_s]

    def reboots_at(self, t_s: float) -> bool:
        """The device restarts exactly at `t_s` (fault `device_reboot`)."""
        return any(r.at_s == t_s for r in self._reboots)

    def apply_readings(self, readings: dict[str, Reading], now: float) -> dict[str, Reading]:
        """Readings as the faulty sensors report them (in place; returns `readings`)."""
        for f in self._sensor:
            if f.at_s <= now < f.end_s:
                name = f.channel
                readings[name] = f.apply(readings[name], now)
        return readings

    def flags(self, now: float) -> dict[str, float]:
        """`fault_<name>_active` for every catalogue fault (1.0 while one of that name is)."""
        out = {f"fault_{name}_active": 0.0 for name in FAULTS}
        for s in self.specs:
            if s.active(now):
                out[f"fault_{s.name}_active"] = 1.0
        return out
