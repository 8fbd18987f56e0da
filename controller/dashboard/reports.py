"""A run's HTML report (controller/report), written on first request into a folder the
dashboard owns and served from there.

The runs folder may be read-only to the dashboard (the controller writes it), so reports go to
a private temporary folder, one sub-folder per run, rebuilt when the run file is newer than the
report (a run still going gets a fresh report on the next visit after it changed).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

from controller.dashboard.run_files import RunFiles
from controller.report import write_report

REPORT_INDEX = "index.html"


class ReportCache:
    def __init__(self, runs: RunFiles, directory: Path | None = None) -> None:
        self.runs = runs
        self._directory = directory
        self._lock = threading.Lock()

    def _root(self) -> Path:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="bioreactor-dashboard-reports-"))
        return self._directory

    def file(self, run_id: str, db_path: Path, name: str) -> Path | None:
        """A file of the run's report (generated if missing or older than the run file); None
        when `name` is not one of the report's files. Blocking: call from a thread."""
        with self._lock:
            out = self._root() / run_id
            index = out / REPORT_INDEX
            if not index.is_file() or index.stat().st_mtime < db_path.stat().st_mtime:
                shutil.rmtree(out, ignore_errors=True)
                write_report(db_path, out)
        served = {p.name: p for p in out.iterdir() if p.is_file()}
        return served.get(name)

    def close(self) -> None:
        """Remove the reports written (the dashboard's own temporary folder)."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
