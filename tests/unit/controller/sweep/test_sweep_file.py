"""The sweep file: its keys, its axes checked against the config's models, case expansion."""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller.sweep.spec import MAX_CASES, SweepError, axis_problem, expand_axes, load_sweep


def write(tmp_path: Path, body: str, base: str | None = str(DEFAULT_CONFIG_PATH)) -> Path:
    path = tmp_path / "sweep.toml"
    head = f'base = "{base}"\n' if base is not None else ""
    path.write_text(head + body)
    return path


def test_the_product_of_the_axes_in_file_order(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, 'duration = "2d"\n[axes]\nseed = [1, 2]\n'
                             '"reactor.chamber.microgravity" = [false, true]\n'))
    assert sweep.duration_s == 2 * 86400
    assert sweep.axes == ("seed", "reactor.chamber.microgravity")
    assert sweep.cases == (
        {"seed": 1, "reactor.chamber.microgravity": False},
        {"seed": 1, "reactor.chamber.microgravity": True},
        {"seed": 2, "reactor.chamber.microgravity": False},
        {"seed": 2, "reactor.chamber.microgravity": True},
    )


def test_declared_cases_run_as_listed(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, 'duration = "1h"\n[[case]]\nseed = 3\n'
                             '[[case]]\nseed = 4\n"run.control_period_s" = 5.0\n'))
    assert sweep.axes == ("seed", "run.control_period_s")
    assert sweep.cases == ({"seed": 3}, {"seed": 4, "run.control_period_s": 5.0})


def test_base_is_relative_to_the_sweep_file(tmp_path: Path) -> None:
    sweep = load_sweep(write(tmp_path, 'duration = "1h"\n[axes]\nseed = [1]\n',
                             base="../configs/x.toml"))
    assert sweep.base == tmp_path / "../configs/x.toml"


def test_expand_axes_of_one_axis() -> None:
    assert expand_axes({"seed": [1, 2, 3]}) == [{"seed": 1}, {"seed": 2}, {"seed": 3}]


@pytest.mark.parametrize(("axis", "expected"), [
    ("seed", None), ("config", None), ("faults", None), ("run.seed", None),
    ("reactor.chamber.microgravity", None),  # the chamber's own keys: checked per case
    ("reactor.loops.ph.setpoint", None),
    ("reactor.recipe.name", None),  # through an optional table
    ("run.sed", "axes.run.sed: run has no key 'sed' (allowed: band_after_s,"),
    ("reactor.loops.ph.setpont", "reactor.loops.ph has no key 'setpont' (allowed: band,"),
    ("foo", "axes.foo: unknown axis (allowed: config, faults, seed, run.<key>, reactor.<key>)"),
    ("run.seed.x", "axes.run.seed.x: run.seed is a single value, it has no key 'x'"),
    ("run.duration", "cannot be swept: the sweep's `duration` sets it"),
    ("run.speed", "cannot be swept: sweeps run in virtual time"),
    ("mqtt.url", "unknown axis"),
])
def test_axis_paths_are_checked_against_the_config_models(axis: str,
                                                           expected: str | None) -> None:
    problem = axis_problem(axis)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem


@pytest.mark.parametrize(("body", "message"), [
    ('duration = "2x"\n[axes]\nseed = [1]\n', "duration = '2x': duration '2x' not understood"),
    ('duration = "1h"\nfoo = 1\n[axes]\nseed = [1]\n',
     "foo: unknown key (allowed here: base, duration, axes, case)"),
    # A rule of the whole file is its message alone, not ": message" (an empty key).
    ('duration = "1h"\n', "problem(s)\n  give either [axes] (every combination is run) or "),
    ('duration = "1h"\n[axes]\nseed = [1]\n[[case]]\nseed = 2\n', "not both or neither"),
    ('duration = "1h"\n[axes]\nseed = []\n', "problem(s)\n  axes.seed is empty: give at least"),
    ('duration = "1h"\n[axes]\nfaults = ["co2_supply_lost@1h"]\n',
     "axes.faults = 'co2_supply_lost@1h': each value a list of faults"),
    ('duration = "1h"\n[axes]\nconfig = [3]\n', "axes.config = 3: a config file path"),
    ('duration = "1h"\n[[case]]\nseed = 1\n[[case]]\nfaults = "x@1h"\n',
     "case[1].faults = 'x@1h': each value a list of faults"),
    ('duration = "1h"\n[axes]\n"run.sed" = [1]\nfoo = [2]\n',
     "2 problem(s)\n  axes.run.sed: run has no key 'sed'"),
    ('duration = "1h"\n[[case]]\nseed = 1\n[[case]]\n"reactor.chamber_x" = 2\n',
     "case[1].reactor.chamber_x: reactor has no key 'chamber_x'"),
])
def test_a_bad_sweep_file_names_the_key_and_what_is_allowed(
        tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(SweepError) as caught:
        load_sweep(write(tmp_path, body))
    assert message in str(caught.value)


def test_base_may_be_left_out_only_for_a_config_axis(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="base: missing"):
        load_sweep(write(tmp_path, 'duration = "1h"\n[axes]\nseed = [1]\n', base=None))
    sweep = load_sweep(write(tmp_path, 'duration = "1h"\n[axes]\nconfig = ["a.toml"]\n',
                             base=None))
    assert sweep.base is None


def test_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match="no such sweep file"):
        load_sweep(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("duration = \n")
    with pytest.raises(SweepError, match="not valid TOML"):
        load_sweep(tmp_path / "bad.toml")
    (tmp_path / "latin1.toml").write_bytes('# à 37 °C\nduration = "1h"\n'.encode("latin-1"))
    with pytest.raises(SweepError, match=r"latin1.toml: not UTF-8 text, as a TOML sweep file "
                                         r"must be: byte 0xe0 on line 1; save it as UTF-8"):
        load_sweep(tmp_path / "latin1.toml")
    with pytest.raises(SweepError, match="a folder, not a sweep file"):
        load_sweep(tmp_path)


def test_a_sweep_too_large_to_check_is_refused_before_a_case_is_built(tmp_path: Path) -> None:
    """A product of long axes (10^6 cases) would take hours to check and run out of memory
    before its first run: refused at once, saying what made it large."""
    seeds = ", ".join(str(s) for s in range(1000))
    body = f'duration = "1h"\n[axes]\nseed = [{seeds}]\n"run.flush_interval_s" = [{seeds}]\n'
    with pytest.raises(SweepError) as caught:
        load_sweep(write(tmp_path, body))
    assert str(caught.value) == (
        f"{tmp_path / 'sweep.toml'}: 1,000,000 cases (1000 seed x 1000 run.flush_interval_s); "
        f"at most {MAX_CASES:,} in one sweep (each is checked as a config before any runs): "
        "split it into smaller sweeps, each with its own --out")
    seeds = ", ".join(str(s) for s in range(MAX_CASES))
    assert len(load_sweep(write(tmp_path, f'duration = "1h"\n[axes]\nseed = [{seeds}]\n'))
               .cases) == MAX_CASES  # the most is allowed
