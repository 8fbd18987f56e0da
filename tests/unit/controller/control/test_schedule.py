"""controller.control.schedule: the step perfusion profile and boluses with delivered-volume
accounting."""
from __future__ import annotations

from typing import Any

import pytest

from controller.config import ScheduleConfig
from controller.control.schedule import FeedSchedule
from drivers.contract.datasheet import PUMPS

HOUR = 3600.0
DAY = 86400.0


def schedule(perfusion: list[dict[str, Any]] | None = None,
             bolus: list[dict[str, Any]] | None = None) -> FeedSchedule:
    return FeedSchedule(ScheduleConfig.model_validate(
        {"perfusion": perfusion or [], "bolus": bolus or []}))


def delivered(rates: dict[str, float], dt: float, fraction: float = 1.0) -> dict[str, float]:
    """What pumps that deliver `fraction` of `rates` give in `dt` (a totaliser's growth)."""
    return {pump: rate * fraction * dt / HOUR for pump, rate in rates.items()}


def run(sched: FeedSchedule, start: float, end: float, dt: float,
        fraction: float = 1.0) -> list[tuple[float, dict]]:
    """Drive the schedule as the runtime does: rates for the period, then account for them
    with what the pumps delivered (all of it unless `fraction` says otherwise)."""
    out = []
    t = start
    while t < end:
        rates = sched.rates(t, dt)
        out.append((t, rates))
        sched.account(rates, delivered(rates, dt, fraction), dt)
        t += dt
    return out


def pumped_ml(trace: list[tuple[float, dict]], pump: str, dt: float, base: float = 0.0) -> float:
    return sum((rates[pump] - base) * dt / HOUR for _, rates in trace)


# --- the step profile ----------------------------------------------------------------------------


def test_step_profile_holds_each_rate_from_its_at_time() -> None:
    s = schedule(perfusion=[
        {"at": "0h", "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0},
        {"at": "1h", "feed_ml_per_h": 2.0},  # harvest keeps 1.0
        {"at": "2h", "harvest_ml_per_h": 5.0, "base_ml_per_h": 0.5},
    ])
    expected = [
        (0.0, (1.0, 1.0, 0.0)),
        (HOUR - 0.001, (1.0, 1.0, 0.0)),
        (HOUR, (2.0, 1.0, 0.0)),  # due exactly at `at`
        (2 * HOUR - 1.0, (2.0, 1.0, 0.0)),
        (2 * HOUR, (2.0, 5.0, 0.5)),
        (30 * DAY, (2.0, 5.0, 0.5)),  # the last point holds for ever
    ]
    for t, (feed, harvest, base) in expected:
        assert s.rates(t, 1.0) == {"feed_ml_per_h": feed, "harvest_ml_per_h": harvest,
                                   "base_ml_per_h": base}, t


def test_before_the_first_point_all_pumps_are_stopped() -> None:
    s = schedule(perfusion=[{"at": "1d", "feed_ml_per_h": 3.0}])
    assert s.rates(0.0, 1.0) == dict.fromkeys(PUMPS, 0.0)
    assert s.rates(DAY, 1.0)["feed_ml_per_h"] == 3.0


def test_a_late_tick_catches_up_on_every_point_passed() -> None:
    s = schedule(perfusion=[{"at": 10.0, "feed_ml_per_h": 1.0},
                            {"at": 20.0, "harvest_ml_per_h": 2.0},
                            {"at": 30.0, "feed_ml_per_h": 4.0}])
    assert s.rates(100.0, 1.0) == {"feed_ml_per_h": 4.0, "harvest_ml_per_h": 2.0,
                                   "base_ml_per_h": 0.0}


# --- boluses -------------------------------------------------------------------------------------


def test_bolus_adds_its_rate_and_stops_at_its_volume() -> None:
    dt = 7.0  # does not divide the bolus time: the last step must be shortened
    base = 1.0
    s = schedule(perfusion=[{"at": 0.0, "feed_ml_per_h": base}],
                 bolus=[{"at": 100.0, "volume_ml": 2.0, "rate_ml_per_h": 30.0}])
    trace = run(s, 0.0, 1000.0, dt)
    feed = [(t, r["feed_ml_per_h"]) for t, r in trace]

    assert all(rate == base for t, rate in feed if t < 100.0)
    during = [(t, rate) for t, rate in feed if rate > base]
    assert during[0][0] == 105.0  # the first tick at or after `at`
    full_steps = [rate for _, rate in during[:-1]]
    assert all(rate == base + 30.0 for rate in full_steps)
    # 2 mL at 30 mL/h is 240 s: 34 full 7 s steps (238 s) and a short last one
    assert len(full_steps) == 34
    last = during[-1][1]
    assert base < last < base + 30.0
    assert (last - base) * dt / HOUR == pytest.approx(2.0 - 34 * 30.0 * dt / HOUR, abs=1e-12)
    # delivered exactly, and then back to the profile rate
    assert abs(pumped_ml(trace, "feed_ml_per_h", dt, base) - 2.0) < 1e-9
    assert abs(s.boluses[0].delivered_ml - 2.0) < 1e-9
    assert all(rate == base for t, rate in feed if t > during[-1][0])
    assert s.boluses_done == 1
    # no other pump moved
    assert all(r["harvest_ml_per_h"] == 0.0 and r["base_ml_per_h"] == 0.0 for _, r in trace)


def test_bolus_without_a_rate_runs_at_the_pump_maximum() -> None:
    dt = 1.0
    s = schedule(bolus=[{"at": 0.0, "volume_ml": 1.0}])
    trace = run(s, 0.0, 200.0, dt)
    assert trace[0][1]["feed_ml_per_h"] == 60.0  # feed pump datasheet maximum
    assert sum(1 for _, r in trace if r["feed_ml_per_h"] > 0) == 60  # 1 mL at 60 mL/h = 60 s
    assert abs(pumped_ml(trace, "feed_ml_per_h", dt) - 1.0) < 1e-9


def test_base_bolus_uses_the_base_pump() -> None:
    dt = 2.0
    s = schedule(bolus=[{"at": 0.0, "volume_ml": 0.5, "channel": "base_ml_per_h"}])
    trace = run(s, 0.0, 600.0, dt)
    assert trace[0][1]["base_ml_per_h"] == 10.0  # base pump maximum
    assert all(r["feed_ml_per_h"] == 0.0 for _, r in trace)
    assert abs(pumped_ml(trace, "base_ml_per_h", dt) - 0.5) < 1e-9
    assert s.boluses_done == 1


def test_bolus_capped_by_the_pump_maximum_takes_longer_but_delivers_all() -> None:
    dt = 1.0
    base = 50.0  # leaves 10 mL/h of the feed pump's 60 for a 30 mL/h bolus
    s = schedule(perfusion=[{"at": 0.0, "feed_ml_per_h": base}],
                 bolus=[{"at": 0.0, "volume_ml": 2.0, "rate_ml_per_h": 30.0}])
    trace = run(s, 0.0, 2000.0, dt)
    assert all(r["feed_ml_per_h"] <= 60.0 for _, r in trace)
    above = [r["feed_ml_per_h"] for _, r in trace if r["feed_ml_per_h"] > base]
    assert above[0] == 60.0
    assert len(above) == 720  # 2 mL at the 10 mL/h left: 720 s, not 240 s
    assert abs(pumped_ml(trace, "feed_ml_per_h", dt, base) - 2.0) < 1e-9
    assert s.boluses_done == 1


def test_overlapping_boluses_on_one_pump_each_deliver_their_volume() -> None:
    dt = 3.0
    s = schedule(bolus=[{"at": 0.0, "volume_ml": 1.0, "rate_ml_per_h": 20.0},
                        {"at": 60.0, "volume_ml": 0.5, "rate_ml_per_h": 30.0}])
    trace = run(s, 0.0, 1000.0, dt)
    assert max(r["feed_ml_per_h"] for _, r in trace) == 50.0
    assert abs(pumped_ml(trace, "feed_ml_per_h", dt) - 1.5) < 1e-9
    assert [b.delivered_ml for b in s.boluses] == pytest.approx([1.0, 0.5], abs=1e-9)
    assert s.boluses_done == 2


def test_boluses_done_counts_as_they_complete() -> None:
    dt = 10.0
    s = schedule(perfusion=[{"at": 0.0, "feed_ml_per_h": 1.0}],
                 bolus=[{"at": "3h", "volume_ml": 1.0, "rate_ml_per_h": 30.0},
                        {"at": "1h", "volume_ml": 1.0, "rate_ml_per_h": 30.0},  # out of order
                        {"at": "2h", "volume_ml": 1.0, "rate_ml_per_h": 30.0}])
    assert [b.at_s for b in s.boluses] == [HOUR, 2 * HOUR, 3 * HOUR]
    counts = {}
    t = 0.0
    while t < 4 * HOUR:
        rates = s.rates(t, dt)
        s.account(rates, delivered(rates, dt), dt)
        t += dt
        counts[round(t)] = s.boluses_done
    assert counts[round(HOUR)] == 0
    assert counts[round(HOUR + 130.0)] == 1  # 1 mL at 30 mL/h: 120 s
    assert counts[round(2 * HOUR + 60.0)] == 1
    assert counts[round(2 * HOUR + 130.0)] == 2
    assert counts[round(4 * HOUR)] == 3


# --- pause ---------------------------------------------------------------------------------------


def test_pause_stops_all_pumps_and_resume_finishes_the_bolus() -> None:
    dt = 5.0
    s = schedule(perfusion=[{"at": 0.0, "feed_ml_per_h": 2.0, "harvest_ml_per_h": 2.0,
                             "base_ml_per_h": 1.0}],
                 bolus=[{"at": 0.0, "volume_ml": 1.0, "rate_ml_per_h": 30.0}])
    first = run(s, 0.0, 60.0, dt)  # half the 120 s bolus
    assert first[0][1] == {"feed_ml_per_h": 32.0, "harvest_ml_per_h": 2.0, "base_ml_per_h": 1.0}
    half = s.boluses[0].delivered_ml
    assert half == pytest.approx(0.5, abs=1e-9)

    s.paused = True
    paused = run(s, 60.0, 2 * HOUR, dt)
    assert all(rates == dict.fromkeys(PUMPS, 0.0) for _, rates in paused)
    assert s.boluses[0].delivered_ml == half  # nothing credited while stopped
    assert s.boluses_done == 0

    s.paused = False
    resumed = run(s, 2 * HOUR, 3 * HOUR, dt)
    assert resumed[0][1]["feed_ml_per_h"] == 32.0  # the bolus carries on where it stopped
    assert resumed[0][1]["harvest_ml_per_h"] == 2.0
    total = pumped_ml(first + resumed, "feed_ml_per_h", dt, base=2.0)
    assert abs(total - 1.0) < 1e-9
    assert s.boluses_done == 1


def test_pause_also_holds_back_profile_steps_taken_meanwhile() -> None:
    s = schedule(perfusion=[{"at": 0.0, "feed_ml_per_h": 1.0},
                            {"at": 100.0, "feed_ml_per_h": 5.0}])
    s.paused = True
    assert s.rates(150.0, 1.0) == dict.fromkeys(PUMPS, 0.0)
    s.paused = False
    assert s.rates(151.0, 1.0)["feed_ml_per_h"] == 5.0  # the step made while paused applies


# --- verified delivery: the ledger books what the totalisers measured ---------------------------


def delivery_schedule(on_short: str = "stop", base: float = 1.0) -> FeedSchedule:
    return FeedSchedule(ScheduleConfig.model_validate({
        "perfusion": [{"at": 0.0, "feed_ml_per_h": base}],
        "bolus": [{"at": 0.0, "volume_ml": 2.0, "rate_ml_per_h": 30.0}],
        "delivery": {"on_short": on_short, "max_commanded_factor": 2.0}}))


def news(s: FeedSchedule) -> list[str]:
    out = [what for what, _ in s.ledger]
    s.ledger.clear()
    return out


def test_a_healthy_bolus_is_credited_with_what_was_measured_beyond_the_perfusion() -> None:
    s = delivery_schedule()
    run(s, 0.0, 600.0, 1.0)
    bolus = s.boluses[0]
    assert bolus.commanded_ml == pytest.approx(2.0, abs=1e-9)
    assert bolus.delivered_ml == pytest.approx(2.0, abs=1e-9)
    assert news(s) == ["started", "done"]


def test_a_clogged_pump_leaves_the_bolus_short_open_and_mismatched_under_stop() -> None:
    s = delivery_schedule("stop")
    trace = run(s, 0.0, 1200.0, 1.0, fraction=0.0)
    bolus = s.boluses[0]
    assert (bolus.commanded_ml, bolus.delivered_ml) == (pytest.approx(2.0), 0.0)
    assert news(s) == ["started", "mismatch", "short"]
    assert bolus.state == "short" and not bolus.done and s.boluses_done == 0
    # It stopped at its commanded volume: the perfusion alone from then on.
    assert pumped_ml(trace, "feed_ml_per_h", 1.0, base=1.0) == pytest.approx(2.0, abs=1e-9)


def test_complete_pumps_on_until_the_measured_volume_is_in() -> None:
    s = delivery_schedule("complete")
    run(s, 0.0, 2000.0, 1.0, fraction=0.6)  # worn tubing: 60 % of what is asked for
    bolus = s.boluses[0]
    assert news(s) == ["started", "mismatch", "completing", "done"]
    assert bolus.delivered_ml == pytest.approx(2.0, abs=1e-3)
    # 2 / 0.6 mL, and more for the perfusion's share, also short by 40 %; below the 4 mL cap
    assert 2.0 / 0.6 < bolus.commanded_ml < 3.5
    assert bolus.done


def test_complete_stops_at_its_cap_and_stays_short() -> None:
    s = delivery_schedule("complete")
    trace = run(s, 0.0, 2000.0, 1.0, fraction=0.0)
    bolus = s.boluses[0]
    assert news(s) == ["started", "mismatch", "completing", "short"]
    assert bolus.commanded_ml == pytest.approx(4.0, abs=1e-9)  # 2 x its volume, no more
    assert pumped_ml(trace, "feed_ml_per_h", 1.0, base=1.0) == pytest.approx(4.0, abs=1e-9)
    assert not bolus.done


def test_a_runaway_pump_over_delivers_on_record() -> None:
    s = delivery_schedule()
    run(s, 0.0, 600.0, 1.0, fraction=1.5)
    bolus = s.boluses[0]
    assert news(s) == ["started", "mismatch", "over", "done"]
    assert bolus.delivered_ml > bolus.volume_ml + 0.5


def test_an_outage_is_booked_in_proportion_to_the_rates_that_stood() -> None:
    s = delivery_schedule(base=10.0)
    run(s, 0.0, 60.0, 1.0)  # 0.5 mL of the bolus given; it runs at 10 + 30 mL/h
    given = s.boluses[0].delivered_ml
    news(s)
    # Down for 10 min with the pump running on at 40 mL/h: 6.67 mL, three quarters the bolus's.
    s.account_outage({"feed_ml_per_h": 40.0}, {"feed_ml_per_h": 40.0 / 6})
    bolus = s.boluses[0]
    assert bolus.delivered_ml == pytest.approx(given + 5.0)
    s.account(s.rates(660.0, 1.0), {"feed_ml_per_h": 10.0 / HOUR}, 1.0)
    assert news(s) == ["booked", "over", "done"]  # commanded as delivered: no mismatch
    assert bolus.done and bolus.delivered_ml > bolus.volume_ml


def test_an_outage_with_nothing_commanded_books_the_flow_to_the_bolus_under_way() -> None:
    """Killed between the checkpoint that stopped a bolus's last step and the write: the pump
    ran on although the checkpoint says 0."""
    s = delivery_schedule(base=0.0)
    run(s, 0.0, 240.0, 1.0)  # 2 mL at 30 mL/h: commanded in full, judged on the next reading
    news(s)
    s.account_outage({"feed_ml_per_h": 0.0}, {"feed_ml_per_h": 0.25})
    assert s.boluses[0].delivered_ml == pytest.approx(2.25)
    assert news(s) == ["booked"]


def test_an_outage_over_two_boluses_completes_each_and_books_the_excess_on_the_newer() -> None:
    """Two boluses pumping together (an outage delayed the first into the second's slot), then
    killed: the device ran on at both rates. The first is filled up to its volume, the second
    gets the rest; neither is pumped again (the first one taking it all would leave the second
    to be given a second time)."""
    s = FeedSchedule(ScheduleConfig.model_validate({
        "bolus": [{"at": 0.0, "volume_ml": 1.0, "rate_ml_per_h": 12.0},
                  {"at": 60.0, "volume_ml": 1.0, "rate_ml_per_h": 12.0}]}))
    run(s, 0.0, 120.0, 1.0)  # 0.6 mL pumped, credited to the older bolus first
    first, second = s.boluses
    assert first.delivered_ml == pytest.approx(0.6) and second.delivered_ml == 0.0
    news(s)
    # Down while both pumped at 12 mL/h each until the device's watchdog: 2.16 mL in all.
    s.account_outage({"feed_ml_per_h": 24.0}, {"feed_ml_per_h": 2.16})
    assert first.delivered_ml == pytest.approx(1.0)
    assert second.delivered_ml == pytest.approx(2.16 - 0.4)
    assert first.delivered_ml + second.delivered_ml == pytest.approx(0.6 + 2.16)
    assert news(s) == ["booked", "booked"]
    trace = run(s, 120.0, 400.0, 1.0)
    assert all(rates["feed_ml_per_h"] == 0.0 for _, rates in trace)  # nothing pumped again
    assert first.done and second.done
