"""A run whose historian writer is killed (the kernel's out-of-memory killer, a stray kill -9):
the culture stays under control and every record still reaches the file, once.

The installed `bioreactor run` command in scaled time; its writer child found in /proc and
killed with SIGKILL halfway through.
"""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.processes import BIN, children
from plugins.records import count_rows
from plugins.waiting import wait_until


def test_a_killed_writer_costs_neither_control_nor_a_record(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [BIN / "bioreactor", "run", str(DEFAULT_CONFIG_PATH), "--duration", "1h",
         "--speed", "200", "--quiet", "--db", str(db), "--summary-json", str(summary_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        wait_until(lambda: count_rows(db, "SELECT COUNT(*) FROM ticks") > 300, 60,
                   "five minutes of ticks on record")
        [writer] = children(proc.pid)
        subprocess.run(["kill", f"-{signal.SIGKILL.value}", str(writer)], check=True)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = json.loads(summary_path.read_text())
    assert summary["stopped_by"] == "completed"
    with sqlite3.connect(db) as con:
        coldest, hottest = con.execute(  # the writer was killed after five minutes
            "SELECT MIN(temperature_c), MAX(temperature_c) FROM ticks WHERE t_s > 600"
        ).fetchone()
        ticks, distinct = con.execute(
            "SELECT COUNT(*), COUNT(DISTINCT t_s) FROM ticks").fetchone()
        alarm = [json.loads(data) for (data,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm' AND message LIKE "
            "'historian writer%' ORDER BY rowid")]
    assert coldest > 36.8 and hottest < 37.2  # under control throughout
    assert ticks == distinct == summary["ticks"]  # every tick once: none lost, none twice
    assert [(a["alarm"], a["active"]) for a in alarm] == [("historian_down", True),
                                                          ("historian_down", False)]
