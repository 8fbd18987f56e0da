"""controller.config: the default config loads, and every bad config fails naming key, value,
rule."""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.configs import REPO, TIMETABLE_CONFIG_PATH
from pydantic import ValidationError

from controller.config import (
    DEFAULT_CONFIG,
    Config,
    ConfigError,
    load_config,
    parse_config,
    read_toml_text,
)

DEFAULT_PATH = REPO / "configs" / "hsc_expansion.toml"
DAY = 86400.0


@pytest.fixture(scope="module")
def default_text() -> str:
    return DEFAULT_PATH.read_text()


@pytest.fixture(scope="module")
def timetable_text() -> str:
    """The schedule-fed config: the schedule tables' checks are tested on it."""
    return TIMETABLE_CONFIG_PATH.read_text()


def edited(text: str, *edits: tuple[str, str]) -> str:
    """The text with each `old` replaced once by `new`; `old` must be there."""
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return str(info.value)


MINIMAL = """
[[reactor]]
id = "r1"
"""


# --- the default config --------------------------------------------------------------------------


def test_default_config_loads() -> None:
    config = load_config(DEFAULT_PATH)
    assert isinstance(config, Config)
    assert config.run.duration == 14 * DAY
    assert config.run.control_period_s == 1.0
    assert config.run.seed == 42
    assert config.run.speed is None  # "max": virtual time
    [reactor] = config.reactor
    assert reactor.id == "hsc-1"
    assert reactor.device == "sim://"
    assert reactor.chamber["initial_volume_ml"] == 50.0
    assert set(reactor.loops) == {"temperature", "do", "ph"}
    temp = reactor.loops["temperature"]
    assert (temp.pv, temp.mv, temp.setpoint, temp.kp, temp.ti_s) == (
        "temperature_c", "heater_pct", 37.0, 30.0, 720.0)
    assert (temp.output_min, temp.output_max) == (0.0, 100.0)  # from the heater's datasheet
    ph = reactor.loops["ph"]
    assert ph.output_raises_pv is False
    assert (ph.output_min, ph.output_max) == (0.0, 15.0)
    # the culture is a recipe of timed phases, not a schedule
    assert reactor.schedule.perfusion == [] and reactor.schedule.bolus == []
    recipe = reactor.recipe
    assert recipe is not None and recipe.name == "expansion-timetable"
    assert (recipe.autostart, recipe.on_restart) == (True, "held")
    phases = recipe.phase
    assert [p.name for p in phases] == ["seed", "expand-1", "expand-2", "expand-3", "production"]
    assert [p.feed.strategy for p in phases] == ["fixed"] * 5
    assert [p.feed.feed_ml_per_h for p in phases] == [0.0, 1.0, 2.0, 4.0, 6.0]
    assert [[e.when for e in p.exit] for p in phases] == [
        ["phase_time >= 2d"], ["phase_time >= 3d"], ["phase_time >= 3d"], ["phase_time >= 3d"],
        ["run_time >= 335h"]]
    # one 2 mL bolus 2 days into each expand phase: days 4, 7 and 10 of the run
    assert [[(b.after, b.volume_ml, b.rate_ml_per_h) for b in p.bolus] for p in phases] == [
        [], [(2 * DAY, 2.0, 30.0)], [(2 * DAY, 2.0, 30.0)], [(2 * DAY, 2.0, 30.0)], []]
    # complete an hour before the run ends, and keep the cells perfused after
    assert (phases[-1].hold.feed_ml_per_h, phases[-1].hold.harvest_ml_per_h) == (6.0, 6.0)


def test_the_timetable_fixture_is_the_schedule_fed_default() -> None:
    reactor = load_config(TIMETABLE_CONFIG_PATH).reactor[0]
    assert reactor.recipe is None
    assert [p.at for p in reactor.schedule.perfusion] == [0.0, 2 * DAY, 5 * DAY, 8 * DAY, 11 * DAY]
    assert [p.feed_ml_per_h for p in reactor.schedule.perfusion] == [0.0, 1.0, 2.0, 4.0, 6.0]
    assert [b.at for b in reactor.schedule.bolus] == [4 * DAY, 7 * DAY, 10 * DAY]


def test_default_config_path_constant_points_at_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert load_config(DEFAULT_CONFIG) == load_config(DEFAULT_PATH)


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.run.duration == 14 * DAY
    assert config.run.control_period_s == 1.0
    assert config.reactor[0].loops == {}
    assert config.reactor[0].safe_state["o2_pct"] == 21.0


# --- unknown keys --------------------------------------------------------------------------------


def test_unknown_loop_key_names_it_and_lists_allowed_keys(default_text: str) -> None:
    message = error_of(edited(default_text, ("kp = 30.0", "kp = 30.0\nkd = 1.0")))
    assert "reactor[0].loops.temperature.kd: unknown key" in message
    for allowed in ("pv", "mv", "setpoint", "kp", "ti_s", "td_s", "d_filter_s", "out_min",
                    "out_max", "rate_limit_per_s", "band"):
        assert allowed in message.split("allowed here:")[1]


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ("seed = 42", "sead = 42", "run.sead", ["duration", "control_period_s", "seed", "speed"]),
        ('id = "hsc-1"', 'id = "hsc-1"\nname = "x"', "reactor[0].name",
         ["id", "device", "chamber", "loops", "schedule", "safe_state"]),
        ("[run]", "[runn]\n[run]", "runn", ["run", "reactor"]),
        ('name = "expand-2"', 'name = "expand-2"\nrate = 2.0', "reactor[0].recipe.phase[2].rate",
         ["name", "description", "loops", "feed", "bolus", "exit", "hold"]),
        ("volume_ml = 2.0", "volume_ml = 2.0\nvolume = 2.0",
         "reactor[0].recipe.phase[1].bolus[0].volume",
         ["after", "volume_ml", "channel", "rate_ml_per_h"]),
    ],
)
def test_unknown_keys_everywhere(default_text: str, old: str, new: str, key: str,
                                 allowed: list[str]) -> None:
    assert_unknown_key(error_of(edited(default_text, (old, new))), key, allowed)


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ('at = "5d"', 'at = "5d"\nfeed = 2.0', "reactor[0].schedule.perfusion[2].feed",
         ["at", "feed_ml_per_h", "harvest_ml_per_h", "base_ml_per_h"]),
        ("volume_ml = 2.0", "volume_ml = 2.0\nvolume = 2.0", "reactor[0].schedule.bolus[0].volume",
         ["at", "volume_ml", "channel", "rate_ml_per_h"]),
    ],
)
def test_unknown_keys_in_the_schedule(timetable_text: str, old: str, new: str, key: str,
                                      allowed: list[str]) -> None:
    assert_unknown_key(error_of(edited(timetable_text, (old, new))), key, allowed)


def assert_unknown_key(message: str, key: str, allowed: list[str]) -> None:
    """The message names `key` as unknown and lists (at least) the `allowed` keys."""
    assert f"{key}: unknown key (allowed here: " in message
    listed = message.split("allowed here: ")[1].split(")")[0].split(", ")
    assert listed == allowed or set(allowed) <= set(listed)


def test_unknown_key_in_a_loop_named_like_a_loop_field(default_text: str) -> None:
    # Loop names are dict keys, but _fields_at looks each path part up as a field name first: a
    # loop called "band" (a LoopConfig field) makes the walk descend into `band: float`, so the
    # message says "allowed here: none" instead of listing the loop's keys.
    text = edited(default_text, ("[reactor.loops.do]", "[reactor.loops.band]"),
                  ("out_max = 60.0", "out_max = 60.0\nkd = 1.0"))
    message = error_of(text)
    assert "reactor[0].loops.band.kd: unknown key" in message
    assert "allowed here: pv, mv, setpoint" in message


def test_unknown_channel_in_chamber_is_passed_through(default_text: str) -> None:
    # the chamber table belongs to the device backend: anything goes here
    text = edited(default_text, ("microgravity = false", "microgravity = false\nwhatever = 3"))
    assert parse_config(text).reactor[0].chamber["whatever"] == 3


# --- out-of-range values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("control_period_s = 1.0", "control_period_s = 0",
         ["run.control_period_s = 0", "greater than or equal to 0.01"]),
        ("control_period_s = 1.0", "control_period_s = 7200",
         ["run.control_period_s = 7200", "less than or equal to 3600"]),
        ("setpoint = 37.0", "setpoint = 80.0",
         ["reactor[0].loops.temperature.setpoint = 80.0", "temperature_c", "[0.0, 60.0]"]),
        ("setpoint = 7.30", "setpoint = 9.0",
         ["reactor[0].loops.ph.setpoint = 9.0", "[5.5, 8.5]"]),
        ("kp = 30.0", "kp = -3.0",
         ["reactor[0].loops.temperature.kp = -3.0", "greater than or equal to 0"]),
        ("ti_s = 720.0", "ti_s = 0.0",
         ["reactor[0].loops.temperature.ti_s = 0.0", "greater than 0"]),
        ("band = 0.1", "band = -0.1",
         ["reactor[0].loops.temperature.band = -0.1", "greater than 0"]),
        ("feed_ml_per_h = 6.0 }", "feed_ml_per_h = 75.0 }",
         ["reactor[0].recipe.phase[4].feed.fixed.feed_ml_per_h = 75.0",
          "less than or equal to 60"]),
        ("hold = { feed_ml_per_h = 6.0, harvest_ml_per_h = 6.0 }",
         "hold = { feed_ml_per_h = 6.0, harvest_ml_per_h = -1.0 }",
         ["reactor[0].recipe.phase[4].hold.harvest_ml_per_h = -1.0",
          "greater than or equal to 0"]),
        ("rate_ml_per_h = 30.0", "rate_ml_per_h = 90.0",
         ["reactor[0].recipe.phase[1].bolus[0].rate_ml_per_h = 90.0", "maximum 60.0"]),
        ("volume_ml = 2.0", "volume_ml = 0.0",
         ["reactor[0].recipe.phase[1].bolus[0].volume_ml = 0.0", "greater than 0"]),
        ("out_max = 60.0", "out_max = 60.0\nout_min = 70.0",
         ["reactor[0].loops.do.out_min = 70.0", "below out_max 60.0"]),
        ("out_max = 60.0", "out_max = 30.0\nout_min = 30.0",
         ["reactor[0].loops.do.out_min = 30.0", "below out_max 30.0"]),
        ("out_max = 15.0", "out_max = 25.0",
         ["reactor[0].loops.ph.out_max = 25.0", "co2_pct", "[0.0, 20.0]"]),
        ("co2_pct = 5.0\n", "co2_pct = 50.0\n",
         ["reactor[0].safe_state.co2_pct = 50.0", "[0.0, 20.0]"]),
        ('speed = "max"', 'speed = "fast"',
         ["run.speed = 'fast'", "'max' or a positive finite number"]),
        ('duration = "14d"', 'duration = "0d"', ["run.duration = 0.0", "greater than 0"]),
        ('id = "hsc-1"', 'id = "hsc 1"', ["reactor[0].id = 'hsc 1'", "pattern"]),
    ],
)
def test_out_of_range_values_name_key_value_and_rule(default_text: str, old: str, new: str,
                                                     expected: list[str]) -> None:
    message = error_of(edited(default_text, (old, new)))
    assert "1 problem(s)" in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("feed_ml_per_h = 6.0", "feed_ml_per_h = 75.0",
         ["reactor[0].schedule.perfusion[4].feed_ml_per_h = 75.0", "[0.0, 60.0]", "mL/h"]),
        ("harvest_ml_per_h = 1.0", "harvest_ml_per_h = -1.0",
         ["reactor[0].schedule.perfusion[1].harvest_ml_per_h = -1.0",
          "greater than or equal to 0"]),
        ("rate_ml_per_h = 30.0", "rate_ml_per_h = 90.0",
         ["reactor[0].schedule.bolus[0].rate_ml_per_h = 90.0", "maximum 60.0"]),
        ("volume_ml = 2.0", "volume_ml = 0.0",
         ["reactor[0].schedule.bolus[0].volume_ml = 0.0", "greater than 0"]),
    ],
)
def test_out_of_range_schedule_values_name_key_value_and_rule(timetable_text: str, old: str,
                                                              new: str,
                                                              expected: list[str]) -> None:
    message = error_of(edited(timetable_text, (old, new)))
    assert "1 problem(s)" in message
    for part in expected:
        assert part in message


@pytest.mark.parametrize(
    ("old", "new", "key", "on_timetable"),
    [
        ("kp = 30.0", "kp = inf", "reactor[0].loops.temperature.kp", False),
        ('after = "2d"', "after = nan", "reactor[0].recipe.phase[1].bolus[0].after", False),
        ('at = "0d"', "at = nan", "reactor[0].schedule.perfusion[0].at", True),
        ('at = "4d"', "at = nan", "reactor[0].schedule.bolus[0].at", True),
    ],
)
def test_non_finite_numbers_are_rejected(default_text: str, timetable_text: str, old: str,
                                         new: str, key: str, on_timetable: bool) -> None:
    # TOML has inf and nan literals and pydantic floats accept them by default. `kp = inf` makes
    # every output inf/nan; `at = nan` passes the time-order check (nan compares false) and the
    # point never becomes due, which also blocks every later point (FeedSchedule walks in order);
    # a phase bolus `after = nan` would never be given.
    message = error_of(edited(timetable_text if on_timetable else default_text, (old, new)))
    assert key in message


def test_every_problem_is_listed(default_text: str) -> None:
    text = edited(default_text, ("control_period_s = 1.0", "control_period_s = 0"),
                  ("kp = 30.0", "kp = -1.0"), ("seed = 42", "sead = 42"))
    message = error_of(text)
    assert "3 problem(s)" in message
    lines = message.splitlines()[1:]
    assert len(lines) == 3
    assert any(line.strip().startswith("run.control_period_s = 0") for line in lines)
    assert any(line.strip().startswith("reactor[0].loops.temperature.kp = -1.0") for line in lines)
    assert any(line.strip().startswith("run.sead: unknown key") for line in lines)


def test_wrong_type_names_key_and_value(default_text: str) -> None:
    message = error_of(edited(default_text, ("seed = 42", 'seed = "lots"')))
    assert "run.seed = 'lots'" in message


def test_missing_required_key(default_text: str) -> None:
    message = error_of(edited(default_text, ("band = 0.1\n", "")))
    assert "reactor[0].loops.temperature.band: required key missing" in message
    assert "reactor: required key missing" in error_of("[run]\nseed = 1\n")


# --- channels and ownership ----------------------------------------------------------------------


def test_loop_pv_must_be_an_input(default_text: str) -> None:
    message = error_of(edited(default_text, ('pv = "temperature_c"', 'pv = "heater_pct"')))
    assert "reactor[0].loops.temperature.pv = 'heater_pct'" in message
    assert "is an output, expected an input" in message


def test_loop_mv_must_be_an_output(default_text: str) -> None:
    message = error_of(edited(default_text, ('mv = "heater_pct"', 'mv = "ph"')))
    assert "reactor[0].loops.temperature.mv = 'ph'" in message
    assert "is an input, expected an output" in message


def test_unknown_channel_lists_the_known_ones(default_text: str) -> None:
    message = error_of(edited(default_text, ('mv = "heater_pct"', 'mv = "laser_pct"')))
    assert "reactor[0].loops.temperature.mv = 'laser_pct'" in message
    assert "known channels:" in message and "heater_pct" in message and "co2_pct" in message


def test_two_loops_cannot_drive_one_actuator(default_text: str) -> None:
    message = error_of(edited(default_text, ('mv = "o2_pct"', 'mv = "heater_pct"'),
                              ("out_max = 60.0\n", "")))
    assert "reactor[0].loops" in message
    assert "'temperature' and 'do' both drive heater_pct" in message


def test_loop_and_schedule_cannot_both_drive_a_pump(timetable_text: str) -> None:
    message = error_of(edited(timetable_text, ('mv = "o2_pct"', 'mv = "feed_ml_per_h"')))
    assert "reactor[0]" in message
    assert "['feed_ml_per_h'] driven by both a loop and the schedule" in message


def test_loop_and_recipe_cannot_both_drive_a_pump(default_text: str) -> None:
    message = error_of(edited(default_text, ('mv = "o2_pct"', 'mv = "feed_ml_per_h"')))
    assert "reactor[0]" in message
    assert "['feed_ml_per_h'] driven by both a loop and the recipe" in message


def test_a_loop_may_drive_a_pump_when_no_schedule() -> None:
    text = MINIMAL + """
[reactor.loops.base]
pv = "ph"
mv = "base_ml_per_h"
setpoint = 7.3
kp = 2.0
ti_s = 600.0
band = 0.05
"""
    assert parse_config(text).reactor[0].loops["base"].mv == "base_ml_per_h"


# --- reactors ------------------------------------------------------------------------------------


def _second_reactor(default_text: str, new_id: str) -> str:
    head, reactor = default_text.split("[[reactor]]", 1)
    second = ("[[reactor]]" + reactor).replace('id = "hsc-1"', f'id = "{new_id}"')
    return head + "[[reactor]]" + reactor + "\n" + second


def test_multiple_reactor_tables(default_text: str) -> None:
    config = parse_config(_second_reactor(default_text, "hsc-2"))
    assert [r.id for r in config.reactor] == ["hsc-1", "hsc-2"]
    assert set(config.reactor[1].loops) == {"temperature", "do", "ph"}
    recipe = config.reactor[1].recipe
    assert recipe is not None and len(recipe.phase) == 5
    assert sum(len(phase.bolus) for phase in recipe.phase) == 3


def test_duplicate_reactor_ids(default_text: str) -> None:
    message = error_of(_second_reactor(default_text, "hsc-1"))
    assert "reactor: reactor ids must be unique; repeated: ['hsc-1']" in message


def test_at_least_one_reactor() -> None:
    message = error_of("reactor = []\n")
    assert "reactor" in message and "at least 1" in message


# --- files and syntax ----------------------------------------------------------------------------


def test_invalid_toml(default_text: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edited(default_text, ('id = "hsc-1"', "id = hsc-1")))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "not valid TOML" in message
    line = default_text[:default_text.index('id = "hsc-1"')].count("\n") + 1
    assert f"at line {line}," in message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such config file") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_latin1_config_is_refused_naming_the_byte_and_its_line(default_text: str,
                                                                   tmp_path: Path) -> None:
    """A comment with "°C" saved as Latin-1 (an editor's default on some systems) was a
    UnicodeDecodeError's traceback from `bioreactor run` and `check-config`."""
    path = tmp_path / "latin1.toml"
    text = default_text.replace('id = "hsc-1"', 'id = "hsc-1"  # at 37 °C')
    path.write_bytes(text.encode("latin-1"))
    line = text[:text.index("°")].count("\n") + 1
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}: not UTF-8 text, as a TOML config file must be: byte "
                               f"0xb0 on line {line}; save it as UTF-8")


def test_a_folder_given_as_the_config_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: a folder, not a config file"


def test_a_byte_order_mark_is_dropped(default_text: str, tmp_path: Path) -> None:
    """Some Windows editors start a UTF-8 file with one; tomllib calls it an invalid
    statement at line 1."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + default_text.encode())
    assert load_config(path) == parse_config(default_text)
    assert read_toml_text(path, "config file") == default_text


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- defaults and durations ----------------------------------------------------------------------


def test_safe_state_defaults_are_filled_in(default_text: str) -> None:
    start = default_text.index("[reactor.safe_state]")
    end = default_text.index("# The recipe (docs/recipes.md)")
    partial = default_text[:start] + "[reactor.safe_state]\nco2_pct = 8.0\n\n" + default_text[end:]
    state = parse_config(partial).reactor[0].safe_state
    assert state == {"heater_pct": 0.0, "o2_pct": 21.0, "co2_pct": 8.0, "feed_ml_per_h": 0.0,
                     "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0, "heater_relay": 0.0}
    absent = default_text[:start] + default_text[end:]
    assert parse_config(absent).reactor[0].safe_state["o2_pct"] == 21.0
    assert parse_config(absent).reactor[0].safe_state["heater_pct"] == 0.0


def test_safe_state_rejects_inputs_and_unknown_channels() -> None:
    assert "safe_state" in error_of(MINIMAL + "[reactor.safe_state]\nph = 7.0\n")
    message = error_of(MINIMAL + "[reactor.safe_state]\nlaser = 1.0\n")
    assert "reactor[0].safe_state" in message and "unknown channel 'laser'" in message


@pytest.mark.parametrize(
    ("toml", "seconds"),
    [('"14d"', 14 * DAY), ('"36h"', 36 * 3600.0), ('"90m"', 5400.0), ('"30s"', 30.0),
     ("3600", 3600.0), ("1.5", 1.5), ('"0.5d"', 43200.0)],
)
def test_durations_in_config(toml: str, seconds: float) -> None:
    config = parse_config(f"[run]\nduration = {toml}\nband_after_s = {toml}\n" + MINIMAL)
    assert config.run.duration == seconds
    assert config.run.band_after_s == seconds


def test_bad_duration_names_key_and_forms(default_text: str) -> None:
    message = error_of(edited(default_text, ('duration = "14d"', 'duration = "14 days"')))
    assert "run.duration = '14 days'" in message
    assert "'14d'" in message


def test_perfusion_points_must_be_in_time_order(timetable_text: str) -> None:
    message = error_of(edited(timetable_text, ('at = "11d"', 'at = "1d"')))
    assert "reactor[0].schedule.perfusion" in message and "time order" in message


def test_config_is_frozen(default_text: str) -> None:
    config = parse_config(default_text)
    with pytest.raises(ValidationError, match="frozen"):
        config.run.seed = 3  # type: ignore[misc]


# --- alarms --------------------------------------------------------------------------------------


def _with_alarms(default_text: str, tables: str) -> str:
    anchor = "# The recipe (docs/recipes.md)"
    return edited(default_text, (anchor, tables + "\n" + anchor))


ALARM_TABLES = """
[[reactor.alarm]]             # replaces the default ph_high
name = "ph_high"
channel = "ph"
kind = "high"
limit = 7.5
priority = "critical"
on_delay_s = "2m"

[[reactor.alarm]]             # takes the default do_stale away
name = "do_stale"
enabled = false

[[reactor.alarm]]             # a new one
name = "volume_high"
channel = "volume_ml"
kind = "high"
limit = 80.0
deadband = 2.0
latched = true
max_shelve_s = "1h"

[reactor.alarm_board]
flood_threshold = 5
flood_window_s = "5m"
max_shelve_s = "4h"
unshelvable_priorities = ["high", "critical"]
"""


def test_alarm_tables_replace_remove_and_add_defaults(default_text: str) -> None:
    from controller.alarms.defaults import default_alarms
    from controller.alarms.setup import alarm_board

    reactor = parse_config(_with_alarms(default_text, ALARM_TABLES)).reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    defaults = [a.name for a in default_alarms(reactor.loops)]
    assert list(board.alarms) == [n for n in defaults if n != "do_stale"] + ["volume_high"]
    ph_high = board["ph_high"].config
    assert (ph_high.limit, ph_high.priority, ph_high.on_delay_s) == (7.5, "critical", 120.0)
    assert board["ph_low"].config == next(a for a in default_alarms(reactor.loops)
                                          if a.name == "ph_low")  # untouched defaults stay
    assert board["volume_high"].config.latched and board.max_shelve_s_for("volume_high") == 3600
    assert (board.flood_threshold, board.flood_window_s, board.max_shelve_s) == (5, 300.0, 14400)
    assert board.unshelvable == {"high", "critical"}


def test_no_alarm_tables_means_the_defaults_and_the_default_policy(default_text: str) -> None:
    from controller.alarms.defaults import default_alarms
    from controller.alarms.setup import alarm_board

    reactor = parse_config(default_text).reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    assert [a.config for a in board.alarms.values()] == default_alarms(reactor.loops)
    assert board.max_shelve_s == 8 * 3600 and board.unshelvable == {"critical"}
    assert (board.flood_threshold, board.flood_window_s) == (10, 600.0)


def test_the_shipped_config_carries_a_commented_alarm_example_that_is_valid() -> None:
    lines = DEFAULT_PATH.read_text().splitlines()
    start = lines.index("# [[reactor.alarm]]")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("#"))
    example = [line.removeprefix("#").removeprefix(" ") for line in lines[start:end]]
    assert "[reactor.alarm_board]" in example
    reactor = parse_config("\n".join(lines[:start] + example + lines[end:])).reactor[0]
    assert reactor.alarm and reactor.alarm_board.max_shelve_s == 8 * 3600


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 70.0',
         ["reactor[0].alarm[0].limit = 70.0", "temperature_c's range (0.0, 60.0)"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0\ndeadband = -1',
         ["reactor[0].alarm[0].deadband = -1", "allowed: 0 <= value"]),
        ('name = "t_dev"\nchannel = "temperature_c"\nkind = "deviation"\nlimit = 0.5\n'
         'deadband = 0.5', ["reactor[0].alarm[0].deadband = 0.5", "below the limit 0.5"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "hot"\nlimit = 38.0',
         ["reactor[0].alarm[0].kind = 'hot'", "'high'", "'comm_loss'"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0\n'
         'priority = "urgent"', ["reactor[0].alarm[0].priority = 'urgent'", "'critical'"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0\n'
         'max_shelve_s = 0', ["reactor[0].alarm[0].max_shelve_s = 0", "allowed: 0 < value"]),
        ('name = "t_hot"\nchannel = "heater_pct"\nkind = "high"\nlimit = 38.0',
         ["reactor[0].alarm[0]", "expected an input"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"', ["limit missing"]),
        ('name = "t hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0',
         ["reactor[0].alarm[0].name = 't hot'", "pattern"]),
        ('name = "flood"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0',
         ["reactor[0].alarm[0].name = 'flood'", "reserved"]),
        ('name = "v_dev"\nchannel = "volume_ml"\nkind = "deviation"\nlimit = 5.0',
         ["reactor[0].alarm[0].channel = 'volume_ml'", "a loop's pv: do_pct_air, ph, "
          "temperature_c"]),
        ('name = "t_hot"\nchannel = "temperature_c"\nkind = "high"\nlimit = 38.0\ncolour = "red"',
         ["reactor[0].alarm[0].colour: unknown key", "allowed here: name, channel, kind"]),
        ('name = "ph_hi"\nenabled = false',
         ["reactor[0].alarm[0].name = 'ph_hi'", "none by that name", "ph_high"]),
        ('name = "ph_high"\nenabled = false\nlimit = 7.5',
         ["reactor[0].alarm[0].limit: unknown key", "allowed here: name, enabled, description"]),
    ],
)
def test_bad_alarm_tables_name_key_value_and_rule(default_text: str, tables: str,
                                                  expected: list[str]) -> None:
    message = error_of(_with_alarms(default_text, "[[reactor.alarm]]\n" + tables))
    assert "1 problem(s)" in message, message
    for part in expected:
        assert part in message, message


def test_the_third_alarm_table_is_named_by_its_index(default_text: str) -> None:
    good = '[[reactor.alarm]]\nname = "a{}"\nchannel = "ph"\nkind = "low"\nlimit = 7.0\n'
    tables = good.format(0) + good.format(1) + good.format(2).replace("7.0", "9.0")
    message = error_of(_with_alarms(default_text, tables))
    assert "reactor[0].alarm[2].limit = 9.0: must lie inside ph's range (5.5, 8.5)" in message


def test_an_alarm_name_is_configured_once(default_text: str) -> None:
    table = '[[reactor.alarm]]\nname = "ph_high"\nchannel = "ph"\nkind = "high"\nlimit = 7.5\n'
    message = error_of(_with_alarms(default_text, table + '[[reactor.alarm]]\nname = "ph_high"'
                                                          "\nenabled = false\n"))
    assert "reactor[0].alarm[1].name = 'ph_high': already used by alarm[0]" in message


@pytest.mark.parametrize(
    ("board", "expected"),
    [
        ("max_shelve_s = \"30d\"", ["reactor[0].alarm_board.max_shelve_s = 2592000.0",
                                    "allowed: 0 < value <= 604800"]),
        ("max_shelve_s = 0", ["reactor[0].alarm_board.max_shelve_s = 0", "0 < value"]),
        ("flood_threshold = 0", ["reactor[0].alarm_board.flood_threshold = 0",
                                 "allowed: 1 <= value <= 1000"]),
        ("unshelvable_priorities = [\"urgent\"]",
         ["reactor[0].alarm_board.unshelvable_priorities[0] = 'urgent'", "'critical'"]),
        ("flood_exempt = [\"urgent\"]", ["reactor[0].alarm_board.flood_exempt[0] = 'urgent'"]),
        ("flood_window = 60", ["reactor[0].alarm_board.flood_window: unknown key",
                               "flood_window_s"]),
    ],
)
def test_bad_alarm_board_names_key_value_and_range(default_text: str, board: str,
                                                   expected: list[str]) -> None:
    message = error_of(_with_alarms(default_text, "[reactor.alarm_board]\n" + board))
    for part in expected:
        assert part in message, message


def test_a_noise_limit_on_an_at_line_channel_is_refused_naming_it() -> None:
    text = DEFAULT_PATH.read_text() + "\n[reactor.quality.glucose_mm]\nnoise_sd_max = 1.0\n"
    with pytest.raises(ConfigError, match=r"reactor\[0\]\.quality.*glucose_mm\.noise_sd_max.*"
                                          r"at-line"):
        parse_config(text)
