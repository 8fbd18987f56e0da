"""controller.control.standardisation: a probe's offset estimated against an offline reference,
its readings corrected, and a failing probe told apart from an ageing one."""
from __future__ import annotations

import math

import numpy as np
import pytest

from controller.config import ConfigError, ReactorConfig, parse_config
from controller.config.standardisation import PO2_MMHG_PER_PCT_AIR
from controller.control.standardisation import ProbeStandard, Standardiser, alarm_name
from controller.operator import audit
from drivers.contract.reading import Quality, Reading

HOUR, DAY = 3600.0, 86400.0
DEFAULTS = ReactorConfig(id="r").standardisation


def ph_standard(**overrides: float) -> ProbeStandard:
    return ProbeStandard("ph", DEFAULTS["ph"].model_copy(update=overrides))


def references(standard: ProbeStandard, offset_at, rng: np.random.Generator, *, days: float,
               every_h: float = 24.0, sd: float = 0.01, delay_s: float = 1800.0) -> list:
    """Daily (by default) references of a probe whose offset at t is `offset_at(t)`."""
    results = []
    for k in range(int(days * 24 / every_h) + 1):
        t = k * every_h * HOUR
        true = 7.30
        results.append(standard.update(true + offset_at(t), true + sd * rng.standard_normal(),
                                       t, t + delay_s))
    return results


def test_a_constant_offset_is_learnt_better_than_any_one_reference_gives_it() -> None:
    rng = np.random.default_rng(3)
    last_errors, estimate_errors = [], []
    for _ in range(200):
        standard = ph_standard()
        results = references(standard, lambda t: 0.04, rng, days=10)
        last_errors.append(results[-1].probe_value - results[-1].reference - 0.04)
        estimate_errors.append(standard.estimate_at(10 * DAY) - 0.04)
    rms = lambda errors: math.sqrt(sum(e * e for e in errors) / len(errors))  # noqa: E731
    assert rms(last_errors) == pytest.approx(0.01, rel=0.15)  # one reference: its own error
    # Eleven of them, with a drift the filter must allow for: ~0.6 of one reference's error
    # (a straight line's end through 11 points: sqrt(1/11 + 25/110) = 0.56).
    assert rms(estimate_errors) < 0.7 * rms(last_errors)


def test_a_drifting_ph_probe_is_followed_within_the_ph_band_and_never_called_failing() -> None:
    """The vendor's worst ageing (0.05 pH a week) and the emulator's worst fresh bias (0.03):
    from day 1 the correction stays within 0.03 of the true offset, one re-standardisation at
    a time, and the probe is not alarmed."""
    rng = np.random.default_rng(7)
    drift_per_d = 0.05 / 7

    def offset(t: float) -> float:
        return -0.03 + drift_per_d * t / DAY

    standard = ph_standard()
    results = references(standard, offset, rng, days=14)
    assert not any(r.failing for r in results)
    for r in results[1:]:
        # the correction from this reference on, against the truth then and a day later
        assert abs(r.correction - offset(r.t_s)) < 0.03
        assert abs(r.correction - offset(r.t_s + DAY)) < 0.03
    assert standard.r == pytest.approx(drift_per_d, abs=0.003)
    assert 2 <= sum(r.restandardised for r in results) <= 12


def test_the_correction_moves_only_beyond_the_limit() -> None:
    standard = ph_standard(restandardise_above=0.02)
    first = standard.update(7.31, 7.30, 0.0, 0.0)  # offset 0.01: within 0.02 of no correction
    assert not first.restandardised and standard.correction == 0.0
    standard = ph_standard(restandardise_above=0.005)
    first = standard.update(7.31, 7.30, 0.0, 0.0)
    assert first.restandardised and first.old_correction == 0.0
    assert standard.correction == pytest.approx(first.offset)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["up", "down"])
def test_a_do_probe_drifting_half_a_percent_an_hour_fails_at_the_first_daily_reference(
        sign: float) -> None:
    """Either way: drifting down used to be never alarmed at all."""
    cfg = DEFAULTS["do_pct_air"]
    rng = np.random.default_rng(11)
    for _ in range(50):
        standard = ProbeStandard("do_pct_air", cfg)
        bias = rng.uniform(-1.5, 1.5)
        for day in range(3):
            t = day * DAY
            offset = bias + sign * 0.5 * max(0.0, t - DAY) / HOUR
            po2 = 25.0 * PO2_MMHG_PER_PCT_AIR * (1 + 0.035 * rng.standard_normal())
            result = standard.update(25.0 + offset, po2 * cfg.reference_to_probe, t, t + 1800)
            assert result.failing == (day == 2), (day, result)
        assert result.step and result.correction == pytest.approx(result.offset)
        assert "faster than" in " ".join(result.reasons)


def test_a_correction_beyond_its_limit_is_failing_and_clears_once_back() -> None:
    standard = ph_standard(initial_offset_sd=1.0)
    result = standard.update(7.50, 7.30, 0.0, 0.0)
    assert result.failing and "beyond +-0.15" in result.reasons[0]
    standard.correction = 0.0  # the probe replaced and its estimator too
    standard.b, standard.r = 0.0, 0.0
    standard.p = [[0.05 ** 2, 0.0], [0.0, 0.01 ** 2]]
    assert not standard.update(7.30, 7.30, DAY, DAY).failing


def good(value: float, t_s: float, unit: str = "pH") -> Reading:
    return Reading(value, unit, t_s, Quality.GOOD)


def test_the_standardiser_compares_with_the_probe_at_the_draw_time_and_corrects_readings() -> None:
    std = Standardiser({"ph": DEFAULTS["ph"]})
    nan_ref = Reading(math.nan, "pH", 0.0, Quality.BAD)
    # The probe reads 7.35 for the first hour, then 7.40: the sample was drawn at 10 min.
    for t in range(0, 7200, 60):
        readings = {"ph": good(7.35 if t < 3600 else 7.40, float(t)), "bga_ph": nan_ref}
        assert std.apply(readings, float(t)) == []
        assert readings["ph"].value == (7.35 if t < 3600 else 7.40)  # nothing learnt yet
    reference = good(7.30, 600.0)
    readings = {"ph": good(7.40, 7200.0), "bga_ph": reference}
    [result] = std.apply(readings, 7200.0)
    assert result.probe_value == pytest.approx(7.35)  # the probe then, not now
    assert result.restandardised
    assert readings["ph"].value == pytest.approx(7.40 - result.correction)
    assert readings["ph"].quality is Quality.GOOD
    # The same result again is not a new reference; the correction still applies.
    readings = {"ph": good(7.40, 7201.0), "bga_ph": reference}
    assert std.apply(readings, 7201.0) == []
    assert readings["ph"].value == pytest.approx(7.40 - result.correction)


def test_a_reference_not_good_or_without_probe_history_is_not_used() -> None:
    std = Standardiser({"ph": DEFAULTS["ph"]})
    bad = Reading(7.2, "pH", 0.0, Quality.OUT_OF_RANGE)
    assert std.apply({"ph": good(7.3, 10.0), "bga_ph": bad}, 10.0) == []
    # drawn before the probe's first good reading: nothing to compare with
    assert std.apply({"ph": good(7.3, 20.0), "bga_ph": good(7.2, 5.0)}, 20.0) == []
    assert std.probes["ph"].correction == 0.0


def test_disabled_channels_are_not_standardised_and_alarm_names_follow_the_channels() -> None:
    configs = dict(DEFAULTS)
    configs["ph"] = configs["ph"].model_copy(update={"enabled": False})
    std = Standardiser(configs)
    assert list(std.probes) == ["do_pct_air"]
    assert std.alarm_names == (alarm_name("do_pct_air"),) == ("do_pct_air_probe_failing",)


# --- config ------------------------------------------------------------------------------------
MINIMAL = '[[reactor]]\nid = "r1"\n'


def test_ph_and_do_are_standardised_by_default_and_a_table_replaces_only_its_keys() -> None:
    [reactor] = parse_config(MINIMAL).reactor
    assert set(reactor.standardisation) == {"ph", "do_pct_air"}
    assert reactor.standardisation["do_pct_air"].reference == "bga_po2_mmhg"
    assert reactor.standardisation["do_pct_air"].reference_to_probe == pytest.approx(1 / 1.494)
    [reactor] = parse_config(MINIMAL + "[reactor.standardisation.ph]\n"
                             "correction_max = 0.2\n").reactor
    ph = reactor.standardisation["ph"]
    assert ph.correction_max == 0.2 and ph.reference == "bga_ph"
    assert ph.restandardise_above == DEFAULTS["ph"].restandardise_above


@pytest.mark.parametrize(("table", "expected"), [
    ("[reactor.standardisation.ph]\nrestandardise_above = -1\n",
     "standardisation.ph.restandardise_above = -1"),
    ("[reactor.standardisation.ph]\nreference = \"ph\"\n", "continuous channel"),
    ("[reactor.standardisation.ph]\nreference = \"bga_phh\"\n", "unknown channel 'bga_phh'"),
    ("[reactor.standardisation.ph]\ncorrection_max = 0.005\n",
     "standardisation.ph.correction_max = 0.005: must exceed restandardise_above (0.008)"),
    ("[reactor.standardisation.ph]\nreference_sd = 0\n",
     "standardisation.ph.reference_sd = 0: together with reference_cv = 0 makes the reference "
     "exact"),
    ("[reactor.standardisation.glucose_mm]\nreference = \"bga_ph\"\nreference_to_probe = 1\n"
     "reference_sd = 1\ninitial_offset_sd = 1\ninitial_drift_sd_per_d = 1\n"
     "restandardise_above = 1\ncorrection_max = 2\ndrift_max_per_d = 1\n",
     "only a continuous probe is standardised"),
    ("[reactor.standardisation.temperature_c]\nreference_sd = 0.1\n", "reference"),
    ("[reactor.standardisation.ph]\nstep_sigmas = 50\n", "step_sigmas = 50"),
])
def test_bad_standardisation_tables_are_refused_with_the_key(table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + table)
    assert expected in str(info.value)


def test_a_re_standardisation_is_audited_as_the_system() -> None:
    record = audit.by_system("r1", 100.0, 0.0, "standardise", {"channel": "ph"},
                             {"correction": 0.0}, {"correction": -0.02}, "why")
    assert record.operator == audit.SYSTEM == "system"
    assert record.outcome == "applied" and record.nonce is None
    assert record.new_json == '{"correction":-0.02}'


def test_a_restarted_controller_goes_on_with_the_same_correction_and_estimate() -> None:
    import json
    standard = ph_standard()
    references(standard, lambda t: -0.03, np.random.default_rng(5), days=3)
    again = ph_standard()
    again.restore(json.loads(json.dumps(standard.snapshot())))
    assert again.snapshot() == standard.snapshot()
    assert again.update(7.27, 7.30, 4 * DAY, 4 * DAY) == standard.update(7.27, 7.30, 4 * DAY,
                                                                          4 * DAY)


def test_a_good_result_after_a_bad_one_of_the_same_draw_time_is_used() -> None:
    """The analyser's first result slot reads BAD (no result yet) stamped with the time the
    first sample is drawn; the good result with that stamp must not be taken as seen."""
    std = Standardiser({"ph": DEFAULTS["ph"]})
    std.apply({"ph": good(7.35, 0.0), "bga_ph": Reading(math.nan, "pH", 0.0, Quality.BAD)},
              0.0)
    [result] = std.apply({"ph": good(7.35, 1800.0), "bga_ph": good(7.30, 0.0)}, 1800.0)
    assert result.probe_value == pytest.approx(7.35)
