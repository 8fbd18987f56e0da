"""The journal records failure spells, not failures: a 21 s outage is two `comm` rows, the
second with the counts (the issue's outage wrote 7,594, one per failed operation per tick)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from plugins.configs import run_default_with_fault


def test_a_21_s_outage_is_two_rows_with_the_right_counts(tmp_path: Path) -> None:
    summary = run_default_with_fault("comm_timeout@1h:duration=21s", tmp_path / "run.sqlite",
                                     "2h")
    reactor = summary["reactors"]["hsc-1"]
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        rows = [(t_s, m, json.loads(d)) for t_s, m, d in con.execute(
            "SELECT t_s, message, data_json FROM events WHERE kind = 'comm' ORDER BY t_s")]
    assert len(rows) == 2, rows
    (start_s, opened, _), (end_s, closed, counts) = rows
    assert opened.startswith("comm loss: read failed") and start_s == 3600.0
    # 21 ticks of 1 s failed, each its read only: a tick whose read found the link down writes
    # nothing and sends no heartbeat (each would wait out a deadline of its own). The spell
    # lasted until the first good read, and is closed once reads have got through for 30 s
    # without a failure.
    assert closed.startswith("comm restored: 21 failed operations over 21 s")
    assert counts["failed"] == {"read": 21}
    assert counts["errors"] == {"CommTimeoutError": 21}
    assert counts["spell_started_t_s"] == start_s and counts["recovered_t_s"] == 3621.0
    assert end_s == 3651.0
    # The counters agree with the record.
    assert reactor["errors"]["read"] == 21 and reactor["comm_losses"] == 1
