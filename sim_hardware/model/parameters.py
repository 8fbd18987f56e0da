"""The emulated chamber's parameter table: one row per parameter, the single source of truth.

Every number the model, the sensors and the actuators use lives here with its unit, allowed range,
source and whether it was read in a source ([lit]) or is an engineering estimate ([est]). The
`ModelParameters` dataclass and the table in docs/model.md are both generated from it, so the
code, the validation and the documentation cannot drift apart.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeAlias

import numpy as np
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from drivers.contract.validation import Number, StrictModel, format_validation_error

if TYPE_CHECKING:
    from dataclasses import Field as DataclassField

LIT = "lit"
EST = "est"


@dataclass(frozen=True, slots=True)
class ParameterSpec:
    """One row of the table. `donor_cv` > 0 marks a biological parameter that varies by donor."""

    name: str
    default: float
    unit: str
    low: float
    high: float
    tag: str
    source: str
    description: str
    category: str
    donor_cv: float = 0.0


def _p(name: str, default: float, unit: str, low: float, high: float, tag: str, source: str,
       description: str, category: str, donor_cv: float = 0.0) -> ParameterSpec:
    return ParameterSpec(name, default, unit, low, high, tag, source, description, category,
                         donor_cv)


_DAVIS = "Davis et al. 1996, J Leukoc Biol"
_SHEET = "science sheet (hsc-culture-model.md)"
_QUALITY = "quality sheet (hsc-quality.md)"
_DANET = "Danet et al. 2003, J Clin Invest 112:126"

PARAMETER_TABLE: tuple[ParameterSpec, ...] = (
    # --- growth and death -------------------------------------------------------------------
    _p("mu_primitive_per_d", 0.7, "1/d", 0.1, 1.0, EST,
       f"calibrated to {_DANET} (4-d O2 contrast); {_QUALITY}: muS 0.3-0.6 /d",
       "division rate of primitive CD34+CD90+ cells with no factor limiting", "growth", 0.10),
    _p("mu_progenitor_per_d", 1.3, "1/d", 0.2, 2.0, EST,
       f"calibrated: CD34+ fold ~10x and 17 % CD34+ at 14 d; {_QUALITY}: muP 0.6-0.8 /d (the "
       "growth factors g ~0.55 in the default regime slow it to ~0.7 /d)",
       "division rate of the other CD34+ progenitors with no factor limiting", "growth", 0.10),
    _p("mu_differentiated_per_d", 0.6, "1/d", 0.0, 1.2, EST,
       f"calibrated: default regime gives ~45x total in 14 d ({_DAVIS}: ground 41-65.5x); "
       f"{_QUALITY}: muD 0.2-0.6 /d",
       "division rate of differentiated CD34- cells with no factor limiting", "growth", 0.10),
    _p("death_primitive_per_d", 0.02, "1/d", 0.0, 0.3, EST, f"{_QUALITY}: death 0.02-0.1 /d",
       "death rate of primitive cells in good conditions", "growth", 0.20),
    _p("death_progenitor_per_d", 0.03, "1/d", 0.0, 0.3, EST, f"{_QUALITY}: death 0.02-0.1 /d",
       "death rate of progenitors in good conditions", "growth", 0.20),
    _p("death_differentiated_per_d", 0.03, "1/d", 0.0, 0.3, EST, _SHEET,
       "death rate of differentiated cells in good conditions", "growth", 0.20),
    _p("death_stress_per_d", 0.6, "1/d", 0.0, 5.0, EST, _SHEET,
       "extra death at full pH or heat stress, times (1 - f_pH*f_heat)^2", "growth", 0.20),
    _p("death_starvation_per_d", 0.6, "1/d", 0.0, 5.0, EST, _SHEET,
       "extra death when glucose or glutamine is exhausted", "growth", 0.20),
    _p("lysis_per_d", 0.1, "1/d", 0.0, 1.0, EST, _SHEET,
       "rate at which dead cells disintegrate (leave the optical count)", "growth", 0.20),
    _p("lag_h", 36.0, "h", 0.0, 96.0, EST, f"{_SHEET}: lag before first division 24-48 h",
       "duration of the smooth (smoothstep) ramp of growth after seeding", "growth", 0.20),
    _p("x_max_cells_per_ml", 5.0e6, "cells/mL", 1.0e6, 1.0e7, EST, f"{_SHEET}: 2-5e6",
       "density ceiling of the suspension: growth times (1 - Xv/X_max)", "growth", 0.15),
    _p("t_min_c", 28.0, "degC", 20.0, 32.0, EST, _SHEET,
       "cardinal temperature model: no growth below", "growth"),
    _p("t_opt_c", 37.0, "degC", 34.0, 39.0, EST, _SHEET,
       "cardinal temperature model: optimum", "growth"),
    _p("t_max_c", 41.5, "degC", 40.0, 45.0, EST, _SHEET,
       "cardinal temperature model: no growth above", "growth"),
    _p("ph_opt_low", 7.2, "pH", 7.0, 7.3, LIT, "McAdams et al. 1997, Br J Haematol",
       "lower end of the pH optimum (f_pH = 1 inside)", "growth"),
    _p("ph_opt_high", 7.4, "pH", 7.3, 7.5, LIT, "McAdams et al. 1997, Br J Haematol",
       "upper end of the pH optimum", "growth"),
    _p("ph_half_low", 6.9, "pH", 6.5, 6.95, EST, "McAdams 1997: growth falls outside ~6.9-7.6",
       "acid pH at which growth is halved (Gaussian shoulder)", "growth"),
    _p("ph_half_high", 7.6, "pH", 7.55, 8.0, EST, "McAdams 1997: growth falls outside ~6.9-7.6",
       "alkaline pH at which growth is halved", "growth"),
    _p("k_do_mm", 0.001, "mM", 0.0005, 0.02, EST, "small Monod constant on dissolved O2",
       "Monod constant of growth and O2 uptake on dissolved O2 (~1 % air sat)", "growth"),
    _p("k_glc_mm", 0.5, "mM", 0.1, 2.0, EST, _SHEET,
       "Monod constant on glucose (growth and uptake)", "growth", 0.20),
    _p("k_gln_mm", 0.1, "mM", 0.02, 0.5, EST, _SHEET,
       "Monod constant on glutamine (growth and uptake)", "growth", 0.20),
    _p("k_lac_mm", 30.0, "mM", 20.0, 40.0, LIT, "Hassell et al. 1991 / [est]",
       "lactate inhibition constant: growth times K/(K+Lac)", "growth", 0.15),
    _p("k_amm_mm", 2.0, "mM", 1.0, 3.0, LIT, "literature ranges / [est]",
       "ammonia inhibition constant: growth times K/(K+Amm)", "growth", 0.15),
    _p("k_inh_ng_per_ml", 1.0, "ng/mL", 0.1, 5.0, EST,
       f"{_QUALITY}: KI 0.5-2 ng/mL TGF-b1 equivalent; Kirouac et al. 2009, Mol Syst Biol",
       "lumped secreted inhibitor at which self-renewal is halved: f_I = 1/(1+(I/K_I)^n)",
       "growth", 0.30),
    _p("inhibitor_hill", 1.5, "-", 1.0, 3.0, EST, f"{_QUALITY}: n 1-2",
       "Hill exponent n of the inhibitor's effect on self-renewal", "growth"),
    _p("glc_starvation_mm", 0.5, "mM", 0.05, 3.0, EST, _SHEET,
       "glucose below which starvation death ramps up linearly", "growth"),
    _p("gln_starvation_mm", 0.1, "mM", 0.01, 1.0, EST, _SHEET,
       "glutamine below which starvation death ramps up linearly", "growth"),
    # --- populations and product quality ---------------------------------------------------
    _p("self_renewal_primitive_normoxia", 0.4, "-", 0.2, 0.7, EST,
       f"calibrated to {_DANET}: SRC fell to ~0.7x the input in 4 d at 20 % O2",
       "probability pS that a primitive division self-renews at air-level O2, saturating "
       "cytokine and no inhibitor", "populations"),
    _p("self_renewal_primitive_hypoxia", 0.95, "-", 0.5, 0.95, EST,
       f"calibrated to {_DANET}: SRC 4.2x the input in 4 d at 1.5 % O2; {_QUALITY}: pS0 "
       "0.70-0.75 with I kept low",
       "pS at deep hypoxia (the plateau of the O2 response)", "populations"),
    _p("hypoxia_half_pct_air", 20.0, "% air", 5.0, 60.0, EST,
       f"{_DANET} (1.5 % vs 20 % O2); Eur J Haematol 2012 88:396 (5 % O2 better than 21 %)",
       "DO at which the hypoxic response h = 1/(1+(DO/K)^n) is half", "populations"),
    _p("hypoxia_hill", 2.0, "-", 1.0, 4.0, EST, "shape of the O2 response",
       "Hill exponent n of the hypoxic response", "populations"),
    _p("hypoxia_division_slowdown", 0.2, "-", 0.0, 0.6, EST,
       f"{_QUALITY}: low O2 slows division x0.6-0.8; BBRC 2009 378",
       "primitive division rate times (1 - this x h)", "populations"),
    _p("self_renewal_progenitor", 0.8, "-", 0.4, 0.85, EST,
       f"calibrated: CD34+ fold >= 5x in 14 d ({_QUALITY}: 10-50x; Liu et al. 2006: 33x); "
       "the sheet's pP 0.45-0.55 gives no CD34+ expansion",
       "probability pP that a progenitor division stays CD34+ (cytokine saturating, no "
       "inhibitor)", "populations"),
    _p("monocytic_fraction", 0.25, "-", 0.05, 0.6, EST,
       f"{_QUALITY}: m 0.1-0.4; Kirouac et al. 2010",
       "share m of the differentiated cells that are monocytic (secrete the inhibitor)",
       "populations"),
    _p("k_cytokine_ng_per_ml", 5.0, "ng/mL", 0.5, 20.0, EST, f"{_QUALITY}: KC 1-10 ng/mL",
       "cytokine at which f_C = C/(K_C + C) is half (self-renewal and CD34+ division)",
       "populations", 0.20),
    _p("seeding_cd34_fraction", 0.9, "-", 0.5, 1.0, EST, "CD34+-selected cells: ~90 % pure",
       "CD34+ (primitive + progenitor) share of the viable cells seeded", "populations"),
    _p("seeding_primitive_fraction", 0.1, "-", 0.01, 0.3, EST,
       "CD34+-selected cord blood: ~5-15 % CD34+CD90+",
       "CD34+CD90+ (primitive) share of the viable cells seeded (its range stays below "
       "seeding_cd34_fraction's: primitive cells are CD34+)", "populations"),
    # --- metabolism ---------------------------------------------------------------------------
    _p("q_o2_pmol_per_cell_h", 0.05, "pmol/cell/h", 0.02, 0.1, EST,
       "science sheet; generic mammalian 0.05-1.5 (BioProcess Intl)",
       "specific O2 uptake rate", "metabolism", 0.20),
    _p("q_glc_pmol_per_cell_h", 0.2, "pmol/cell/h", 0.1, 0.3, EST, _SHEET,
       "specific glucose uptake rate", "metabolism", 0.20),
    _p("q_gln_pmol_per_cell_h", 0.03, "pmol/cell/h", 0.02, 0.05, EST, _SHEET,
       "specific glutamine uptake rate", "metabolism", 0.20),
    _p("y_lac_per_glc", 1.8, "mol/mol", 1.6, 2.0, EST, _SHEET,
       "lactate produced per glucose consumed", "metabolism", 0.05),
    _p("y_amm_per_gln", 0.8, "mol/mol", 0.7, 0.9, EST, _SHEET,
       "ammonia produced per glutamine consumed by cells", "metabolism", 0.05),
    _p("q_inh_fg_per_cell_d", 1.0, "fg/cell/d", 0.0, 5.0, EST,
       f"{_QUALITY}: qI 0.1-3 fg/cell/d; Kirouac et al. 2010, Mol Syst Biol 6:417 (monocytes "
       "secrete the inhibitors)",
       "secretion rate of the lumped inhibitor per monocytic differentiated cell", "metabolism",
       0.30),
    _p("q_cytokine_fg_per_cell_d", 25.0, "fg/cell/d", 0.0, 200.0, EST,
       f"{_QUALITY}: uptake-driven loss, half-life 1-2 d at 1e6 cells/mL (TPO: Br J Haematol "
       "1999)", "maximum cytokine uptake per viable cell: q_C X C/(K_C + C)", "metabolism",
       0.30),
    _p("respiratory_quotient", 1.0, "mol/mol", 0.7, 1.2, EST, _SHEET,
       "CO2 produced per O2 consumed", "metabolism", 0.05),
    _p("gln_decay_per_h", 0.004, "1/h", 0.0, 0.01, EST, _SHEET,
       "spontaneous glutamine decay (to pyroglutamate + ammonia, 1:1)", "chemistry"),
    # --- microgravity -------------------------------------------------------------------------
    _p("microgravity_growth_factor", 0.65, "-", 0.3, 0.8, EST,
       f"{_QUALITY}: net growth x0.55; calibrated (0.65) with the early factor to 16-43 % "
       f"of the 1 g fold ({_DAVIS}: flight 10.1-17.6x vs ground 41-65.5x)",
       "multiplies every division rate in microgravity mode", "microgravity"),
    _p("microgravity_early_factor", 0.1, "-", 0.0, 1.0, EST,
       "Plett et al. 2001: no expansion in the first 4-6 d of simulated microgravity",
       "further multiplies division for the first microgravity_early_days, then ramps "
       "(smoothstep) to 1 over a day", "microgravity"),
    _p("microgravity_early_days", 4.0, "d", 0.0, 10.0, EST, "Plett et al. 2001: 4-6 d",
       "how long the early suppression in microgravity lasts", "microgravity"),
    _p("microgravity_monocytic_factor", 1.5, "-", 1.0, 3.0, EST,
       f"{_DAVIS}: macrophage maturation faster in flight",
       "multiplies the monocytic fraction m in microgravity mode (capped at 1)", "microgravity"),
    _p("microgravity_kla_factor", 0.5, "-", 0.1, 1.0, EST,
       "Klaus et al. 2004: no buoyant convection, transport by diffusion",
       "multiplies kLa (O2 and CO2) in microgravity mode", "microgravity"),
    # --- medium, feed and base ----------------------------------------------------------------
    _p("feed_glucose_mm", 25.0, "mM", 0.0, 60.0, LIT, "IMDM formulation", "glucose in the feed",
       "medium"),
    _p("feed_glutamine_mm", 4.0, "mM", 0.0, 10.0, LIT, "IMDM formulation",
       "glutamine in the feed", "medium"),
    _p("feed_bicarbonate_mm", 36.0, "mM", 0.0, 60.0, LIT, "IMDM formulation",
       "bicarbonate in the feed (and the initial medium)", "medium"),
    _p("feed_cytokine_ng_per_ml", 100.0, "ng/mL", 0.0, 500.0, EST,
       "SCF + TPO + FLT3L at ~100 ng/mL each in serum-free HSPC media; lumped",
       "cytokine in the feed (and the initial medium); the base carries none", "medium"),
    _p("feed_temperature_c", 25.0, "degC", 4.0, 40.0, EST, "medium bag at cabin temperature",
       "temperature of feed and base entering the chamber", "medium"),
    _p("feed_do_mm", 0.2, "mM", 0.0, 0.3, EST, "roughly air saturated at 25 C",
       "dissolved O2 in feed and base", "medium"),
    _p("feed_dco2_mm", 1.07, "mM", 0.0, 3.0, EST, "equilibrated with 5 % CO2",
       "dissolved CO2 in feed and base", "medium"),
    _p("base_bicarbonate_mm", 500.0, "mM", 0.0, 1100.0, EST, "0.5 M NaHCO3 (solubility ~1.1 M)",
       "bicarbonate in the base solution", "medium"),
    # --- gas transfer and acid-base chemistry -------------------------------------------------
    _p("kla_o2_per_h", 4.0, "1/h", 0.5, 20.0, EST,
       "science sheet: static bag 0.5-3, rocking bag 2-10 /h",
       "volumetric O2 transfer coefficient at 1 g", "transfer"),
    _p("kla_co2_ratio", 0.9, "-", 0.5, 1.0, EST, _SHEET, "kLa(CO2) / kLa(O2)", "transfer"),
    _p("do_air_sat_mm", 0.19, "mM", 0.15, 0.22, LIT, "Oroboros MiPNet (medium 0.89x water)",
       "dissolved O2 of medium at 37 C in equilibrium with air (20.95 % O2)", "transfer"),
    _p("co2_solubility_mm_per_mmhg", 0.0301, "mM/mmHg", 0.025, 0.035, LIT,
       "Henderson-Hasselbalch constant", "CO2 solubility in medium at 37 C", "transfer"),
    _p("dry_gas_pressure_mmhg", 713.0, "mmHg", 500.0, 800.0, LIT,
       "760 mmHg minus 47 mmHg water vapour at 37 C", "partial pressure of the dry gas mix",
       "transfer"),
    _p("carbonic_pka", 6.1, "-", 6.0, 6.2, LIT, "Henderson-Hasselbalch",
       "apparent pKa of CO2/bicarbonate at 37 C", "transfer"),
    # --- heat ---------------------------------------------------------------------------------
    _p("heater_max_w", 10.0, "W", 1.0, 100.0, EST, "sized for ~55 % duty at 37 C in 25 C air",
       "heater power at 100 %", "heat"),
    _p("ua_w_per_k", 0.45, "W/K", 0.05, 5.0, EST, "small insulated chamber",
       "heat loss coefficient to ambient", "heat"),
    _p("thermal_mass_j_per_k", 324.0, "J/K", 50.0, 5000.0, EST,
       "50 mL medium (209 J/K) + vessel and heater block",
       "heat capacity of chamber and contents; time constant = C/UA = 12 min", "heat"),
    _p("ambient_temperature_c", 25.0, "degC", 10.0, 35.0, EST, "ISS cabin 18-27 C",
       "air around the chamber", "heat"),
    _p("medium_heat_capacity_j_per_ml_k", 4.18, "J/(mL K)", 3.5, 4.3, LIT, "water",
       "volumetric heat capacity of feed and base", "heat"),
    # --- actuators ----------------------------------------------------------------------------
    _p("feed_pump_max_ml_per_h", 60.0, "mL/h", 0.0, 60.0, EST, "datasheet range",
       "feed pump maximum rate", "actuator"),
    _p("harvest_pump_max_ml_per_h", 60.0, "mL/h", 0.0, 60.0, EST, "datasheet range",
       "harvest pump maximum rate", "actuator"),
    _p("base_pump_max_ml_per_h", 10.0, "mL/h", 0.0, 10.0, EST, "datasheet range",
       "base pump maximum rate", "actuator"),
    _p("min_volume_ml", 5.0, "mL", 0.0, 50.0, EST, "harvest dip-tube level",
       "below this the harvest pump draws gas, not broth", "actuator"),
    _p("harvest_cell_retention", 0.9, "-", 0.0, 1.0, EST, "settling zone / filter on the harvest",
       "fraction of cells held back: harvested broth carries (1-R) of the cell density",
       "actuator"),
    # --- the device's own protection and supplies ----------------------------------------
    _p("cutout_c", 40.0, "degC", 37.5, 45.0, EST,
       "IEC 61010-2-010: an independent over-temperature cut-out on laboratory heaters; above "
       "the controller's top trip (39.5 C), below heat damage (~41.5 C)",
       "device-local cut-out: at this true chamber temperature it opens the heater relay and "
       "latches", "device"),
    _p("cutout_reset_below_c", 38.0, "degC", 30.0, 44.0, EST, "2 C of hysteresis",
       "the cut-out can be reset only below this temperature", "device"),
    _p("o2_supply_kpa", 200.0, "kPa", 50.0, 1000.0, EST, "regulated cylinder outlet, 2 bar g",
       "O2 supply pressure at the mixer inlet while the supply is there", "device"),
    _p("co2_supply_kpa", 200.0, "kPa", 50.0, 1000.0, EST, "regulated cylinder outlet, 2 bar g",
       "CO2 supply pressure at the mixer inlet while the supply is there", "device"),
    # --- numerics -----------------------------------------------------------------------------
    _p("bio_step_s", 60.0, "s", 1.0, 600.0, EST, "slowest-rate x step << 1 (see docs/model.md)",
       "explicit Euler step of the slow biology", "numerics"),
    # --- sensors ------------------------------------------------------------------------------
    _p("temp_bias_max_c", 0.22, "degC", 0.0, 2.0, LIT, "IEC 60751 class A at 37 C",
       "temperature bias drawn per run, uniform within +-", "sensor"),
    _p("temp_noise_sd_c", 0.015, "degC", 0.0, 0.5, EST, "Pt100 transmitter",
       "temperature white noise per read", "sensor"),
    _p("temp_lag_s", 10.0, "s", 0.0, 600.0, EST, "Pt100 in a thermowell",
       "temperature first-order lag", "sensor"),
    _p("do_bias_max_pct_air", 1.5, "% air", 0.0, 10.0, EST,
       "Hamilton: calibration error up to 3 %", "DO bias drawn per run, uniform within +-",
       "sensor"),
    _p("do_noise_sd_pct_air", 0.25, "% air", 0.0, 5.0, EST, "optical DO spot",
       "DO white noise per read", "sensor"),
    _p("do_lag_s", 30.0, "s", 0.0, 600.0, EST, "optical DO spot response",
       "DO first-order lag", "sensor"),
    _p("ph_bias_max", 0.03, "pH", 0.0, 0.3, EST, "Jeevarajan 2002: +-0.06 vs blood gas",
       "pH bias drawn per run, uniform within +-", "sensor"),
    _p("ph_noise_sd", 0.004, "pH", 0.0, 0.1, EST, "optical pH", "pH white noise per read",
       "sensor"),
    _p("ph_drift_min_per_week", 0.01, "pH/week", 0.0, 0.2, EST, _SHEET,
       "smallest pH drift rate (magnitude drawn per run, random sign)", "sensor"),
    _p("ph_drift_max_per_week", 0.05, "pH/week", 0.0, 0.2, EST, _SHEET,
       "largest pH drift rate", "sensor"),
    _p("ph_lag_s", 20.0, "s", 0.0, 600.0, EST, "optical pH spot response", "pH first-order lag",
       "sensor"),
    _p("total_cells_cv", 0.03, "-", 0.0, 0.5, EST, "optical density probe",
       "relative noise of the total (live + dead) cell density", "sensor"),
    _p("total_cells_lag_s", 60.0, "s", 0.0, 3600.0, EST, "optical density averaging",
       "total cell density first-order lag", "sensor"),
    _p("volume_bias_max_ml", 0.5, "mL", 0.0, 10.0, EST, "load cell tare error",
       "volume bias drawn per run, uniform within +-", "sensor"),
    _p("volume_noise_sd_ml", 0.05, "mL", 0.0, 5.0, EST, "load cell",
       "volume white noise per read", "sensor"),
    _p("volume_lag_s", 5.0, "s", 0.0, 600.0, EST, "load cell filter", "volume first-order lag",
       "sensor"),
    _p("atline_interval_h", 6.0, "h", 0.25, 48.0, EST, "science sheet: 12-24 h for counts",
       "time between at-line samples (first sample at t = 0)", "sensor"),
    _p("atline_delay_h", 0.5, "h", 0.0, 24.0, EST, "time to run the assay",
       "delay from drawing a sample to its result", "sensor"),
    _p("atline_count_cv", 0.075, "-", 0.0, 0.5, EST, "science sheet: CV 5-10 %",
       "relative noise of the at-line viable count", "sensor"),
    _p("atline_metabolite_cv", 0.03, "-", 0.0, 0.5, EST, "enzymatic analyser",
       "relative noise of at-line glucose and lactate", "sensor"),
    _p("atline_sample_ml", 0.1, "mL", 0.0, 5.0, EST,
       "automated counter and metabolite analyser: 20-100 uL each",
       "culture drawn for each count and metabolite sample", "sensor"),
    _p("atline_viability_sd_pct", 2.0, "%", 0.0, 20.0, EST, "dye-exclusion viability, "
       "automated counter", "absolute noise of the at-line viability (percentage points)",
       "sensor"),
    _p("cytometry_interval_h", 24.0, "h", 1.0, 168.0, EST,
       "daily in-process control; first sample at seeding",
       "time between flow-cytometry samples (%CD34+, %CD34+CD90+)", "sensor"),
    _p("cytometry_delay_h", 4.0, "h", 0.0, 48.0, EST, "staining, acquisition and gating",
       "delay from drawing a cytometry sample to its result", "sensor"),
    _p("cytometry_cv", 0.10, "-", 0.0, 0.5, LIT,
       "Barnett et al. 2000 Br J Haematol: inter-laboratory CV ~10 %, within-lab <= 5 %; "
       "cultured samples 10-20 % [est]",
       "relative error of a cytometry fraction (staining and gating), before counting",
       "sensor"),
    _p("cytometry_events", 10000.0, "events", 100.0, 1.0e6, EST,
       "ISHAGE protocol: >= 75,000 CD45+ events for blood, fewer for a culture sample",
       "viable events acquired per sample: positives follow Poisson counting", "sensor"),
    _p("cytometry_sample_ml", 0.3, "mL", 0.0, 5.0, EST, "1e4-1e5 cells for one stained tube",
       "culture drawn for each cytometry sample", "sensor"),
    _p("bga_interval_h", 24.0, "h", 1.0, 168.0, EST,
       "science sheet: plants re-standardise daily; first sample at seeding",
       "time between blood-gas analyser samples (pH, pO2, pCO2)", "sensor"),
    _p("bga_delay_h", 0.1, "h", 0.0, 4.0, EST, "analyser run ~1-2 min plus carrying the sample",
       "delay from drawing a blood-gas sample to its result", "sensor"),
    _p("bga_ph_bias_max", 0.01, "pH", 0.0, 0.1, EST,
       "NASA flight pH sensors vs blood-gas analyser: bias 0.005",
       "blood-gas pH bias drawn per run, uniform within +-", "sensor"),
    _p("bga_ph_sd", 0.02, "pH", 0.0, 0.1, EST,
       "J Biotechnol 2017 251:160: two offline pH methods within +-0.02 in only ~41 % of "
       "samples", "blood-gas pH repeatability (SD per sample)", "sensor"),
    _p("bga_po2_cv", 0.038, "-", 0.0, 0.3, LIT, "ABL800 manual: pO2 95 % within +-7.5 % "
       "(7.5 % / 1.96)", "relative noise of the blood-gas pO2", "sensor"),
    _p("bga_pco2_bias_max_mmhg", 0.4, "mmHg", 0.0, 5.0, LIT, "ABL800 manual: bias <= 0.4 mmHg",
       "blood-gas pCO2 bias drawn per run, uniform within +-", "sensor"),
    _p("bga_pco2_cv", 0.02, "-", 0.0, 0.3, EST, "blood-gas analyser repeatability",
       "relative noise of the blood-gas pCO2", "sensor"),
    _p("bga_sample_ml", 0.15, "mL", 0.0, 2.0, EST, "ABL800 manual: 95-195 uL per analysis",
       "culture drawn for each blood-gas sample", "sensor"),
)

SPECS: dict[str, ParameterSpec] = {s.name: s for s in PARAMETER_TABLE}


class _ParameterRelations(StrictModel):
    """Relations between parameters that single ranges cannot express."""

    @model_validator(mode="after")
    def _drift_range_is_ordered(self) -> _ParameterRelations:
        low = self.ph_drift_min_per_week  # type: ignore[attr-defined]
        high = self.ph_drift_max_per_week  # type: ignore[attr-defined]
        if low > high:
            raise ValueError(f"ph_drift_min_per_week {low!r} exceeds ph_drift_max_per_week="
                             f"{high!r}; the minimum must not exceed the maximum")
        return self


if TYPE_CHECKING:
    # mypy cannot follow `create_model` or `make_dataclass`: to it the two classes generated
    # from PARAMETER_TABLE are Any. (Written out for it, their 115 fields would be a second
    # list of the table's rows, kept in step by hand; a misspelt field is an AttributeError in
    # the tests that run the model instead.)
    ParameterOptions: TypeAlias = Any
else:
    ParameterOptions = create_model(
        "ParameterOptions",
        __base__=_ParameterRelations,
        __module__=__name__,
        **{s.name: (Number, Field(s.default, ge=s.low, le=s.high, description=f"{s.unit}: "
                                  f"{s.description}")) for s in PARAMETER_TABLE},
    )
    """The `parameters` table of `[reactor.chamber]`: every key a parameter, every value in
    range."""


class _ParameterMethods:
    """Behaviour shared by the generated `ModelParameters` dataclass."""

    __slots__ = ()

    if TYPE_CHECKING:  # what the generated dataclass adds (its fields are keyword arguments)
        __dataclass_fields__: ClassVar[dict[str, DataclassField[Any]]]

        def __init__(self, **fields: float) -> None: ...

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None) -> Self:
        """Defaults overridden by `options`; every key known and every value within its range."""
        try:
            checked = ParameterOptions.model_validate(dict(options or {}))
        except ValidationError as exc:
            message = format_validation_error(exc, "parameters", ParameterOptions)
            raise ValueError(message) from None
        return cls.from_checked(checked)

    @classmethod
    def from_checked(cls, checked: BaseModel) -> Self:
        """From an already validated `ParameterOptions` (the chamber options hold one)."""
        return cls(**checked.model_dump())

    def with_donor_variability(self, rng: np.random.Generator) -> Self:
        """A donor: each biological parameter times exp(sigma*z), sigma from its CV, clipped.

        The lognormal keeps rates positive and the median at the default; the clip keeps a draw
        inside the range the model was validated for. Physics, sensors and actuators are the
        hardware's and do not vary with the donor.
        """
        specs = [s for s in PARAMETER_TABLE if s.donor_cv > 0.0]
        z = rng.standard_normal(len(specs)).tolist()
        changes = {}
        for spec, zi in zip(specs, z, strict=True):
            sigma = math.sqrt(math.log1p(spec.donor_cv**2))
            value = getattr(self, spec.name) * math.exp(sigma * zi)
            changes[spec.name] = min(spec.high, max(spec.low, value))
        return replace(self, **changes)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


if TYPE_CHECKING:  # as ParameterOptions above
    ModelParameters: TypeAlias = Any
else:
    ModelParameters = make_dataclass(
        "ModelParameters",
        [(s.name, float, field(default=s.default)) for s in PARAMETER_TABLE],
        bases=(_ParameterMethods,),
        frozen=True,
        slots=True,
    )
    ModelParameters.__module__ = __name__
    ModelParameters.__doc__ = (
        "Every parameter of the emulated chamber (fields generated from PARAMETER_TABLE; each "
        "field is named with its unit). Build with `ModelParameters.from_options({...})`."
    )


# Options of the [reactor.chamber] table outside `parameters`: the state the run starts from.
INITIAL_CONDITION_TABLE: tuple[ParameterSpec, ...] = (
    _p("initial_volume_ml", 50.0, "mL", 1.0, 500.0, EST, "default regime",
       "medium volume at seeding", "initial"),
    _p("seeding_cells_per_ml", 1.0e5, "cells/mL", 1.0e3, 1.0e7, EST,
       f"{_SHEET}: 1e4-1e6", "viable cells per mL at seeding", "initial"),
    _p("initial_temperature_c", 37.0, "degC", 4.0, 45.0, EST, "chamber pre-warmed",
       "temperature at t = 0", "initial"),
    _p("initial_o2_pct", 5.2, "% gas", 0.0, 100.0, EST, "~25 % air saturation at kLa 4 /h",
       "O2 in the gas mix until the controller writes one (DO starts at its equilibrium)",
       "initial"),
    _p("initial_co2_pct", math.nan, "% gas", 0.0, 20.0, EST,
       "default: the CO2 giving pH 7.30 with the feed bicarbonate (~10.5 % at 36 mM)",
       "CO2 in the gas mix until the controller writes one", "initial"),
)


@dataclass(frozen=True, slots=True)
class InitialConditions:
    """Where the run starts: a pre-warmed chamber, seeded, its gases at equilibrium."""

    volume_ml: float = 50.0
    seeding_cells_per_ml: float = 1.0e5
    temperature_c: float = 37.0
    o2_pct: float = 5.2
    co2_pct: float | None = None
    """None: the CO2 that gives pH 7.30 with the feed bicarbonate at equilibrium."""
    target_ph: float = 7.30
    lactate_mm: float = 0.0
    """Conditioned medium (by-products already present): for experiments, not a driver option."""
    ammonia_mm: float = 0.0


def parameter_table_markdown() -> str:
    """The parameter table as Markdown, for docs/model.md (a test checks they agree)."""
    lines = [
        "| name | default | unit | range | tag | donor CV | source | description |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in PARAMETER_TABLE + INITIAL_CONDITION_TABLE:
        default = "computed" if math.isnan(s.default) else f"{s.default:g}"
        cv = f"{s.donor_cv:g}" if s.donor_cv else ""
        lines.append(
            f"| `{s.name}` | {default} | {s.unit} | {s.low:g} - {s.high:g} | [{s.tag}] | {cv} "
            f"| {s.source} | {s.description} |"
        )
    return "\n".join(lines) + "\n"
