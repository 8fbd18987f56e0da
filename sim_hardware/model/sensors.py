"""Sensor models: what the controller sees of the chamber's true state.

Continuous probes (temperature, DO, pH, optical cell density, load cell) follow the true value
through a first-order lag, add a per-run bias (and, for pH, a drift that grows with time) and
white noise per read. At-line assays (count and viability, glucose, lactate; flow cytometry; the
blood-gas analyser) each draw a sample on their own schedule (`atline_interval_h`,
`cytometry_interval_h`, `bga_interval_h`) and publish the result after their delay, stamped with
the time the sample was drawn; each sample's volume leaves the chamber.

All randomness comes from numpy Generators derived from the run's seed. Noise is drawn in
blocks and consumed one float at a time from a Python iterator: a per-read numpy call would cost
more than the rest of the tick. Bias/drift, per-read noise and at-line noise use separate
streams, so an at-line result does not depend on how often the continuous probes are read.
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Protocol

import numpy as np

from drivers.contract.datasheet import Channel, channel
from drivers.contract.reading import Quality, Reading
from sim_hardware.model.parameters import ModelParameters

_GOOD = Quality.GOOD
_OUT = Quality.OUT_OF_RANGE
_BAD = Quality.BAD
_S_PER_H = 3600.0
_S_PER_WEEK = 7 * 86400.0


def normal_stream(rng: np.random.Generator, block: int = 4096) -> Iterator[float]:
    """Standard normals forever, drawn `block` at a time (pure Python floats).

    A C-level chain over the blocks, not a generator: each float then costs no generator
    resume (five per read). A block is drawn at the first `next` after the last one ran out,
    as a generator would, so an rng shared with other draws sees them in the same order.
    """
    return chain.from_iterable(iter(lambda: rng.standard_normal(block).tolist(), None))


class ContinuousSensor:
    """A probe: first-order lag, bias, linear drift, white noise (absolute + relative)."""

    __slots__ = ("channel", "unit", "_lo", "_hi", "_lag_s", "_noise_sd", "_noise_cv", "bias",
                 "drift_per_s", "_next", "_y", "_t", "_t0", "_dt", "_alpha")

    def __init__(self, ch: Channel, *, lag_s: float, noise_sd: float = 0.0,
                 noise_cv: float = 0.0, bias: float = 0.0, drift_per_s: float = 0.0,
                 noise: Iterator[float], initial_value: float, t0_s: float) -> None:
        self.channel = ch
        self.unit = ch.unit
        self._lo, self._hi = ch.minimum, ch.maximum
        self._lag_s = lag_s
        self._noise_sd = noise_sd
        self._noise_cv = noise_cv
        self.bias = bias
        self.drift_per_s = drift_per_s
        self._next = noise.__next__
        self._y = initial_value  # the probe starts equilibrated with the chamber
        self._t = t0_s
        self._t0 = t0_s
        self._dt = -1.0
        self._alpha = 1.0

    def equilibrate(self, true_value: float) -> None:
        """The probe settled at `true_value` now (at the start, after the seeding samples left:
        a probe installed in a chamber is read once it has settled)."""
        self._y = true_value

    def read(self, true_value: float, t_s: float) -> Reading:
        """The reading at `t_s` for a chamber whose true value is `true_value` now.

        The lag uses the exact discretisation of a first-order filter for the time since the
        last read, so the response is the same whatever the read cadence.
        """
        dt = t_s - self._t
        y = self._y
        if dt > 0.0:
            if dt != self._dt:
                self._dt = dt
                self._alpha = 1.0 - math.exp(-dt / self._lag_s) if self._lag_s > 0.0 else 1.0
            y += (true_value - y) * self._alpha
            self._y = y
            self._t = t_s
        value = (y + self.bias + self.drift_per_s * (t_s - self._t0)
                 + (self._noise_sd + self._noise_cv * abs(y)) * self._next())
        if value < self._lo:
            return Reading(self._lo, self.unit, t_s, _OUT)
        if value > self._hi:
            return Reading(self._hi, self.unit, t_s, _OUT)
        return Reading(value, self.unit, t_s, _GOOD)


class ChamberState(Protocol):
    """What the at-line analyser needs from the model (its true state)."""

    @property
    def viable_cells_per_ml(self) -> float: ...
    @property
    def glucose_mm(self) -> float: ...
    @property
    def lactate_mm(self) -> float: ...
    @property
    def viability(self) -> float: ...
    @property
    def cd34_fraction(self) -> float: ...
    @property
    def primitive_fraction(self) -> float: ...
    @property
    def ph(self) -> float: ...
    @property
    def do_pct_air(self) -> float: ...

    dco2_mm: float


O2_FRACTION_OF_AIR = 0.2095
"""O2 mole fraction of dry air: pO2 at 100 % air saturation = this x the dry gas pressure
(barometric 760 - water vapour 47 mmHg at 37 C = `dry_gas_pressure_mmhg`), about 149 mmHg."""

COUNT_CHANNELS = ("viable_cells_per_ml", "viability_pct", "glucose_mm", "lactate_mm")
CYTOMETRY_CHANNELS = ("cd34_pct", "cd34_cd90_pct")
BGA_CHANNELS = ("bga_ph", "bga_po2_mmhg", "bga_pco2_mmhg")
ATLINE_CHANNELS = COUNT_CHANNELS + CYTOMETRY_CHANNELS + BGA_CHANNELS


@dataclass(slots=True)
class AssayGroup:
    """Assays run on one sample: drawn every `interval_s` from t0, results `delay_s` later."""

    name: str
    channels: tuple[str, ...]
    interval_s: float
    delay_s: float
    sample_ml: float
    next_draw_s: float
    n_drawn: int = 0


class AtLineAnalyser:
    """Samples drawn on each assay group's schedule, results published after its delay.

    Three groups, each its own sample, schedule and delay (parameters `atline_*`,
    `cytometry_*`, `bga_*`): the count (viable cells, viability) with glucose and lactate; flow
    cytometry (%CD34+ and %CD34+CD90+ of viable cells: a CV on the fraction for staining and
    gating, then Poisson counting of the positive events among `cytometry_events`); and the
    blood-gas analyser, the offline reference for pH, pO2 and pCO2 (a per-run bias and a
    repeatability SD).

    `readings` always holds the latest published result per channel (quality BAD and value NaN
    before the first one), stamped with the time its sample was drawn. The owner must call
    `draw` at each `next_draw_s` with the chamber advanced to that time, remove the volume it
    returns from the chamber, and call `publish(now)` whenever `now >= next_ready_s`.
    """

    def __init__(self, params: ModelParameters, rng: np.random.Generator, t0_s: float) -> None:
        p = params
        self._params = p
        # The counts keep the stream they always had; the newer assays get their own, so adding
        # an assay does not change another's results.
        cytometry_rng, bga_rng, viability_rng = rng.spawn(3)
        self._noise = normal_stream(rng, 256)
        self._viability_noise = normal_stream(viability_rng, 256)
        self._cyto_rng = cytometry_rng
        self._cyto_noise = normal_stream(cytometry_rng, 256)
        self._bga_noise = normal_stream(bga_rng, 256)
        self.bga_ph_bias = float(bga_rng.uniform(-p.bga_ph_bias_max, p.bga_ph_bias_max))
        self.bga_pco2_bias_mmhg = float(
            bga_rng.uniform(-p.bga_pco2_bias_max_mmhg, p.bga_pco2_bias_max_mmhg))
        self._po2_per_pct_air_mmhg = O2_FRACTION_OF_AIR * p.dry_gas_pressure_mmhg / 100.0
        self.groups = (
            AssayGroup("counts", COUNT_CHANNELS, p.atline_interval_h * _S_PER_H,
                       p.atline_delay_h * _S_PER_H, p.atline_sample_ml, t0_s),
            AssayGroup("cytometry", CYTOMETRY_CHANNELS, p.cytometry_interval_h * _S_PER_H,
                       p.cytometry_delay_h * _S_PER_H, p.cytometry_sample_ml, t0_s),
            AssayGroup("bga", BGA_CHANNELS, p.bga_interval_h * _S_PER_H,
                       p.bga_delay_h * _S_PER_H, p.bga_sample_ml, t0_s),
        )
        self._channels = {name: channel(name) for name in ATLINE_CHANNELS}
        self._t0_s = t0_s
        self._seq = 0
        self.next_draw_s = t0_s
        self.next_ready_s = math.inf
        self._pending: list[tuple[float, int, dict[str, Reading]]] = []
        self.readings: dict[str, Reading] = {
            name: Reading(math.nan, ch.unit, t0_s, _BAD) for name, ch in self._channels.items()
        }

    def draw(self, t_s: float, state: ChamberState) -> float:
        """Take every sample due by `t_s` from `state` (the chamber at that time); the culture
        those samples took (mL), for the owner to remove from the chamber."""
        drawn_ml = 0.0
        for group in self.groups:
            if group.next_draw_s > t_s:
                continue
            values = self._measure(group.name, state)
            results = {name: self._reading(name, value, t_s) for name, value in values.items()}
            heapq.heappush(self._pending, (t_s + group.delay_s, self._seq, results))
            self._seq += 1
            drawn_ml += group.sample_ml
            group.n_drawn += 1
            group.next_draw_s = self._t0_s + group.n_drawn * group.interval_s
        self.next_ready_s = self._pending[0][0] if self._pending else math.inf
        self.next_draw_s = min(g.next_draw_s for g in self.groups)
        return drawn_ml

    def publish(self, now_s: float) -> None:
        """Move every result whose assay has finished by `now_s` into `readings`."""
        pending = self._pending
        while pending and pending[0][0] <= now_s:
            self.readings.update(heapq.heappop(pending)[2])
        self.next_ready_s = pending[0][0] if pending else math.inf

    def _reading(self, name: str, value: float, t_s: float) -> Reading:
        ch = self._channels[name]
        if value < ch.minimum:
            return Reading(ch.minimum, ch.unit, t_s, _OUT)
        if value > ch.maximum:
            return Reading(ch.maximum, ch.unit, t_s, _OUT)
        return Reading(value, ch.unit, t_s, _GOOD)

    def _measure(self, group: str, state: ChamberState) -> dict[str, float]:
        p = self._params
        if group == "counts":
            z = self._noise.__next__
            return {
                "viable_cells_per_ml": state.viable_cells_per_ml * (1.0 + p.atline_count_cv * z()),
                "glucose_mm": state.glucose_mm * (1.0 + p.atline_metabolite_cv * z()),
                "lactate_mm": state.lactate_mm * (1.0 + p.atline_metabolite_cv * z()),
                # A share: the counter reports at most 100 % (and at least 0), whatever the noise.
                "viability_pct": min(100.0, max(0.0, 100.0 * state.viability
                                                + p.atline_viability_sd_pct
                                                * next(self._viability_noise))),
            }
        if group == "cytometry":
            return {"cd34_pct": self._cytometry_pct(state.cd34_fraction),
                    "cd34_cd90_pct": self._cytometry_pct(state.primitive_fraction)}
        z = self._bga_noise.__next__
        po2_mmhg = state.do_pct_air * self._po2_per_pct_air_mmhg
        pco2_mmhg = state.dco2_mm / p.co2_solubility_mm_per_mmhg
        return {
            "bga_ph": state.ph + self.bga_ph_bias + p.bga_ph_sd * z(),
            "bga_po2_mmhg": po2_mmhg * (1.0 + p.bga_po2_cv * z()),
            "bga_pco2_mmhg": pco2_mmhg * (1.0 + p.bga_pco2_cv * z()) + self.bga_pco2_bias_mmhg,
        }

    def _cytometry_pct(self, true_fraction: float) -> float:
        """A stained share of the viable events: staining/gating error on the fraction, then
        the positives counted among the events acquired (Poisson: rare populations are noisy)."""
        p = self._params
        stained = true_fraction * (1.0 + p.cytometry_cv * next(self._cyto_noise))
        fraction = min(1.0, max(0.0, stained))
        events = p.cytometry_events
        positives = float(self._cyto_rng.poisson(fraction * events))
        return 100.0 * min(positives, events) / events


class SensorBank:
    """All of the chamber's sensors, their per-run errors drawn from one seed sequence."""

    def __init__(self, params: ModelParameters, seed: np.random.SeedSequence,
                 initial: dict[str, float], t0_s: float) -> None:
        setup_seed, noise_seed, atline_seed = seed.spawn(3)
        setup = np.random.default_rng(setup_seed)
        noise = normal_stream(np.random.default_rng(noise_seed))
        p = params

        def uniform(half_width: float) -> float:
            return float(setup.uniform(-half_width, half_width))

        drift_mag = float(setup.uniform(p.ph_drift_min_per_week, p.ph_drift_max_per_week))
        drift_sign = 1.0 if setup.random() < 0.5 else -1.0
        self.temperature = ContinuousSensor(
            channel("temperature_c"), lag_s=p.temp_lag_s, noise_sd=p.temp_noise_sd_c,
            bias=uniform(p.temp_bias_max_c), noise=noise,
            initial_value=initial["temperature_c"], t0_s=t0_s)
        self.do = ContinuousSensor(
            channel("do_pct_air"), lag_s=p.do_lag_s, noise_sd=p.do_noise_sd_pct_air,
            bias=uniform(p.do_bias_max_pct_air), noise=noise,
            initial_value=initial["do_pct_air"], t0_s=t0_s)
        self.ph = ContinuousSensor(
            channel("ph"), lag_s=p.ph_lag_s, noise_sd=p.ph_noise_sd, bias=uniform(p.ph_bias_max),
            drift_per_s=drift_sign * drift_mag / _S_PER_WEEK, noise=noise,
            initial_value=initial["ph"], t0_s=t0_s)
        self.total_cells = ContinuousSensor(
            channel("total_cells_per_ml"), lag_s=p.total_cells_lag_s, noise_cv=p.total_cells_cv,
            noise=noise, initial_value=initial["total_cells_per_ml"], t0_s=t0_s)
        self.volume = ContinuousSensor(
            channel("volume_ml"), lag_s=p.volume_lag_s, noise_sd=p.volume_noise_sd_ml,
            bias=uniform(p.volume_bias_max_ml), noise=noise,
            initial_value=initial["volume_ml"], t0_s=t0_s)
        self.atline = AtLineAnalyser(p, np.random.default_rng(atline_seed), t0_s)

    def errors(self) -> dict[str, float]:
        """The per-run sensor errors drawn from the seed (ground truth for diagnostics)."""
        return {
            "temperature_bias_c": self.temperature.bias,
            "do_bias_pct_air": self.do.bias,
            "ph_bias": self.ph.bias,
            "ph_drift_per_week": self.ph.drift_per_s * _S_PER_WEEK,
            "volume_bias_ml": self.volume.bias,
            "bga_ph_bias": self.atline.bga_ph_bias,
            "bga_pco2_bias_mmhg": self.atline.bga_pco2_bias_mmhg,
        }
