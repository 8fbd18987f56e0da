"""Product quality against oxygen, closed loop, as a user runs it (issue 12's fit): the real
controller runs `configs/hsc_expansion.toml` with its DO setpoint moved, against the emulator in
virtual time, and the summary's `product` block (emulator truth at the end of the run) is
checked against shared/science/hsc-quality.md. The default 14-day culture's fit (total, CD34+
and primitive fold, CD34+ share, microgravity) is checked in test_culture_14d.py, with every
other number of that run.
"""
from __future__ import annotations

import pytest
from plugins.configs import load_default, run_config

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
def four_day_o2_summaries(tmp_path_factory: pytest.TempPathFactory) -> dict[float, dict]:
    """4-day cultures with the DO loop at 7 % air (~1.5 % O2) and 95 % air (~20 % O2)."""
    out = {}
    for pct_air in (7.0, 95.0):
        db = tmp_path_factory.mktemp(f"do{pct_air:g}") / "run.sqlite"
        out[pct_air] = run_config(load_default(**_do_setpoint(pct_air)), db, duration="4d")
    return out


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
