"""Latching interlocks: a trip stays (its override keeps acting) after the condition clears,
until an operator resets it; a reset is refused unless the interlock is tripped and a GOOD
reading shows the condition gone. Configured per interlock."""
from __future__ import annotations

import pytest
from plugins.configs import load_default

from controller.config import ConfigError
from controller.config.hard_limits import configured_interlocks, default_interlocks
from controller.control.interlocks import InterlockSet, ResetRefused, supply_interlocks
from drivers import Quality, Reading


def temp(value: float, t: float, quality: Quality = Quality.GOOD) -> dict[str, Reading]:
    return {"temperature_c": Reading(value, "degC", t, quality)}


def heat(locks: InterlockSet, value: float, t: float,
         quality: Quality = Quality.GOOD) -> tuple[list, float]:
    outputs = {"heater_pct": 80.0}
    trips = locks.apply(temp(value, t, quality), outputs, t)
    return trips, outputs["heater_pct"]


def test_defaults_latch_over_temperature_and_supplies_not_volume_or_ph() -> None:
    latched = {lock.name: lock.latched for lock in default_interlocks()}
    assert latched == {"overtemp_limit": True, "overtemp_cut": True, "overtemp_safe": True,
                       "volume_high": False, "volume_low": False, "ph_far_high": False,
                       "ph_far_low": False}
    reactor = load_default().reactor[0]
    assert all(s.latched for s in supply_interlocks(reactor))
    assert {s.name for s in supply_interlocks(reactor)} == {"o2_supply_lost", "co2_supply_lost"}


def test_a_latched_trip_stays_after_the_condition_clears_until_reset() -> None:
    locks = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    trips, heater = heat(locks, 38.6, 0.0)
    assert [(t.name, t.event) for t in trips] == [("overtemp_limit", "tripped"),
                                                  ("overtemp_cut", "tripped")]
    assert heater == 0.0
    trips, heater = heat(locks, 37.0, 1.0)  # well past both reset points
    assert [(t.name, t.event, t.tripped) for t in trips] == [
        ("overtemp_limit", "cleared", True), ("overtemp_cut", "cleared", True)]
    assert heater == 0.0 and locks.cleared == {"overtemp_limit", "overtemp_cut"}
    for i in range(2, 100):  # no more events, the cap keeps acting
        assert heat(locks, 37.0, float(i)) == ([], 0.0)
    trip = locks.reset("overtemp_cut", 100.0, "alice", "heater checked")
    assert (trip.event, trip.by, trip.reason, trip.value) == ("reset", "alice",
                                                              "heater checked", 37.0)
    assert heat(locks, 37.0, 101.0) == ([], 20.0)  # overtemp_limit still caps at 20 %
    locks.reset("overtemp_limit", 102.0, "alice", "ok")
    assert heat(locks, 37.0, 103.0) == ([], 80.0)
    assert locks.tripped == set() and locks.cleared == set()
    assert [t.event for t in locks.history if t.name == "overtemp_cut"] == [
        "tripped", "cleared", "reset"]


def test_back_over_the_limit_while_latched_is_a_trip_again() -> None:
    locks = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    heat(locks, 38.6, 0.0)
    heat(locks, 37.0, 1.0)
    trips, _ = heat(locks, 38.6, 2.0)
    assert [(t.name, t.event) for t in trips] == [("overtemp_limit", "tripped"),
                                                  ("overtemp_cut", "tripped")]
    assert locks.cleared == set()


def test_resets_are_refused_unless_tripped_good_and_the_condition_gone() -> None:
    locks = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    with pytest.raises(KeyError):
        locks.reset("nope", 0.0, "alice", "x")
    heat(locks, 37.0, 0.0)
    with pytest.raises(ResetRefused, match="not tripped"):
        locks.reset("overtemp_cut", 0.0, "alice", "x")
    heat(locks, 38.6, 1.0)
    with pytest.raises(ResetRefused, match=r"condition persists, temperature_c = 38\.6, not "
                                           r"yet below its reset point 37\.8"):
        locks.reset("overtemp_cut", 1.0, "alice", "x")
    heat(locks, 38.0, 2.0)  # under the trip point, not yet past the reset point
    with pytest.raises(ResetRefused, match=r"reset point 37\.8"):
        locks.reset("overtemp_cut", 2.0, "alice", "x")
    # Cleared on a good value, then the probe goes stale: no reset on an untrusted value.
    heat(locks, 37.0, 3.0)
    heat(locks, 37.0, 4.0, Quality.STALE)
    with pytest.raises(ResetRefused, match="STALE reading"):
        locks.reset("overtemp_cut", 4.0, "alice", "x")
    assert "overtemp_cut" in locks.tripped
    heat(locks, 37.0, 5.0)
    locks.reset("overtemp_cut", 5.0, "alice", "x")
    assert "overtemp_cut" not in locks.tripped


def test_unlatched_resets_by_itself_and_cannot_be_reset_by_hand_while_present() -> None:
    locks = InterlockSet(configured_interlocks({"overtemp_cut": False}), {"heater_pct": 0.0})
    assert not next(i for i in locks.interlocks if i.name == "overtemp_cut").latched
    heat(locks, 38.6, 0.0)
    with pytest.raises(ResetRefused, match="condition persists"):
        locks.reset("overtemp_cut", 0.0, "alice", "x")
    trips, _ = heat(locks, 37.0, 1.0)
    assert [(t.name, t.event) for t in trips] == [("overtemp_limit", "cleared"),
                                                  ("overtemp_cut", "reset")]


def test_a_latched_supply_interlock_waits_for_a_reset_near_the_setpoint() -> None:
    reactor = load_default().reactor[0]
    setpoints = {"ph": 7.3}
    locks = InterlockSet([], {}, supply_interlocks(reactor), setpoints.__getitem__)
    for i in range(700):
        locks.apply({"ph": Reading(7.8, "pH", float(i))}, {"co2_pct": 15.0}, float(i))
    assert locks.tripped == {"co2_supply_lost"}
    with pytest.raises(ResetRefused, match=r"ph = 7\.8, not yet below its reset point 7\.4"):
        locks.reset("co2_supply_lost", 700.0, "alice", "x")
    outputs = {"co2_pct": 15.0, "base_ml_per_h": 2.0, "feed_ml_per_h": 1.0,
               "harvest_ml_per_h": 1.0}
    trips = locks.apply({"ph": Reading(7.35, "pH", 701.0)}, outputs, 701.0)
    assert [(t.event, t.priority) for t in trips] == [("cleared", "high")]
    assert outputs["base_ml_per_h"] == 0.0 and outputs["feed_ml_per_h"] == 0.0  # still acting
    trip = locks.reset("co2_supply_lost", 702.0, "alice", "cylinder changed")
    assert (trip.event, trip.priority) == ("reset", "high") and locks.tripped == set()


def test_snapshot_and_restore_keep_latched_trips() -> None:
    locks = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    heat(locks, 38.6, 0.0)
    heat(locks, 37.0, 1.0)
    state = locks.snapshot()
    assert state == {"tripped": ["overtemp_cut", "overtemp_limit"],
                     "cleared": ["overtemp_cut", "overtemp_limit"]}
    again = InterlockSet(default_interlocks(), {"heater_pct": 0.0})
    again.restore(state)
    assert heat(again, 37.0, 2.0) == ([], 0.0)
    again.restore(["volume_high"])  # an older checkpoint: a list of tripped names
    assert again.tripped == {"volume_high"} and again.cleared == set()


def test_latching_is_configured_per_interlock() -> None:
    config = load_default(**{"[reactor.safe_state]": "[reactor.interlocks.latch]\n"
                             "overtemp_limit = false\nvolume_high = true\n\n"
                             "[reactor.interlocks.co2_supply_lost]\nlatched = false\n\n"
                             "[reactor.safe_state]"}).reactor[0]
    latched = {i.name: i.latched for i in configured_interlocks(config.interlocks.latch)}
    assert latched["overtemp_limit"] is False and latched["volume_high"] is True
    assert latched["overtemp_cut"] is True
    assert {s.name: s.latched for s in supply_interlocks(config)} == {
        "o2_supply_lost": True, "co2_supply_lost": False}


@pytest.mark.parametrize(("table", "message"), [
    ("overtemp_hot = true", "latch.overtemp_hot: no such hard limit"),
    ("o2_supply_lost = false", "set `latched` in [reactor.interlocks.o2_supply_lost]"),
])
def test_an_unknown_latch_name_is_refused(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_default(**{"[reactor.safe_state]": f"[reactor.interlocks.latch]\n{table}\n\n"
                        "[reactor.safe_state]"})
