"""The config check's safety rules (controller/config/safety_check.py): an unsafe safe state and a
setpoint the limits would fight are refused with the key; what is allowed but unsafe warns."""
from __future__ import annotations

import pytest

from controller.alarms.defaults import PH_HIGH, TEMPERATURE_HIGH_C
from controller.config import SAFE_GAS_PCT, Config, ConfigError, safety_warnings
from controller.config.hard_limits import Interlock, default_interlocks
from controller.control import interlocks
from tests.plugins.configs import DEFAULT_CONFIG_PATH, load_default, load_timetable

SAFE_O2 = "o2_pct = 21.0\nco2_pct = 5.0\nfeed_ml_per_h"
TEMP_SP = "setpoint = 37.0"
PH_SP = "setpoint = 7.30"
RECIPE = "# The recipe (docs/recipes.md)"
"""The default config's line after its alarm-table comments: tables are inserted before it."""


OPERATOR_BOUNDS = {line: "" for line in DEFAULT_CONFIG_PATH.read_text().splitlines(True)
                   if line.startswith(("setpoint_min", "setpoint_max"))}
"""The shipped config's operator bounds refuse an unsafe setpoint before the safety rules see
it: removed where those rules are what is tested."""


def unbounded(**edits: str) -> Config:
    return load_default(**OPERATOR_BOUNDS, **edits)


def refused(**edits: str) -> str:
    with pytest.raises(ConfigError) as err:
        unbounded(**edits)
    return str(err.value)


def test_the_default_config_passes_without_a_warning() -> None:
    assert safety_warnings(load_default()) == []


def test_the_interlocks_run_the_one_table_the_config_checks() -> None:
    assert interlocks.Interlock is Interlock  # the control layer enforces the config's table
    overtemp = min(i.trip_at for i in default_interlocks() if i.channel == "temperature_c")
    assert overtemp < TEMPERATURE_HIGH_C


@pytest.mark.parametrize(("old", "new", "key"), [
    ("heater_pct = 0.0\no2", "heater_pct = 100.0\no2", "safe_state.heater_pct = 100.0"),
    ("heater_pct = 0.0\no2", "heater_pct = 0.5\no2", "safe_state.heater_pct = 0.5"),
    ("feed_ml_per_h = 0.0\nharvest", "feed_ml_per_h = 1.0\nharvest",
     "safe_state.feed_ml_per_h = 1.0"),
    ("base_ml_per_h = 0.0\n\n#", "base_ml_per_h = 2.0\n\n#", "safe_state.base_ml_per_h = 2.0"),
    ("harvest_ml_per_h = 0.0\nbase", "harvest_ml_per_h = 3.0\nbase",
     "safe_state.harvest_ml_per_h = 3.0"),
])
def test_a_safe_state_that_heats_or_pumps_is_refused(old: str, new: str, key: str) -> None:
    message = refused(**{old: new})
    assert f"reactor[0].{key}: not safe" in message
    assert "(allowed: value = 0)" in message


@pytest.mark.parametrize(("gas", "value", "ok"), [
    ("o2_pct", 4.9, False), ("o2_pct", 5.0, True), ("o2_pct", 40.0, True),
    ("o2_pct", 45.0, False), ("co2_pct", 1.0, False), ("co2_pct", 2.0, True),
    ("co2_pct", 10.0, True), ("co2_pct", 12.0, False),
])
def test_the_safe_gas_must_keep_cells_alive(gas: str, value: float, ok: bool) -> None:
    safe = {"o2_pct": 21.0, "co2_pct": 5.0, gas: value}
    edit = {SAFE_O2: f"o2_pct = {safe['o2_pct']}\nco2_pct = {safe['co2_pct']}\nfeed_ml_per_h"}
    if ok:
        assert load_default(**edit).reactor[0].safe_state[gas] == value
        return
    low, high = SAFE_GAS_PCT[gas]
    assert f"reactor[0].safe_state.{gas} = {value}: not safe" in refused(**edit)
    assert f"(allowed: {low:g} <= value <= {high:g})" in refused(**edit)


def test_every_problem_is_one_line() -> None:
    message = refused(**{"heater_pct = 0.0\no2": "heater_pct = 100.0\no2",
                         TEMP_SP: "setpoint = 45.0", PH_SP: "setpoint = 7.7"})
    lines = message.splitlines()
    assert lines[0].endswith("3 problem(s)")
    assert [line.split(" = ")[0].strip() for line in lines[1:]] == [
        "reactor[0].safe_state.heater_pct", "reactor[0].loops.temperature.setpoint",
        "reactor[0].loops.ph.setpoint"]


@pytest.mark.parametrize(("edit", "key", "reason"), [
    ("setpoint = 45.0", "temperature.setpoint = 45.0", "overtemp_limit interlock trips at 38"),
    ("setpoint = 38.0", "temperature.setpoint = 38.0", "overtemp_limit interlock trips at 38"),
])
def test_a_temperature_setpoint_at_an_interlock_is_refused(edit: str, key: str,
                                                           reason: str) -> None:
    message = refused(**{TEMP_SP: edit})
    assert f"reactor[0].loops.{key}: at or beyond a safety limit" in message
    assert reason in message
    assert "(allowed: value < 38)" in message


def test_a_temperature_just_under_the_first_interlock_passes() -> None:
    assert unbounded(**{TEMP_SP: "setpoint = 37.9"}).reactor[0].loops["temperature"]


@pytest.mark.parametrize(("sp", "reason"), [
    ("7.7", f"ph_high alarm stands above {PH_HIGH:g}"), ("7.6", "ph_high alarm"),
    ("6.9", "ph_low alarm stands below 6.9"), ("6.6", "ph_far_low interlock trips at 6.7"),
    ("8.0", "ph_far_high interlock trips at 7.9"),
])
def test_a_ph_setpoint_outside_the_alarm_limits_is_refused(sp: str, reason: str) -> None:
    message = refused(**{PH_SP: f"setpoint = {sp}"})
    assert f"reactor[0].loops.ph.setpoint = {float(sp)}" in message
    assert reason in message


REPLACE_PH_HIGH = (RECIPE, '[[reactor.alarm]]\nname = "ph_high"\nchannel = "ph"\n'
                   f'kind = "high"\nlimit = 7.8\n\n{RECIPE}')


def test_a_replaced_alarm_limit_is_the_one_checked() -> None:
    config = unbounded(**{PH_SP: "setpoint = 7.7", REPLACE_PH_HIGH[0]: REPLACE_PH_HIGH[1]})
    assert config.reactor[0].loops["ph"].setpoint == 7.7
    tighter = REPLACE_PH_HIGH[1].replace("7.8", "7.25")
    assert "ph_high alarm stands above 7.25 (allowed: 6.9 < value < 7.25)" in refused(
        **{REPLACE_PH_HIGH[0]: tighter})


def test_the_run_builds_the_board_of_a_replaced_limit() -> None:
    from controller.alarms.setup import alarm_board

    reactor = unbounded(**{PH_SP: "setpoint = 7.7",
                              REPLACE_PH_HIGH[0]: REPLACE_PH_HIGH[1]}).reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    assert board is not None


def warnings_of(duration: float | None = None, **edits: str) -> list[str]:
    return warnings_on(load_default(**edits), duration)


def warnings_on(config: Config, duration: float | None = None) -> list[str]:
    """The config's safety warning lines, with the run shortened to `duration` if given."""
    if duration is not None:
        config = config.model_copy(update={"run": config.run.model_copy(
            update={"duration": duration})})
    return [line for _, line in safety_warnings(config)]


@pytest.mark.parametrize("gas", ["o2", "co2"])
def test_a_disabled_supply_interlock_warns(gas: str) -> None:
    lines = warnings_of(**{"[reactor.safe_state]": f"[reactor.interlocks.{gas}_supply_lost]\n"
                                                   "enabled = false\n\n[reactor.safe_state]"})
    assert lines == [f"reactor[0].interlocks.{gas}_supply_lost.enabled = False: a safety "
                     "interlock is disabled; a lost gas supply will not be recognised or "
                     "reacted to"]


def test_removing_the_critical_temperature_alarm_warns() -> None:
    lines = warnings_of(**{RECIPE: '[[reactor.alarm]]\nname = "temperature_high"\n'
                                   f'enabled = false\n\n{RECIPE}'})
    assert len(lines) == 1
    assert lines[0].startswith("reactor[0].alarm[0].enabled = False: the critical "
                               "temperature_high alarm is removed")


def test_removing_another_default_does_not_warn() -> None:
    assert warnings_of(**{RECIPE: '[[reactor.alarm]]\nname = "do_stale"\n'
                                  f'enabled = false\n\n{RECIPE}'}) == []


def test_schedule_entries_at_or_after_the_end_warn() -> None:
    # the schedule-fed timetable: the 8d, 11d steps; the 7d and 10d boluses
    lines = warnings_on(load_timetable(), duration=7 * 86400.0)
    keys = [line.split(" = ")[0] for line in lines]
    assert keys == ["reactor[0].schedule.perfusion[3].at", "reactor[0].schedule.perfusion[4].at",
                    "reactor[0].schedule.bolus[1].at", "reactor[0].schedule.bolus[2].at"]
    assert "at or after the run's end (7d 00:00:00)" in lines[0]


@pytest.mark.parametrize(("kind", "limit", "warns"), [
    ("high", 20.0, True), ("high", 25.0, True), ("high", 40.0, False),
    ("low", 30.0, True), ("low", 10.0, False),
])
def test_an_alarm_on_the_wrong_side_of_its_setpoint_warns(kind: str, limit: float,
                                                          warns: bool) -> None:
    table = (f'[[reactor.alarm]]\nname = "do_{kind}"\nchannel = "do_pct_air"\nkind = "{kind}"\n'
             f"limit = {limit}\n\n{RECIPE}")
    lines = warnings_of(**{RECIPE: table})
    if not warns:
        assert lines == []
        return
    assert len(lines) == 1
    assert lines[0].startswith(f"reactor[0].alarm[0].limit = {limit}: a {kind} alarm")
    assert "its loop's setpoint 25" in lines[0]
