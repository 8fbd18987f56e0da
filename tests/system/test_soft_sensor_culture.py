"""The soft sensor on the emulated culture: the issue's accuracy targets, measured against the
emulator's ground truth (growth rate RMSE <= 0.1 /d, viable density MAPE <= 10 %, inhibitor MAPE
<= 30 %, days 2-12), and the estimates on record."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, load_default, run_config

from controller.config import load_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def culture(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    db = tmp_path_factory.mktemp("run") / "run.sqlite"
    return run_config(load_config(DEFAULT_CONFIG_PATH), db), db


def test_growth_rate_and_viable_density_within_the_targets(culture: tuple[dict, Path]) -> None:
    soft = culture[0]["reactors"]["hsc-1"]["soft_sensor"]
    assert soft["window_s"] == [2 * 86400.0, 12 * 86400.0]
    assert soft["samples"] > 1000  # every 10 min of truth over 10 days
    assert soft["growth_rate_rmse_per_d"] <= 0.1
    assert soft["viable_density_mape"] <= 10.0
    assert soft["late_results_dropped"] <= 1  # the sample drawn before the first density


def test_estimates_and_their_sds_are_recorded(culture: tuple[dict, Path]) -> None:
    summary, db = culture
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("SELECT name, COUNT(*) FROM estimates GROUP BY name"))
        (bad,) = con.execute("SELECT COUNT(*) FROM estimates WHERE NOT sd > 0").fetchone()
    updates = summary["reactors"]["hsc-1"]["soft_sensor"]["updates"]
    assert rows == dict.fromkeys(("est_viable_cells_per_ml", "est_growth_rate_per_d",
                                  "est_inhibitor_ng_per_ml", "est_primitive_fraction"), updates)
    assert bad == 0


def test_inhibitor_within_the_target_when_the_model_structure_is_the_emulators(
        tmp_path: Path) -> None:
    """Today's emulator secretes the inhibitor from every viable cell (40 pg/1e6 cells/d), so
    the filter is told so; the default structure (monocytic CD34- cells) is the next model's."""
    config = load_default(**{"[reactor.safe_state]": (
        '[reactor.soft_sensor]\ninhibitor_secreted_by = "viable"\n'
        "inhibitor_secretion_pg_per_mcell_d = 40.0\n\n[reactor.safe_state]")})
    soft = run_config(config, tmp_path / "run.sqlite", duration="6d")["reactors"]["hsc-1"][
        "soft_sensor"]
    assert soft["window_s"] == [2 * 86400.0, 6 * 86400.0]
    assert soft["inhibitor_mape"] <= 30.0
    assert soft["growth_rate_rmse_per_d"] <= 0.1
