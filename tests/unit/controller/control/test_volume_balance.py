"""controller.control.volume_balance: the chamber's mass balance from the pump totalisers."""
from __future__ import annotations

import pytest

from controller.config.volume_balance import VolumeBalanceConfig
from controller.control.volume_balance import VolumeBalance
from drivers.contract.reading import Quality, Reading

HOUR = 3600.0


def readings(volume_ml: float, feed_ml: float = 0.0, harvest_ml: float = 0.0,
             base_ml: float = 0.0, boot_id: float = 7.0,
             volume_quality: Quality = Quality.GOOD) -> dict[str, Reading]:
    def good(value: float, quality: Quality = Quality.GOOD) -> Reading:
        return Reading(value, "", 0.0, quality)
    return {"volume_ml": good(volume_ml, volume_quality), "feed_delivered_ml": good(feed_ml),
            "harvest_delivered_ml": good(harvest_ml), "base_delivered_ml": good(base_ml),
            "device_boot_id": good(boot_id)}


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
