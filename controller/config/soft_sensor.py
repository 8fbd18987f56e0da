"""`[reactor.soft_sensor]`: the state estimator's model constants and noise settings.

The defaults are nominal values (docs/soft-sensor.md says how well each is known); the
estimator is only as good as them, so every one is a setting. Rates are per day, densities per
mL, standard deviations (`_sd`) in the unit of their state.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from drivers.contract.validation import Seconds, StrictModel


class SoftSensorConfig(StrictModel):
    enabled: bool = True
    update_period_s: Seconds = Field(
        default=600.0, ge=60.0, le=3600.0, description="how often the filter runs (clock "
        "seconds); the tick only accumulates")
    history_s: Seconds = Field(
        default=172800.0, ge=3600.0, le=1209600.0, description="how far back a late at-line "
        "result may reach: the filter re-runs from its draw time over this window")
    stale_after_s: Seconds = Field(
        default=3600.0, ge=60.0, description="estimates turn STALE when no measurement has "
        "reached the filter for this long (they are then predictions only)")
    # --- the model (nominal parameters) -----------------------------------------------------
    harvest_cell_retention: float = Field(
        default=0.9, ge=0.0, le=1.0, description="share of cells the harvest's settling zone "
        "keeps in the chamber")
    death_per_d: float = Field(
        default=0.03, ge=0.0, le=2.0, description="death rate of viable cells (the dead-cell "
        "balance; growth_rate is net of it)")
    lysis_per_d: float = Field(
        default=0.1, ge=0.0, le=2.0, description="dead cells lysing (leave the optical count)")
    inhibitor_secretion_pg_per_mcell_d: float = Field(
        default=1000.0, ge=0.0, le=10000.0, description="pg per 1e6 secreting cells per day "
        "(1 fg/cell/d; science sheet: qI 0.1-3 fg/cell/d)")
    inhibitor_secreted_by: Literal["viable", "cd34_negative"] = Field(
        default="cd34_negative", description="which cells secrete the inhibitor: all viable "
        "cells, or the CD34- (differentiated) ones times monocytic_fraction (the science "
        "sheet's model)")
    monocytic_fraction: float = Field(
        default=0.25, ge=0.0, le=1.0, description="share m of the CD34- cells that secrete "
        "(science sheet: 0.1-0.4)")
    o2_uptake_pmol_per_cell_h: float = Field(
        default=0.05, ge=0.001, le=1.0, description="specific O2 uptake; the filter learns a "
        "factor on it")
    kla_o2_per_h: float = Field(
        default=4.0, gt=0.0, le=100.0, description="O2 transfer coefficient of the chamber")
    do_air_sat_mm: float = Field(
        default=0.19, gt=0.0, le=1.0, description="dissolved O2 at 100 % air saturation")
    our_min_cells_per_ml: float = Field(
        default=3.0e5, ge=0.0, description="below this estimated viable density the O2 uptake "
        "is too small to use")
    # --- initial state ---------------------------------------------------------------------
    initial_viability: float = Field(default=0.95, gt=0.0, le=1.0)
    initial_cd34_fraction: float = Field(default=0.9, ge=0.0, le=1.0)
    initial_primitive_fraction: float = Field(
        default=0.1, ge=0.0, le=1.0, description="the seeding mix's CD34+CD90+ share, until "
        "cytometry says")
    # --- noise: process (per sqrt(day)) and measurement ------------------------------------
    growth_rate_walk_sd: float = Field(
        default=0.25, gt=0.0, le=5.0, description="/d per sqrt(d): how fast the growth rate "
        "may change")
    density_model_sd: float = Field(default=0.02, ge=0.0, le=1.0,
                                    description="relative, per sqrt(d)")
    inhibitor_model_sd: float = Field(default=0.05, ge=0.0, le=1.0,
                                      description="relative, per sqrt(d)")
    fraction_walk_sd: float = Field(default=0.03, ge=0.0, le=1.0, description="per sqrt(d)")
    uptake_factor_walk_sd: float = Field(default=0.05, ge=0.0, le=1.0,
                                         description="log, per sqrt(d)")
    total_cells_sd: float = Field(
        default=0.04, gt=0.0, le=1.0, description="relative error of the optical density "
        "averaged over an update (bias, not noise)")
    our_sd: float = Field(
        default=0.25, gt=0.0, le=2.0, description="relative error of the O2 uptake from the "
        "gas balance")
    our_floor_mm_per_h: float = Field(default=0.003, gt=0.0, le=1.0)
    viable_count_cv: float = Field(default=0.08, gt=0.0, le=1.0)
    viability_sd_pct: float = Field(default=3.0, gt=0.0, le=50.0)
    cytometry_cv: float = Field(default=0.12, gt=0.0, le=1.0)
