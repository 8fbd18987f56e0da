"""The gas-supply-lost interlocks: detection from the device's readbacks (supply pressure,
mass flow; at the end of this file), from the loop when those are not GOOD (saturated, PV off
and not coming back), the reaction, reset on recovery, and their config. The day-3 CO2
scenario through the whole controller is in test_co2_failure.py."""
from __future__ import annotations

import json
import math
import random
import sqlite3
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, load_default, load_timetable, run_config

from controller.cli.main import apply_overrides
from controller.config import ConfigError, load_config, parse_config
from controller.config.hard_limits import default_interlocks
from controller.control.interlocks import (
    SATURATION_GRACE_S,
    InterlockSet,
    ResetRefused,
    supply_interlocks,
)
from drivers import Quality, Reading

HOUR = 3600.0
SETPOINTS = {"do_pct_air": 25.0, "ph": 7.3, "temperature_c": 37.0}


UNLATCHED = {"[reactor.safe_state]": "[reactor.interlocks.o2_supply_lost]\nlatched = false\n\n"
             "[reactor.interlocks.co2_supply_lost]\nlatched = false\n\n[reactor.safe_state]"}
"""The supply interlocks reset by themselves once the PV is back (they latch by default: the
latch and the operator's reset are tested in test_interlocks_latch.py)."""


def locks_for(config_text_edits: dict[str, str] | None = None,
              setpoints: dict[str, float] | None = None, *,
              latched: bool = True) -> InterlockSet:
    edits = {**({} if latched else UNLATCHED), **(config_text_edits or {})}
    reactor = load_default(**edits).reactor[0]
    sps = dict(SETPOINTS if setpoints is None else setpoints)
    return InterlockSet(default_interlocks(), reactor.safe_state, supply_interlocks(reactor),
                        sps.__getitem__)


def ph(value: float, t: float, quality: Quality = Quality.GOOD) -> dict[str, Reading]:
    return {"ph": Reading(value, "pH", t, quality)}


def run_co2_lost(locks: InterlockSet, ph_at, co2_at, t_end: float) -> list:
    """Feed `ph_at(t)` and the loop's `co2_at(t)` once a second; return the trips."""
    trips = []
    for i in range(int(t_end)):
        t = float(i)
        commands = {"co2_pct": co2_at(t), "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0}
        trips += locks.apply(ph(ph_at(t), t), commands, t)
    return trips


def test_built_from_the_loops_that_drive_each_gas() -> None:
    supplies = {s.name: s for s in supply_interlocks(load_config(DEFAULT_CONFIG_PATH).reactor[0])}
    o2, co2 = supplies["o2_supply_lost"], supplies["co2_supply_lost"]
    assert (o2.channel, o2.output, o2.below) == ("do_pct_air", "o2_pct", True)
    assert (co2.channel, co2.output, co2.below) == ("ph", "co2_pct", False)
    assert o2.saturated_at == pytest.approx(57.0)  # the DO loop's out_max 60, minus 5 %
    assert co2.saturated_at == pytest.approx(14.25)  # the pH loop's out_max 15
    assert dict(co2.overrides) == {"base_ml_per_h": 0.0, "feed_ml_per_h": 0.0,
                                   "harvest_ml_per_h": 0.0}
    assert dict(o2.overrides) == {"feed_ml_per_h": 7.0, "harvest_ml_per_h": 7.0, "o2_pct": 21.0}


def test_not_built_when_disabled_or_without_a_loop_on_the_gas() -> None:
    off = load_default(**{"[reactor.safe_state]": "[reactor.interlocks.co2_supply_lost]\n"
                                                  "enabled = false\n\n[reactor.safe_state]"})
    assert [s.name for s in supply_interlocks(off.reactor[0])] == ["o2_supply_lost"]
    reactor = load_config(DEFAULT_CONFIG_PATH).reactor[0]
    without_do = reactor.model_copy(update={"loops": {
        name: loop for name, loop in reactor.loops.items() if loop.mv != "o2_pct"}})
    assert [s.name for s in supply_interlocks(without_do)] == ["co2_supply_lost"]


def test_co2_lost_trips_after_for_s_of_a_saturated_loop_and_a_rising_ph() -> None:
    locks = locks_for()
    # pH rising 0.3 /h from 7.3; the loop saturates once pH is 0.1 above setpoint.
    trips = run_co2_lost(locks, lambda t: 7.3 + 0.3 * t / HOUR,
                         lambda t: 15.0 if t >= 1200 else 10.0, 2 * HOUR)
    # Above 7.45 (setpoint + 0.15) from t = 1801 s, saturated since 1200 s: trips 600 s later.
    assert [(t.name, t.tripped, t.t_s, t.priority) for t in trips] == [
        ("co2_supply_lost", True, 2401.0, "high")]
    assert "co2_supply_lost" in locks.tripped


def test_a_loop_with_gas_to_spare_never_trips() -> None:
    trips = run_co2_lost(locks_for(), lambda t: 7.3 + 0.3 * t / HOUR, lambda t: 14.0, 2 * HOUR)
    assert trips == []


def test_a_ph_that_comes_back_restarts_the_wait() -> None:
    """A supply that works, only slowly: pH high with CO2 at the maximum, but falling."""
    locks = locks_for()
    trips = run_co2_lost(locks, lambda t: 7.85 - 0.15 * t / HOUR, lambda t: 15.0, 3 * HOUR)
    # It falls 0.02 (the recovery) every 8 min < the 10 min wait: never trips.
    assert trips == []


def test_noise_dips_of_the_saturated_output_do_not_restart_the_wait() -> None:
    rng = random.Random(5)
    dips = {int(rng.uniform(0, 2400)) for _ in range(40)}  # one-second dips, 40 of them
    trips = run_co2_lost(locks_for(), lambda t: 7.8, lambda t: 13.0 if int(t) in dips else 15.0,
                         1 * HOUR)
    assert [t.t_s for t in trips] == [600.0]


def test_a_long_drop_of_the_output_restarts_the_wait() -> None:
    dip = (300.0, 300.0 + SATURATION_GRACE_S + 2)
    trips = run_co2_lost(locks_for(), lambda t: 7.8,
                         lambda t: 13.0 if dip[0] <= t < dip[1] else 15.0, 1 * HOUR)
    assert [t.t_s for t in trips] == [dip[1] + 600.0]


def test_bad_readings_neither_trip_nor_reset() -> None:
    locks = locks_for()
    for i in range(1200):  # pH out of range all along: no trusted evidence
        locks.apply(ph(8.5, float(i), Quality.OUT_OF_RANGE), {"co2_pct": 15.0}, float(i))
    assert locks.tripped == set()
    run_co2_lost(locks, lambda t: 7.8, lambda t: 15.0, 700)
    assert locks.tripped == {"co2_supply_lost"}
    for i in range(700, 800):  # back at setpoint, but the probe is frozen: stays tripped
        locks.apply(ph(7.3, float(i), Quality.FROZEN), {"co2_pct": 15.0}, float(i))
    assert "co2_supply_lost" in locks.tripped


def test_resets_once_the_ph_is_back_near_setpoint() -> None:
    locks = locks_for(latched=False)
    run_co2_lost(locks, lambda t: 7.8, lambda t: 15.0, 700)
    assert locks.apply(ph(7.41, 800.0), {"co2_pct": 15.0}, 800.0) == []  # reset_margin 0.1
    trips = locks.apply(ph(7.39, 801.0), {"co2_pct": 15.0}, 801.0)
    assert [(t.name, t.tripped, t.priority) for t in trips] == [("co2_supply_lost", False,
                                                                 "high")]
    assert locks.tripped == set()
    assert [t.tripped for t in locks.history] == [True, False]


def test_follows_the_setpoint_an_operator_sets() -> None:
    setpoints = dict(SETPOINTS)
    locks = InterlockSet([], {}, supply_interlocks(load_config(DEFAULT_CONFIG_PATH).reactor[0]),
                         setpoints.__getitem__)
    setpoints["ph"] = 7.7  # pH 7.8 is now within the 0.15 margin
    for i in range(1200):
        locks.apply(ph(7.8, float(i)), {"co2_pct": 15.0}, float(i))
    assert locks.tripped == set()
    setpoints["ph"] = 7.2
    for i in range(1200, 1900):
        locks.apply(ph(7.8, float(i)), {"co2_pct": 15.0}, float(i))
    assert locks.tripped == {"co2_supply_lost"}


def test_the_co2_reaction_stops_base_and_perfusion_and_leaves_the_gas_to_the_loop() -> None:
    locks = locks_for()
    run_co2_lost(locks, lambda t: 7.8, lambda t: 15.0, 700)
    commands = {"co2_pct": 15.0, "feed_ml_per_h": 31.0, "harvest_ml_per_h": 1.0,
                "base_ml_per_h": 2.0, "o2_pct": 5.0}
    locks.apply(ph(7.8, 701.0), commands, 701.0)
    assert commands == {"co2_pct": 15.0, "feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0,
                        "base_ml_per_h": 0.0, "o2_pct": 5.0}


def test_o2_lost_trips_perfuses_and_gives_air_and_the_hard_limits_still_win() -> None:
    locks = locks_for(latched=False)
    for i in range(700):
        t = float(i)
        locks.apply({"do_pct_air": Reading(max(0.0, 15.0 - t / 60), "%", t)},
                    {"o2_pct": 60.0}, t)
    assert locks.tripped == {"o2_supply_lost"}
    commands = {"o2_pct": 60.0, "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0}
    locks.apply({"do_pct_air": Reading(1.0, "%", 701.0)}, commands, 701.0)
    assert commands == {"o2_pct": 21.0, "feed_ml_per_h": 7.0, "harvest_ml_per_h": 7.0}
    # A volume limit overrules the perfusion the lost supply asked for.
    commands = {"o2_pct": 60.0, "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0}
    locks.apply({"do_pct_air": Reading(1.0, "%", 702.0),
                 "volume_ml": Reading(151.0, "mL", 702.0)}, commands, 702.0)
    assert commands["feed_ml_per_h"] == 0.0 and commands["harvest_ml_per_h"] == 7.0
    # Back: DO within 2.5 % air of the setpoint resets it.
    trips = locks.apply({"do_pct_air": Reading(23.0, "%", 703.0),
                         "volume_ml": Reading(50.0, "mL", 703.0)}, {}, 703.0)
    assert [(t.name, t.tripped) for t in trips] == [("o2_supply_lost", False),
                                                    ("volume_high", False)]


def test_a_setpoint_is_needed_for_supply_interlocks() -> None:
    supplies = supply_interlocks(load_config(DEFAULT_CONFIG_PATH).reactor[0])
    with pytest.raises(ValueError, match="setpoint"):
        InterlockSet([], {}, supplies)


@pytest.mark.parametrize(("table", "message"), [
    ("[reactor.interlocks.co2_supply_lost]\nmargin = 0",
     "reactor[0].interlocks.co2_supply_lost.margin = 0: Input should be greater than 0 "
     "(allowed: 0 < value)"),
    ("[reactor.interlocks.o2_supply_lost]\nfor_s = \"2d\"",
     "reactor[0].interlocks.o2_supply_lost.for_s = 172800.0: Input should be less than or "
     "equal to 86400 (allowed: 60 <= value <= 86400)"),
    ("[reactor.interlocks.o2_supply_lost]\nreset_margin = 6",
     "reactor[0].interlocks.o2_supply_lost.reset_margin = 6: must be below margin 5.0 "
     "(allowed: 0 <= value < 5.0)"),
    ("[reactor.interlocks.co2_supply_lost]\nperfusion_ml_per_h = 61",
     "reactor[0].interlocks.co2_supply_lost.perfusion_ml_per_h = 61: Input should be less "
     "than or equal to 60 (allowed: 0 <= value <= 60)"),
    ("[reactor.interlocks.co2_supply_lost]\nhold_output = 25",
     "reactor[0].interlocks.co2_supply_lost: hold_output = 25.0: outside co2_pct's range "
     "[0.0, 20.0]"),
    ("[reactor.interlocks.n2_supply_lost]\nmargin = 1",
     "reactor[0].interlocks.n2_supply_lost: unknown key (allowed here: o2_supply_lost, "
     "co2_supply_lost, latch)"),
])
def test_bad_interlock_config_names_key_value_and_range(table: str, message: str,
                                                        default_config_text: str) -> None:
    text = default_config_text.replace("[reactor.safe_state]", f"{table}\n\n[reactor.safe_state]")
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert message in str(err.value)


def test_a_table_changes_only_the_keys_it_gives(default_config_text: str) -> None:
    text = default_config_text.replace(
        "[reactor.safe_state]", '[reactor.interlocks.o2_supply_lost]\nfor_s = "20m"\n\n'
                                "[reactor.safe_state]")
    o2 = parse_config(text).reactor[0].interlocks.o2_supply_lost
    assert o2.for_s == 1200.0 and o2.margin == 5.0 and o2.perfusion_ml_per_h == 7.0


# --- through the whole controller -----------------------------------------------------------
def run_with(fault: str, tmp_path: Path, duration: str, *, timetable: bool = False,
             **edits: str) -> tuple[dict, Path]:
    """Run the default config (the schedule-fed timetable if `timetable`), its supply
    interlocks unlatched and `edits` applied, with `fault`; the reactor's summary and the
    historian's path."""
    load = load_timetable if timetable else load_default
    config = apply_overrides(load(**UNLATCHED, **edits), duration=None, speed=None,
                             seed=None, faults=[fault])
    db = tmp_path / "run.sqlite"
    return run_config(config, db, duration=duration)["reactors"]["hsc-1"], db


def test_o2_lost_in_a_run_trips_alarms_gives_air_and_resumes_bumplessly(tmp_path: Path) -> None:
    """O2 lost from 1 h to 4 h. The device's supply pressure reads 0 from the fault on, so
    the interlock trips after readback_for_s (60 s), not after the DO loop has wound up; it
    resets as the readbacks show the gas back. Once back, the DO loop carries on from the
    21 % it followed, not from a wound-up 60 %."""
    reactor, db = run_with("o2_supply_lost@1h:duration=3h", tmp_path, "6h")
    changes = [(t["name"], t["tripped"], t["t_s"]) for t in reactor["interlocks"]]
    assert [c[:2] for c in changes] == [("o2_supply_lost", True), ("o2_supply_lost", False)]
    trip_s, reset_s = changes[0][2], changes[1][2]
    assert HOUR + 60 <= trip_s <= HOUR + 61
    assert 4 * HOUR <= reset_s <= 4 * HOUR + 1  # the readbacks show the supply back
    with sqlite3.connect(db) as con:
        during = con.execute("SELECT MIN(o2_pct), MAX(o2_pct), MIN(feed_ml_per_h), "
                             "MAX(harvest_ml_per_h) FROM ticks WHERE t_s BETWEEN ? AND ?",
                             (trip_s + 1, reset_s - 1)).fetchone()
        resumed = con.execute("SELECT MIN(o2_pct), MAX(o2_pct) FROM ticks WHERE t_s BETWEEN "
                              "? AND ?", (reset_s, reset_s + 10)).fetchone()
        do_end = con.execute("SELECT AVG(do_pct_air) FROM ticks WHERE t_s > ?",
                             (5.5 * HOUR,)).fetchone()[0]
        alarms = con.execute("SELECT t_s, data_json FROM events WHERE kind = 'alarm' AND "
                             "message LIKE 'o2_supply_lost%' ORDER BY t_s").fetchall()
    assert during == (21.0, 21.0, 7.0, 7.0)
    assert 19.0 <= resumed[0] <= resumed[1] <= 22.0  # bumpless from the 21 % it followed
    assert abs(do_end - 25.0) < 2.0  # back in band
    assert [(t, json.loads(d)) for t, d in alarms] == [
        (trip_s, {"alarm": "o2_supply_lost", "active": True, "priority": "high"}),
        (reset_s, {"alarm": "o2_supply_lost", "active": False, "priority": "high"})]


CO2_LOST_DAY_2 = "co2_supply_lost@49h:duration=4h"


@pytest.mark.parametrize("feeding", ["schedule", "recipe that does nothing on an interlock"])
def test_co2_back_resets_the_interlock_and_perfusion_resumes(tmp_path: Path,
                                                            feeding: str) -> None:
    """CO2 lost for 4 h on day 2 (perfusion 1 mL/h from day 2): stopped while tripped, back
    as the readbacks show the supply back (pressure and flow). The schedule feeds on; so does a
    recipe whose phase is told to do nothing on an interlock."""
    if feeding == "schedule":
        reactor, db = run_with(CO2_LOST_DAY_2, tmp_path, "56h", timetable=True)
    else:
        reactor, db = run_with(CO2_LOST_DAY_2, tmp_path, "56h", **{
            'name = "expand-1"\n': 'name = "expand-1"\non_interlock = "nothing"\n'})
        assert (reactor["recipe"]["state"], reactor["recipe"]["phase"]) == ("running", "expand-1")
    changes = [(t["name"], t["tripped"], t["t_s"]) for t in reactor["interlocks"]
               if t["name"] == "co2_supply_lost"]
    assert [c[:2] for c in changes] == [("co2_supply_lost", True), ("co2_supply_lost", False)]
    trip_s, reset_s = changes[0][2], changes[1][2]
    assert 49 * HOUR + 60 <= trip_s <= 49 * HOUR + 61
    assert 53 * HOUR <= reset_s <= 53 * HOUR + 1
    with sqlite3.connect(db) as con:
        during = con.execute("SELECT MAX(feed_ml_per_h), MAX(harvest_ml_per_h) FROM ticks "
                             "WHERE t_s BETWEEN ? AND ?", (trip_s + 1, reset_s - 1)).fetchone()
        after = con.execute("SELECT MIN(feed_ml_per_h), MIN(ph), MAX(ph) FROM ticks "
                            "WHERE t_s > ? AND ph_q = 0", (reset_s + 1,)).fetchone()
    assert during == (0.0, 0.0)
    assert after[0] == 1.0
    assert after[1] > 6.9  # the loop comes back from its maximum without an acid dip


def test_co2_lost_holds_the_default_recipe_until_an_operator_restarts_it(tmp_path: Path) -> None:
    """The default recipe's phases hold on an interlock trip (the safe default): after the
    supply is back the interlock resets, but the procedure stays held with the pumps at the
    phase's hold outputs (none given: stopped) until an operator's `restart`."""
    reactor, db = run_with(CO2_LOST_DAY_2, tmp_path, "56h")
    changes = [(t["name"], t["tripped"], t["t_s"]) for t in reactor["interlocks"]
               if t["name"] == "co2_supply_lost"]
    assert [c[:2] for c in changes] == [("co2_supply_lost", True), ("co2_supply_lost", False)]
    trip_s, reset_s = changes[0][2], changes[1][2]
    assert (reactor["recipe"]["state"], reactor["recipe"]["phase"]) == ("held", "expand-1")
    with sqlite3.connect(db) as con:
        after = con.execute("SELECT MAX(feed_ml_per_h), MAX(harvest_ml_per_h) FROM ticks "
                            "WHERE t_s > ?", (reset_s + 1,)).fetchone()
        states = [(t, json.loads(d)) for t, d in con.execute(
            "SELECT t_s, data_json FROM events WHERE kind = 'recipe' ORDER BY t_s, rowid")]
    assert after == (0.0, 0.0)
    changes_of_state = [(t, e) for t, e in states if e["event"] == "state"]
    assert changes_of_state[1:] == [
        (trip_s, {"event": "state", "state": "holding", "from_state": "running",
                  "phase": "expand-1", "by": "interlock:co2_supply_lost"}),
        (trip_s + 1, {"event": "state", "state": "held", "from_state": "holding",
                      "phase": "expand-1", "by": "recipe"})]  # the reset moves nothing on


# --- from the readbacks (issue 10) ---------------------------------------------------------
GOOD, BAD = Quality.GOOD, Quality.BAD


def readings(t: float, *, co2_kpa: float = 200.0, co2_flow: float = 5.0, ph: float = 7.3,
             flow_quality: Quality = GOOD, ph_quality: Quality = GOOD) -> dict[str, Reading]:
    return {"ph": Reading(ph, "pH", t, ph_quality),
            "co2_supply_kpa": Reading(co2_kpa, "kPa", t, GOOD),
            "co2_flow_pct": Reading(co2_flow, "%", t, flow_quality),
            "o2_supply_kpa": Reading(200.0, "kPa", t, GOOD),
            "o2_flow_pct": Reading(10.0, "%", t, GOOD)}


def tick(locks: InterlockSet, t: float, **kwargs: float | Quality) -> dict[str, float]:
    outputs = {"co2_pct": 5.0, "o2_pct": 10.0, "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0,
               "base_ml_per_h": 0.5}
    locks.apply(readings(t, **kwargs), outputs, t)  # type: ignore[arg-type]
    return outputs


def test_the_supply_pressure_trips_it_after_readback_for_s_with_the_probe_stuck() -> None:
    locks = locks_for()
    tick(locks, 0.0)
    for t in range(1, 61):  # lost from 1 s on
        tick(locks, float(t), co2_kpa=0.0, ph_quality=Quality.FROZEN)
        assert not locks.tripped  # not yet for 60 s
    out = tick(locks, 61.0, co2_kpa=0.0, ph_quality=Quality.FROZEN)
    assert locks.tripped == {"co2_supply_lost"}
    assert (out["base_ml_per_h"], out["feed_ml_per_h"]) == (0.0, 0.0)
    assert locks.history[-1].value == 0.0


def test_a_flow_below_the_output_written_trips_it_and_a_short_dip_does_not() -> None:
    locks = locks_for()
    tick(locks, 0.0)
    for t in range(1, 30):
        tick(locks, float(t), co2_flow=3.5)  # 1.5 % below the 5 % written: short
    tick(locks, 30.0)  # delivering again: the wait restarts
    for t in range(31, 91):
        tick(locks, float(t), co2_flow=4.5)  # within the 1 % tolerance
    assert not locks.tripped
    for t in range(91, 152):
        tick(locks, float(t), co2_flow=0.0)
    assert locks.tripped == {"co2_supply_lost"}


def test_a_reset_needs_the_readbacks_good_and_the_gas_back() -> None:
    locks = locks_for()  # latched (the default)
    for t in range(62):
        tick(locks, float(t), co2_kpa=0.0)
    assert locks.tripped == {"co2_supply_lost"}
    with pytest.raises(ResetRefused, match="readbacks show the supply lost"):
        locks.reset("co2_supply_lost", 62.0, "alice", "cylinder changed")
    tick(locks, 63.0, flow_quality=BAD)  # pressure back, flow readback failed
    with pytest.raises(ResetRefused, match="co2_flow_pct has a BAD reading"):
        locks.reset("co2_supply_lost", 63.0, "alice", "cylinder changed")
    tick(locks, 64.0, ph=7.6)  # both back; the pH still high does not matter
    assert locks.cleared == {"co2_supply_lost"}  # latched: waits for the operator
    trip = locks.reset("co2_supply_lost", 64.0, "alice", "cylinder changed")
    assert not locks.tripped and trip.by == "alice" and trip.value == 5.0


def test_without_good_readbacks_the_loop_decides() -> None:
    locks = locks_for()
    for t in range(700):
        outputs = {"co2_pct": 15.0}  # the pH loop at its maximum, the pH high and rising
        locks.apply(readings(float(t), co2_kpa=math.nan, co2_flow=math.nan,
                             flow_quality=BAD, ph=7.5 + t * 1e-4) | {
            "co2_supply_kpa": Reading(math.nan, "kPa", float(t), BAD)}, outputs, float(t))
    assert locks.tripped == {"co2_supply_lost"}
    assert 600.0 <= locks.history[-1].t_s < 700.0  # the loop's for_s (10 min)
