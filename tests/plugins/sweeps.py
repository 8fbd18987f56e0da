"""What sweep tests share: a small sweep file over the default config, the `bioreactor sweep`
command as a user runs it, and the results table read back."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.processes import BIN

METRICS = ("total_fold", "cd34_fold", "primitive_fold", "in_band_temperature", "in_band_do",
           "in_band_ph", "alarms_raised", "interlocks_tripped", "medium_ml", "recipe_state")
"""The columns a run's seed decides (not wall_seconds)."""


def write_sweep(folder: Path, axes: str, duration: str = "2h") -> Path:
    """A sweep of the default config; `axes` is the `[axes]` table's body."""
    path = folder / "sweep.toml"
    path.write_text(f'base = "{DEFAULT_CONFIG_PATH}"\nduration = "{duration}"\n[axes]\n{axes}')
    return path


def sweep_command(sweep: Path, out: Path, *options: str) -> list[str]:
    return [str(BIN / "bioreactor"), "sweep", str(sweep), "--out", str(out), *options]


def run_sweep_command(sweep: Path, out: Path, *options: str,
                      timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sweep_command(sweep, out, *options), capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def read_results(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open() as stream:
        return list(csv.DictReader(stream))


def metrics_by_case(rows: list[dict[str, str]], axes: tuple[str, ...]) -> dict[tuple, dict]:
    """Each case's seeded metrics, keyed by its axis values (row order may differ)."""
    return {tuple(r[a] for a in axes): {m: r[m] for m in METRICS} for r in rows}
