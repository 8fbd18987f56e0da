"""The soft sensor's culture model: states, their dynamics and what each signal measures.

Pure numpy, no time source: the filter (`delayed_ekf.py`) calls `propagate` and `update`.
State vector (docs/soft-sensor.md has the equations), densities in 1e6 cells/mL so that the
covariance is well conditioned:

    0 XV  viable cells, 1e6/mL          1 MU  net specific growth rate, /d (random walk)
    2 XD  dead cells (optical), 1e6/mL  3 INH inhibitor, ng/mL (secretion model)
    4 FC  CD34+ share of viable, 0..1   5 FS  CD34+CD90+ share of viable, 0..1
    6 LQ  log of the O2-uptake factor (qO2 * kLa knowledge), learnt from the counts
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.config.soft_sensor import SoftSensorConfig

XV, MU, XD, INH, FC, FS, LQ = range(7)
N_STATES = 7
MAX_SUBSTEP_D = 0.01
"""Euler substep of the prediction (days): growth and dilution rates are < 3 /d, so < 3 %."""


@dataclass(frozen=True, slots=True)
class Dilution:
    """What the pumps did over a segment, per day: cells leave at `cells_per_d` (the harvest
    keeps most of them back), dissolved species at `liquid_per_d`."""

    cells_per_d: float = 0.0
    liquid_per_d: float = 0.0


@dataclass(frozen=True, slots=True)
class Observation:
    """One measured value of a known kind at the time it was true (a draw time for at-line)."""

    kind: str
    t_s: float
    value: float


KINDS = ("total_cells", "o2_uptake", "viable_cells", "viability", "cd34", "primitive")


class CultureModel:
    """f(x, u), its Jacobian, h(x) for every observation kind, and their noise."""

    def __init__(self, config: SoftSensorConfig) -> None:
        self.c = config
        # pg/(1e6 cells)/d -> ng/mL/d per 1e6 cells/mL
        self._q_inh = config.inhibitor_secretion_pg_per_mcell_d * 1e-3
        self._by_cd34_negative = config.inhibitor_secreted_by == "cd34_negative"

    # --- initial state ---------------------------------------------------------------------
    def initial(self, total_cells_per_ml: float) -> tuple[np.ndarray, np.ndarray]:
        c = self.c
        total = max(total_cells_per_ml, 1.0) / 1e6
        x = np.zeros(N_STATES)
        x[XV] = c.initial_viability * total
        x[XD] = total - x[XV]
        x[FC] = c.initial_cd34_fraction
        x[FS] = c.initial_primitive_fraction
        sd = np.array([0.2 * total, 0.3, 0.5 * x[XD] + 0.02 * total, 0.05, 0.15, 0.15, 0.5])
        return x, np.diag(sd * sd)

    # --- dynamics ---------------------------------------------------------------------------
    def propagate(self, x: np.ndarray, p: np.ndarray, dt_d: float,
                  u: Dilution) -> tuple[np.ndarray, np.ndarray]:
        """x and P moved forward dt_d days (explicit Euler substeps; P by the Jacobian)."""
        if dt_d <= 0.0:
            return x, p
        n = max(1, math.ceil(dt_d / MAX_SUBSTEP_D))
        h = dt_d / n
        c = self.c
        kd, kl = c.death_per_d, c.lysis_per_d
        dc, dl = u.cells_per_d, u.liquid_per_d
        q_walk = self._process_noise_diag
        eye = np.eye(N_STATES)
        a = np.zeros((N_STATES, N_STATES))
        for _ in range(n):
            xv, mu, xd, inh, fc = x[XV], x[MU], x[XD], x[INH], x[FC]
            if self._by_cd34_negative:
                share = c.monocytic_fraction * (1.0 - fc)
                a[INH, FC] = -self._q_inh * xv * c.monocytic_fraction
            else:
                share = 1.0
            a[XV, XV] = mu - dc
            a[XV, MU] = xv
            a[XD, XV] = kd
            a[XD, XD] = -(kl + dc)
            a[INH, XV] = self._q_inh * share
            a[INH, INH] = -dl
            dx = np.zeros(N_STATES)
            dx[XV] = (mu - dc) * xv
            dx[XD] = kd * xv - (kl + dc) * xd
            dx[INH] = self._q_inh * share * xv - dl * inh
            f = eye + a * h
            x = x + dx * h
            p = f @ p @ f.T + np.diag(q_walk(x)) * h
            _clamp(x)
        return x, p

    def _process_noise_diag(self, x: np.ndarray) -> np.ndarray:
        c = self.c
        sd = np.array([
            c.density_model_sd * x[XV],
            c.growth_rate_walk_sd,
            0.05 * x[XD] + 0.01 * c.density_model_sd * x[XV],
            c.inhibitor_model_sd * x[INH] + 1e-3,
            c.fraction_walk_sd,
            c.fraction_walk_sd,
            c.uptake_factor_walk_sd,
        ])
        return sd * sd

    # --- measurements -----------------------------------------------------------------------
    def measure(self, kind: str, x: np.ndarray, z: float) -> tuple[float, np.ndarray, float]:
        """(h(x), dh/dx, the measurement's variance) for a value z of `kind`."""
        c = self.c
        hrow = np.zeros(N_STATES)
        if kind == "total_cells":
            hrow[XV] = hrow[XD] = 1.0
            return x[XV] + x[XD], hrow, (c.total_cells_sd * z) ** 2 + 1e-6
        if kind == "viable_cells":
            hrow[XV] = 1.0
            return x[XV], hrow, (c.viable_count_cv * z) ** 2 + 1e-6
        if kind == "o2_uptake":  # mM/h = q pmol/cell/h * X cells/mL * 1e-6
            g = math.exp(x[LQ]) * c.o2_uptake_pmol_per_cell_h
            hrow[XV] = g
            hrow[LQ] = g * x[XV]
            var = (c.our_sd * abs(z)) ** 2 + c.our_floor_mm_per_h ** 2
            return g * x[XV], hrow, var
        if kind == "viability":
            total = max(x[XV] + x[XD], 1e-9)
            hrow[XV] = 100.0 * x[XD] / total ** 2
            hrow[XD] = -100.0 * x[XV] / total ** 2
            return 100.0 * x[XV] / total, hrow, c.viability_sd_pct ** 2
        if kind in ("cd34", "primitive"):
            i = FC if kind == "cd34" else FS
            hrow[i] = 100.0
            return 100.0 * x[i], hrow, (c.cytometry_cv * z) ** 2 + 1.0
        raise ValueError(f"unknown observation kind {kind!r}; known: {', '.join(KINDS)}")

    def update(self, x: np.ndarray, p: np.ndarray,
               observations: list[Observation]) -> tuple[np.ndarray, np.ndarray]:
        """Sequential scalar EKF updates (Joseph form, so P stays symmetric and positive)."""
        eye = np.eye(N_STATES)
        for obs in observations:
            hx, hrow, r = self.measure(obs.kind, x, obs.value)
            ph = p @ hrow
            s = float(hrow @ ph) + r
            k = ph / s
            x = x + k * (obs.value - hx)
            ikh = eye - np.outer(k, hrow)
            p = ikh @ p @ ikh.T + np.outer(k, k) * r
            _clamp(x)
        return x, p


def _clamp(x: np.ndarray) -> None:
    """Keep the state physical: densities and inhibitor >= 0, fractions in [0, 1]."""
    x[XV] = max(x[XV], 1e-6)
    x[XD] = max(x[XD], 0.0)
    x[INH] = max(x[INH], 0.0)
    x[FC] = min(max(x[FC], 0.0), 1.0)
    x[FS] = min(max(x[FS], 0.0), x[FC])
