"""How close the soft sensor came to the truth, for emulated runs whose device reports it.

Samples are taken whenever the run records the device's ground truth (driver.diagnostics());
the summary's window is days 2-12 (after the seeding lag, before the run's end), or the run's
whole span when it is shorter than that.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

WINDOW_S = (2 * 86400.0, 12 * 86400.0)
PAIRS = {
    # estimate -> the emulator's truth (diagnostics key)
    "est_viable_cells_per_ml": "viable_cells_per_ml",
    "est_growth_rate_per_d": "growth_rate_per_d",
    "est_inhibitor_ng_per_ml": "inhibitor_ng_per_ml",
    "est_primitive_fraction": "primitive_fraction",
}


class AccuracyScore:
    def __init__(self) -> None:
        self._rows: list[tuple[float, dict[str, float], dict[str, float]]] = []

    def add(self, t_s: float, estimates: Mapping[str, float] | None,
            truth: Mapping[str, float]) -> None:
        if estimates is None:
            return
        self._rows.append((t_s, dict(estimates),
                           {k: float(truth[v]) for k, v in PAIRS.items() if v in truth}))

    def summary(self, end_s: float) -> dict[str, Any] | None:
        """RMSE of the growth rate, MAPE (%) of densities and inhibitor, MAE of the primitive
        fraction; None when nothing was scored (no truth from the device)."""
        lo, hi = WINDOW_S
        if end_s < hi:
            lo, hi = (0.0, end_s) if end_s < 2 * lo else (lo, end_s)
        rows = [r for r in self._rows if lo <= r[0] <= hi and r[2]]
        if not rows:
            return None

        def pairs(name: str) -> tuple[np.ndarray, np.ndarray]:
            got = [(e[name], t[name]) for _, e, t in rows if name in t and name in e]
            arr = np.array(got, dtype=float).reshape(-1, 2)
            return arr[:, 0], arr[:, 1]

        def mape(name: str) -> float | None:
            est, truth = pairs(name)
            keep = np.abs(truth) > 1e-9
            if not keep.any():
                return None
            return float(100.0 * np.mean(np.abs(est[keep] - truth[keep]) / np.abs(truth[keep])))

        est, truth = pairs("est_growth_rate_per_d")
        rmse = float(np.sqrt(np.mean((est - truth) ** 2))) if len(est) else None
        def coverage(name: str) -> float | None:
            """Share of samples whose error lies within 1.96 SD (about 0.95 if the SD is
            right; less: overconfident; ~1: too cautious to act on)."""
            got = [(e[name], e[f"{name}_sd"], t[name]) for _, e, t in rows
                   if name in t and f"{name}_sd" in e]
            if not got:
                return None
            arr = np.array(got, dtype=float)
            return float(np.mean(np.abs(arr[:, 0] - arr[:, 2]) <= 1.96 * arr[:, 1]))

        est_f, truth_f = pairs("est_primitive_fraction")
        return {
            "window_s": [lo, hi],
            "samples": len(rows),
            "growth_rate_rmse_per_d": rmse,
            "viable_density_mape": mape("est_viable_cells_per_ml"),
            "inhibitor_mape": mape("est_inhibitor_ng_per_ml"),
            "primitive_fraction_mae": float(np.mean(np.abs(est_f - truth_f)))
            if len(est_f) else None,
            "within_1_96_sd": {name.removeprefix("est_"): coverage(name) for name in PAIRS},
        }
