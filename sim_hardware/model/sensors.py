"""Sensor models: what the controller sees of the chamber's true state.

Continuous probes (temperature, DO, pH, optical cell density, load cell) follow the true value
through a first-order lag, add a per-run bias (and, for pH, a drift that grows with time) and
white noise per read. At-line assays (viable count, glucose, lactate) draw a sample every
`atline_interval_h` and publish the result `atline_delay_h` later, stamped with the time the
sample was drawn.

All randomness comes from numpy Generators derived from the run's seed. Noise is drawn in
blocks and consumed one float at a time from a Python iterator: a per-read numpy call would cost
more than the rest of the tick. Bias/drift, per-read noise and at-line noise use separate
streams, so an at-line result does not depend on how often the continuous probes are read.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
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
    """Standard normals forever, drawn `block` at a time (pure Python floats)."""
    while True:
        yield from rng.standard_normal(block).tolist()


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

    def read(self, true_value: float, t_s: float) -> Reading:
        """The reading at `t_s` for a chamber whose true value is `true_value` now.

        The lag uses the exact discretisation of a first-order filter for the time since the
        last read, so the response is the same whatever the read cadence.
        """
        dt = t_s - self._t
        if dt > 0.0:
            if dt != self._dt:
                self._dt = dt
                self._alpha = 1.0 - math.exp(-dt / self._lag_s) if self._lag_s > 0.0 else 1.0
            self._y += (true_value - self._y) * self._alpha
            self._t = t_s
        y = self._y
        value = (y + self.bias + self.drift_per_s * (t_s - self._t0)
                 + (self._noise_sd + self._noise_cv * abs(y)) * self._next())
        if value < self._lo:
            return Reading(self._lo, self.unit, t_s, _OUT)
        if value > self._hi:
            return Reading(self._hi, self.unit, t_s, _OUT)
        return Reading(value, self.unit, t_s, _GOOD)


class ChamberState(Protocol):
    """What the at-line analyser needs from the model."""

    @property
    def viable_cells_per_ml(self) -> float: ...
    @property
    def glucose_mm(self) -> float: ...
    @property
    def lactate_mm(self) -> float: ...


ATLINE_CHANNELS = ("viable_cells_per_ml", "glucose_mm", "lactate_mm")


class AtLineAnalyser:
    """Samples drawn on a fixed schedule, results published after the assay delay.

    `readings` always holds the latest published result per channel (quality BAD and value NaN
    before the first one). The owner must call `draw` at each `next_draw_s` with the chamber
    advanced to that time, and `publish(now)` whenever `now >= next_ready_s`.
    """

    def __init__(self, params: ModelParameters, rng: np.random.Generator, t0_s: float) -> None:
        self._interval_s = params.atline_interval_h * _S_PER_H
        self._delay_s = params.atline_delay_h * _S_PER_H
        self._cv = {"viable_cells_per_ml": params.atline_count_cv,
                    "glucose_mm": params.atline_metabolite_cv,
                    "lactate_mm": params.atline_metabolite_cv}
        self._channels = {name: channel(name) for name in ATLINE_CHANNELS}
        self._noise = normal_stream(rng, 256)
        self._t0_s = t0_s
        self._n_drawn = 0
        self.next_draw_s = t0_s
        self.next_ready_s = math.inf
        self._pending: deque[tuple[float, float, dict[str, Reading]]] = deque()
        self.readings: dict[str, Reading] = {
            name: Reading(math.nan, ch.unit, t0_s, _BAD) for name, ch in self._channels.items()
        }

    def draw(self, t_s: float, state: ChamberState) -> None:
        """Take the sample due at `t_s` from `state` (the chamber at that time)."""
        results = {}
        for name, ch in self._channels.items():
            true = getattr(state, name)
            value = true * (1.0 + self._cv[name] * next(self._noise))
            quality = _GOOD
            if value < ch.minimum:
                value, quality = ch.minimum, _OUT
            elif value > ch.maximum:
                value, quality = ch.maximum, _OUT
            results[name] = Reading(value, ch.unit, t_s, quality)
        t_ready = t_s + self._delay_s
        self._pending.append((t_s, t_ready, results))
        self.next_ready_s = self._pending[0][1]
        self._n_drawn += 1
        self.next_draw_s = self._t0_s + self._n_drawn * self._interval_s

    def publish(self, now_s: float) -> None:
        """Move every result whose assay has finished by `now_s` into `readings`."""
        pending = self._pending
        while pending and pending[0][1] <= now_s:
            self.readings.update(pending.popleft()[2])
        self.next_ready_s = pending[0][1] if pending else math.inf


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
        }
