"""Mass balances: every cell, mole, nanogram and millilitre is accounted for, to rounding."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_hardware.model.actuators import ActuatorInputs, apply_outputs
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.ledger import SPECIES
from sim_hardware.model.parameters import InitialConditions, ModelParameters

H = 3600.0
TOLERANCE = 1e-9

_SLOW_CELLS = {"mu_primitive_per_d": 0.1, "mu_progenitor_per_d": 0.2,
               "mu_differentiated_per_d": 0.0, "death_primitive_per_d": 0.0,
               "death_progenitor_per_d": 0.0, "death_differentiated_per_d": 0.0,
               "lysis_per_d": 0.0}
"""Cells that hardly grow or die: densities stay put over a few hours."""

# (time in h, commands): feed, harvest, base and boluses switched at odd times (not on the
# 60-s biology grid), gas and heater changes, and a harvest-only phase that drains the chamber
# to its dip tube.
SCHEDULE: list[tuple[float, dict[str, float]]] = [
    (0.0, {"heater_pct": 55.0, "o2_pct": 6.0, "co2_pct": 9.0}),
    (5.37, {"feed_ml_per_h": 3.0, "harvest_ml_per_h": 2.5}),
    (20.01, {"base_ml_per_h": 2.0}),
    (20.77, {"base_ml_per_h": 0.0, "co2_pct": 7.5}),
    (30.0, {"feed_ml_per_h": 33.3}),  # bolus
    (30.1333, {"feed_ml_per_h": 3.0}),
    (50.5, {"o2_pct": 12.0, "heater_pct": 60.0}),
    (70.0, {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 60.0}),  # drains to the dip tube
    (72.0, {"feed_ml_per_h": 40.0, "harvest_ml_per_h": 0.0}),
    (73.25, {"feed_ml_per_h": 5.0, "harvest_ml_per_h": 5.0, "base_ml_per_h": 0.3}),
]


def run_schedule(model: ChamberModel, schedule, end_h: float, step_s: float = 1.0e9) -> None:
    p = model.params
    for t_h, commands in schedule:
        _advance(model, t_h * H, step_s)
        model.set_inputs(apply_outputs(model.inputs, commands, p))
    _advance(model, end_h * H, step_s)


def _advance(model: ChamberModel, t_s: float, step_s: float) -> None:
    t = model.t_s
    while t + step_s < t_s:
        t += step_s
        model.advance_to(t)
    model.advance_to(t_s)


@pytest.fixture(scope="module")
def model() -> ChamberModel:
    m = ChamberModel(ModelParameters())
    run_schedule(m, SCHEDULE, end_h=5 * 24.0)
    return m


def test_every_species_balances_to_rounding(model: ChamberModel) -> None:
    residuals = model.balance_residuals()
    assert set(residuals) == set(SPECIES)
    for name, residual in residuals.items():
        assert abs(residual) < TOLERANCE, (name, residual)


def test_the_ledger_adds_up_in_reported_units(model: ChamberModel) -> None:
    for name, entry in model.ledger().items():
        total = (entry["initial"] + entry["fed"] - entry["harvested"] - entry["consumed"]
                 + entry["produced"])
        assert total == pytest.approx(entry["current"], rel=TOLERANCE, abs=1e-12), name
    ledger = model.ledger()
    assert ledger["glucose"]["unit"] == "mmol"
    assert ledger["glucose"]["consumed"] > 0.0
    assert ledger["lactate"]["produced"] > 0.0
    assert ledger["bicarbonate"]["consumed"] == pytest.approx(ledger["lactate"]["produced"])
    assert ledger["inhibitor"]["harvested"] > 0.0


def test_pumps_deliver_exactly_what_was_commanded_between_biology_steps(
    model: ChamberModel,
) -> None:
    """Pump volumes are integrated exactly, even for switches inside a 60-s biology step."""
    fed_expected_ml = (
        3.0 * (30.0 - 5.37) + 33.3 * 0.1333 + 3.0 * (70.0 - 30.1333)  # feed
        + 40.0 * 1.25 + 5.0 * (120.0 - 73.25)
        + 2.0 * 0.76 + 0.3 * (120.0 - 73.25)  # base
    )
    assert model.ledger()["volume"]["fed"] == pytest.approx(fed_expected_ml, rel=1e-9)


def test_harvest_stops_at_the_dip_tube(model: ChamberModel) -> None:
    m = ChamberModel(ModelParameters())
    run_schedule(m, SCHEDULE[:8], end_h=71.9)
    assert m.volume_ml == pytest.approx(m.params.min_volume_ml, abs=1e-9)
    assert all(abs(r) < TOLERANCE for r in m.balance_residuals().values())


def test_harvested_cells_carry_one_minus_retention_of_the_density() -> None:
    p = ModelParameters.from_options({"harvest_cell_retention": 0.75, **_SLOW_CELLS})
    m = ChamberModel(p)
    m.set_inputs(apply_outputs(m.inputs, {"feed_ml_per_h": 10.0, "harvest_ml_per_h": 10.0}, p))
    mean_density = 0.0
    for k in range(1, 61):
        m.advance_to(k * 60.0)
        mean_density += m.viable_cells_per_ml / 60.0
    harvested_ml = m.ledger()["volume"]["harvested"]
    assert harvested_ml == pytest.approx(10.0, rel=1e-9)
    assert m.cells_harvested / (harvested_ml * mean_density) == pytest.approx(0.25, rel=1e-3)


def test_integration_does_not_depend_on_the_call_cadence() -> None:
    """Lazy integration: advancing second by second or in one jump reaches the same state."""
    fine = ChamberModel(ModelParameters())
    coarse = ChamberModel(ModelParameters())
    run_schedule(fine, SCHEDULE[:5], end_h=31.0, step_s=1.0)
    run_schedule(coarse, SCHEDULE[:5], end_h=31.0)
    a, b = fine.snapshot(), coarse.snapshot()
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


def test_time_cannot_go_backwards() -> None:
    m = ChamberModel(ModelParameters())
    m.advance_to(100.0)
    m.advance_to(100.0)  # repeating a time is fine
    with pytest.raises(ValueError, match="backwards"):
        m.advance_to(50.0)


def test_starvation_caps_uptake_at_what_is_there() -> None:
    p = ModelParameters.from_options({"feed_glucose_mm": 0.5, "feed_glutamine_mm": 0.1})
    m = ChamberModel(p, initial=InitialConditions(seeding_cells_per_ml=2e6))
    m.advance_to(3 * 86400.0)
    assert m.glucose_mm >= 0.0 and m.glutamine_mm >= 0.0
    assert all(abs(r) < TOLERANCE for r in m.balance_residuals().values())


_command = st.fixed_dictionaries({}, optional={
    "feed_ml_per_h": st.floats(0.0, 60.0),
    "harvest_ml_per_h": st.floats(0.0, 60.0),
    "base_ml_per_h": st.floats(0.0, 10.0),
    "heater_pct": st.floats(0.0, 100.0),
    "o2_pct": st.floats(0.0, 100.0),
    "co2_pct": st.floats(0.0, 20.0),
})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 12.0), _command), max_size=12))
def test_any_schedule_balances(events: list[tuple[float, dict[str, float]]]) -> None:
    m = ChamberModel(ModelParameters())
    run_schedule(m, sorted(events, key=lambda e: e[0]), end_h=12.0)
    for name, residual in m.balance_residuals().items():
        assert abs(residual) < TOLERANCE, (name, residual)
    assert m.volume_ml >= m.params.min_volume_ml - 1e-9
    assert all(math.isfinite(v) for v in m.snapshot().values())


def test_inputs_default_to_a_pre_warmed_equilibrated_chamber() -> None:
    m = ChamberModel(ModelParameters())
    assert isinstance(m.inputs, ActuatorInputs)
    assert m.inputs.feed_ml_per_h == m.inputs.harvest_ml_per_h == m.inputs.base_ml_per_h == 0.0
    assert m.temperature_c == 37.0


def test_a_leak_drains_the_whole_culture_and_is_no_harvest() -> None:
    """A leak (the chamber_leak fault) takes medium and cells alike, past the harvest's cell
    retention; the ledger still balances, and no leaked cell counts as harvested."""
    p = ModelParameters.from_options(_SLOW_CELLS)
    m = ChamberModel(p)
    m.set_inputs(replace(m.inputs, leak_ml_per_h=2.0))
    density_before = m.viable_cells_per_ml
    m.advance_to(3 * H)
    assert m.volume_ml == pytest.approx(44.0, rel=1e-9)
    assert m.ledger()["volume"]["harvested"] == pytest.approx(6.0, rel=1e-9)
    assert m.cells_harvested == 0.0
    assert m.viable_cells_per_ml == pytest.approx(density_before, rel=1e-2)  # drained, not
    assert all(abs(r) < TOLERANCE for r in m.balance_residuals().values())  # concentrated
