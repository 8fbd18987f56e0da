"""The controller's verdict on each reading, and how loops treat it."""
from __future__ import annotations

import random

import pytest

from conftest import DEFAULT_CONFIG_PATH, load_config
from controller.config import QualityConfig
from controller.loop import Loop
from controller.quality import QualityJudge
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
    values = [7.3 + 0.0001 * (i % 2) for i in range(10)] + [7.5 + 0.0001 * (i % 2) for i in range(20)]
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
    loop = Loop("ph", config, stats_after_s=0.0)
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
