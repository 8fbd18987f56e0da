"""controller.control.schedule under a recipe: the recipe's rates replace the perfusion profile,
its boluses are booked like any, and a hold makes boluses wait without dropping them."""
from __future__ import annotations

import pytest

from controller.config import ScheduleConfig
from controller.control.schedule import FeedSchedule

HOUR = 3600.0
DT = 10.0


def step(sched: FeedSchedule, t: float, rates: dict[str, float], *,
         wait: bool = False) -> dict[str, float]:
    """One tick as the reactor makes it: account the last interval, then the recipe's rates."""
    sched.set_base_rates(rates)
    sched.set_boluses_wait(wait)
    return dict(sched.rates(t, DT))


def account(sched: FeedSchedule, out: dict[str, float]) -> None:
    sched.account(out, {p: r * DT / HOUR for p, r in out.items()}, DT)


def test_the_recipe_rates_replace_the_profile_and_a_bolus_rides_on_top() -> None:
    sched = FeedSchedule(ScheduleConfig())
    perfusion = {"feed_ml_per_h": 2.0, "harvest_ml_per_h": 2.0, "base_ml_per_h": 0.0}
    out = step(sched, 0.0, perfusion)
    assert out == perfusion
    sched.add_recipe_bolus("r0", 0.5, "feed_ml_per_h", 30.0, 0.0)
    out = step(sched, 0.0, perfusion)
    assert out["feed_ml_per_h"] == 32.0 and out["harvest_ml_per_h"] == 2.0
    t = 0.0
    while sched.recipe_boluses[0].state != "done":
        account(sched, out)
        t += DT
        out = step(sched, t, perfusion)
        assert t < HOUR
    bolus = sched.recipe_boluses[0]
    assert bolus.commanded_ml == pytest.approx(0.5) and bolus.delivered_ml == pytest.approx(0.5)
    assert out["feed_ml_per_h"] == 2.0
    assert sched.boluses_done == 1


def test_a_waiting_bolus_stops_pumping_and_goes_on_after_the_wait() -> None:
    sched = FeedSchedule(ScheduleConfig())
    zero = {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}
    sched.add_recipe_bolus("r0", 1.0, "feed_ml_per_h", 12.0, 0.0)
    out = step(sched, 0.0, zero)
    for k in range(15):  # 150 s of a 300 s bolus
        account(sched, out)
        out = step(sched, (k + 1) * DT, zero)
    half = sched.recipe_boluses[0].delivered_ml
    assert half == pytest.approx(0.5, abs=0.05)
    out = step(sched, 160.0, zero, wait=True)
    assert out["feed_ml_per_h"] == 0.0
    account(sched, out)
    assert sched.recipe_boluses[0].delivered_ml == pytest.approx(half)
    assert sched.recipe_boluses[0].state == "running"
    snapshot = sched.snapshot()
    again = FeedSchedule(ScheduleConfig())
    pumping = again.restore(snapshot)
    assert [b.id for b in pumping] == ["r0"] and again.recipe_boluses[0].delivered_ml == half
    out = step(again, 170.0, zero)
    assert out["feed_ml_per_h"] == 12.0
    t = 170.0
    while again.recipe_boluses[0].state != "done":
        account(again, out)
        t += DT
        out = step(again, t, zero)
    assert again.recipe_boluses[0].delivered_ml == pytest.approx(1.0, abs=1e-6)
