"""The culture chamber's state and its integration in time.

Two time scales, two integrators. Temperature, dissolved O2 and dissolved CO2 respond in minutes;
for inputs held constant they obey linear first-order ODEs, so they advance with the exact
exponential solution over any interval (exact for every dt, no stability limit, one cached exp per
state while dt repeats). Cells, nutrients, by-products, inhibitor, bicarbonate and volume change
over hours to days; they advance by explicit Euler in fixed `bio_step_s` steps (60 s by default:
the fastest slow rate, dilution at 60 mL/h into 50 mL, is 1.2 /h, so rate x step <= 0.02 and the
Euler error is below 1 % of a step's change; growth and uptake rates are 100x slower).

Slow species are held as amounts (cells, umol, ng, mL), not concentrations, and every flux of a
step is booked in the mass-balance ledger (`sim_hardware.model.ledger`). The viable cells are
three populations (primitive, progenitor, differentiated: `sim_hardware.model.populations`); a
secreted inhibitor (from the monocytic share of the differentiated cells) and a cytokine (fed
with the medium, taken up by the cells) decide how many stay stem cells.

Pump volumes are integrated exactly between bio steps (a 2 mL bolus delivers 2 mL whatever its
timing); the bio step then applies them, using concentrations from the start of the step.
"""
from __future__ import annotations

import math
from dataclasses import replace

from sim_hardware.model.actuators import ActuatorInputs
from sim_hardware.model.growth_factors import (
    FACTOR_NAMES,
    cardinal_temperature_factor,
    lag_factor,
    ph_factor,
)
from sim_hardware.model.ledger import balance_residuals, book, ledger_report, open_ledger
from sim_hardware.model.parameters import InitialConditions, ModelParameters
from sim_hardware.model.populations import Kinetics, transitions

_LN2 = math.log(2.0)
_S_PER_H = 3600.0
_MIN_HCO3_MM = 1e-3  # pH of a fully acidified medium is not modelled; keep log10 finite
_MIN_DCO2_MM = 1e-6


class ChamberModel:
    """One culture chamber. Call `advance_to(t)` with the clock's time, then read attributes.

    Public state (attributes, updated by `advance_to`): `t_s`, `temperature_c`, `do_mm`,
    `dco2_mm`; properties for the rest. Inputs change only through `set_inputs`, which first
    integrates the old inputs up to the time of the change.
    """

    def __init__(self, params: ModelParameters, *, microgravity: bool = False,
                 initial: InitialConditions | None = None, t0_s: float = 0.0) -> None:
        p = params
        init = initial or InitialConditions()
        self.params = p
        self.microgravity = microgravity
        self.initial = init
        mg = microgravity
        self._kinetics = Kinetics(
            p.mu_primitive_per_d / 24.0, p.mu_progenitor_per_d / 24.0,
            p.mu_differentiated_per_d / 24.0, p.self_renewal_primitive_normoxia,
            p.self_renewal_primitive_hypoxia, p.self_renewal_progenitor, p.hypoxia_half_pct_air,
            p.hypoxia_hill, p.hypoxia_division_slowdown, p.k_inh_ng_per_ml, p.inhibitor_hill,
            p.k_cytokine_ng_per_ml)
        self._g_mg = p.microgravity_growth_factor if mg else 1.0
        self._monocytic = min(1.0, p.monocytic_fraction
                              * (p.microgravity_monocytic_factor if mg else 1.0))
        self._kla_o2_per_h = p.kla_o2_per_h * (p.microgravity_kla_factor if mg else 1.0)
        self._kla_co2_per_h = self._kla_o2_per_h * p.kla_co2_ratio
        self._co2_star_mm_per_pct = p.co2_solubility_mm_per_mmhg * p.dry_gas_pressure_mmhg / 100.0
        self._o2_star_mm_per_pct = p.do_air_sat_mm / 20.95
        self.do_pct_per_mm = 100.0 / p.do_air_sat_mm
        self._heater_w_per_pct = p.heater_max_w / 100.0
        self._o2_gain = self._kla_o2_per_h * self._o2_star_mm_per_pct
        self._co2_gain = self._kla_co2_per_h * self._co2_star_mm_per_pct
        self._dirty = True
        self._h_s = p.bio_step_s
        self._h_h = p.bio_step_s / _S_PER_H

        self.t0_s = t0_s
        self.t_s = t0_s
        self._n_bio = 0
        self._t_next_bio = t0_s + self._h_s

        v0 = init.volume_ml
        self.volume_ml = v0
        seeded = init.seeding_cells_per_ml * v0
        self._n_s = seeded * p.seeding_primitive_fraction
        self._n_p = seeded * (p.seeding_cd34_fraction - p.seeding_primitive_fraction)
        self._n_d = seeded - self._n_s - self._n_p
        self._n_xv = self._n_s + self._n_p + self._n_d
        self._n_cyt = p.feed_cytokine_ng_per_ml * v0
        self._n_xd = 0.0
        self._n_glc = p.feed_glucose_mm * v0
        self._n_gln = p.feed_glutamine_mm * v0
        self._n_lac = init.lactate_mm * v0
        self._n_amm = init.ammonia_mm * v0
        self._n_inh = 0.0
        self._n_hco3 = p.feed_bicarbonate_mm * v0
        # A contaminant (fault injection): none until `contaminate` inoculates one.
        self._n_xc = 0.0
        self._xc = 0.0
        self._contaminated = False
        self._mu_c_per_h = self._q_glc_c = self._q_o2_c = 0.0
        self._xc_max = 1.0
        self._ledger = open_ledger(self._amounts())
        self._harvested_viable = 0.0
        self._harvested_dead = 0.0
        # Cells carried out per population (primitive, progenitor, differentiated): by the
        # harvest pump and by at-line samples; they count in the fold expansions.
        self._removed_s = self._removed_p = self._removed_d = 0.0
        self._sampled_viable = 0.0
        self._ps = self._pp = 0.0
        self._acc_feed_ml = self._acc_base_ml = self._acc_harvest_ml = self._acc_leak_ml = 0.0
        self.mu_per_h = 0.0
        self._factors = (1.0,) * 9 + (0.0,)
        self.death_per_h = p.death_differentiated_per_d / 24.0
        self._update_concentrations()

        # Fast states start at the equilibrium of the initial inputs (pre-warmed, pre-gassed).
        self.temperature_c = init.temperature_c
        self.do_mm = 0.0
        self.dco2_mm = 0.0
        self._k_up_per_h = 0.0
        self._co2_source_mm_per_h = 0.0
        heater = (p.ua_w_per_k * (init.temperature_c - p.ambient_temperature_c)
                  / p.heater_max_w * 100.0)
        self.inputs = ActuatorInputs(heater_pct=min(100.0, max(0.0, heater)),
                                     o2_pct=init.o2_pct, co2_pct=0.0)
        self._apply_rates()
        # O2 uptake depends on DO: iterate the quasi-steady state to its fixed point.
        our_max = p.q_o2_pmol_per_cell_h * 1e-6 * self._xv
        lactic_mm_per_h = (p.y_lac_per_glc * p.q_glc_pmol_per_cell_h * 1e-6 * self._xv
                           * self._glc / (p.k_glc_mm + self._glc))
        for _ in range(30):
            self._set_uptake(our_max, self.do_mm)
            self._co2_source_mm_per_h += lactic_mm_per_h
            self._fast_coefficients()
            self.do_mm = self._o_ss
        co2_pct = init.co2_pct if init.co2_pct is not None else self._co2_for_ph(init.target_ph)
        self.inputs = replace(self.inputs, co2_pct=co2_pct)
        self._fast_coefficients()
        self.dco2_mm = self._c_ss

    # ----------------------------------------------------------------------------- inputs
    def set_inputs(self, inputs: ActuatorInputs, t_s: float | None = None) -> None:
        """Apply new physical inputs from `t_s` on (default: the model's current time). A
        controller changes heater and gas nearly every tick, so those only move the fast states'
        steady states; rate constants (and exps) are recomputed only when a flow changes."""
        if t_s is not None:
            self.advance_to(t_s)
        old = self.inputs
        self.inputs = inputs
        if (inputs.feed_ml_per_h != old.feed_ml_per_h or inputs.base_ml_per_h != old.base_ml_per_h
                or inputs.harvest_ml_per_h != old.harvest_ml_per_h
                or inputs.leak_ml_per_h != old.leak_ml_per_h):
            self._apply_rates()
            self._dirty = True
        elif not self._dirty:
            self._steady_states()

    def _apply_rates(self) -> None:
        u = self.inputs
        self._feed_ml_per_s = u.feed_ml_per_h / _S_PER_H
        self._base_ml_per_s = u.base_ml_per_h / _S_PER_H
        self._harvest_ml_per_s = u.harvest_ml_per_h / _S_PER_H
        self._leak_ml_per_s = u.leak_ml_per_h / _S_PER_H

    def _co2_for_ph(self, ph: float) -> float:
        """CO2 % whose equilibrium (with the cells' CO2 output, no flow) gives `ph`."""
        p = self.params
        target_dco2 = self._hco3_mm / 10.0 ** (ph - p.carbonic_pka)
        star = target_dco2 - self._co2_source_mm_per_h / self._kla_co2_per_h
        return min(20.0, max(0.0, star / self._co2_star_mm_per_pct))

    def contaminate(self, cells_per_ml: float, *, doubling_h: float = 1.0,
                    q_glc_pmol_per_cell_h: float = 0.005, q_o2_pmol_per_cell_h: float = 0.01,
                    max_cells_per_ml: float = 1.0e9) -> None:
        """Inoculate a fast-growing competitor (a bacterial contamination) now: it grows at
        ln2/doubling_h (Monod-limited by glucose and O2, logistic to `max_cells_per_ml`), takes
        up glucose (to lactate, at the cells' yield) and O2, is washed out with the medium, and
        counts in the optical total but not the viable HSCs; its inoculum is "fed" in the
        ledger."""
        if not (cells_per_ml >= 0.0 and doubling_h > 0.0 and max_cells_per_ml > 0.0):
            raise ValueError("contaminate: cells_per_ml >= 0, doubling_h > 0 and "
                             "max_cells_per_ml > 0 required")
        n = cells_per_ml * self.volume_ml
        self._n_xc += n
        self._ledger["contaminant_cells"][1] += n
        self._contaminated = True
        self._mu_c_per_h = _LN2 / doubling_h
        self._q_glc_c = q_glc_pmol_per_cell_h
        self._q_o2_c = q_o2_pmol_per_cell_h
        self._xc_max = max_cells_per_ml
        self._update_concentrations()

    def take_sample(self, volume_ml: float) -> None:
        """Draw `volume_ml` of culture now (an at-line sample): cells of every population, dead
        cells, a contaminant and every dissolved species leave in proportion, booked in the
        ledger as outflow so the balances still close. The sampled viable cells count in the
        fold expansions (they were produced). At most all but 0.1 mL can be drawn."""
        if not volume_ml >= 0.0:
            raise ValueError(f"take_sample: volume_ml must be >= 0, got {volume_ml!r}")
        v = self.volume_ml
        drawn = min(volume_ml, max(0.0, v - 0.1))
        if drawn <= 0.0:
            return
        frac = drawn / v
        led = self._ledger
        o_s, o_p, o_d = frac * self._n_s, frac * self._n_p, frac * self._n_d
        self._n_s -= o_s
        self._n_p -= o_p
        self._n_d -= o_d
        self._removed_s += o_s
        self._removed_p += o_p
        self._removed_d += o_d
        self._sampled_viable += o_s + o_p + o_d
        self._n_xv = self._n_s + self._n_p + self._n_d
        book(led["primitive_cells"], 0.0, o_s, 0.0, 0.0)
        book(led["progenitor_cells"], 0.0, o_p, 0.0, 0.0)
        book(led["differentiated_cells"], 0.0, o_d, 0.0, 0.0)
        book(led["viable_cells"], 0.0, o_s + o_p + o_d, 0.0, 0.0)
        for name, attr in (("dead_cells", "_n_xd"), ("glucose", "_n_glc"),
                           ("glutamine", "_n_gln"), ("lactate", "_n_lac"),
                           ("ammonia", "_n_amm"), ("inhibitor", "_n_inh"),
                           ("bicarbonate", "_n_hco3"), ("contaminant_cells", "_n_xc"),
                           ("cytokine", "_n_cyt")):
            amount = getattr(self, attr)
            out = frac * amount
            setattr(self, attr, amount - out)
            book(led[name], 0.0, out, 0.0, 0.0)
        self.volume_ml = v - drawn
        book(led["volume"], 0.0, drawn, 0.0, 0.0)
        self._update_concentrations()
        self._dirty = True  # the dilution rate of the fast states depends on the volume

    def _early_microgravity_factor(self) -> float:
        """Plett 2001: hardly any expansion in the first 4-6 days of microgravity: division
        times `microgravity_early_factor` for `microgravity_early_days`, then a one-day
        smoothstep to 1."""
        p = self.params
        t_h = (self.t_s - self._h_s - self.t0_s) / _S_PER_H
        ramp = lag_factor(t_h - p.microgravity_early_days * 24.0, 24.0)
        return p.microgravity_early_factor + (1.0 - p.microgravity_early_factor) * ramp

    # ------------------------------------------------------------------------ integration
    def advance_to(self, t_s: float) -> None:
        """Integrate from the model's time to `t_s` (the clock's now) with the held inputs."""
        if t_s <= self.t_s:
            if t_s < self.t_s - 1e-6:
                raise ValueError(f"time went backwards: {t_s} s < model time {self.t_s} s")
            return
        while t_s >= self._t_next_bio:
            self._fast(self._t_next_bio - self.t_s)
            self.t_s = self._t_next_bio
            self._bio_step()
            self._n_bio += 1
            self._t_next_bio = self.t0_s + (self._n_bio + 1) * self._h_s
        dt = t_s - self.t_s
        if dt > 0.0:
            self._fast(dt)
            self.t_s = t_s

    def _fast(self, dt: float) -> None:
        """Exact solution of the linear fast states over dt; exact pump volumes."""
        if self._dirty:
            self._fast_coefficients()
        if dt != self._fast_dt:
            self._fast_dt: float = dt
            self._e_t = math.exp(-self._k_t * dt)
            self._e_o = math.exp(-self._k_o * dt)
            self._e_c = math.exp(-self._k_c * dt)
        t_ss = self._t_ss
        self.temperature_c = t_ss + (self.temperature_c - t_ss) * self._e_t
        o_ss = self._o_ss
        self.do_mm = o_ss + (self.do_mm - o_ss) * self._e_o
        c_ss = self._c_ss
        self.dco2_mm = c_ss + (self.dco2_mm - c_ss) * self._e_c
        self._acc_feed_ml += self._feed_ml_per_s * dt
        self._acc_base_ml += self._base_ml_per_s * dt
        self._acc_harvest_ml += self._harvest_ml_per_s * dt
        self._acc_leak_ml += self._leak_ml_per_s * dt

    def _fast_coefficients(self) -> None:
        """Rate constants (1/s) of the fast states for the held flows, then steady states."""
        p = self.params
        u = self.inputs
        f_in_ml_per_h = u.feed_ml_per_h + u.base_ml_per_h
        g_w_per_k = p.medium_heat_capacity_j_per_ml_k * f_in_ml_per_h / _S_PER_H
        ua = p.ua_w_per_k
        self._t_den = ua + g_w_per_k
        self._t_rest = ua * p.ambient_temperature_c + g_w_per_k * p.feed_temperature_c
        self._k_t = self._t_den / p.thermal_mass_j_per_k
        d_per_h = f_in_ml_per_h / self.volume_ml
        self._o_den = self._kla_o2_per_h + d_per_h + self._k_up_per_h
        self._o_rest = d_per_h * p.feed_do_mm
        self._k_o = self._o_den / _S_PER_H
        self._c_den = self._kla_co2_per_h + d_per_h
        self._c_rest = d_per_h * p.feed_dco2_mm + self._co2_source_mm_per_h
        self._k_c = self._c_den / _S_PER_H
        self._steady_states()
        self._dirty = False
        self._fast_dt = -1.0

    def _steady_states(self) -> None:
        """Where temperature, DO and dCO2 would settle under the held inputs."""
        u = self.inputs
        self._t_ss = (self._heater_w_per_pct * u.heater_pct + self._t_rest) / self._t_den
        self._o_ss = (self._o2_gain * u.o2_pct + self._o_rest) / self._o_den
        self._c_ss = (self._co2_gain * u.co2_pct + self._c_rest) / self._c_den

    def _set_uptake(self, our_max_mm_per_h: float, do_mm: float) -> None:
        """Linearise Monod O2 uptake around the present DO: uptake = k_up * DO (never < 0)."""
        p = self.params
        self._k_up_per_h = our_max_mm_per_h / (p.k_do_mm + do_mm)
        self._co2_source_mm_per_h = (p.respiratory_quotient * our_max_mm_per_h * do_mm
                                     / (p.k_do_mm + do_mm))
        self._dirty = True

    def _bio_step(self) -> None:
        """One explicit Euler step of the slow biology, booking every flux in the ledger."""
        p = self.params
        h_h = self._h_h
        v = self.volume_ml
        vf, vb, vh = self._acc_feed_ml, self._acc_base_ml, self._acc_harvest_ml
        vl = self._acc_leak_ml  # a leak (fault): the whole culture, past no cell retention
        self._acc_feed_ml = self._acc_base_ml = self._acc_harvest_ml = self._acc_leak_ml = 0.0
        # The harvest pump draws gas once the level reaches the dip tube (and explicit Euler
        # cannot take more than the step started with); a leak drains below it, not to empty.
        vl = min(vl, max(0.0, v + vf + vb - 0.1))
        vh_max = min(v - vl, v + vf + vb - vl - max(p.min_volume_ml, 0.1))
        if vh > vh_max:
            vh = max(0.0, vh_max)
        frac_out = (vh + vl) / v  # of each dissolved amount
        frac_harvested = vh * (1.0 - p.harvest_cell_retention) / v
        cell_out = frac_harvested + vl / v

        xv, glc, gln, lac, amm, inh = (self._xv, self._glc, self._gln, self._lac, self._amm,
                                       self._inh)
        t_c, do = self.temperature_c, self.do_mm
        ph = self.ph
        f_t = cardinal_temperature_factor(t_c, p.t_min_c, p.t_opt_c, p.t_max_c)
        f_ph = ph_factor(ph, p.ph_opt_low, p.ph_opt_high, p.ph_half_low, p.ph_half_high)
        f_do = do / (p.k_do_mm + do) if do > 0.0 else 0.0
        f_glc = glc / (p.k_glc_mm + glc)
        f_gln = gln / (p.k_gln_mm + gln)
        density = 1.0 - xv / p.x_max_cells_per_ml
        lag = lag_factor((self.t_s - self._h_s - self.t0_s) / _S_PER_H, p.lag_h)
        density = max(density, 0.0)
        f_lac = p.k_lac_mm / (p.k_lac_mm + lac)
        f_amm = p.k_amm_mm / (p.k_amm_mm + amm)
        g = (self._g_mg * f_t * f_ph * f_do * f_glc * f_gln * f_lac * f_amm * density * lag)
        if self.microgravity:
            g *= self._early_microgravity_factor()
        n_s, n_p, n_d, n_xd = self._n_s, self._n_p, self._n_d, self._n_xd
        tr = transitions(self._kinetics, g, do * self.do_pct_per_mm, inh, self._cyt, n_s, n_p,
                         n_d, h_h)
        self._ps, self._pp = tr.ps, tr.pp
        self._factors = (f_t, f_ph, f_do, f_glc, f_gln, f_lac, f_amm, tr.f_inh, density, lag)
        f_heat = f_t if t_c > p.t_opt_c else 1.0
        stress = 1.0 - f_ph * f_heat
        starve = max(0.0, 1.0 - glc / p.glc_starvation_mm, 1.0 - gln / p.gln_starvation_mm)
        extra_kd = p.death_stress_per_d * stress * stress + p.death_starvation_per_d * starve
        k_s = (p.death_primitive_per_d + extra_kd) / 24.0 * h_h
        k_p = (p.death_progenitor_per_d + extra_kd) / 24.0 * h_h
        k_d = (p.death_differentiated_per_d + extra_kd) / 24.0 * h_h

        led = self._ledger
        # Cells: divisions, daughters changing population, deaths, lysis, harvest (retention).
        d_s = min(k_s, 1.0) * n_s
        d_p = min(k_p, 1.0) * n_p
        d_d = min(k_d, 1.0) * n_d
        o_s, o_p, o_d = cell_out * n_s, cell_out * n_p, cell_out * n_d
        self._n_s = n_s + tr.s_made - tr.div_s - d_s - o_s
        self._n_p = n_p + tr.p_from_s + tr.p_made - tr.div_p - d_p - o_p
        self._n_d = n_d + tr.d_from_p + tr.div_d - d_d - o_d
        book(led["primitive_cells"], 0.0, o_s, tr.div_s + d_s, tr.s_made)
        book(led["progenitor_cells"], 0.0, o_p, tr.div_p + d_p, tr.p_from_s + tr.p_made)
        book(led["differentiated_cells"], 0.0, o_d, d_d, tr.d_from_p + tr.div_d)
        births = tr.div_s + tr.div_p + tr.div_d
        deaths = d_s + d_p + d_d
        out_xv = o_s + o_p + o_d
        self._n_xv = self._n_s + self._n_p + self._n_d
        n_xv = n_s + n_p + n_d
        lysis = min(p.lysis_per_d / 24.0 * h_h, 1.0) * n_xd
        out_xd = cell_out * n_xd
        self._n_xd = n_xd + deaths - lysis - out_xd
        if n_xv > 0.0:
            self.mu_per_h = births / (n_xv * h_h)
            self.death_per_h = deaths / (n_xv * h_h)
        kept = frac_harvested / cell_out if cell_out > 0.0 else 0.0
        self._removed_s += kept * o_s
        self._removed_p += kept * o_p
        self._removed_d += kept * o_d
        self._harvested_viable += kept * out_xv
        self._harvested_dead += frac_harvested * n_xd
        book(led["viable_cells"], 0.0, out_xv, deaths, births)
        book(led["dead_cells"], 0.0, out_xd, lysis, deaths)
        n_xc = self._n_xc
        if self._contaminated:
            # The competitor: no harvest retention (it passes the cell-retention device).
            room = 1.0 - self._xc / self._xc_max
            mu_c = self._mu_c_per_h * f_glc * f_do * (room if room > 0.0 else 0.0)
            births_c = mu_c * n_xc * h_h
            out_xc = frac_out * n_xc
            self._n_xc = n_xc + births_c - out_xc
            book(led["contaminant_cells"], 0.0, out_xc, 0.0, births_c)

        # Glucose -> lactate.
        fed = vf * p.feed_glucose_mm
        out = frac_out * self._n_glc
        uptake = p.q_glc_pmol_per_cell_h * 1e-6 * n_xv * f_glc * h_h
        if n_xc > 0.0:
            uptake += self._q_glc_c * 1e-6 * n_xc * f_glc * h_h
        avail = self._n_glc + fed - out
        if uptake > avail:
            uptake = max(0.0, avail)
        self._n_glc = self._n_glc + fed - out - uptake
        book(led["glucose"], fed, out, uptake, 0.0)
        lac_made = p.y_lac_per_glc * uptake
        out = frac_out * self._n_lac
        self._n_lac = self._n_lac - out + lac_made
        book(led["lactate"], 0.0, out, 0.0, lac_made)

        # Glutamine -> ammonia (cells, and spontaneous decay 1:1).
        fed = vf * p.feed_glutamine_mm
        out = frac_out * self._n_gln
        cell_gln = p.q_gln_pmol_per_cell_h * 1e-6 * n_xv * f_gln * h_h
        decay = p.gln_decay_per_h * h_h * self._n_gln
        avail = self._n_gln + fed - out
        if cell_gln + decay > avail:
            scale = max(0.0, avail) / (cell_gln + decay)
            cell_gln *= scale
            decay *= scale
        gln_used = cell_gln + decay
        self._n_gln = self._n_gln + fed - out - gln_used
        book(led["glutamine"], fed, out, gln_used, 0.0)
        amm_made = p.y_amm_per_gln * cell_gln + decay
        out = frac_out * self._n_amm
        self._n_amm = self._n_amm - out + amm_made
        book(led["ammonia"], 0.0, out, 0.0, amm_made)

        # Inhibitor: secreted by the monocytic differentiated cells, removed only by the
        # harvest (diluted by the feed).
        made = p.q_inh_fg_per_cell_d * 1e-6 / 24.0 * self._monocytic * n_d * h_h  # fg -> ng
        out = frac_out * self._n_inh
        self._n_inh = self._n_inh - out + made
        book(led["inhibitor"], 0.0, out, 0.0, made)

        # Cytokine: fed with the medium, lost by uptake (bound and internalised), not decay.
        fed = vf * p.feed_cytokine_ng_per_ml
        out = frac_out * self._n_cyt
        cyt = self._cyt
        uptake = (p.q_cytokine_fg_per_cell_d * 1e-6 / 24.0 * n_xv * cyt / (p.k_cytokine_ng_per_ml
                                                                           + cyt) * h_h)
        avail = self._n_cyt + fed - out
        if uptake > avail:
            uptake = max(0.0, avail)
        self._n_cyt = self._n_cyt + fed - out - uptake
        book(led["cytokine"], fed, out, uptake, 0.0)

        # Bicarbonate: from feed and base; lactic acid turns it 1:1 into dissolved CO2.
        fed = vf * p.feed_bicarbonate_mm + vb * p.base_bicarbonate_mm
        out = frac_out * self._n_hco3
        avail = self._n_hco3 + fed - out
        neutralised = lac_made if lac_made <= avail else max(0.0, avail)
        self._n_hco3 = self._n_hco3 + fed - out - neutralised
        book(led["bicarbonate"], fed, out, neutralised, 0.0)

        self.volume_ml = v + vf + vb - vh - vl
        book(led["volume"], vf + vb, vh + vl, 0.0, 0.0)
        self._update_concentrations()

        our_max = p.q_o2_pmol_per_cell_h * 1e-6 * self._xv
        if self._contaminated:
            our_max += self._q_o2_c * 1e-6 * self._xc
        self._set_uptake(our_max, do)
        self._co2_source_mm_per_h += neutralised / (self.volume_ml * h_h)

    def _update_concentrations(self) -> None:
        v = self.volume_ml
        self._xv = self._n_xv / v
        self._xd = self._n_xd / v
        self._glc = self._n_glc / v
        self._gln = self._n_gln / v
        self._lac = self._n_lac / v
        self._amm = self._n_amm / v
        self._inh = self._n_inh / v
        self._cyt = self._n_cyt / v
        self._hco3_mm = self._n_hco3 / v
        self._xc = self._n_xc / v
        self.total_cells_per_ml = self._xv + self._xd + self._xc

    def _amounts(self) -> tuple[float, ...]:
        return (self._n_xv, self._n_xd, self._n_glc, self._n_gln, self._n_lac, self._n_amm,
                self._n_inh, self._n_hco3, self.volume_ml, self._n_xc, self._n_s, self._n_p,
                self._n_d, self._n_cyt)

    # ----------------------------------------------------------------------- observations
    @property
    def ph(self) -> float:
        """Henderson-Hasselbalch: pH = pKa + log10([HCO3-] / [CO2(aq)]).

        The floors are `max(x, floor)` written out (read on every tick; the same result, NaN
        included: `max` keeps its first argument unless the second is greater)."""
        hco3_mm = self._hco3_mm
        dco2_mm = self.dco2_mm
        return self.params.carbonic_pka + math.log10(
            (_MIN_HCO3_MM if hco3_mm < _MIN_HCO3_MM else hco3_mm)
            / (_MIN_DCO2_MM if dco2_mm < _MIN_DCO2_MM else dco2_mm))

    @property
    def do_pct_air(self) -> float:
        return self.do_mm * self.do_pct_per_mm

    @property
    def viable_cells_per_ml(self) -> float:
        return self._xv

    @property
    def dead_cells_per_ml(self) -> float:
        return self._xd

    @property
    def contaminant_cells_per_ml(self) -> float:
        """The competitor's density (0 unless `contaminate` was called)."""
        return self._xc

    @property
    def glucose_mm(self) -> float:
        return self._glc

    @property
    def glutamine_mm(self) -> float:
        return self._gln

    @property
    def lactate_mm(self) -> float:
        return self._lac

    @property
    def ammonia_mm(self) -> float:
        return self._amm

    @property
    def inhibitor_ng_per_ml(self) -> float:
        return self._inh

    @property
    def bicarbonate_mm(self) -> float:
        return self._hco3_mm

    @property
    def cells_harvested(self) -> float:
        """Viable cells carried out by the harvest pump since seeding."""
        return self._harvested_viable

    @property
    def fold_expansion(self) -> float:
        """Viable cells produced (in the chamber + harvested + sampled) over viable cells
        seeded."""
        return ((self._n_xv + self._harvested_viable + self._sampled_viable)
                / self._ledger["viable_cells"][0])

    @property
    def cd34_fold_expansion(self) -> float:
        """CD34+ (primitive + progenitor) cells produced (chamber + harvested + sampled) over
        CD34+ cells seeded."""
        led = self._ledger
        seeded = led["primitive_cells"][0] + led["progenitor_cells"][0]
        made = self._n_s + self._n_p + self._removed_s + self._removed_p
        return made / seeded if seeded > 0.0 else 0.0

    @property
    def primitive_fold_expansion(self) -> float:
        """Primitive cells produced (chamber + harvested + sampled) over primitive seeded."""
        seeded = self._ledger["primitive_cells"][0]
        return (self._n_s + self._removed_s) / seeded if seeded > 0.0 else 0.0

    @property
    def primitive_cells_per_ml(self) -> float:
        return self._n_s / self.volume_ml

    @property
    def progenitor_cells_per_ml(self) -> float:
        return self._n_p / self.volume_ml

    @property
    def differentiated_cells_per_ml(self) -> float:
        return self._n_d / self.volume_ml

    @property
    def cd34_fraction(self) -> float:
        """CD34+ (primitive + progenitor) share of the viable cells, 0..1."""
        return (self._n_s + self._n_p) / self._n_xv if self._n_xv > 0.0 else 0.0

    @property
    def primitive_fraction(self) -> float:
        """CD34+CD90+ (primitive) share of the viable cells, 0..1."""
        return self._n_s / self._n_xv if self._n_xv > 0.0 else 0.0

    @property
    def viability(self) -> float:
        """Viable share of all (viable + dead) culture cells, 0..1."""
        total = self._xv + self._xd
        return self._xv / total if total > 0.0 else 0.0

    @property
    def cytokine_ng_per_ml(self) -> float:
        return self._cyt

    @property
    def growth_rate_per_d(self) -> float:
        """Net specific growth rate (mu - death) of the last bio step."""
        return (self.mu_per_h - self.death_per_h) * 24.0

    def growth_factors(self) -> dict[str, float]:
        """Each factor of mu at the last bio step (1 = not limiting): why growth is slow."""
        return dict(zip(FACTOR_NAMES, self._factors, strict=True))

    def ledger(self) -> dict[str, dict[str, float | str]]:
        """Cumulative amounts per species (`sim_hardware.model.ledger.ledger_report`)."""
        return ledger_report(self._ledger, self._amounts())

    def balance_residuals(self) -> dict[str, float]:
        """Relative residual of initial + fed - harvested - consumed + produced - current."""
        return balance_residuals(self._ledger, self._amounts())

    def snapshot(self) -> dict[str, float]:
        """Ground truth, for diagnostics and tests."""
        return {
            "time_s": self.t_s,
            "fold_expansion": self.fold_expansion,
            "viable_cells_per_ml": self._xv,
            "dead_cells_per_ml": self._xd,
            "total_cells_per_ml": self.total_cells_per_ml,
            "contaminant_cells_per_ml": self._xc,
            "viability": self.viability,
            "primitive_cells_per_ml": self.primitive_cells_per_ml,
            "progenitor_cells_per_ml": self.progenitor_cells_per_ml,
            "differentiated_cells_per_ml": self.differentiated_cells_per_ml,
            "cd34_fraction": self.cd34_fraction,
            "primitive_fraction": self.primitive_fraction,
            "cytokine_ng_per_ml": self._cyt,
            "total_fold_expansion": self.fold_expansion,
            "cd34_fold_expansion": self.cd34_fold_expansion,
            "primitive_fold_expansion": self.primitive_fold_expansion,
            "self_renewal_primitive": self._ps,
            "self_renewal_progenitor": self._pp,
            "volume_ml": self.volume_ml,
            "glucose_mm": self._glc,
            "glutamine_mm": self._gln,
            "lactate_mm": self._lac,
            "ammonia_mm": self._amm,
            "inhibitor_ng_per_ml": self._inh,
            "bicarbonate_mm": self._hco3_mm,
            "dco2_mm": self.dco2_mm,
            "ph": self.ph,
            "do_pct_air": self.do_pct_air,
            "temperature_c": self.temperature_c,
            "cells_harvested": self._harvested_viable,
            "dead_cells_harvested": self._harvested_dead,
            "growth_rate_per_d": self.growth_rate_per_d,
            "mu_per_d": self.mu_per_h * 24.0,
            "death_rate_per_d": self.death_per_h * 24.0,
            "heater_pct": self.inputs.heater_pct,
            "o2_pct": self.inputs.o2_pct,
            "co2_pct": self.inputs.co2_pct,
            "feed_ml_per_h": self.inputs.feed_ml_per_h,
            "harvest_ml_per_h": self.inputs.harvest_ml_per_h,
            "base_ml_per_h": self.inputs.base_ml_per_h,
            "microgravity": 1.0 if self.microgravity else 0.0,
        }

