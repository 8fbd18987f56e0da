"""The soft sensor on the tick: it samples readings, updates at its period, takes an at-line
result once at its draw time, and hands out estimates as readings with units and SDs."""
from __future__ import annotations

import pytest

from controller.config import ConfigError, parse_config
from controller.config.soft_sensor import SoftSensorConfig
from controller.estimation.soft_sensor import ESTIMATES, SoftSensor
from drivers.contract.reading import Quality, Reading

PERIOD_S = 600.0


def probe_readings(t_s: float, *, count: Reading | None = None) -> dict[str, Reading]:
    """A steady culture of 1e5 cells/mL on perfusion of 1 mL/h into 50 mL."""
    h = t_s / 3600.0
    readings = {
        "total_cells_per_ml": Reading(1.0e5, "cells/mL", t_s),
        "do_pct_air": Reading(25.0, "% air sat", t_s),
        "o2_flow_pct": Reading(5.3, "% gas", t_s),
        "volume_ml": Reading(50.0, "mL", t_s),
        "feed_delivered_ml": Reading(1.0 * h, "mL", t_s),
        "harvest_delivered_ml": Reading(1.0 * h, "mL", t_s),
        "base_delivered_ml": Reading(0.0, "mL", t_s),
        "viable_cells_per_ml": Reading(float("nan"), "cells/mL", 0.0, Quality.BAD),
    }
    if count is not None:
        readings["viable_cells_per_ml"] = count
    return readings


def run(sensor: SoftSensor, t0: float, t1: float, step: float = 10.0,
        count: Reading | None = None) -> dict[str, Reading]:
    t = t0
    readings: dict[str, Reading] = {}
    while t <= t1:
        readings = probe_readings(t, count=count)
        sensor.observe(readings, t)
        t += step
    return readings


def test_estimates_are_readings_with_units_and_sds_after_the_first_update() -> None:
    rows: list[tuple[float, dict]] = []
    sensor = SoftSensor(SoftSensorConfig(update_period_s=PERIOD_S),
                        on_update=lambda t, r: rows.append((t, dict(r))))
    readings = {}
    sensor.observe(readings, 0.0)
    assert not any(name.startswith("est_") for name in readings)  # nothing to start from yet
    readings = probe_readings(10.0)
    sensor.observe(readings, 10.0)  # initialised from the optical density
    first_sd = readings["est_viable_cells_per_ml_sd"].value
    readings = run(sensor, 20.0, 2 * PERIOD_S + 10.0)
    for name, (_, _, unit) in ESTIMATES.items():
        assert readings[name].unit == unit and readings[name].quality is Quality.GOOD
        assert readings[f"{name}_sd"].value > 0.0
    assert readings["est_viable_cells_per_ml"].value == pytest.approx(0.95e5, rel=0.05)
    assert readings["est_viable_cells_per_ml_sd"].value < first_sd
    assert [t for t, _ in rows] == [10.0, 10.0 + PERIOD_S, 10.0 + 2 * PERIOD_S]
    assert set(rows[-1][1]) == set(ESTIMATES)


def test_an_at_line_count_is_taken_once_at_its_draw_time() -> None:
    sensor = SoftSensor(SoftSensorConfig(update_period_s=PERIOD_S))
    run(sensor, 0.0, 6 * 3600.0)
    before = sensor.estimates["est_viable_cells_per_ml"]
    # Drawn at 5 h, reported at 6 h and repeated on every read until the next result.
    count = Reading(0.6e5, "cells/mL", 5 * 3600.0)
    run(sensor, 6 * 3600.0 + 10.0, 8 * 3600.0, count=count)
    after = sensor.estimates["est_viable_cells_per_ml"]
    assert after.value < 0.9 * before.value
    assert after.value > 0.6e5  # pulled toward the count, with the optical density holding
    assert len(sensor.filter._late) == 1  # the repeated result was taken once


def test_disabled_or_bad_settings() -> None:
    base = '[[reactor]]\nid = "r1"\n[reactor.soft_sensor]\n'
    assert parse_config(base + "enabled = false\n").reactor[0].soft_sensor.enabled is False
    with pytest.raises(ConfigError, match="update_period_s"):
        parse_config(base + "update_period_s = 5\n")
    with pytest.raises(ConfigError, match="inhibitor_secreted_by"):
        parse_config(base + 'inhibitor_secreted_by = "everyone"\n')


def test_an_alarm_may_watch_an_estimate_and_the_board_judges_it() -> None:
    from controller.alarms.setup import alarm_board

    config = parse_config('[[reactor]]\nid = "r1"\n[[reactor.alarm]]\nname = "slow_growth"\n'
                          'channel = "est_growth_rate_per_d"\nkind = "low"\nlimit = 0.1\n'
                          'priority = "low"\n')
    rc = config.reactor[0]
    board = alarm_board(rc.loops, rc.alarm, rc.alarm_board)
    readings = {"est_growth_rate_per_d": Reading(0.02, "1/d", 100.0)}
    transitions = board.evaluate(readings, {}, 100.0, True)
    assert [t.alarm for t in transitions if t.alarm == "slow_growth"] == ["slow_growth"]
    with pytest.raises(ConfigError, match="est_growth_rate_per_d"):
        parse_config('[[reactor]]\nid = "r1"\n[[reactor.alarm]]\nname = "x"\n'
                     'channel = "est_growth_rate"\nkind = "low"\nlimit = 0.1\n')


def test_accuracy_over_days_2_to_12_against_truth() -> None:
    from controller.estimation.accuracy import AccuracyScore

    score = AccuracyScore()
    for hour in range(0, 14 * 24 + 1):
        t = hour * 3600.0
        truth = {"viable_cells_per_ml": 1e6, "growth_rate_per_d": 0.5,
                 "inhibitor_ng_per_ml": 0.2}
        est = {"est_viable_cells_per_ml": 1.1e6, "est_viable_cells_per_ml_sd": 0.02e6,
               "est_growth_rate_per_d": 0.4, "est_growth_rate_per_d_sd": 0.1,
               "est_inhibitor_ng_per_ml": 0.15, "est_inhibitor_ng_per_ml_sd": 0.1}
        score.add(t, est if hour >= 48 else {**est, "est_growth_rate_per_d": 5.0}, truth)
    summary = score.summary(14 * 86400.0)
    assert summary["window_s"] == [2 * 86400.0, 12 * 86400.0]
    assert summary["samples"] == 10 * 24 + 1  # day 2 to day 12, both ends
    assert summary["growth_rate_rmse_per_d"] == pytest.approx(0.1)  # the wild first days out
    assert summary["viable_density_mape"] == pytest.approx(10.0)
    assert summary["inhibitor_mape"] == pytest.approx(25.0)
    assert summary["within_1_96_sd"]["viable_cells_per_ml"] == 0.0
    assert summary["within_1_96_sd"]["growth_rate_per_d"] == 1.0
    assert summary["primitive_fraction_mae"] is None
    assert score.summary(3 * 86400.0)["window_s"] == [0.0, 3 * 86400.0]  # a short run: its span


def test_cytometry_sets_the_primitive_fraction_and_narrows_its_sd() -> None:
    sensor = SoftSensor(SoftSensorConfig(update_period_s=PERIOD_S))
    run(sensor, 0.0, 3600.0)
    prior = sensor.estimates["est_primitive_fraction"]
    prior_sd = sensor.estimates["est_primitive_fraction_sd"].value
    t = 3600.0 + 10.0
    while t <= 3 * 3600.0:
        readings = probe_readings(t)
        readings["cd34_pct"] = Reading(60.0, "%", 1800.0)
        readings["cd34_cd90_pct"] = Reading(8.0, "%", 1800.0)
        sensor.observe(readings, t)
        t += 10.0
    assert prior.value == pytest.approx(SoftSensorConfig().initial_primitive_fraction)
    assert sensor.estimates["est_primitive_fraction"].value == pytest.approx(0.08, abs=0.02)
    assert sensor.estimates["est_primitive_fraction_sd"].value < prior_sd / 2


def test_estimates_turn_stale_without_measurements_and_good_again_with_them() -> None:
    sensor = SoftSensor(SoftSensorConfig(update_period_s=PERIOD_S, stale_after_s=3600.0))
    run(sensor, 0.0, 1800.0)
    assert sensor.estimates["est_growth_rate_per_d"].quality is Quality.GOOD
    t = 1810.0
    while t <= 1800.0 + 2 * 3600.0:  # the optical probe fails, no O2 balance either
        readings = {name: Reading(float("nan"), r.unit, t, Quality.BAD)
                    for name, r in probe_readings(t).items()}
        sensor.observe(readings, t)
        t += 10.0
    assert sensor.estimates["est_growth_rate_per_d"].quality is Quality.STALE
    run(sensor, t, t + 2 * PERIOD_S)
    assert sensor.estimates["est_growth_rate_per_d"].quality is Quality.GOOD
