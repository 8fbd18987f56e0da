"""The naive loop's culture: a small ODE a process engineer writes from a textbook in an afternoon.

State (one well-mixed perfused vessel, cells retained, medium exchanged at `DILUTION_PER_S`):
  x   viable cells, cells/mL: Monod growth on glucose, damped off 37 C and at low DO; death
  g   glucose, mM: consumed per cell, refreshed by perfusion from `FEED_GLUCOSE_MM`
  l   lactate, mM: made from glucose (`LACTATE_PER_GLUCOSE`), washed out by perfusion
  do  dissolved O2, % air saturation: gas transfer (kLa) towards the inlet's O2 share, cell uptake
  t   temperature, C: heater power against losses to a 25 C room
  ph  pH: relaxes towards an equilibrium that CO2 in the gas and lactate push down

Inputs, the three controllers' outputs: heater % (0-100), O2 in the inlet gas % (0-100), CO2 in
the inlet gas % (0-20). Units are per second, as the loop ticks once a second.

Plain Python floats on purpose: it is the right-hand side a user hands to
`scipy.integrate.solve_ivp`, and the project's tests import it without scipy.
"""
from __future__ import annotations

import math

STATE = ("x_cells_per_ml", "glucose_mm", "lactate_mm", "do_pct_air", "temperature_c", "ph")
INITIAL = (1e5, 25.0, 0.0, 40.0, 25.0, 7.4)
"""Seeded at 1e5 cells/mL in fresh medium, the vessel at room temperature."""

MU_MAX_PER_S = 0.03 / 3600.0          # 0.72 /day at best
DEATH_PER_S = 0.002 / 3600.0
GLUCOSE_KS_MM = 1.0
DO_KS_PCT = 5.0
GLUCOSE_PER_CELL_MM_S = 1e-11         # mM per (cell/mL) per second
LACTATE_PER_GLUCOSE = 1.6
O2_PER_CELL_PCT_S = 2e-8              # % air per (cell/mL) per second
KLA_PER_S = 10.0 / 3600.0
DILUTION_PER_S = 0.5 / 86400.0        # half a vessel volume a day
FEED_GLUCOSE_MM = 25.0
HEATER_C_PER_S = 0.01                 # at 100 % heater, before losses
LOSS_PER_S = 0.0003                   # towards the room
ROOM_C = 25.0
PH_TAU_S = 600.0
PH_NO_CO2 = 7.65
PH_PER_CO2_PCT = 0.07
PH_PER_LACTATE_MM = 0.02


def rhs(_t_s: float, y: list[float], heater_pct: float, o2_pct: float,
        co2_pct: float) -> list[float]:
    """d(state)/dt for `solve_ivp`, inputs held over the step (zero-order hold)."""
    x, g, lac, do, temp, ph = y
    g_pos = max(g, 0.0)
    do_pos = max(do, 0.0)
    growth = (MU_MAX_PER_S * g_pos / (GLUCOSE_KS_MM + g_pos) * do_pos / (DO_KS_PCT + do_pos)
              * math.exp(-(((temp - 37.0) / 3.0) ** 2)))
    uptake = GLUCOSE_PER_CELL_MM_S * x * g_pos / (GLUCOSE_KS_MM + g_pos)
    return [
        (growth - DEATH_PER_S) * x,
        -uptake + DILUTION_PER_S * (FEED_GLUCOSE_MM - g),
        LACTATE_PER_GLUCOSE * uptake - DILUTION_PER_S * lac,
        KLA_PER_S * (100.0 * o2_pct / 21.0 - do) - O2_PER_CELL_PCT_S * x,
        HEATER_C_PER_S * heater_pct / 100.0 - LOSS_PER_S * (temp - ROOM_C),
        (PH_NO_CO2 - PH_PER_CO2_PCT * co2_pct - PH_PER_LACTATE_MM * lac - ph) / PH_TAU_S,
    ]
