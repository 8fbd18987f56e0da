"""controller.control.volume_balance: the chamber's mass balance from the pump totalisers."""
from __future__ import annotations

import pytest

from controller.config.volume_balance import VolumeBalanceConfig
from controller.control.volume_balance import VolumeBalance
from drivers.contract.reading import Quality, Reading

HOUR = 3600.0


def readings(volume_ml: float, feed_ml: float = 0.0, harvest_ml: float = 0.0,
             base_ml: float = 0.0, boot_id: float = 7.0,
             volume_quality: Quality = Quality.GOOD, sampled_ml: float = 0.0
             ) -> dict[str, Reading]:
    def good(value: float, quality: Quality = Quality.GOOD) -> Reading:
        return Reading(value, "", 0.0, quality)
    return {"volume_ml": good(volume_ml, volume_quality), "feed_delivered_ml": good(feed_ml),
            "harvest_delivered_ml": good(harvest_ml), "base_delivered_ml": good(base_ml),
            "sampled_ml": good(sampled_ml), "device_boot_id": good(boot_id)}


def balance(**settings: float) -> VolumeBalance:
    return VolumeBalance(VolumeBalanceConfig.model_validate(
        {"window_s": HOUR, "tolerance_ml": 1.0, "sample_period_s": 60.0, **settings}))


def test_a_balanced_chamber_stays_quiet_while_a_leak_raises_and_names_the_gap() -> None:
    check = balance()
    # Perfusion 2 mL/h in and out, a 2 mL bolus at 30 min: the volume follows the totalisers.
    for minute in range(0, 121):
        t = minute * 60.0
        bolus_ml = min(2.0, max(0.0, (minute - 30) * 0.5))
        feed = 2.0 * t / HOUR + bolus_ml
        assert check.observe(readings(50.0 + bolus_ml, feed, 2.0 * t / HOUR), t) is None
    assert check.gap_ml == pytest.approx(0.0)
    # From 2 h on, 2.7 mL/h leaves through no pump.
    changes = []
    for minute in range(121, 241):
        t = minute * 60.0
        leaked = 2.7 * (t - 2 * HOUR) / HOUR
        change = check.observe(readings(52.0 - leaked, 2.0 + 2.0 * t / HOUR, 2.0 * t / HOUR), t)
        if change is not None:
            changes.append((t, change))
    assert [c.active for _, c in changes] == [True]
    t_raised, raised = changes[0]
    assert t_raised == 2 * HOUR + 23 * 60  # 2.7 mL/h passes 1 mL after 22.2 min
    assert raised.gap_ml == pytest.approx(-1.035)
    assert raised.window_s == HOUR
    assert "gap -1.03 mL over 1 h" in raised.message and "tolerance 1 mL" in raised.message


def test_it_clears_only_when_the_gap_is_back_within_half_the_tolerance() -> None:
    check = balance()
    for minute in range(0, 61):
        check.observe(readings(50.0), minute * 60.0)
    assert check.observe(readings(48.5), 61 * 60.0).active
    assert check.observe(readings(48.5), 62 * 60.0) is None  # still a 1.5 mL gap
    # The step leaves the window only after an hour: then the gap is 0 again.
    quiet = [check.observe(readings(48.5), m * 60.0) for m in range(63, 121)]
    assert all(c is None for c in quiet)
    cleared = check.observe(readings(48.5), 121 * 60.0)
    assert cleared is not None and not cleared.active and "back within" in cleared.message


@pytest.mark.parametrize("after_reboot", [{"boot_id": 8.0}, {"feed_ml": 0.0}],
                         ids=["new boot id", "totaliser went backwards"])
def test_a_window_never_spans_a_device_reboot(after_reboot: dict[str, float]) -> None:
    check = balance()
    for minute in range(0, 30):
        check.observe(readings(50.0, feed_ml=40.0), minute * 60.0)
    # The device restarted: totalisers from 0 (or a new boot id). Nothing is compared across.
    for minute in range(30, 91):
        args = {"feed_ml": 40.0, **after_reboot}
        assert check.observe(readings(50.0, **args), minute * 60.0) is None
    assert check.gap_ml == pytest.approx(0.0)  # a full window after the reboot, balanced


def test_only_good_readings_make_a_sample() -> None:
    check = balance()
    for minute in range(0, 61):
        check.observe(readings(50.0), minute * 60.0)
    bad = readings(10.0, volume_quality=Quality.BAD)
    assert check.observe(bad, 61 * 60.0) is None
    assert not check.active and check.gap_ml == pytest.approx(0.0)


def test_disabled_it_never_samples() -> None:
    check = balance(enabled=False)
    for minute in range(0, 121):
        assert check.observe(readings(50.0 - minute), minute * 60.0) is None
    assert check.gap_ml is None


def test_at_line_samples_are_an_outflow_and_ignoring_them_would_raise() -> None:
    """Samples of 1.5 mL every 2 h (a large cytometry draw) leave the chamber: booked through
    the device's `sampled_ml` the balance stays quiet; a totaliser that never counted them
    (held at 0) opens a gap of one sample per window and raises."""
    counted, ignored = balance(), balance()
    raised = []
    for minute in range(0, 8 * 60 + 1):
        t = minute * 60.0
        drawn_ml = 1.5 * (minute // 120 + 1)  # at 0, 2, 4, 6 and 8 h
        volume_ml = 50.0 - drawn_ml
        assert counted.observe(readings(volume_ml, sampled_ml=drawn_ml), t) is None
        change = ignored.observe(readings(volume_ml, sampled_ml=0.0), t)
        if change is not None:
            raised.append((t, change))
    assert counted.gap_ml == pytest.approx(0.0)
    assert raised and raised[0][0] == 2 * HOUR and raised[0][1].active
    assert raised[0][1].gap_ml == pytest.approx(-1.5)


def test_a_sampling_totaliser_restarting_from_0_restarts_the_window() -> None:
    check = balance()
    for minute in range(0, 61):
        check.observe(readings(50.0, sampled_ml=2.0), minute * 60.0)
    assert check.gap_ml == pytest.approx(0.0)
    # The device rebooted between samples: sampled_ml back to 0, the boot id unchanged here.
    assert check.observe(readings(50.0, sampled_ml=0.0), 61 * 60.0) is None  # settling
    assert check.observe(readings(50.0, sampled_ml=0.0), 62 * 60.0) is None
    assert check.gap_ml is None


def test_no_sample_is_taken_while_the_load_cell_settles_after_a_draw() -> None:
    """The totaliser counts a 1.5 mL sample at once; the load cell shows it over seconds. A
    balance sample at the draw's instant would see a 1.5 mL gap: it waits `settle_s`."""
    check = balance(settle_s=30.0)
    for minute in range(0, 61):
        assert check.observe(readings(50.0), minute * 60.0) is None
    t_draw = 61 * 60.0
    # At the draw: the totaliser has it, the (lagging) load cell not yet.
    assert check.observe(readings(50.0, sampled_ml=1.5), t_draw) is None
    assert check.observe(readings(49.0, sampled_ml=1.5), t_draw + 10.0) is None
    assert check.gap_ml == pytest.approx(0.0)  # neither was taken as a sample
    assert check.observe(readings(48.5, sampled_ml=1.5), t_draw + 30.0) is None
    assert check.gap_ml == pytest.approx(0.0)  # settled: the balance holds
    assert not check.active
