"""The factors that multiply the cells' maximum growth rate: each 1 when not limiting.

Temperature (a cardinal model), pH (an optimum plateau with Gaussian shoulders) and the lag
after seeding; the Monod and inhibition factors are one-liners in the model's bio step.
`FACTOR_NAMES` orders them as `ChamberModel.growth_factors()` reports them.
"""
from __future__ import annotations

import math

_LN2 = math.log(2.0)
FACTOR_NAMES = ("temperature", "ph", "dissolved_o2", "glucose", "glutamine", "lactate",
                "ammonia", "inhibitor", "density", "lag")


def cardinal_temperature_factor(t_c: float, t_min: float, t_opt: float, t_max: float) -> float:
    """Rosso's cardinal temperature model (CTMI): 0 at T_min and T_max, 1 at T_opt."""
    if t_c <= t_min or t_c >= t_max:
        return 0.0
    num = (t_c - t_max) * (t_c - t_min) ** 2
    den = (t_opt - t_min) * ((t_opt - t_min) * (t_c - t_opt)
                             - (t_opt - t_max) * (t_opt + t_min - 2.0 * t_c))
    return num / den


def ph_factor(ph: float, opt_low: float, opt_high: float, half_low: float,
              half_high: float) -> float:
    """1 on the optimum plateau, Gaussian shoulders that reach 0.5 at the half-growth pHs."""
    if ph < opt_low:
        d = (opt_low - ph) / (opt_low - half_low)
    elif ph > opt_high:
        d = (ph - opt_high) / (half_high - opt_high)
    else:
        return 1.0
    return math.exp(-_LN2 * d * d)


def lag_factor(t_h: float, lag_h: float) -> float:
    """Smoothstep ramp 0 -> 1 over lag_h after seeding (equivalent to lag_h/2 of lost growth)."""
    if t_h >= lag_h:
        return 1.0
    if t_h <= 0.0:
        return 0.0
    x = t_h / lag_h
    return x * x * (3.0 - 2.0 * x)
