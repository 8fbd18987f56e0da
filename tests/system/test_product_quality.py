"""Product quality of the default culture, closed loop, as a user runs it (issue 12's fit).

The real controller runs `configs/hsc_expansion.toml` against the emulator in virtual time; the
summary's `product` block (emulator truth at the end of the run) is checked against the targets
of shared/science/hsc-quality.md. Each distinct run is made once (module-scoped fixtures).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, load_default, run_config

from controller.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REACTOR = "hsc-1"


def _product(summary: dict) -> dict[str, float]:
    return summary["reactors"][REACTOR]["product"]


def _do_setpoint(pct_air: float) -> dict[str, str]:
    """Text edits of the default config that move the DO loop's setpoint (and its operator
    bounds so the setpoint is allowed)."""
    return {
        "setpoint = 25.0           # % air saturation":
            f"setpoint = {pct_air}           # % air saturation",
        "setpoint_min = 10.0       # operator bounds: 10-60 % air saturation":
            "setpoint_min = 5.0       # operator bounds: 5-100 % air saturation",
        "setpoint_max = 60.0\n": "setpoint_max = 100.0\n",
    }


@pytest.fixture(scope="module")
def default_14d_summary(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The default 14-day culture at 1 g: its summary and its historian file."""
    db = tmp_path_factory.mktemp("default") / "run.sqlite"
    return run_config(load_config(DEFAULT_CONFIG_PATH), db), db


@pytest.fixture(scope="module")
def microgravity_14d_summary(tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = tmp_path_factory.mktemp("microgravity") / "run.sqlite"
    config = load_default(**{"microgravity = false": "microgravity = true"})
    return run_config(config, db)


@pytest.fixture(scope="module")
def four_day_o2_summaries(tmp_path_factory: pytest.TempPathFactory) -> dict[float, dict]:
    """4-day cultures with the DO loop at 7 % air (~1.5 % O2) and 95 % air (~20 % O2)."""
    out = {}
    for pct_air in (7.0, 95.0):
        db = tmp_path_factory.mktemp(f"do{pct_air:g}") / "run.sqlite"
        out[pct_air] = run_config(load_default(**_do_setpoint(pct_air)), db, duration="4d")
    return out


def test_total_fold_in_14_days_is_30_to_300x(default_14d_summary: tuple[dict, Path]) -> None:
    """Davis et al. 1996 J Leukoc Biol 60:69: bone marrow 41-65x in 11-13 d; cord blood higher
    [est]: 30-300x. The top-level fold_expansion stays the total-cell figure."""
    summary, _ = default_14d_summary
    product = _product(summary)
    assert 30.0 <= product["total_fold_expansion"] <= 300.0, product
    assert product["total_fold_expansion"] == pytest.approx(summary["fold_expansion"])


def test_cd34_fraction_at_day_14_is_5_to_50_percent(
    default_14d_summary: tuple[dict, Path]
) -> None:
    """hsc-quality.md [est]: CD34+ fraction falls as cells differentiate, 5-30 % at day 14
    (the issue accepts 5-50 %)."""
    product = _product(default_14d_summary[0])
    assert 0.05 <= product["cd34_fraction"] <= 0.50, product


def test_cd34_cells_expand_at_least_5x(default_14d_summary: tuple[dict, Path]) -> None:
    """hsc-quality.md [est] 10-50x in 14 d; Liu et al. 2006 J Biotechnol 124:592: 33x in ~8 d
    with dilution feeding. The issue's floor: 5x."""
    product = _product(default_14d_summary[0])
    assert product["cd34_fold_expansion"] >= 5.0, product


def test_primitive_cells_change_0_5_to_15x(default_14d_summary: tuple[dict, Path]) -> None:
    """hsc-quality.md: SRC 0.5-3x in static culture [est], 11x in 12 d with fed-batch dilution
    (Csaszar et al. 2012 Cell Stem Cell 10:218): the issue's band 0.5-15x."""
    product = _product(default_14d_summary[0])
    assert 0.5 <= product["primitive_fold_expansion"] <= 15.0, product
    # Fewer primitive cells than CD34+ cells are made: total > CD34+ > primitive.
    assert (product["total_fold_expansion"] > product["cd34_fold_expansion"]
            > product["primitive_fold_expansion"])


def test_low_o2_keeps_at_least_twice_the_primitive_cells_of_high_o2(
    four_day_o2_summaries: dict[float, dict]
) -> None:
    """Danet et al. 2003 J Clin Invest 112:126: SRC after 4 d at 1.5 % O2 were 5.8x those at
    20 % O2. The issue asks for at least 2x, with the DO loop at 7 % and 95 % air."""
    low = _product(four_day_o2_summaries[7.0])["primitive_fold_expansion"]
    high = _product(four_day_o2_summaries[95.0])["primitive_fold_expansion"]
    assert low >= 2.0 * high, (low, high)
    for summary in four_day_o2_summaries.values():
        assert summary["loops"]["do"]["within_band_fraction"] >= 0.9


def test_microgravity_gives_16_to_43_percent_of_the_1g_fold(
    default_14d_summary: tuple[dict, Path], microgravity_14d_summary: dict
) -> None:
    """Davis et al. 1996: total cells 10-18x in flight vs 41-65x on the ground (16-43 %); Plett
    et al. 2001: no expansion in the first 4-6 days of simulated microgravity."""
    ground = _product(default_14d_summary[0])["total_fold_expansion"]
    flight = _product(microgravity_14d_summary)["total_fold_expansion"]
    assert 0.16 <= flight / ground <= 0.43, (flight, ground)
