"""Who the viable cells are: primitive, progenitor and differentiated, and what moves them.

A culture is judged by its primitive cells (CD34+CD90+, the proxy for engrafting stem cells), not
by its total count (shared/science/hsc-quality.md, "A minimal structure"). Three populations:

    S' = dS (2 pS - 1) S - kS S                       primitive: self-renew with pS, else -> P
    P' = 2 dS (1 - pS) S + dP (2 pP - 1) P - kP P     progenitors (other CD34+): stay with pP
    D' = 2 dP (1 - pP) P + dD D - kD D                differentiated (CD34-)

Division rates dX = muX g (g: the growth factors every cell shares: temperature, pH, nutrients,
by-products, density, lag, microgravity), CD34+ division also times f_C, and primitive
division slowed at low O2 by (1 - s h). Self-renewal:

    pS = (pS_air + (pS_hyp - pS_air) h) f_C f_I,   pP = pP0 f_C f_I
    h = 1 / (1 + (DO/K_O2)^n)      the hypoxic response, 0 at high O2, 1 at anoxia
    f_I = 1 / (1 + (I/K_I)^m)      the monocytes' secreted inhibitor lowers self-renewal
    f_C = C / (K_C + C)            the cytokines drive self-renewal and CD34+ division

This module holds the pure arithmetic of one Euler step so the chamber's bio step stays readable;
it books nothing (the caller books every flux in the ledger).
"""
from __future__ import annotations

from typing import NamedTuple

_MAX_SELF_RENEWAL = 0.95  # a probability; kept below 1 so a population cannot only self-renew


class Kinetics(NamedTuple):
    """The constant part of the kinetics, per hour (built once per chamber)."""

    mu_s_per_h: float
    mu_p_per_h: float
    mu_d_per_h: float
    ps_air: float
    ps_hypoxia: float
    pp0: float
    k_o2_pct_air: float
    o2_hill: float
    o2_slowdown: float
    k_inh_ng_per_ml: float
    inh_hill: float
    k_cyt_ng_per_ml: float


class Transitions(NamedTuple):
    """Cells per step: divisions of each population and where the daughters went."""

    div_s: float
    div_p: float
    div_d: float
    s_made: float      # primitive daughters (2 pS div_s)
    p_from_s: float    # progenitor daughters of primitive divisions
    p_made: float      # progenitor daughters of progenitor divisions (2 pP div_p)
    d_from_p: float    # differentiated daughters of progenitor divisions
    ps: float
    pp: float
    f_inh: float
    f_cyt: float
    hypoxia: float


def hypoxic_response(do_pct_air: float, k_pct_air: float, hill: float) -> float:
    """h = 1 / (1 + (DO/K)^n): 1 at anoxia, 1/2 at K, towards 0 at high O2."""
    if do_pct_air <= 0.0:
        return 1.0
    return 1.0 / (1.0 + (do_pct_air / k_pct_air) ** hill)


def transitions(k: Kinetics, g: float, do_pct_air: float, inh_ng_per_ml: float,
                cyt_ng_per_ml: float, n_s: float, n_p: float, n_d: float,
                h_h: float) -> Transitions:
    """Divisions and daughters over one step of `h_h` hours at growth modifier `g`."""
    h = hypoxic_response(do_pct_air, k.k_o2_pct_air, k.o2_hill)
    ratio = inh_ng_per_ml / k.k_inh_ng_per_ml if inh_ng_per_ml > 0.0 else 0.0
    f_inh = 1.0 / (1.0 + ratio ** k.inh_hill)
    f_cyt = cyt_ng_per_ml / (k.k_cyt_ng_per_ml + cyt_ng_per_ml) if cyt_ng_per_ml > 0.0 else 0.0
    ps = min(_MAX_SELF_RENEWAL, (k.ps_air + (k.ps_hypoxia - k.ps_air) * h) * f_cyt * f_inh)
    pp = min(_MAX_SELF_RENEWAL, k.pp0 * f_cyt * f_inh)
    div_s = k.mu_s_per_h * g * f_cyt * (1.0 - k.o2_slowdown * h) * n_s * h_h
    div_p = k.mu_p_per_h * g * f_cyt * n_p * h_h
    div_d = k.mu_d_per_h * g * n_d * h_h
    s_made = 2.0 * ps * div_s
    p_made = 2.0 * pp * div_p
    return Transitions(div_s, div_p, div_d, s_made, 2.0 * div_s - s_made, p_made,
                       2.0 * div_p - p_made, ps, pp, f_inh, f_cyt, h)
