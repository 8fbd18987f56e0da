"""`bioreactor run --reactors N`, end to end as the fleet benchmark drives it: N reactors load,
each with its own id, all tick, and the historian holds every one."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH

from controller.cli.main import main


def test_three_copies_of_the_default_reactor_run_and_are_recorded(tmp_path: Path) -> None:
    db, summary_path = tmp_path / "fleet.sqlite", tmp_path / "summary.json"
    assert main(["run", str(DEFAULT_CONFIG_PATH), "--reactors", "3", "--duration", "2m",
                 "--speed", "max", "--quiet", "--db", str(db),
                 "--summary-json", str(summary_path)]) == 0
    reactors = json.loads(summary_path.read_text())["reactors"]
    assert sorted(reactors) == ["hsc-1-0001", "hsc-1-0002", "hsc-1-0003"]
    assert all(r["ticks"] == 120 and r["skipped_ticks"] == 0 for r in reactors.values())
    with sqlite3.connect(db) as con:
        rows = dict(con.execute("SELECT reactor_id, count(*) FROM ticks GROUP BY reactor_id"))
    assert rows == dict.fromkeys(reactors, 120)
