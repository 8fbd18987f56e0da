"""The soft sensor's filter on synthetic data (seeded): it converges, its standard deviation
covers the error about as often as it says, and a late at-line result is applied at its draw
time, giving exactly what the filter would have had if the result had come at once."""
from __future__ import annotations

import json

import numpy as np
import pytest
from plugins.synthetic_culture import DAY_S, simulate

from controller.config.soft_sensor import SoftSensorConfig
from controller.estimation.culture_model import INH, MU, XV, CultureModel, Dilution, Observation
from controller.estimation.delayed_ekf import DelayedEKF

STEP_S = 600.0
DILUTION = Dilution(0.05, 0.5)
COUNT_EVERY = 36  # segments: every 6 h
DELAY = 18  # segments: results 3 h after the draw
VIABLE_SECRETE = {"inhibitor_secreted_by": "viable", "inhibitor_secretion_pg_per_mcell_d": 40.0}
"""The synthetic culture's inhibitor comes from all its viable cells."""


def run_filter(seed: int, config: SoftSensorConfig, days: float = 10.0,
               *, delay: int = DELAY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Filter the synthetic culture: (truth rows, estimates, sds) at every segment end."""
    rng = np.random.default_rng(seed)
    truth = simulate(config, days, STEP_S, DILUTION)
    model = CultureModel(config)
    total0 = truth.viable[0] + truth.dead[0]
    x0, p0 = model.initial(total0 * 1e6)
    ekf = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    pending: list[tuple[int, list[Observation]]] = []
    est, sd = [], []
    for k in range(1, len(truth.t_s)):
        t = truth.t_s[k]
        total = (truth.viable[k] + truth.dead[k]) \
            * (1 + config.total_cells_sd * rng.standard_normal())
        ekf.step(t, DILUTION, [Observation("total_cells", t, total)])
        if k % COUNT_EVERY == 0:
            count = truth.viable[k] * (1 + config.viable_count_cv * rng.standard_normal())
            viab = 100 * truth.viable[k] / (truth.viable[k] + truth.dead[k]) \
                + config.viability_sd_pct * rng.standard_normal()
            pending.append((k + delay, [Observation("viable_cells", t, count),
                                        Observation("viability", t, viab)]))
        for _due, obs in [p for p in pending if p[0] == k]:
            ekf.add_late(obs)
        pending = [p for p in pending if p[0] > k]
        est.append(ekf.x.copy())
        sd.append(np.sqrt(np.diag(ekf.p)))
    rows = np.column_stack([truth.viable, truth.mu, truth.inhibitor])[1:]
    return rows, np.array(est), np.array(sd)


def test_converges_to_the_truth() -> None:
    config = SoftSensorConfig(**VIABLE_SECRETE)
    truth, est, _ = run_filter(1, config)
    after = slice(int(3 * DAY_S / STEP_S), None)  # from day 3: after the lag's surprise
    rmse_mu = np.sqrt(np.mean((est[after, MU] - truth[after, 1]) ** 2))
    mape_xv = np.mean(np.abs(est[after, XV] / truth[after, 0] - 1))
    mape_inh = np.mean(np.abs(est[after, INH] / truth[after, 2] - 1))
    assert rmse_mu < 0.1
    assert mape_xv < 0.05
    assert mape_inh < 0.1


def test_standard_deviation_covers_the_error_about_as_often_as_it_should() -> None:
    """Over seeds and times, the truth lies within 1.96 SD about 95 % of the time: not much
    less (an overconfident filter stops listening to its measurements) and not ~100 % (an
    SD too wide to act on)."""
    config = SoftSensorConfig(**VIABLE_SECRETE)
    inside = {XV: [], MU: []}
    for seed in range(8):
        truth, est, sd = run_filter(100 + seed, config)
        for i, col in ((XV, 0), (MU, 1)):
            z = np.abs(est[::12, i] - truth[::12, col]) / sd[::12, i]
            inside[i].extend(z[4:] < 1.96)
    for i, hits in inside.items():
        share = float(np.mean(hits))
        assert 0.85 <= share <= 0.995, (i, share)


def test_a_late_result_is_applied_at_its_draw_time() -> None:
    """The same measurements, once on time and once arriving 5 h late: the same estimate."""
    config = SoftSensorConfig(**VIABLE_SECRETE)
    model = CultureModel(config)
    x0, p0 = model.initial(1e5)
    on_time = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    late = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    rng = np.random.default_rng(7)
    truth = simulate(config, 3.0, STEP_S, DILUTION)
    draw_k, arrive_k = 300, 330
    count = None
    for k in range(1, len(truth.t_s)):
        t = truth.t_s[k]
        total = Observation("total_cells", t, (truth.viable[k] + truth.dead[k])
                            * (1 + 0.02 * rng.standard_normal()))
        if k == draw_k:
            count = Observation("viable_cells", t, truth.viable[k] * 1.1)
            on_time.step(t, DILUTION, [count, total])
        else:
            on_time.step(t, DILUTION, [total])
        late.step(t, DILUTION, [total])
        if k == arrive_k:
            assert count is not None
            assert not np.allclose(late.x, on_time.x, rtol=1e-6)  # it did matter
            late.add_late([count])
        if k >= arrive_k:
            np.testing.assert_allclose(late.x, on_time.x, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(late.p, on_time.p, rtol=1e-7, atol=1e-14)


def test_a_result_older_than_the_window_is_dropped_and_counted() -> None:
    config = SoftSensorConfig(history_s=3600.0)
    model = CultureModel(config)
    x0, p0 = model.initial(1e5)
    ekf = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    for k in range(1, 20):
        ekf.step(k * STEP_S, DILUTION, [Observation("total_cells", k * STEP_S, 0.1)])
    x_before = ekf.x.copy()
    assert ekf.add_late([Observation("viable_cells", 600.0, 0.2)]) == 0
    assert ekf.too_late == 1
    np.testing.assert_array_equal(ekf.x, x_before)


def test_a_result_drawn_before_the_filter_started_is_applied_at_its_start() -> None:
    """The seeding samples are drawn before the first optical density starts the filter: they
    describe the culture it starts from, so they are taken there, not dropped, and the later
    history is re-run on them."""
    config = SoftSensorConfig()
    model = CultureModel(config)
    x0, p0 = model.initial(1e5)
    ekf = DelayedEKF(model, x0, p0, 30.0, config.history_s)
    for k in range(1, 10):
        ekf.step(30.0 + k * STEP_S, DILUTION, [Observation("total_cells", k * STEP_S, 0.1)])
    x_before, p_before = ekf.x.copy(), ekf.p.copy()
    assert ekf.add_late([Observation("viable_cells", 0.0, 0.05)]) == 1
    assert ekf.too_late == 0
    assert ekf.x[XV] < x_before[XV]  # the count said fewer viable cells than assumed
    assert ekf.p[XV, XV] < p_before[XV, XV]


def test_unknown_observation_kind_is_refused_with_the_known_ones() -> None:
    model = CultureModel(SoftSensorConfig())
    x0, _ = model.initial(1e5)
    with pytest.raises(ValueError, match="known: total_cells"):
        model.measure("capacitance", x0, 1.0)


def test_a_restored_filter_carries_on_exactly_as_the_one_it_was_taken_from() -> None:
    """A checkpoint keeps the window's inputs, not its posteriors; re-running the window from
    its base gives the same numbers bit for bit, so late results that reach back before the
    restart are applied as they would have been without one."""
    config = SoftSensorConfig(**VIABLE_SECRETE, history_s=6 * 3600.0)  # a window that prunes
    rng = np.random.default_rng(7)
    truth = simulate(config, 3.0, STEP_S, DILUTION)
    model = CultureModel(config)
    x0, p0 = model.initial((truth.viable[0] + truth.dead[0]) * 1e6)
    ekf = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    restored: DelayedEKF | None = None
    half = len(truth.t_s) // 2
    for k in range(1, len(truth.t_s)):
        t = truth.t_s[k]
        obs = [Observation("total_cells", t, truth.viable[k] * (1 + 0.02 * rng.standard_normal()))]
        late = ([Observation("viable_cells", truth.t_s[k - DELAY], truth.viable[k - DELAY])]
                if k % COUNT_EVERY == 0 and k > DELAY else [])
        for f in (ekf, restored):
            if f is not None:
                f.step(t, DILUTION, list(obs))
                f.add_late(list(late))
        if k == half:
            restored = DelayedEKF.restored(model, json.loads(json.dumps(ekf.snapshot())),
                                           config.history_s)
            assert np.array_equal(restored.x, ekf.x) and np.array_equal(restored.p, ekf.p)
            assert restored.t_s == ekf.t_s
    assert restored is not None and restored.too_late == ekf.too_late
    assert np.array_equal(restored.x, ekf.x) and np.array_equal(restored.p, ekf.p)
