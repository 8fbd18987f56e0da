"""The controller's verdict on each reading, and how loops treat it."""
from __future__ import annotations

import random

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller.config import QualityConfig, load_config
from controller.control.control_loop import ControlLoop
from controller.control.quality import NOISE_WINDOW_S, QualityJudge
from drivers import Quality, Reading


def judge_series(values: list[float], *, period_s: float = 1.0, channel: str = "ph",
                 overrides: dict | None = None) -> list[Quality]:
    judge = QualityJudge(overrides or {}, period_s)
    verdicts = []
    for i, value in enumerate(values):
        t = i * period_s
        verdicts.append(judge.judge({channel: Reading(value, "pH", t)}, t)[channel].quality)
    return verdicts


def noisy(n: int, centre: float = 7.3, std: float = 0.003, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [centre + rng.gauss(0, std) for _ in range(n)]


def test_a_noisy_live_sensor_is_good() -> None:
    assert set(judge_series(noisy(5000))) == {Quality.GOOD}


def test_a_stuck_sensor_is_frozen_after_the_configured_time() -> None:
    values = noisy(100) + [7.31] * 2000
    verdicts = judge_series(values, overrides={"ph": QualityConfig(frozen_after_s=600.0)})
    first_frozen = verdicts.index(Quality.FROZEN)
    assert 100 + 600 <= first_frozen <= 100 + 602
    assert all(v is Quality.FROZEN for v in verdicts[first_frozen:])


def test_a_spike_is_implausible_and_not_taken_as_the_reference() -> None:
    values = noisy(50)
    values[30] = 7.9  # 0.6 pH in a second
    verdicts = judge_series(values)
    assert verdicts[30] is Quality.IMPLAUSIBLE
    assert verdicts[31] is Quality.GOOD  # compared with the last good value, not the spike
    assert verdicts.count(Quality.IMPLAUSIBLE) == 1


def test_a_real_level_shift_is_accepted_once_the_rate_covers_it() -> None:
    values = ([7.3 + 0.0001 * (i % 2) for i in range(10)]
              + [7.5 + 0.0001 * (i % 2) for i in range(20)])
    verdicts = judge_series(values)  # 0.2 pH at 0.05 pH/s: plausible after 4 s
    assert verdicts[10:14] == [Quality.IMPLAUSIBLE] * 4
    assert set(verdicts[14:]) == {Quality.GOOD}


def test_out_of_range_and_nan() -> None:
    judge = QualityJudge({"ph": QualityConfig(minimum=6.5, maximum=8.0)}, 1.0)
    out = judge.judge({"ph": Reading(8.2, "pH", 0.0), "temperature_c": Reading(float("nan"),
                                                                                "degC", 0.0)}, 0.0)
    assert out["ph"].quality is Quality.OUT_OF_RANGE
    assert out["temperature_c"].quality is Quality.OUT_OF_RANGE


def test_stale_readings() -> None:
    judge = QualityJudge({}, 1.0)
    fresh = judge.judge({"ph": Reading(7.3, "pH", 100.0)}, 104.0)["ph"]
    old = judge.judge({"ph": Reading(7.3, "pH", 100.0)}, 106.0)["ph"]
    assert fresh.quality is Quality.GOOD and old.quality is Quality.STALE
    # An at-line result stays good for three sampling intervals, then goes stale.
    sampled = {"glucose_mm": Reading(20.0, "mM", 0.0)}
    assert judge.judge(sampled, 17 * 3600.0)["glucose_mm"].quality is Quality.GOOD
    assert judge.judge(sampled, 19 * 3600.0)["glucose_mm"].quality is Quality.STALE


def test_device_verdicts_pass_through() -> None:
    judge = QualityJudge({}, 1.0)
    bad = Reading(float("nan"), "pH", 0.0, Quality.COMM_ERROR)
    assert judge.judge({"ph": bad}, 0.0)["ph"] is bad


def test_a_held_loop_resumes_only_after_enough_good_samples_and_bumplessly() -> None:
    config = load_config(DEFAULT_CONFIG_PATH).reactor[0].loops["ph"]
    loop = ControlLoop("ph", config, stats_after_s=0.0)
    loop.take_over(10.0)
    t = 0.0
    for _ in range(50):  # settle on good readings
        t += 1.0
        loop.step({"ph": Reading(7.35, "pH", t)}, t)
    held_output = loop.step({"ph": Reading(7.35, "pH", t + 1, Quality.FROZEN)}, t + 1)
    outputs = []
    for i in range(2, 2 + 3):  # good again: the first resume_after_good - 1 samples only watch
        outputs.append(loop.step({"ph": Reading(7.6, "pH", t + i)}, t + i))
    assert config.resume_after_good == 3
    assert outputs[0] == outputs[1] == held_output  # held while trust comes back
    assert outputs[2] == pytest.approx(held_output)  # first acting sample re-bases: no bump
    later = loop.step({"ph": Reading(7.6, "pH", t + 6)}, t + 6)
    assert later > held_output  # then it acts: more CO2 for a high pH


# --- noise: a probe scattering far beyond its own noise --------------------------------------
PROBE_NOISE = {"temperature_c": 0.015, "do_pct_air": 0.25, "ph": 0.004, "volume_ml": 0.05}
CENTRE = {"temperature_c": 37.0, "do_pct_air": 25.0, "ph": 7.3, "volume_ml": 50.0}


def judge_channel(channel: str, values: list[float], judge: QualityJudge | None = None,
                  period_s: float = 1.0) -> list[Quality]:
    judge = judge or QualityJudge({}, period_s)
    return [judge.judge({channel: Reading(v, "u", i * period_s)}, i * period_s)[channel].quality
            for i, v in enumerate(values)]


@pytest.mark.parametrize("channel", sorted(PROBE_NOISE))
def test_a_healthy_probe_on_a_moving_process_is_never_noisy(channel: str) -> None:
    # Its own noise for ~14 h of samples, on a ramp as fast as a stuck heater (0.2 %/min).
    rng = random.Random(3)
    centre, sd = CENTRE[channel], PROBE_NOISE[channel]
    values = [centre * (1 + 3e-5 * i / 60) + rng.gauss(0, sd) for i in range(50_000)]
    assert set(judge_channel(channel, values)) == {Quality.GOOD}


def test_a_noisy_probe_is_noisy_within_two_windows_and_trusted_again_after() -> None:
    rng = random.Random(4)
    # 5 min clean, 10 min at 7x its noise (steps stay far below the 0.5 C/s rate limit), clean.
    sds = [0.015] * 300 + [0.1] * 600 + [0.015] * 600
    verdicts = judge_channel("temperature_c", [37.0 + rng.gauss(0, sd) for sd in sds])
    first = verdicts.index(Quality.NOISY)
    assert 300 < first <= 300 + 2 * NOISE_WINDOW_S
    assert set(verdicts[:300]) == {Quality.GOOD}
    assert verdicts[first:900].count(Quality.GOOD) == 0
    back = 900 + 2 * int(NOISE_WINDOW_S)
    assert Quality.NOISY in verdicts[900:back]  # the last noisy window still counts
    assert set(verdicts[back:]) == {Quality.GOOD}


FASTEST = {"temperature_c": 0.5, "do_pct_air": 10.0, "ph": 0.05, "volume_ml": 0.05}
"""The fastest plausible rate per second (DEFAULT_LIMITS; the load cell has none: both pumps
at 60 mL/h, 0.033 mL/s, rounded up)."""


@pytest.mark.parametrize("period_s", [1.0, 5.0])
@pytest.mark.parametrize("channel", sorted(PROBE_NOISE))
def test_a_noiseless_ramp_at_the_fastest_plausible_rate_is_never_noisy(
        channel: str, period_s: float) -> None:
    # Just below the rate limit (at it, rounding would make some steps IMPLAUSIBLE); its steps
    # alone are 6-60x the noise limit, so only a detrended estimate lets it through. Ten
    # windows at that rate leave the channel's range, so the range is widened.
    rate = 0.99 * FASTEST[channel]
    wide = {channel: QualityConfig(minimum=-1e6, maximum=1e6)}
    for sign in (1.0, -1.0):
        values = [CENTRE[channel] + sign * rate * i * period_s
                  for i in range(round(10 * NOISE_WINDOW_S / period_s))]
        verdicts = judge_channel(channel, values, QualityJudge(wide, period_s), period_s)
        assert set(verdicts) == {Quality.GOOD}


@pytest.mark.parametrize("channel", sorted(PROBE_NOISE))
def test_a_ramp_with_noise_below_the_limit_is_not_noisy(channel: str) -> None:
    # Half the plausible rate, twice the probe's noise (half the limit), half an hour.
    rng = random.Random(6)
    rate, sd = 0.5 * FASTEST[channel], 2 * PROBE_NOISE[channel]
    values = [CENTRE[channel] + rate * i + rng.gauss(0, sd) for i in range(1800)]
    assert Quality.NOISY not in judge_channel(channel, values)


@pytest.mark.parametrize("rate_per_s", [0.0, 0.03, 0.1])  # flat, full heater, 3x that
@pytest.mark.parametrize("period_s", [1.0, 5.0])
def test_noise_above_the_limit_is_noisy_within_two_windows_flat_or_ramping(
        rate_per_s: float, period_s: float) -> None:
    # 5 min clean, then 7x the probe's noise (0.1 C against a 0.06 C limit) on the same ramp.
    rng = random.Random(7)
    n_clean, n = round(300 / period_s), round(900 / period_s)
    values = [25.0 + rate_per_s * i * period_s + rng.gauss(0, 0.015 if i < n_clean else 0.1)
              for i in range(n)]
    wide = QualityJudge({"temperature_c": QualityConfig(minimum=-1e6, maximum=1e6)}, period_s)
    verdicts = judge_channel("temperature_c", values, wide, period_s)
    first = verdicts.index(Quality.NOISY)
    assert set(verdicts[:n_clean]) == {Quality.GOOD}
    assert n_clean < first <= n_clean + 2 * NOISE_WINDOW_S / period_s
    if period_s == 1.0:  # 60 steps a window: the verdict holds
        assert Quality.GOOD not in verdicts[first:]
    else:  # 12 steps a window scatter more: an odd window may pass, as before
        assert verdicts[first:].count(Quality.NOISY) >= 0.8 * (n - first)


def test_isolated_spikes_are_implausible_but_do_not_make_the_probe_noisy() -> None:
    values = noisy(1200)
    for i in range(30, 1200, 60):  # one 0.5 pH spike in every window
        values[i] += 0.5
    verdicts = judge_series(values)
    assert {i for i, v in enumerate(verdicts) if v is not Quality.GOOD} == set(range(30, 1200, 60))
    assert Quality.NOISY not in verdicts


def test_noise_limits_are_configured_per_channel_on_top_of_the_defaults() -> None:
    strict = QualityJudge({"ph": QualityConfig(noise_sd_max=0.001)}, 1.0)  # below the noise
    assert Quality.NOISY in judge_channel("ph", noisy(200, std=0.004), strict)
    # Only that key replaced: the pH's default frozen check (15 min) still stands.
    frozen = judge_channel("ph", [7.31] * 1000, QualityJudge(
        {"ph": QualityConfig(noise_sd_max=0.03)}, 1.0))
    assert frozen[-1] is Quality.FROZEN and frozen[899] is Quality.GOOD
    off = QualityJudge({"temperature_c": QualityConfig(noise_sd_max=1e9)}, 1.0)
    rng = random.Random(5)
    wild = [37.0 + rng.gauss(0, 0.2) for _ in range(300)]
    assert Quality.NOISY in judge_channel("temperature_c", wild)  # the default limit
    assert Quality.NOISY not in judge_channel("temperature_c", wild, off)


# --- the online cell count against the at-line viable count ---------------------------------
H = 3600.0


def cell_counts(total_at, viable_at, hours: float = 20.0, period_s: float = 10.0,
                interval_h: float = 6.0, delay_h: float = 0.5) -> list[tuple[float, Quality]]:
    """(t, verdict of the total count) every `period_s`, the viable count sampled every
    `interval_h` (from `interval_h` on) and published `delay_h` later, stamped when drawn.
    The probe gets 1 % noise (a constant count would be FROZEN)."""
    judge = QualityJudge({}, period_s)
    rng = random.Random(6)
    out = []
    published = Reading(float("nan"), "cells/mL", 0.0, Quality.BAD)
    for i in range(int(hours * H / period_s)):
        t = i * period_s
        drawn = (t - delay_h * H) // (interval_h * H) * interval_h * H
        if drawn >= interval_h * H and drawn != published.timestamp_s:
            published = Reading(viable_at(drawn), "cells/mL", drawn)
        probe = total_at(t) * (1 + 0.01 * rng.gauss(0, 1))
        readings = {"total_cells_per_ml": Reading(probe, "cells/mL", t),
                    "viable_cells_per_ml": published}
        out.append((t, judge.judge(readings, t)["total_cells_per_ml"].quality))
    return out


def test_a_cell_count_that_agrees_with_the_at_line_count_stays_good() -> None:
    verdicts = cell_counts(lambda t: 1.1e5, lambda t: 1.0e5)
    assert {q for _, q in verdicts} == {Quality.GOOD}


def test_a_cell_count_parting_from_the_at_line_count_is_inconsistent_until_it_agrees() -> None:
    # The probe reads 1.1x the viable count, 2x between 4 h and 13 h, 1.1x after.
    def total(t: float) -> float:
        return 2.0e5 if 4 * H <= t < 13 * H else 1.1e5

    verdicts = cell_counts(total, lambda t: 1.0e5, hours=20.0)
    bad = [t for t, q in verdicts if q is not Quality.GOOD]
    assert {q for _, q in verdicts if q is not Quality.GOOD} == {Quality.INCONSISTENT}
    # Seen when the 6 h sample is published (6.5 h), cleared when the 18 h one is (18.5 h):
    # the 12 h sample was drawn while the probe still read 2x, so the verdict stood.
    assert (min(bad), max(bad) + 10) == (6.5 * H, 18.5 * H)


def test_the_cell_count_is_compared_as_it_read_when_the_sample_was_drawn() -> None:
    # The probe jumps to 2x ten minutes after the 6 h draw: by publication (6.5 h) it
    # disagrees, but the sample saw the count before the jump, so that comparison agrees.
    def total(t: float) -> float:
        return 2.0e5 if t >= 6 * H + 600 else 1.1e5

    verdicts = dict(cell_counts(total, lambda t: 1.0e5, hours=13.0))
    assert verdicts[6.5 * H] is Quality.GOOD and verdicts[12 * H] is Quality.GOOD
    assert verdicts[12.5 * H] is Quality.INCONSISTENT  # the 12 h sample saw the jump


def test_too_few_cells_are_not_compared() -> None:
    verdicts = cell_counts(lambda t: 1.0e5, lambda t: 1.0e4, hours=8.0)  # 10x, near zero
    assert {q for _, q in verdicts} == {Quality.GOOD}


def test_probe_history_resumes_after_a_gap_longer_than_it_keeps() -> None:
    """A probe bad for longer than the history is kept (18 h) and then good again: the old
    minutes are all dropped and recording goes on (it used to raise on every later reading)."""
    from controller.control.quality import ProbeHistory

    history = ProbeHistory(history_s=3600.0)
    history.record(1.0, 0.0)
    history.record(2.0, 10 * 3600.0)
    history.record(3.0, 10 * 3600.0 + 61.0)
    assert history.at(10 * 3600.0 + 30.0) == 2.0
    assert history.at(10 * 3600.0 + 61.0) == 3.0
    assert history.at(0.0) is None


def test_a_step_across_a_gap_in_the_samples_is_not_noise() -> None:
    """The controller stalled (or its link was down) for three minutes while the chamber
    cooled 1.85 C: the step between the samples either side is the process, not the probe.
    Before, it made the window NOISY and the loop held its output for two minutes."""
    rng = random.Random(8)
    judge = QualityJudge({}, 1.0)
    times = [*range(0, 120), *range(300, 600)]
    verdicts = []
    for t in times:
        value = (37.0 if t < 120 else 35.15 + 0.001 * (t - 300)) + rng.gauss(0, 0.015)
        reading = Reading(value, "degC", float(t))
        verdicts.append(judge.judge({"temperature_c": reading}, float(t))["temperature_c"].quality)
    assert set(verdicts) == {Quality.GOOD}


def test_noise_after_a_gap_is_still_caught() -> None:
    rng = random.Random(9)
    judge = QualityJudge({}, 1.0)
    times = [*range(0, 120), *range(300, 600)]
    verdicts = []
    for t in times:
        value = 37.0 + rng.gauss(0, 0.015 if t < 120 else 0.1)
        reading = Reading(value, "degC", float(t))
        verdicts.append(judge.judge({"temperature_c": reading}, float(t))["temperature_c"].quality)
    assert Quality.NOISY in verdicts[120:120 + 2 * int(NOISE_WINDOW_S)]
