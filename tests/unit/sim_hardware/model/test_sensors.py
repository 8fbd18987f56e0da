"""Sensor models: noise, bias, drift and lag as parameterised; at-line assays; repeatability."""
from __future__ import annotations

import math
from collections.abc import Iterator
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
    viability: float = 0.9
    cd34_fraction: float = 0.5
    primitive_fraction: float = 0.05
    ph: float = 7.3
    do_pct_air: float = 25.0
    dco2_mm: float = 1.2


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


def test_normal_stream_draws_as_a_generator_would_on_a_shared_rng() -> None:
    """A block is drawn at the first `next` after the last ran out: an rng that also serves
    other draws (the cytometry's Poisson counts) sees them in the same order as with the plain
    generator the stream replaced."""
    def generator(rng: np.random.Generator, block: int) -> Iterator[float]:
        while True:
            yield from rng.standard_normal(block).tolist()

    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    a, b = normal_stream(rng_a, block=7), generator(rng_b, 7)
    for _ in range(50):
        assert next(a) == next(b)
        assert rng_a.poisson(3.0) == rng_b.poisson(3.0)


# --------------------------------------------------------------- issue 12: the newer assays
H = 3600.0


def run_assays(p: ModelParameters, chamber: FakeChamber, n: int, seed: int = 5
               ) -> dict[str, list[float]]:
    """`n` samples of every group, each published: {channel: values}."""
    a = AtLineAnalyser(p, np.random.default_rng(seed), t0_s=0.0)
    step = max(p.atline_interval_h, p.cytometry_interval_h, p.bga_interval_h) * H
    out: dict[str, list[float]] = {name: [] for name in a.readings}
    for k in range(n):
        t = k * step
        while a.next_draw_s <= t:
            a.draw(a.next_draw_s, chamber)
        a.publish(t + step / 2)
        for name, r in a.readings.items():
            out[name].append(r.value)
    return out


def test_cytometry_error_is_the_cv_plus_poisson_counting() -> None:
    """%CD34+ and %CD34+CD90+: relative SD sqrt(cv^2 + 1/(events x fraction)) (the CV on the
    fraction, then Poisson counting of the positive events), unbiased."""
    p = ModelParameters.from_options({"cytometry_events": 2000.0})
    chamber = FakeChamber(cd34_fraction=0.5, primitive_fraction=0.02)
    got = run_assays(p, chamber, 4000)
    for name, fraction in (("cd34_pct", 0.5), ("cd34_cd90_pct", 0.02)):
        values = np.array(got[name])
        expected_rsd = math.sqrt(p.cytometry_cv**2 + 1.0 / (p.cytometry_events * fraction))
        assert np.mean(values) == pytest.approx(100 * fraction, rel=0.01), name
        assert np.std(values) / (100 * fraction) == pytest.approx(expected_rsd, rel=0.06), name
    # rare events are noisier than the CV alone: counting dominates at 2 % of 2000 events
    assert np.std(got["cd34_cd90_pct"]) / 2.0 > 1.5 * p.cytometry_cv


def test_cytometry_without_a_cv_is_pure_counting() -> None:
    p = ModelParameters.from_options({"cytometry_cv": 0.0, "cytometry_events": 10000.0})
    values = np.array(run_assays(p, FakeChamber(primitive_fraction=0.01), 3000)["cd34_cd90_pct"])
    counts = values / 100 * 10000  # whole events
    assert np.allclose(counts, np.round(counts))
    assert np.var(counts) == pytest.approx(np.mean(counts), rel=0.08)  # Poisson: var = mean


def test_viability_is_the_true_share_with_its_sd() -> None:
    p = ModelParameters()
    values = np.array(run_assays(p, FakeChamber(viability=0.85), 4000)["viability_pct"])
    assert np.mean(values) == pytest.approx(85.0, abs=0.15)
    assert np.std(values) == pytest.approx(p.atline_viability_sd_pct, rel=0.06)


def test_blood_gas_reference_errors_match_the_analysers_datasheet() -> None:
    """pH: one bias per run (within +-bga_ph_bias_max) plus the repeatability SD; pO2 from the DO
    (100 % air = 0.2095 x 713 mmHg, about 149 mmHg) with 95 % of results within +-7.5 %; pCO2
    from dCO2 / solubility, its bias within 0.4 mmHg."""
    p = ModelParameters()
    chamber = FakeChamber(ph=7.25, do_pct_air=40.0, dco2_mm=1.2)
    a = AtLineAnalyser(p, np.random.default_rng(11), t0_s=0.0)
    assert abs(a.bga_ph_bias) <= p.bga_ph_bias_max
    assert abs(a.bga_pco2_bias_mmhg) <= p.bga_pco2_bias_max_mmhg
    got = run_assays(p, chamber, 4000, seed=11)
    ph = np.array(got["bga_ph"])
    assert np.mean(ph) == pytest.approx(7.25 + a.bga_ph_bias, abs=0.002)
    assert np.std(ph) == pytest.approx(p.bga_ph_sd, rel=0.06)
    po2_true = 40.0 / 100 * 0.2095 * 713.0
    assert 149.0 < 0.2095 * 713.0 < 149.5
    po2 = np.array(got["bga_po2_mmhg"])
    assert np.mean(po2) == pytest.approx(po2_true, rel=0.005)
    within = np.mean(np.abs(po2 / po2_true - 1.0) <= 0.075)
    assert within == pytest.approx(0.95, abs=0.015)
    pco2_true = 1.2 / p.co2_solubility_mm_per_mmhg
    pco2 = np.array(got["bga_pco2_mmhg"])
    assert np.mean(pco2) - pco2_true == pytest.approx(a.bga_pco2_bias_mmhg, abs=0.05)
    assert np.std(pco2) / pco2_true == pytest.approx(p.bga_pco2_cv, rel=0.06)


def test_the_per_run_blood_gas_bias_varies_by_seed_within_its_bound() -> None:
    p = ModelParameters()
    biases = [AtLineAnalyser(p, np.random.default_rng(s), 0.0).bga_ph_bias for s in range(300)]
    assert max(np.abs(biases)) <= p.bga_ph_bias_max
    assert np.std(biases) == pytest.approx(p.bga_ph_bias_max / math.sqrt(3), rel=0.15)


def test_each_group_has_its_own_schedule_delay_and_sample_volume() -> None:
    """Default: counts every 6 h (0.5 h delay), cytometry daily (4 h), blood gas daily (6 min),
    all first at seeding; each result stamped with its sample's time; BAD before the first."""
    p = ModelParameters()
    a = AtLineAnalyser(p, np.random.default_rng(1), t0_s=100.0)
    chamber = FakeChamber()
    drawn = a.draw(100.0, chamber)
    assert drawn == pytest.approx(p.atline_sample_ml + p.cytometry_sample_ml + p.bga_sample_ml)
    assert a.next_draw_s == 100.0 + 6 * H
    a.publish(100.0 + 0.1 * H - 1.0)
    assert all(r.quality is Quality.BAD for r in a.readings.values())
    a.publish(100.0 + 0.1 * H)  # the blood gas first
    assert a.readings["bga_ph"].quality is Quality.GOOD
    assert a.readings["bga_ph"].timestamp_s == 100.0
    assert a.readings["glucose_mm"].quality is Quality.BAD
    assert a.readings["cd34_pct"].quality is Quality.BAD
    a.publish(100.0 + 0.5 * H)
    assert a.readings["viability_pct"].quality is Quality.GOOD
    assert a.readings["cd34_pct"].quality is Quality.BAD
    a.publish(100.0 + 4 * H)
    assert a.readings["cd34_pct"].quality is Quality.GOOD
    assert a.readings["cd34_pct"].timestamp_s == 100.0
    # at 6 h only the count is due again: its sample only
    assert a.draw(100.0 + 6 * H, chamber) == pytest.approx(p.atline_sample_ml)
    for t in (12, 18):
        a.draw(100.0 + t * H, chamber)
    assert a.next_draw_s == 100.0 + 24 * H
    assert a.draw(100.0 + 24 * H, chamber) == pytest.approx(drawn)
    a.publish(100.0 + 24.1 * H)
    assert a.readings["bga_ph"].timestamp_s == 100.0 + 24 * H
    assert a.readings["cd34_pct"].timestamp_s == 100.0  # the day-1 result is still running


def test_a_configured_schedule_is_followed() -> None:
    p = ModelParameters.from_options({"cytometry_interval_h": 48.0, "bga_interval_h": 12.0,
                                      "atline_interval_h": 24.0})
    a = AtLineAnalyser(p, np.random.default_rng(1), t0_s=0.0)
    chamber = FakeChamber()
    volumes = {}
    while a.next_draw_s <= 96 * H:
        t = a.next_draw_s
        volumes[t / H] = a.draw(t, chamber)
    assert sorted(volumes) == [0, 12, 24, 36, 48, 60, 72, 84, 96]
    assert volumes[12] == pytest.approx(p.bga_sample_ml)
    assert volumes[24] == pytest.approx(p.bga_sample_ml + p.atline_sample_ml)
    assert volumes[48] == pytest.approx(p.bga_sample_ml + p.atline_sample_ml
                                        + p.cytometry_sample_ml)


def test_a_bad_schedule_names_the_key_and_its_range() -> None:
    with pytest.raises(ValueError, match=r"cytometry_interval_h.*1.*168"):
        ModelParameters.from_options({"cytometry_interval_h": 0.0})


def test_viability_near_100_percent_stays_a_good_share() -> None:
    values = run_assays(ModelParameters(), FakeChamber(viability=0.995), 500)["viability_pct"]
    assert max(values) == 100.0 and min(values) > 90.0
    a = AtLineAnalyser(ModelParameters(), np.random.default_rng(4), t0_s=0.0)
    a.draw(0.0, FakeChamber(viability=1.0))
    a.publish(1e9)
    assert a.readings["viability_pct"].quality is Quality.GOOD
