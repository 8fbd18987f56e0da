"""`[reactor.recipe]` through the real loader: a good recipe loads with its defaults, and every
check made at load fails with one line that names the reactor, the phase (index and name) and
the key, as docs/recipes.md ("Config errors") shows; `bioreactor check-config` prints that line
and exits 2."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from plugins.configs import REPO

from controller.cli.main import main
from controller.config import ConfigError, parse_config
from controller.config.recipe import (
    CellSpecificFeed,
    FixedFeed,
    InhibitorDilutionFeed,
    recipe_reads_where,
)

HOUR = 3600.0
DAY = 86400.0

REACTOR = """
[[reactor]]
id = "r1"

[reactor.loops.temperature]
pv = "temperature_c"
mv = "heater_pct"
setpoint = 37.0
setpoint_min = 35.0
setpoint_max = 37.5
kp = 30.0
ti_s = 720.0
band = 0.1
"""

RECIPE = """
[reactor.recipe]
name = "two-phase"

[[reactor.recipe.phase]]
name = "seed"
[[reactor.recipe.phase.exit]]
when = "phase_time >= 2d"

[[reactor.recipe.phase]]
name = "growth"
[reactor.recipe.phase.loops.temperature]
setpoint = 37.0
[reactor.recipe.phase.feed]
strategy = "cell_specific"
nl_per_cell_per_d = 0.1
[[reactor.recipe.phase.exit]]
when = "est_viable_cells_per_ml >= 1e6 for 6h or run_time >= 12d"
"""


def config_text(*edits: tuple[str, str], before: str = "", after: str = "") -> str:
    """The reactor and its two-phase recipe, with each `old` in the recipe replaced by `new`;
    `before` goes between the reactor's loops and the recipe, `after` at the end."""
    recipe = RECIPE
    for old, new in edits:
        assert old in recipe, old
        recipe = recipe.replace(old, new, 1)
    return REACTOR + before + recipe + after


def problem_of(text: str) -> str:
    """The one problem line of a config that does not load (without its indent)."""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    header, *lines = str(info.value).split("\n")
    assert header == "<config>: 1 problem(s)", str(info.value)
    [line] = lines
    return line.strip()


# --- a good recipe ------------------------------------------------------------------------------


def test_a_recipe_loads_with_its_defaults() -> None:
    recipe = parse_config(config_text()).reactor[0].recipe
    assert recipe is not None
    assert (recipe.name, recipe.autostart, recipe.on_restart) == ("two-phase", True, "held")
    seed, growth = recipe.phase
    assert isinstance(seed.feed, FixedFeed) and seed.feed.feed_ml_per_h == 0.0
    assert (seed.hold.feed_ml_per_h, seed.hold.harvest_ml_per_h) == (0.0, 0.0)
    assert (seed.on_alarm.critical, seed.on_alarm.high, seed.on_interlock) == (
        "hold", "nothing", "hold")
    assert isinstance(growth.feed, CellSpecificFeed)
    assert growth.feed.source == "est_viable_cells_per_ml"
    assert growth.loops["temperature"].setpoint == 37.0
    assert growth.loops["temperature"].mode is None  # what is not given stays
    assert recipe.next_of(0, seed.exit[0]) == 1
    assert recipe.next_of(1, growth.exit[0]) is None  # after the last: complete
    assert {name for _, name in recipe_reads_where(recipe)} == {"est_viable_cells_per_ml"}


def test_exits_jump_by_name_and_to_complete() -> None:
    text = config_text(('when = "phase_time >= 2d"',
                        'when = "phase_time >= 2d"\nnext = "growth"\n'
                        '[[reactor.recipe.phase.exit]]\nwhen = "confirmed"\nnext = "complete"'))
    recipe = parse_config(text).reactor[0].recipe
    assert recipe is not None
    seed = recipe.phase[0]
    assert [recipe.next_of(0, e) for e in seed.exit] == [1, None]


def test_inhibitor_dilution_reads_the_inhibitor_estimate() -> None:
    text = config_text(('strategy = "cell_specific"\nnl_per_cell_per_d = 0.1',
                        'strategy = "inhibitor_dilution"\nsetpoint = 40.0'))
    recipe = parse_config(text).reactor[0].recipe
    assert recipe is not None
    feed = recipe.phase[1].feed
    assert isinstance(feed, InhibitorDilutionFeed)
    assert (feed.source, feed.setpoint, feed.ti_s) == ("est_inhibitor_ng_per_ml", 40.0, 6 * HOUR)


def test_a_reactor_without_a_recipe_has_none() -> None:
    assert parse_config(REACTOR).reactor[0].recipe is None


# --- every check at load: one line naming the phase and the key ------------------------------


def test_a_condition_on_an_unknown_channel() -> None:
    line = problem_of(config_text(("when = \"est_viable_cells_per_ml >= 1e6",
                                   "when = \"viable_cels_per_ml >= 1e6")))
    assert line.startswith(
        "reactor[0].recipe.phase[1] (growth).exit[0].when = 'viable_cels_per_ml >= 1e6 for 6h "
        "or run_time >= 12d': unknown channel 'viable_cels_per_ml' (allowed: phase_time, "
        "run_time, the inputs temperature_c, ")
    assert "viable_cells_per_ml" in line and "est_inhibitor_ng_per_ml" in line


def test_a_condition_that_does_not_parse() -> None:
    line = problem_of(config_text(('when = "phase_time >= 2d"',
                                   'when = "phase_time >= 2d and"')))
    assert line == ("reactor[0].recipe.phase[0] (seed).exit[0].when = 'phase_time >= 2d and': "
                    "expected a channel, an estimate, phase_time, run_time, 'confirmed', 'not' "
                    "or '(', found the end at column 21 of 'phase_time >= 2d and'")


def test_an_unreachable_phase() -> None:
    line = problem_of(config_text(('when = "phase_time >= 2d"',
                                   'when = "phase_time >= 2d"\nnext = "complete"')))
    assert line == ("reactor[0].recipe.phase[1] (growth): unreachable: no exit of a phase that "
                    "runs leads to it (phases run from 'seed')")


def test_a_phase_reached_only_from_an_unreachable_one_is_unreachable_too() -> None:
    text = config_text(('when = "phase_time >= 2d"',
                        'when = "phase_time >= 2d"\nnext = "complete"'),
                       after='\n[[reactor.recipe.phase]]\nname = "harvest"\n'
                             '[[reactor.recipe.phase.exit]]\nwhen = "phase_time >= 1d"\n')
    assert problem_of(text).startswith("reactor[0].recipe.phase[1] (growth): unreachable")


def test_a_phase_with_no_exit() -> None:
    line = problem_of(config_text(('[[reactor.recipe.phase.exit]]\nwhen = "phase_time >= 2d"\n',
                                   "")))
    assert line == ("reactor[0].recipe.phase[0] (seed).exit: the phase has no way out: give it "
                    "at least one [[reactor.recipe.phase.exit]] with a `when`")


def test_a_next_naming_no_phase() -> None:
    line = problem_of(config_text(('when = "phase_time >= 2d"',
                                   'when = "phase_time >= 2d"\nnext = "grow"')))
    assert line == ("reactor[0].recipe.phase[0] (seed).exit[0].next = 'grow': no such phase "
                    "(allowed: seed, growth, complete)")


def test_duplicate_phase_names() -> None:
    line = problem_of(config_text(('name = "growth"', 'name = "seed"')))
    assert line == "reactor[0].recipe.phase[1].name = 'seed': already the name of phase[0]"


def test_a_phase_named_complete() -> None:
    line = problem_of(config_text(('name = "growth"', 'name = "complete"')))
    assert line == ("reactor[0].recipe.phase[1].name = 'complete': 'complete' is the end of the "
                    "procedure, not a phase")


def test_a_setpoint_outside_the_loops_operator_bounds() -> None:
    line = problem_of(config_text(("setpoint = 37.0", "setpoint = 39.0")))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.temperature.setpoint = 39.0: "
                    "outside the loop's operator bounds (allowed: 35.0 <= value <= 37.5)")


def test_a_loop_that_does_not_exist() -> None:
    line = problem_of(config_text(("loops.temperature]", "loops.stirrer]")))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.stirrer: no loop 'stirrer' "
                    "(allowed: temperature)")


def test_manual_mode_without_an_output() -> None:
    line = problem_of(config_text(("setpoint = 37.0", 'mode = "manual"')))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.temperature.mode = 'manual': "
                    "needs an output to hold (add output = the value to hold, in the loop's "
                    "output unit)")


def test_an_output_without_manual_mode() -> None:
    line = problem_of(config_text(("setpoint = 37.0", "output = 20.0")))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.temperature.output = 20.0: held "
                    "in manual mode only (add mode = 'manual')")


def test_a_manual_output_outside_the_loops_output_range() -> None:
    line = problem_of(config_text(("setpoint = 37.0", 'mode = "manual"\noutput = 120.0')))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.temperature.output = 120.0: "
                    "outside the loop's output range (allowed: 0.0 <= value <= 100.0 heater_pct)")


def test_a_ramp_without_a_setpoint() -> None:
    line = problem_of(config_text(("setpoint = 37.0", "ramp_per_h = 0.5")))
    assert line == ("reactor[0].recipe.phase[1] (growth).loops.temperature.ramp_per_h = 0.5: "
                    "ramps the setpoint, and none is given (add setpoint = the value to ramp "
                    "to)")


def test_a_ramp_with_its_setpoint_loads() -> None:
    recipe = parse_config(config_text(("setpoint = 37.0", "setpoint = 36.0\nramp_per_h = 0.5"))
                          ).reactor[0].recipe
    assert recipe is not None
    setting = recipe.phase[1].loops["temperature"]
    assert (setting.setpoint, setting.ramp_per_h) == (36.0, 0.5)


def test_manual_mode_with_an_output_loads() -> None:
    text = config_text(("setpoint = 37.0", 'mode = "manual"\noutput = 20.0'))
    recipe = parse_config(text).reactor[0].recipe
    assert recipe is not None
    setting = recipe.phase[1].loops["temperature"]
    assert (setting.mode, setting.output) == ("manual", 20.0)


def test_a_cell_specific_source_that_is_not_a_cell_density() -> None:
    line = problem_of(config_text(("nl_per_cell_per_d = 0.1",
                                   'nl_per_cell_per_d = 0.1\nsource = "glucose_mm"')))
    assert line == ("reactor[0].recipe.phase[1] (growth).feed.source = 'glucose_mm': not a cell "
                    "density (cells/mL): use est_viable_cells_per_ml or viable_cells_per_ml")


def test_a_strategy_source_that_does_not_exist() -> None:
    line = problem_of(config_text(("nl_per_cell_per_d = 0.1",
                                   'nl_per_cell_per_d = 0.1\nsource = "cells"')))
    assert line.startswith("reactor[0].recipe.phase[1] (growth).feed.source = 'cells': unknown "
                           "channel 'cells' (allowed: ")


@pytest.mark.parametrize("schedule", [
    '\n[[reactor.schedule.perfusion]]\nat = "0d"\nfeed_ml_per_h = 1.0\nharvest_ml_per_h = 1.0\n',
    '\n[[reactor.schedule.bolus]]\nat = "4d"\nvolume_ml = 2.0\n',
])
def test_a_recipe_with_schedule_perfusion_or_boluses(schedule: str) -> None:
    line = problem_of(config_text(before=schedule))
    assert line == ("reactor[0].recipe: a reactor feeds by its recipe or by "
                    "[reactor.schedule]'s perfusion and boluses, not both (remove the "
                    "schedule's: the recipe's phases give rates and boluses)")


def test_a_recipe_reading_estimates_with_the_soft_sensor_disabled() -> None:
    line = problem_of(config_text(before="\n[reactor.soft_sensor]\nenabled = false\n"))
    assert line == ("reactor[0].recipe.phase[1] (growth).exit[0].when = "
                    "'est_viable_cells_per_ml >= 1e6 for 6h or run_time >= 12d': reads "
                    "est_viable_cells_per_ml, and [reactor.soft_sensor] enabled = false: the "
                    "estimate would never come (enable the soft sensor, or read an input)")


def test_a_strategy_reading_estimates_with_the_soft_sensor_disabled() -> None:
    text = config_text(("when = \"est_viable_cells_per_ml >= 1e6", "when = \"volume_ml >= 1e6"),
                       before="\n[reactor.soft_sensor]\nenabled = false\n")
    assert problem_of(text).startswith(
        "reactor[0].recipe.phase[1] (growth).feed.source = 'est_viable_cells_per_ml': reads "
        "est_viable_cells_per_ml, and [reactor.soft_sensor] enabled = false")


def test_inputs_only_with_the_soft_sensor_disabled_load() -> None:
    text = config_text(("when = \"est_viable_cells_per_ml >= 1e6", "when = \"volume_ml >= 1e6"),
                       ("nl_per_cell_per_d = 0.1",
                        'nl_per_cell_per_d = 0.1\nsource = "viable_cells_per_ml"'),
                       before="\n[reactor.soft_sensor]\nenabled = false\n")
    assert parse_config(text).reactor[0].recipe is not None


def test_a_phase_name_that_is_not_a_name() -> None:
    line = problem_of(config_text(('name = "growth"', 'name = "grow th"')))
    assert line.startswith("reactor[0].recipe.phase[1].name = 'grow th': ")


def test_a_recipe_with_no_phase() -> None:
    assert problem_of(REACTOR + "\n[reactor.recipe]\nname = \"empty\"\n") == (
        "reactor[0].recipe.phase: required key missing")


@pytest.mark.parametrize(("pump", "rate", "problem"), [
    ("feed_ml_per_h", 60.0, None),
    ("feed_ml_per_h", 61.0, "rate_ml_per_h = 61.0: above feed_ml_per_h's maximum 60.0"),
    ("base_ml_per_h", 10.0, None),
    ("base_ml_per_h", 30.0, "rate_ml_per_h = 30.0: above base_ml_per_h's maximum 10.0"),
])
def test_a_phase_bolus_rate_within_its_own_pump(pump: str, rate: float,
                                                problem: str | None) -> None:
    text = config_text(after=f'[[reactor.recipe.phase.bolus]]\nafter = "1d"\nvolume_ml = 2.0\n'
                             f'channel = "{pump}"\nrate_ml_per_h = {rate}\n')
    if problem is None:
        recipe = parse_config(text).reactor[0].recipe
        assert recipe is not None and recipe.phase[1].bolus[0].rate_ml_per_h == rate
    else:
        assert problem_of(text) == f"reactor[0].recipe.phase[1].bolus[0].{problem}"


# --- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(("edit", "line"), [
    (("when = \"est_viable_cells_per_ml >= 1e6", "when = \"viable_cels_per_ml >= 1e6"),
     "reactor[0].recipe.phase[1] (growth).exit[0].when = 'viable_cels_per_ml >= 1e6 for 6h or "
     "run_time >= 12d': unknown channel 'viable_cels_per_ml' (allowed: "),
    (('when = "phase_time >= 2d"', 'when = "phase_time >= 2d"\nnext = "complete"'),
     "reactor[0].recipe.phase[1] (growth): unreachable: no exit of a phase that runs leads to "
     "it (phases run from 'seed')"),
])
def test_check_config_prints_the_one_line_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: tuple[str, str],
        line: str) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(config_text(edit))
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    header, problem, end = err.split("\n")
    assert (header, end) == (f"error: {path}: 1 problem(s)", "")
    assert problem.startswith(f"  {line}")
    assert "Traceback" not in err


def test_check_config_passes_a_good_recipe(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(config_text())
    assert main(["check-config", str(path)]) == 0
    assert f"{path}: OK" in capsys.readouterr().out


# --- docs/recipes.md stays true ---------------------------------------------------------------

DOCS = REPO / "docs" / "recipes.md"
LOOPS = REACTOR + """
[reactor.loops.do]
pv = "do_pct_air"
mv = "o2_pct"
setpoint = 25.0
setpoint_min = 10.0
setpoint_max = 60.0
kp = 0.6
ti_s = 900.0
out_max = 60.0
band = 2.0

[reactor.loops.ph]
pv = "ph"
mv = "co2_pct"
setpoint = 7.30
setpoint_min = 7.00
setpoint_max = 7.50
kp = 40.0
ti_s = 1000.0
output_raises_pv = false
out_max = 15.0
band = 0.05
"""
DOC_EDITS: dict[str, tuple[str, str]] = {
    "unknown": ('when = "est_viable_cells_per_ml >= 1e6', 'when = "est_viable_cells >= 1e6'),
    "parse": ('when = "phase_time >= 2d"', 'when = "phase_time => 2d"'),
    "unreachable": ('when = "phase_time >= 2d"', 'when = "phase_time >= 2d"\nnext = "dilution"'),
    "noexit": ('[[reactor.recipe.phase.exit]]\nwhen = "run_time >= 13.5d"\n', ""),
    "next": ('when = "phase_time >= 2d"', 'when = "phase_time >= 2d"\nnext = "grow"'),
    "dup": ('name = "dilution"', 'name = "growth"'),
    "complete": ('name = "dilution"', 'name = "complete"'),
    "bounds": ("setpoint = 25.0", "setpoint = 5.0"),
    "noloop": ("loops.do]", "loops.oxygen]"),
    "manual": ("setpoint = 25.0", 'mode = "manual"'),
    "output": ("setpoint = 25.0", "output = 30.0"),
    "outrange": ("setpoint = 25.0", 'mode = "manual"\noutput = 80.0'),
    "source": ("nl_per_cell_per_d = 0.1", 'nl_per_cell_per_d = 0.1\nsource = "glucose_mm"'),
    "schedule": ("[reactor.recipe]\n",
                 '[[reactor.schedule.perfusion]]\nat = "0d"\nfeed_ml_per_h = 1.0\n\n'
                 "[reactor.recipe]\n"),
    "nosensor": ("[reactor.recipe]\n", "[reactor.soft_sensor]\nenabled = false\n\n"
                                       "[reactor.recipe]\n"),
}


def _documented_errors() -> dict[str, str]:
    """{file stem: problem line} of every `error: <stem>.toml` block in the docs."""
    found = re.findall(r"^    error: (\w+)\.toml: 1 problem\(s\)\n      (.+)$", DOCS.read_text(),
                       re.MULTILINE)
    return dict(found)


def test_the_worked_example_loads() -> None:
    [example] = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    recipe = parse_config(LOOPS + example).reactor[0].recipe
    assert recipe is not None
    assert [p.name for p in recipe.phase] == ["seed", "growth", "dilution"]


def test_every_documented_error_is_documented_and_edited_here() -> None:
    assert set(_documented_errors()) == set(DOC_EDITS)


@pytest.mark.parametrize("stem", sorted(DOC_EDITS))
def test_the_documented_error_lines_are_what_check_config_prints(stem: str) -> None:
    [example] = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    old, new = DOC_EDITS[stem]
    assert old in example, old
    line = problem_of(LOOPS + example.replace(old, new, 1))
    documented = _documented_errors()[stem]
    # The docs cut the long list of allowed names short with "...": compare up to there.
    assert line.startswith(documented.split(", ...")[0]), (line, documented)
    if ", ..." not in documented:
        assert line == documented
