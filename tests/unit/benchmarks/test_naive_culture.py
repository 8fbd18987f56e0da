"""The naive loop's culture ODE (benchmarks/naive_loop/culture.py), the part that needs no scipy:
its right-hand side balances where the model says it should, so the baseline `make bench`
compares against is a culture that grows and can be controlled, not an empty loop."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

CULTURE = Path(__file__).resolve().parents[3] / "benchmarks" / "naive_loop" / "culture.py"


def _culture() -> ModuleType:
    spec = importlib.util.spec_from_file_location("naive_culture", CULTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


culture = _culture()


def test_the_heater_holds_37_c_where_its_power_meets_the_losses() -> None:
    c = culture
    holding_pct = 100.0 * c.LOSS_PER_S * (37.0 - c.ROOM_C) / c.HEATER_C_PER_S
    y = [1e5, 25.0, 0.0, 40.0, 37.0, 7.3]
    assert abs(c.rhs(0.0, y, holding_pct, 21.0, 5.0)[4]) < 1e-12
    assert c.rhs(0.0, y, holding_pct + 10.0, 21.0, 5.0)[4] > 0
    assert c.rhs(0.0, y, holding_pct - 10.0, 21.0, 5.0)[4] < 0


def test_lactate_is_made_from_glucose_at_its_yield_and_more_co2_lowers_ph() -> None:
    c = culture
    y = [1e6, c.FEED_GLUCOSE_MM, 0.0, 40.0, 37.0, 7.3]  # fresh medium: perfusion adds nothing
    _, dg, dl, _, _, _ = c.rhs(0.0, y, 30.0, 21.0, 5.0)
    assert dg < 0 < dl
    assert np.isclose(dl / -dg, c.LACTATE_PER_GLUCOSE)
    assert c.rhs(0.0, y, 30.0, 21.0, 8.0)[5] < c.rhs(0.0, y, 30.0, 21.0, 2.0)[5]


def test_a_day_at_the_setpoints_grows_the_culture_and_uses_glucose() -> None:
    """Forward Euler at 1 s, inputs fixed near the setpoints' steady state: cells grow at about
    mu_max less death, glucose falls, DO sits where transfer meets uptake."""
    c = culture
    y = np.array([1e5, 25.0, 0.0, 25.0, 37.0, 7.3])
    heater = 100.0 * c.LOSS_PER_S * 12.0 / c.HEATER_C_PER_S
    for t in range(86_400):
        y = y + np.array(c.rhs(float(t), list(y), heater, 5.3, 5.0))
    x, g, lac, do, temp, ph = y
    net_per_day = (c.MU_MAX_PER_S - c.DEATH_PER_S) * 86_400
    assert 1.0 < x / 1e5 < np.exp(net_per_day)
    assert g < 25.0 and lac > 0.0
    assert 20.0 < do < 30.0 and abs(temp - 37.0) < 1e-6 and 7.0 < ph < 7.6
