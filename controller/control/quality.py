"""Judging each reading every tick: is it fresh, in range, alive, physically plausible, no
noisier than its probe, and in agreement with a reference measurement of the same quantity?

A device marks what it knows is wrong (comm errors, out-of-range, no data yet); the controller
adds what only a history shows: a value that stopped changing (a stuck sensor: real probes always
have some noise), that jumped faster than the process can move (a spike), that scatters far more
than the probe's own noise (a failing probe), or an online cell count that has parted from the
at-line count it is calibrated against (a drifted or fouled probe, or something else in the
medium). The verdict is the reading's quality; loops act only on GOOD readings, and the
historian records the verdict beside the value as measured.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

from controller.config import QualityConfig
from drivers.contract.datasheet import INPUTS, Kind
from drivers.contract.reading import Quality, Reading

DEFAULT_LIMITS: dict[str, QualityConfig] = {
    # A Pt100 in a chamber of ~10 min time constant cannot move 0.5 C in a second.
    "temperature_c": QualityConfig(frozen_after_s=900.0, max_rate_per_s=0.5),
    # Optical DO answers within ~30 s; 10 % air in a second is a glitch.
    "do_pct_air": QualityConfig(frozen_after_s=900.0, max_rate_per_s=10.0),
    # pH moves by hundredths per minute even on a CO2 step.
    "ph": QualityConfig(frozen_after_s=900.0, max_rate_per_s=0.05),
    "total_cells_per_ml": QualityConfig(frozen_after_s=3600.0),
    "volume_ml": QualityConfig(frozen_after_s=None),
}
"""[est] defaults, overridable per channel in `[reactor.quality.<channel>]`."""

NOISE_SD_LIMITS: dict[str, float] = {
    "temperature_c": 0.06,  # Pt100 transmitter: ~0.015 C per read
    "do_pct_air": 1.0,      # optical DO spot: ~0.25 % air
    "ph": 0.015,            # optical pH: ~0.004
    "volume_ml": 0.2,       # load cell: ~0.05 mL
}
"""[est] Largest believable sample-to-sample noise (standard deviation, channel unit): about
4x each probe's own white noise. Over the default 14-day run the clean probes' one-minute
estimates stay below 1.5x their noise, so a limit of 4x never fires on a healthy probe, while
extra noise of 5x the probe's own or more (the fault catalogue's `sensor_noise` defaults are
12-20x) is caught within two windows. The optical cell count has
relative noise (a fixed limit would not fit 1e5 and 2e6 cells/mL alike) and the at-line assays
give one sample per 6 h, so neither is checked. Overridable per QualityJudge."""

NOISE_WINDOW_S = 60.0
"""The noise is estimated over windows of this length (clock seconds): 60 differences at the
default 1 s period put the estimate within ~15 % of the truth, so the verdict follows a probe
that turns noisy within two windows and does not flicker on a clean one."""

CELL_COUNT_CHECK = ("total_cells_per_ml", "viable_cells_per_ml")
"""The online optical cell count, and the at-line viable count it is checked against."""

TOTAL_PER_VIABLE_RANGE = (0.67, 1.5)
"""[est] The optical probe counts live and dead cells, so it reads at or a little above the
at-line viable count: 0.84-1.30 of it over the default 14-day run (viability ~90 %, at-line CV
7.5 %, one-minute probe mean ~0.4 %). Outside 0.67-1.5 the two disagree by more than four
at-line CVs beyond that: the probe has drifted or fouled, the culture is dying, or something
that is not a stem cell grows in the medium (a contamination). Every one needs a person."""

MIN_REFERENCE_CELLS_PER_ML = 5.0e4
"""[est] Below this at-line count the comparison is not made: an optical probe is near its
detection limit there and the ratio of two small counts says little."""

NOISE_GAP_PERIODS = 5
"""Samples further apart than this many control periods do not make a step of the noise
estimate (`_too_noisy`)."""

SAMPLED_STALE_AFTER_S = 3 * 6 * 3600.0
"""An at-line result older than three sampling intervals (6 h) is stale."""


_Limits = tuple[float, float, float, float, float, float, float, float]
"""An input's limits, flattened (`QualityJudge.__init__`, `_verdict`): max age, minimum,
maximum, max rate, frozen epsilon, frozen after, step variance limit, noise gap."""


class QualityJudge:
    """Per reactor: the limits of each input, and the short history the checks need.

    Runs on every tick for every input, so it is written for speed: limits flattened into
    tuples, history in small lists, one loop with locals.
    """

    def __init__(self, overrides: Mapping[str, QualityConfig], control_period_s: float) -> None:
        inf = float("inf")
        self._limits: dict[str, _Limits] = {}
        for ch in INPUTS:
            cfg = _merged(DEFAULT_LIMITS.get(ch.name, QualityConfig()), overrides.get(ch.name))
            default_stale = (SAMPLED_STALE_AFTER_S if ch.kind is Kind.SAMPLED
                             else max(5.0 * control_period_s, 5.0))
            noise_sd = (None if ch.kind is Kind.SAMPLED
                        else cfg.noise_sd_max if cfg.noise_sd_max is not None
                        else NOISE_SD_LIMITS.get(ch.name))
            self._limits[ch.name] = (
                cfg.stale_after_s if cfg.stale_after_s is not None else default_stale,
                ch.minimum if cfg.minimum is None else cfg.minimum,
                ch.maximum if cfg.maximum is None else cfg.maximum,
                cfg.max_rate_per_s if cfg.max_rate_per_s is not None else inf,
                cfg.frozen_epsilon,
                cfg.frozen_after_s if cfg.frozen_after_s is not None else inf,
                # a step between two samples has twice the variance of one sample's noise
                2.0 * noise_sd * noise_sd if noise_sd is not None else inf,
                NOISE_GAP_PERIODS * control_period_s,
            )
        continuous = {ch.name for ch in INPUTS if ch.kind is Kind.CONTINUOUS}
        self._range_only: dict[str, tuple[float, float, float]] = {
            name: limits[:3] for name, limits in self._limits.items()
            if limits[3] == inf and limits[5] == inf and limits[6] == inf
            and name in continuous}
        """Channels with no rate, frozen or noise check (totalisers, readbacks, device state):
        only their age and range are judged, without the history the other checks keep. Most
        of a tick's inputs since issue 10, so the tick does not pay for checks they lack."""
        nan = float("nan")
        # [last accepted value, its time, when it last changed, last sample time, its verdict,
        #  previous in-range sample, sum of squared steps in this noise window, their count,
        #  window start, whether the last full window was too noisy, sum of the steps]
        self._history: dict[str, list] = {
            ch.name: [nan, nan, nan, nan, GOOD, nan, 0.0, 0, nan, False, 0.0] for ch in INPUTS}
        self._checks: dict[str, tuple] = {
            name: (*limits[:3], None, None) if name in self._range_only
            else (*limits[:3], self._history[name], limits)
            for name, limits in self._limits.items()}
        """Per channel, what `judge` needs in one lookup: its age limit and range, then its
        history and all its limits, or None and None for a channel judged on age and range
        alone (`_range_only`)."""
        self.cell_count = ReferenceCheck(*CELL_COUNT_CHECK, TOTAL_PER_VIABLE_RANGE,
                                         MIN_REFERENCE_CELLS_PER_ML, SAMPLED_STALE_AFTER_S)

    def judge(self, readings: Mapping[str, Reading], now_s: float) -> dict[str, Reading]:
        """The readings with their verdicts; a reading that passes every check is reused.

        The readings are copied whole (one C-level copy, in their order) and only a reading
        given another verdict is replaced, so most of a tick's inputs cost no store; each
        channel's checks are one lookup (`_checks`)."""
        judged = dict(readings)
        checks = self._checks
        for name, reading in readings.items():
            if reading.quality is not GOOD:
                continue
            check = checks.get(name)
            if check is None:
                continue
            stale_after_s, low, high, history, limits = check
            t_s = reading.timestamp_s
            if history is None:  # age and range only
                if now_s - t_s > stale_after_s:
                    judged[name] = reading.judged(STALE)
                elif not low <= reading.value <= high:  # also catches NaN
                    judged[name] = reading.judged(OUT_OF_RANGE)
                continue
            if t_s == history[3]:  # the same sample again (an at-line result): same verdict
                verdict = history[4]
                if verdict is GOOD and now_s - t_s > stale_after_s:
                    verdict = STALE
            else:
                verdict = _verdict(reading.value, t_s, now_s, limits, history)
            if verdict is not GOOD:
                judged[name] = reading.judged(verdict)
        self.cell_count.apply(judged)
        return judged


def _merged(default: QualityConfig, override: QualityConfig | None) -> QualityConfig:
    """The keys a `[reactor.quality.<channel>]` table sets replace the defaults' one by one:
    tightening the noise limit must not silently switch off the frozen-probe check."""
    if override is None:
        return default
    return default.model_copy(
        update={key: getattr(override, key) for key in override.model_fields_set})


def _verdict(value: float, t_s: float, now_s: float, limits: tuple[float, ...],
             history: list) -> Quality:
    stale_after_s, low, high, max_rate, epsilon, frozen_after_s, step_var_limit, gap_s = limits
    if now_s - t_s > stale_after_s:
        return STALE
    if not low <= value <= high:  # also catches NaN
        return OUT_OF_RANGE
    verdict = GOOD
    last_value, last_t = history[0], history[1]
    if last_t == last_t:  # there is a previous sample
        step = abs(value - last_value)
        if step > max_rate * (t_s - last_t):
            verdict = IMPLAUSIBLE
        elif step > epsilon:
            history[2] = t_s
        elif t_s - history[2] > frozen_after_s:
            verdict = FROZEN
    else:
        history[2] = t_s
    if verdict is not IMPLAUSIBLE:
        # A spike does not become the reference the next sample is compared with; a real
        # level shift is accepted once the allowed change (rate x elapsed time) covers it.
        history[0], history[1] = value, t_s
    if step_var_limit != INF:
        noisy = _too_noisy(value, t_s, max_rate, step_var_limit, gap_s, history)
        if noisy and verdict is GOOD:  # a spike or a frozen value says more
            verdict = NOISY
    history[3], history[4] = t_s, verdict
    return verdict


def _too_noisy(value: float, t_s: float, max_rate: float, step_var_limit: float,
               gap_s: float, history: list) -> bool:
    """Whether the last full window scattered more than the probe's noise limit.

    The estimate is the variance of the steps between successive samples about their mean over
    the window, halved (for white noise of standard deviation s a step has variance 2 s^2):
    (sum step^2 - n mean^2) / n. A process moving steadily (the chamber warming at full heater
    power, ~2 C per minute) adds the same step to every step, which the mean takes away, so a
    ramp of any plausible slope is never NOISY; what is left is the noise and the ramp's change
    of slope within a minute, far below any limit. The mean of white noise's steps telescopes
    to (last - first) / n, so removing it costs the noise estimate only a 1/n^2 part.
    Each step is clipped at the channel's plausible rate, so an isolated spike (already
    IMPLAUSIBLE on its own sample) cannot make a window noisy on its own.
    A step over a gap longer than `gap_s` (the link was down, the controller stalled) is the
    process moving meanwhile, not noise: the window starts afresh there, and the last full
    window's verdict stands until the new one is full.
    """
    previous = history[5]
    history[5] = value
    if previous != previous or t_s - history[3] > gap_s:  # the first sample, or after a gap
        history[6], history[7], history[8], history[10] = 0.0, 0, t_s, 0.0
        return history[9]
    step = value - previous
    cap = max_rate * (t_s - history[3])
    if step > cap:
        step = cap
    elif step < -cap:
        step = -cap
    history[6] += step * step
    history[10] += step
    n = history[7] = history[7] + 1
    if t_s - history[8] >= NOISE_WINDOW_S and n > 1:  # a mean needs two steps to remove
        total = history[10]
        # sum (step - mean)^2 = sum step^2 - (sum step)^2 / n > n * 2 limit^2
        history[9] = history[6] * n - total * total > step_var_limit * n * n
        history[6], history[7], history[8], history[10] = 0.0, 0, t_s, 0.0
    return history[9]


class ProbeHistory:
    """An online probe's recent past as one-minute means, looked up at a reference's draw time.

    An at-line or blood-gas result arrives some time after its sample was drawn, stamped with
    the draw time; what the probe said then is the one-minute mean covering that time. Kept for
    `history_s`, as long as a reference result can take to arrive and still be fresh. Shared by
    every comparison of a probe with a reference (ReferenceCheck here, the probe
    standardisation in controller/control/standardisation.py).
    """

    def __init__(self, history_s: float) -> None:
        self.history_s = history_s
        self._minutes: deque[tuple[float, float]] = deque()  # (minute start, mean value)
        self._minute = [math.nan, 0.0, 0]  # [start, sum, count] of the minute being summed

    def record(self, value: float, t_s: float) -> None:
        minute = self._minute
        if not t_s - minute[0] < 60.0:  # a new minute (or the first)
            if minute[2]:
                self._minutes.append((minute[0], minute[1] / minute[2]))
                minutes = self._minutes
                while minutes and minutes[0][0] < t_s - self.history_s:
                    minutes.popleft()
            minute[0], minute[1], minute[2] = t_s, 0.0, 0
        minute[1] += value
        minute[2] += 1

    def at(self, t_s: float) -> float | None:
        """The one-minute mean covering `t_s` (or the last before); None before the history."""
        minute = self._minute
        if minute[2] and minute[0] <= t_s:
            return minute[1] / minute[2]
        for start, mean in reversed(self._minutes):
            if start <= t_s:
                return mean
        return None


class ReferenceCheck:
    """An online measurement against a sampled reference of the same quantity.

    Each new GOOD reference result (an at-line count, stamped with the time its sample was
    drawn) is compared with the online reading's one-minute mean at that time (ProbeHistory);
    from then on, until a later result agrees again, the online reading is INCONSISTENT if
    their ratio (online / reference) is outside `ratio_range`.
    """

    def __init__(self, online: str, reference: str, ratio_range: tuple[float, float],
                 min_reference: float, history_s: float) -> None:
        self.online, self.reference = online, reference
        self.low, self.high = ratio_range
        self.min_reference = min_reference
        self.history = ProbeHistory(history_s)
        self._reference_t = math.nan
        self.ratio = math.nan
        """The last comparison's online / reference (NaN before the first)."""
        self.inconsistent = False

    def apply(self, judged: dict[str, Reading]) -> None:
        """Record the online reading, compare with a new reference result, mark the online
        reading INCONSISTENT (in place) while the last comparison disagreed."""
        online = judged.get(self.online)
        if online is None or online.quality is not GOOD:
            online = None
        else:
            self.history.record(online.value, online.timestamp_s)
        reference = judged.get(self.reference)
        if (reference is not None and reference.quality is GOOD
                and reference.timestamp_s != self._reference_t):
            self._compare(reference.value, reference.timestamp_s)
        if self.inconsistent and online is not None:
            judged[self.online] = online.judged(INCONSISTENT)

    def _compare(self, reference: float, drawn_t_s: float) -> None:
        self._reference_t = drawn_t_s
        if not reference >= self.min_reference:
            return  # too few cells to compare: keep the last verdict
        online = self.history.at(drawn_t_s)
        if online is None:
            return  # no online history that far back: nothing to compare with
        self.ratio = online / reference
        self.inconsistent = not self.low <= self.ratio <= self.high


GOOD, STALE, OUT_OF_RANGE = Quality.GOOD, Quality.STALE, Quality.OUT_OF_RANGE
FROZEN, IMPLAUSIBLE = Quality.FROZEN, Quality.IMPLAUSIBLE
NOISY, INCONSISTENT = Quality.NOISY, Quality.INCONSISTENT
INF = float("inf")
