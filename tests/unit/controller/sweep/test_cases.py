"""A sweep's cases as checked configs with deterministic run ids."""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller.sweep.cases import apply_values, build_cases, case_label
from controller.sweep.spec import SweepError, load_sweep


def sweep_file(tmp_path: Path, axes: str, base: Path = DEFAULT_CONFIG_PATH) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f'base = "{base}"\nduration = "2h"\n[axes]\n{axes}')
    return path


def test_each_case_sets_its_values_on_the_base_config(tmp_path: Path) -> None:
    cases = build_cases(load_sweep(sweep_file(
        tmp_path, 'seed = [5, 6]\n"reactor.chamber.microgravity" = [true]\n'
                  '"reactor.loops.ph.setpoint" = [7.1]\n')))
    assert [c.config.run.seed for c in cases] == [5, 6]
    for case in cases:
        assert case.config.run.duration == 7200
        assert case.config.run.speed is None  # virtual time
        assert case.config.reactor[0].chamber["microgravity"] is True
        assert case.config.reactor[0].loops["ph"].setpoint == 7.1
        assert case.config_text.startswith("# sweep sweep.toml, case: seed = ")
        assert DEFAULT_CONFIG_PATH.read_text() in case.config_text


def test_run_ids_follow_the_config_not_the_order(tmp_path: Path) -> None:
    one = build_cases(load_sweep(sweep_file(tmp_path, "seed = [1, 2, 3]\n")))
    again = build_cases(load_sweep(sweep_file(tmp_path, "seed = [3, 1]\n")))
    ids = {c.config.run.seed: c.run_id for c in one}
    assert len(set(ids.values())) == 3
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids.values())
    assert {c.config.run.seed: c.run_id for c in again} == {3: ids[3], 1: ids[1]}


def test_reactor_paths_set_every_reactor_and_faults_are_appended() -> None:
    data = {"reactor": [{"id": "a"}, {"id": "b", "chamber": {"microgravity": False}}],
            "fault": ["sensor_spike@1h"]}
    out = apply_values(data, {"reactor.chamber.microgravity": True,
                              "faults": ["co2_supply_lost@1h"], "seed": 9}, 3600.0)
    assert [r["chamber"]["microgravity"] for r in out["reactor"]] == [True, True]
    assert out["fault"] == ["sensor_spike@1h", "co2_supply_lost@1h"]
    assert out["run"] == {"duration": 3600.0, "speed": "max", "seed": 9}
    assert data["reactor"][0] == {"id": "a"}  # the base tables are not changed


def test_a_whole_config_axis_reads_files_relative_to_the_sweep(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.toml").write_text(DEFAULT_CONFIG_PATH.read_text())
    path = tmp_path / "sweep.toml"
    path.write_text('duration = "1h"\n[axes]\nconfig = ["configs/a.toml", "configs/b.toml"]\n')
    with pytest.raises(SweepError) as caught:
        build_cases(load_sweep(path))
    assert 'case 1 (config="configs/b.toml"): ' in str(caught.value)
    assert "b.toml: no such config file" in str(caught.value)


def test_refused_values_are_reported_against_their_case(tmp_path: Path) -> None:
    with pytest.raises(SweepError) as caught:
        build_cases(load_sweep(sweep_file(
            tmp_path, 'seed = [-1, 2]\n"reactor.chamber.microgravity" = ["yes"]\n')))
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'sweep.toml'}: 2 case(s) refused")
    assert 'case 0 (seed=-1, reactor.chamber.microgravity="yes"): ' in text
    assert "run.seed = -1: Input should be greater than or equal to 0" in text
    assert "microgravity = 'yes': Input should be a valid boolean" in text


def test_a_bad_fault_is_refused_with_its_case(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"case 0 \(faults=\[\"nonsense@1h\"\]\).*unknown fault"):
        build_cases(load_sweep(sweep_file(tmp_path, 'faults = [["nonsense@1h"]]\n')))


def test_many_refused_cases_are_cut_short(tmp_path: Path) -> None:
    with pytest.raises(SweepError) as caught:
        build_cases(load_sweep(sweep_file(tmp_path, "seed = [-1, -2, -3, -4, -5, -6, -7, -8, "
                                                    "-9, -10, -11, -12]\n")))
    assert "12 case(s) refused" in str(caught.value)
    assert "... and 2 more case(s)" in str(caught.value)


def test_two_cases_of_one_config_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SweepError, match=r"case 1 \(seed=1\) runs the same config as case 0"):
        build_cases(load_sweep(sweep_file(tmp_path, "seed = [1, 1]\n")))


def test_case_label() -> None:
    assert case_label({"seed": 1, "x.y": True, "faults": []}) == "seed=1, x.y=true, faults=[]"


def test_the_shipped_recipe_comparison_sweep() -> None:
    """configs/sweeps/recipes.toml: docs/recipes.md's 60 runs."""
    cases = build_cases(load_sweep(DEFAULT_CONFIG_PATH.parent / "sweeps" / "recipes.toml"))
    assert len(cases) == 60
    assert len({c.config_text for c in cases}) == 60  # three configs, each case its own
    assert all(c.config.reactor[0].chamber["donor_variability"] for c in cases)
    assert sum(c.config.reactor[0].chamber["microgravity"] for c in cases) == 30
    assert {c.config.run.control_period_s for c in cases} == {5.0}
    assert {c.config.run.duration for c in cases} == {14 * 86400.0}
