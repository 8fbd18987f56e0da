"""Judging each reading every tick: is it fresh, in range, alive and physically plausible?

A device marks what it knows is wrong (comm errors, out-of-range, no data yet); the controller
adds what only a history shows: a value that stopped changing (a stuck sensor: real probes always
have some noise) or that jumped faster than the process can move (a spike). The verdict is the
reading's quality; loops act only on GOOD readings, and the historian records the verdict beside
the value as measured.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from controller.config import QualityConfig
from drivers.datasheet import INPUTS, Kind
from drivers.reading import Quality, Reading


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

SAMPLED_STALE_AFTER_S = 3 * 6 * 3600.0
"""An at-line result older than three sampling intervals (6 h) is stale."""


class QualityJudge:
    """Per reactor: the limits of each input, and the short history the checks need.

    Runs on every tick for every input, so it is written for speed: limits flattened into
    tuples, history in small lists, one loop with locals.
    """

    def __init__(self, overrides: Mapping[str, QualityConfig], control_period_s: float) -> None:
        inf = float("inf")
        self._limits: dict[str, tuple[float, float, float, float, float, float]] = {}
        for ch in INPUTS:
            cfg = overrides.get(ch.name, DEFAULT_LIMITS.get(ch.name, QualityConfig()))
            default_stale = (SAMPLED_STALE_AFTER_S if ch.kind is Kind.SAMPLED
                             else max(5.0 * control_period_s, 5.0))
            self._limits[ch.name] = (
                cfg.stale_after_s if cfg.stale_after_s is not None else default_stale,
                ch.minimum if cfg.minimum is None else cfg.minimum,
                ch.maximum if cfg.maximum is None else cfg.maximum,
                cfg.max_rate_per_s if cfg.max_rate_per_s is not None else inf,
                cfg.frozen_epsilon,
                cfg.frozen_after_s if cfg.frozen_after_s is not None else inf,
            )
        nan = float("nan")
        # [last accepted value, its time, when it last changed, last sample time, its verdict]
        self._history: dict[str, list] = {ch.name: [nan, nan, nan, nan, GOOD] for ch in INPUTS}

    def judge(self, readings: Mapping[str, Reading], now_s: float) -> dict[str, Reading]:
        """The readings with their verdicts; a reading that passes every check is reused."""
        judged: dict[str, Reading] = {}
        limits_of = self._limits
        history_of = self._history
        for name, reading in readings.items():
            limits = limits_of.get(name)
            if reading.quality is not GOOD or limits is None:
                judged[name] = reading
                continue
            history = history_of[name]
            t_s = reading.timestamp_s
            if t_s == history[3]:  # the same sample again (an at-line result): same verdict
                verdict = history[4]
                if verdict is GOOD and now_s - t_s > limits[0]:
                    verdict = STALE
            else:
                verdict = _verdict(reading.value, t_s, now_s, limits, history)
            judged[name] = reading if verdict is GOOD else replace(reading, quality=verdict)
        return judged


def _verdict(value: float, t_s: float, now_s: float,
             limits: tuple[float, float, float, float, float, float], history: list) -> Quality:
    stale_after_s, low, high, max_rate, epsilon, frozen_after_s = limits
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
    history[3], history[4] = t_s, verdict
    return verdict


GOOD, STALE, OUT_OF_RANGE = Quality.GOOD, Quality.STALE, Quality.OUT_OF_RANGE
FROZEN, IMPLAUSIBLE = Quality.FROZEN, Quality.IMPLAUSIBLE
