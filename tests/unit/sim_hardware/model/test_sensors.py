"""Sensor models: noise, bias, drift and lag as parameterised; at-line assays; repeatability."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from drivers.contract.datasheet import channel
from drivers.contract.reading import Quality
from sim_hardware.model.parameters import ModelParameters
from sim_hardware.model.sensors import AtLineAnalyser, ContinuousSensor, SensorBank, normal_stream

INITIAL = {"temperature_c": 37.0, "do_pct_air": 25.0, "ph": 7.3, "total_cells_per_ml": 1e5,
           "volume_ml": 50.0}


def bank(seed: int, **overrides: float) -> SensorBank:
    return SensorBank(ModelParameters.from_options(overrides), np.random.SeedSequence(seed),
                      INITIAL, 0.0)


def read_all(b: SensorBank, n: int = 50) -> list[float]:
    values = []
    for k in range(1, n + 1):
        t = float(k)
        values += [b.temperature.read(37.0, t).value, b.do.read(25.0, t).value,
                   b.ph.read(7.3, t).value, b.total_cells.read(1e5, t).value,
                   b.volume.read(50.0, t).value]
    return values


def test_same_seed_same_readings_and_different_seed_different() -> None:
    assert read_all(bank(3)) == read_all(bank(3))
    assert read_all(bank(3)) != read_all(bank(4))
    assert bank(3).errors() == bank(3).errors()
    assert bank(3).errors() != bank(4).errors()


def test_noise_std_is_as_parameterised() -> None:
    b = bank(11)
    temps = np.array([b.temperature.read(37.0, float(k)).value for k in range(1, 20001)])
    dos = np.array([b.do.read(25.0, float(k)).value for k in range(1, 20001)])
    phs = np.array([b.ph.read(7.3, float(k)).value for k in range(1, 20001)])
    cells = np.array([b.total_cells.read(1e6, 1e6 + k).value for k in range(1, 20001)])
    p = ModelParameters()
    assert temps.std() == pytest.approx(p.temp_noise_sd_c, rel=0.05)
    assert dos.std() == pytest.approx(p.do_noise_sd_pct_air, rel=0.05)
    assert phs.std() == pytest.approx(p.ph_noise_sd, rel=0.05)
    assert cells.std() / cells.mean() == pytest.approx(p.total_cells_cv, rel=0.05)
    # The mean is the truth plus this run's bias (drift is negligible over 20 000 s).
    assert temps.mean() - 37.0 == pytest.approx(b.temperature.bias, abs=0.001)
    assert abs(b.temperature.bias) <= p.temp_bias_max_c


def test_biases_and_drift_stay_within_their_parameterised_sizes() -> None:
    p = ModelParameters()
    for seed in range(40):
        e = bank(seed).errors()
        assert abs(e["temperature_bias_c"]) <= p.temp_bias_max_c
        assert abs(e["do_bias_pct_air"]) <= p.do_bias_max_pct_air
        assert abs(e["ph_bias"]) <= p.ph_bias_max
        assert abs(e["volume_bias_ml"]) <= p.volume_bias_max_ml
        assert p.ph_drift_min_per_week <= abs(e["ph_drift_per_week"]) <= p.ph_drift_max_per_week


def test_ph_drifts_linearly_with_time() -> None:
    b = bank(5, ph_noise_sd=0.0)
    week_s = 7 * 86400.0
    start = b.ph.read(7.3, 1.0).value
    after = b.ph.read(7.3, week_s + 1.0).value
    assert after - start == pytest.approx(b.errors()["ph_drift_per_week"], rel=1e-6)


@pytest.mark.parametrize("lag_s", [10.0, 30.0, 60.0])
def test_first_order_lag_reaches_63_percent_after_one_time_constant(lag_s: float) -> None:
    sensor = ContinuousSensor(channel("do_pct_air"), lag_s=lag_s, noise=iter(lambda: 0.0, 1),
                              initial_value=20.0, t0_s=0.0)
    step_dt = 0.5
    t = 0.0
    while t < lag_s - 1e-9:
        t += step_dt
        value = sensor.read(30.0, t).value
    assert (value - 20.0) / 10.0 == pytest.approx(1.0 - math.exp(-1.0), rel=1e-9)
    # The lag is exact for any read cadence: one read at lag_s gives the same value.
    once = ContinuousSensor(channel("do_pct_air"), lag_s=lag_s, noise=iter(lambda: 0.0, 1),
                            initial_value=20.0, t0_s=0.0)
    assert once.read(30.0, lag_s).value == pytest.approx(value, rel=1e-12)


def test_values_beyond_the_datasheet_range_are_clipped_and_flagged() -> None:
    sensor = ContinuousSensor(channel("ph"), lag_s=0.0, noise=iter(lambda: 0.0, 1),
                              initial_value=7.0, t0_s=0.0)
    high = sensor.read(9.2, 1.0)
    assert high.value == 8.5 and high.quality is Quality.OUT_OF_RANGE
    low = sensor.read(5.0, 2.0)
    assert low.value == 5.5 and low.quality is Quality.OUT_OF_RANGE
    ok = sensor.read(7.1, 3.0)
    assert ok.value == 7.1 and ok.quality is Quality.GOOD
    assert ok.unit == "pH" and ok.timestamp_s == 3.0


@dataclass
class FakeChamber:
    viable_cells_per_ml: float = 1e5
    glucose_mm: float = 25.0
    lactate_mm: float = 0.0


def test_atline_results_appear_after_the_delay_stamped_with_the_sample_time() -> None:
    p = ModelParameters.from_options({"atline_interval_h": 6.0, "atline_delay_h": 0.5})
    a = AtLineAnalyser(p, np.random.default_rng(1), t0_s=0.0)
    for name, r in a.readings.items():
        assert r.quality is Quality.BAD and math.isnan(r.value), name
    chamber = FakeChamber()
    assert a.next_draw_s == 0.0
    a.draw(0.0, chamber)
    assert a.next_draw_s == 6 * 3600.0
    a.publish(1799.0)
    assert a.readings["glucose_mm"].quality is Quality.BAD
    a.publish(1800.0)
    r = a.readings["glucose_mm"]
    assert r.quality is Quality.GOOD and r.timestamp_s == 0.0
    assert r.value == pytest.approx(25.0, rel=0.2)
    chamber.glucose_mm = 10.0
    a.draw(6 * 3600.0, chamber)
    a.publish(6 * 3600.0 + 1000.0)
    assert a.readings["glucose_mm"].timestamp_s == 0.0  # the old result until the new is ready
    a.publish(6.5 * 3600.0)
    assert a.readings["glucose_mm"].timestamp_s == 6 * 3600.0
    assert a.readings["glucose_mm"].value == pytest.approx(10.0, rel=0.2)


def test_atline_noise_is_as_parameterised() -> None:
    p = ModelParameters()
    a = AtLineAnalyser(p, np.random.default_rng(2), t0_s=0.0)
    counts, glucose = [], []
    for k in range(4000):
        t = k * p.atline_interval_h * 3600.0
        a.draw(t, FakeChamber(viable_cells_per_ml=1e6, glucose_mm=20.0))
        a.publish(t + p.atline_delay_h * 3600.0)
        counts.append(a.readings["viable_cells_per_ml"].value)
        glucose.append(a.readings["glucose_mm"].value)
    assert np.std(counts) / 1e6 == pytest.approx(p.atline_count_cv, rel=0.06)
    assert np.std(glucose) / 20.0 == pytest.approx(p.atline_metabolite_cv, rel=0.06)


def test_atline_results_beyond_range_are_flagged() -> None:
    a = AtLineAnalyser(ModelParameters(), np.random.default_rng(3), t0_s=0.0)
    a.draw(0.0, FakeChamber(lactate_mm=80.0))
    a.publish(1e9)
    assert a.readings["lactate_mm"].quality is Quality.OUT_OF_RANGE
    assert a.readings["lactate_mm"].value == 60.0


def test_normal_stream_is_standard_normal_and_repeatable() -> None:
    a = normal_stream(np.random.default_rng(9), block=100)
    b = normal_stream(np.random.default_rng(9), block=100)
    xs = [next(a) for _ in range(10000)]
    assert xs == [next(b) for _ in range(10000)]
    assert all(type(x) is float for x in xs[:10])
    assert np.mean(xs) == pytest.approx(0.0, abs=0.05)
    assert np.std(xs) == pytest.approx(1.0, abs=0.03)
