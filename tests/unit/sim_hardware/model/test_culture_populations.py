"""The three populations, the inhibitor, the cytokine and at-line sampling in the chamber model.

Against shared/science/hsc-quality.md ("A minimal structure"); the model-only harness of
test_model_science holds the setpoints. The closed-loop fit targets are in
tests/system/test_product_quality.py.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
from plugins.culture_harness import DAY_S, no_flow, run_culture

from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import ModelParameters
from sim_hardware.model.populations import Kinetics, hypoxic_response, transitions

TOLERANCE = 1e-9
_CONTRACT_KEYS = ("primitive_cells_per_ml", "progenitor_cells_per_ml",
                  "differentiated_cells_per_ml", "cd34_fraction", "primitive_fraction",
                  "cytokine_ng_per_ml", "total_fold_expansion", "cd34_fold_expansion",
                  "primitive_fold_expansion")


def _kinetics(p: ModelParameters) -> Kinetics:
    return Kinetics(p.mu_primitive_per_d / 24.0, p.mu_progenitor_per_d / 24.0,
                    p.mu_differentiated_per_d / 24.0, p.self_renewal_primitive_normoxia,
                    p.self_renewal_primitive_hypoxia, p.self_renewal_progenitor,
                    p.hypoxia_half_pct_air, p.hypoxia_hill, p.hypoxia_division_slowdown,
                    p.k_inh_ng_per_ml, p.inhibitor_hill, p.k_cytokine_ng_per_ml)


def test_seeding_composition_is_the_parameter_table_s() -> None:
    p = ModelParameters()
    m = ChamberModel(p)
    assert m.cd34_fraction == pytest.approx(p.seeding_cd34_fraction, rel=1e-12)
    assert m.primitive_fraction == pytest.approx(p.seeding_primitive_fraction, rel=1e-12)
    total = m.primitive_cells_per_ml + m.progenitor_cells_per_ml + m.differentiated_cells_per_ml
    assert total == pytest.approx(m.viable_cells_per_ml, rel=1e-12)
    assert m.cytokine_ng_per_ml == p.feed_cytokine_ng_per_ml


def test_primitive_seeding_cannot_exceed_cd34_seeding() -> None:
    """Primitive cells are CD34+: the two ranges cannot overlap, so no pair is inconsistent."""
    from sim_hardware.model.parameters import SPECS
    assert SPECS["seeding_primitive_fraction"].high < SPECS["seeding_cd34_fraction"].low


def test_a_division_makes_two_daughters_whatever_they_become() -> None:
    """Cells are conserved through divisions: each division of N cells makes 2 daughters."""
    k = _kinetics(ModelParameters())
    tr = transitions(k, 0.8, 25.0, 0.3, 50.0, 1e5, 1e6, 1e6, 1.0)
    assert tr.s_made + tr.p_from_s == pytest.approx(2.0 * tr.div_s, rel=1e-12)
    assert tr.p_made + tr.d_from_p == pytest.approx(2.0 * tr.div_p, rel=1e-12)


def test_low_o2_raises_self_renewal_and_slows_primitive_division() -> None:
    """hsc-quality.md: low O2 raises pS and slows division (Danet 2003; BBRC 2009)."""
    k = _kinetics(ModelParameters())
    low = transitions(k, 1.0, 7.0, 0.0, 100.0, 1e5, 0.0, 0.0, 1.0)
    high = transitions(k, 1.0, 95.0, 0.0, 100.0, 1e5, 0.0, 0.0, 1.0)
    assert low.ps > high.ps + 0.3
    assert low.div_s < high.div_s
    assert high.ps < 0.5 < low.ps  # primitive cells are lost at air-level O2, gained at low
    assert hypoxic_response(0.0, 20.0, 2.0) == 1.0
    assert hypoxic_response(20.0, 20.0, 2.0) == pytest.approx(0.5)


def test_the_inhibitor_and_cytokine_withdrawal_lower_self_renewal() -> None:
    """fI = 1/(1+(I/KI)^n) (Kirouac 2009), fC = C/(KC+C)."""
    p = ModelParameters()
    k = _kinetics(p)
    clean = transitions(k, 1.0, 25.0, 0.0, 100.0, 1e5, 1e5, 0.0, 1.0)
    inhibited = transitions(k, 1.0, 25.0, p.k_inh_ng_per_ml, 100.0, 1e5, 1e5, 0.0, 1.0)
    starved = transitions(k, 1.0, 25.0, 0.0, p.k_cytokine_ng_per_ml, 1e5, 1e5, 0.0, 1.0)
    assert inhibited.f_inh == pytest.approx(0.5)
    assert inhibited.ps == pytest.approx(0.5 * clean.ps, rel=1e-12)
    assert starved.f_cyt == pytest.approx(0.5)
    assert starved.pp < clean.pp and starved.div_p < clean.div_p


def test_only_monocytic_differentiated_cells_secrete_the_inhibitor() -> None:
    no_monocytes = ModelParameters.from_options({"seeding_cd34_fraction": 1.0,
                                                 "mu_progenitor_per_d": 0.2,
                                                 "self_renewal_progenitor": 0.85})
    pure = run_culture(no_monocytes, days=1, perfusion=no_flow, bolus=no_flow)
    mixed = run_culture(days=1, perfusion=no_flow, bolus=no_flow)
    # Seeded pure CD34+ and few differentiate in a day: far less inhibitor than a culture seeded
    # with 10 % CD34- cells.
    assert pure.inhibitor_ng_per_ml < 0.2 * mixed.inhibitor_ng_per_ml
    p = ModelParameters()
    m = ChamberModel(p)
    m.advance_to(DAY_S)
    made = m.ledger()["inhibitor"]["produced"]
    expected_max = (p.q_inh_fg_per_cell_d * 1e-6 * p.monocytic_fraction
                    * max(m.differentiated_cells_per_ml, 1.0) * m.volume_ml)
    assert 0.0 < made <= expected_max


def test_cytokine_is_taken_up_by_the_cells_and_refreshed_by_the_feed() -> None:
    batch = run_culture(days=6, perfusion=no_flow, bolus=no_flow)
    perfused = run_culture(days=6, perfusion=lambda t_d: 2.0, bolus=no_flow)
    p = ModelParameters()
    assert batch.cytokine_ng_per_ml < p.feed_cytokine_ng_per_ml
    assert perfused.cytokine_ng_per_ml > batch.cytokine_ng_per_ml
    ledger = batch.ledger()["cytokine"]
    assert ledger["consumed"] > 0.0 and ledger["fed"] == 0.0


def test_take_sample_removes_every_species_in_proportion_and_balances() -> None:
    m = run_culture(days=3)
    before = m.snapshot()
    v = m.volume_ml
    m.take_sample(1.0)
    after = m.snapshot()
    assert m.volume_ml == pytest.approx(v - 1.0, rel=1e-12)
    for key in ("primitive_cells_per_ml", "progenitor_cells_per_ml", "viable_cells_per_ml",
                "glucose_mm", "inhibitor_ng_per_ml", "cytokine_ng_per_ml", "lactate_mm"):
        assert after[key] == pytest.approx(before[key], rel=1e-9), key  # concentrations kept
    # The cells drawn still count as produced: fold expansions do not drop.
    for key in ("total_fold_expansion", "cd34_fold_expansion", "primitive_fold_expansion"):
        assert after[key] == pytest.approx(before[key], rel=1e-9), key
    assert m.ledger()["volume"]["harvested"] > 1.0
    assert all(abs(r) < TOLERANCE for r in m.balance_residuals().values())
    with pytest.raises(ValueError, match="volume_ml"):
        m.take_sample(-1.0)


def test_daily_samples_with_harvest_feed_and_leak_keep_every_balance_closed() -> None:
    def sample_daily(m: ChamberModel) -> None:
        if m.t_s % DAY_S == 0.0:
            m.take_sample(0.5)

    m = run_culture(days=5, observe=sample_daily)
    m.set_inputs(replace(m.inputs, leak_ml_per_h=1.0))
    m.advance_to(m.t_s + 6 * 3600.0)
    m.take_sample(0.5)
    residuals = m.balance_residuals()
    for name in ("primitive_cells", "progenitor_cells", "differentiated_cells", "cytokine",
                 "viable_cells", "volume"):
        assert name in residuals
    assert all(abs(r) < TOLERANCE for r in residuals.values()), residuals


def test_snapshot_has_the_contract_keys_and_fractions_are_consistent() -> None:
    m = run_culture(days=2)
    s = m.snapshot()
    for key in _CONTRACT_KEYS:
        assert key in s, key
    assert s["total_fold_expansion"] == s["fold_expansion"]
    assert 0.0 < s["primitive_fraction"] < s["cd34_fraction"] < 1.0
    assert s["cd34_fraction"] == pytest.approx(
        (s["primitive_cells_per_ml"] + s["progenitor_cells_per_ml"]) / s["viable_cells_per_ml"])
    assert 0.0 < m.viability <= 1.0


def test_microgravity_holds_expansion_back_in_the_first_days() -> None:
    """Plett et al. 2001: no expansion in the first 4-6 days of simulated microgravity."""
    ground = run_culture(days=4)
    flight = run_culture(days=4, microgravity=True)
    assert flight.fold_expansion < 1.3
    assert ground.fold_expansion > 3.0
