"""A model-only culture harness: the chamber model held near setpoints without the controller.

Integral nudges on heater, O2 and CO2 once a minute from the model's own state, and the default
config's perfusion and boluses; the real controller's PID is tested elsewhere. Shared by the
model's science tests and its population tests.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from sim_hardware.model.actuators import apply_outputs
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import InitialConditions, ModelParameters

DAY_S = 86400.0


def default_perfusion_ml_per_h(t_d: float) -> float:
    """configs/hsc_expansion.toml: feed = harvest, stepped up as the cells grow."""
    return 0.0 if t_d < 2 else 1.0 if t_d < 5 else 2.0 if t_d < 8 else 4.0 if t_d < 11 else 6.0


def default_bolus_ml_per_h(t_d: float) -> float:
    """2 mL boluses on days 4, 7 and 10, pumped at 30 mL/h (4 minutes)."""
    for day in (4, 7, 10):
        if day <= t_d < day + 2.0 / 30.0 / 24.0:
            return 30.0
    return 0.0


def no_flow(t_d: float) -> float:
    return 0.0


def run_culture(
    params: ModelParameters | None = None,
    *,
    days: float = 14.0,
    microgravity: bool = False,
    temperature_c: float = 37.0,
    do_pct_air: float = 25.0,
    ph: float = 7.30,
    perfusion: Callable[[float], float] = default_perfusion_ml_per_h,
    bolus: Callable[[float], float] = default_bolus_ml_per_h,
    initial: InitialConditions | None = None,
    every_s: float = 60.0,
    observe: Callable[[ChamberModel], None] | None = None,
) -> ChamberModel:
    """A culture held near setpoints: integral nudges on heater, O2 and CO2 once a minute."""
    p = params or ModelParameters()
    m = ChamberModel(p, microgravity=microgravity, initial=initial)
    u = m.inputs
    heater_i = u.heater_pct
    for k in range(1, int(days * DAY_S / every_s) + 1):
        t_s = k * every_s
        m.advance_to(t_s)
        error_c = temperature_c - m.temperature_c
        heater_i += 0.5 * error_c
        o2 = u.o2_pct * math.exp(0.05 * (do_pct_air - m.do_pct_air) / do_pct_air)
        co2 = u.co2_pct * math.exp(0.23 * (m.ph - ph))
        flow = perfusion(t_s / DAY_S)
        u = apply_outputs(u, {
            "heater_pct": heater_i + 20.0 * error_c, "o2_pct": min(100.0, o2),
            "co2_pct": min(20.0, co2), "feed_ml_per_h": flow + bolus(t_s / DAY_S),
            "harvest_ml_per_h": flow}, p)
        m.set_inputs(u)
        if observe is not None:
            observe(m)
    return m
