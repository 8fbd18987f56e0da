"""A fleet in one daemon: reactors ticking back to back in one task keep every record of their
own, and the run leaves the process's garbage collector as it found it."""
from __future__ import annotations

import gc
import sqlite3
from pathlib import Path

from plugins.configs import load_default, run_config

from controller.config import fleet


def test_every_reactor_of_a_fleet_ticks_every_period_with_its_own_records(
        tmp_path: Path) -> None:
    summary = run_config(fleet(load_default(), 12), tmp_path / "f.sqlite", duration="10m")
    reactors = summary["reactors"]
    assert len(reactors) == 12
    assert {r["ticks"] for r in reactors.values()} == {600}
    assert {r["skipped_ticks"] for r in reactors.values()} == {0}
    with sqlite3.connect(tmp_path / "f.sqlite") as con:
        per_reactor = dict(con.execute(
            "SELECT reactor_id, count(*) FROM ticks GROUP BY reactor_id").fetchall())
        temperatures = con.execute(
            "SELECT count(DISTINCT temperature_c) FROM ticks WHERE t_s = 300").fetchone()[0]
    assert per_reactor == dict.fromkeys(reactors, 600)
    assert temperatures == 12, "each reactor has its own chamber and noise"
    assert gc.get_freeze_count() == 0, "the start-up objects are collectable again"
    assert gc.isenabled()
