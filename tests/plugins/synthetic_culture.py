"""A synthetic culture that follows the soft sensor's own model structure, with a growth rate
that changes over the run, and seeded measurements of it (the filter's tests' truth)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.config.soft_sensor import SoftSensorConfig
from controller.estimation.culture_model import Dilution

DAY_S = 86400.0
PERFUSION = Dilution(0.05, 0.5)
"""Cells leave at 0.05 /d (the harvest keeps most back), the medium at 0.5 /d."""


def growth_rate_per_d(t_d: float) -> float:
    """A lag, exponential growth, then slowing down (a shape like a real expansion)."""
    if t_d < 1.5:
        return 0.05
    if t_d < 6.0:
        return 0.6
    return 0.6 - 0.05 * (t_d - 6.0)


@dataclass
class Truth:
    t_s: np.ndarray
    viable: np.ndarray  # 1e6 cells/mL
    dead: np.ndarray
    inhibitor: np.ndarray
    mu: np.ndarray


def simulate(config: SoftSensorConfig, days: float, step_s: float,
             dilution: Dilution = PERFUSION) -> Truth:
    """Fine Euler steps (60 s) of the true culture, reported every `step_s`."""
    fine = 60.0
    per = int(step_s // fine)
    xv, xd, inh = 0.095, 0.005, 0.0
    q = config.inhibitor_secretion_pg_per_mcell_d * 1e-3
    rows = []
    n = int(days * DAY_S / fine)
    for k in range(n + 1):
        t = k * fine
        mu = growth_rate_per_d(t / DAY_S)
        if k % per == 0:
            rows.append((t, xv, xd, inh, mu))
        h = fine / DAY_S
        dv = (mu - dilution.cells_per_d) * xv
        dd = config.death_per_d * xv - (config.lysis_per_d + dilution.cells_per_d) * xd
        di = q * xv - dilution.liquid_per_d * inh
        xv, xd, inh = xv + dv * h, xd + dd * h, inh + di * h
    arr = np.array(rows)
    return Truth(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])
