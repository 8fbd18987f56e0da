"""controller.control.totalisers: what each pump delivered between two readings, across bad
readings and device reboots."""
from __future__ import annotations

import pytest

from controller.control.totalisers import TotaliserBaseline
from drivers.contract.reading import Quality, Reading


def readings(feed: float, boot: float = 7.0, quality: Quality = Quality.GOOD) -> dict:
    return {"feed_delivered_ml": Reading(feed, "mL", 0.0, quality),
            "harvest_delivered_ml": Reading(0.0, "mL", 0.0, Quality.GOOD),
            "base_delivered_ml": Reading(0.0, "mL", 0.0, Quality.GOOD),
            "device_boot_id": Reading(boot, "-", 0.0, Quality.GOOD)}


def test_growth_since_the_last_good_reading_with_bad_ones_caught_up() -> None:
    t = TotaliserBaseline()
    assert not t.measure(readings(5.0))
    assert t.measured_ml["feed_ml_per_h"] == 0.0  # the first reading is the baseline
    t.measure(readings(5.5))
    assert t.measured_ml["feed_ml_per_h"] == pytest.approx(0.5)
    t.measure(readings(float("nan"), quality=Quality.COMM_ERROR))
    assert t.measured_ml["feed_ml_per_h"] == 0.0
    t.measure(readings(6.25))
    assert t.measured_ml["feed_ml_per_h"] == pytest.approx(0.75)


@pytest.mark.parametrize("after", [readings(0.25, boot=8.0), readings(0.25)],
                         ids=["new boot id", "went backwards"])
def test_a_reboot_counts_from_zero_again(after: dict) -> None:
    t = TotaliserBaseline()
    t.measure(readings(5.0))
    assert t.measure(after)
    assert t.measured_ml["feed_ml_per_h"] == pytest.approx(0.25)  # never negative, never 5.25


def test_a_restored_baseline_measures_the_outage() -> None:
    before = TotaliserBaseline()
    before.measure(readings(5.0))
    after = TotaliserBaseline()
    after.restore(before.snapshot())
    assert not after.measure(readings(6.0))
    assert after.measured_ml["feed_ml_per_h"] == pytest.approx(1.0)
