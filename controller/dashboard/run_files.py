"""The historian files the dashboard may read: `<run_id>.sqlite` directly inside `--runs DIR`
(where `bioreactor run` puts them by default, runs/<run_id>.sqlite), and nothing else.

A run id comes from a URL, so it is checked against the run-id alphabet `bioreactor run
--run-id` accepts (letters, digits, '-', '_'; 1-64) and the resolved path must still be a file
directly in DIR: no `..`, no absolute path, no symlink out of DIR can name another file.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from controller.report.run_db import open_run_db

RUN_SUFFIX = ".sqlite"
MAX_RUN_ID = 64


def valid_run_id(run_id: str) -> bool:
    return 0 < len(run_id) <= MAX_RUN_ID and all((c.isalnum() and c.isascii()) or c in "-_"
                                                  for c in run_id)


@dataclass(frozen=True)
class RunFiles:
    """`--runs DIR`, or None: without it there is no history, export or report."""

    directory: Path | None

    def path(self, run_id: str | None) -> Path | None:
        """The run's historian file, or None when there is none (or the id is not a run id)."""
        if self.directory is None or run_id is None or not valid_run_id(run_id):
            return None
        root = self.directory.resolve()
        candidate = (root / f"{run_id}{RUN_SUFFIX}").resolve()
        if candidate.parent != root or not candidate.is_file() or not _is_run_db(candidate):
            return None
        return candidate

    def run_ids(self, limit: int = 50) -> list[str]:
        """The ids of the newest `limit` run files in DIR, newest first (by modification
        time)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        files = [p for p in self.directory.iterdir()
                 if p.suffix == RUN_SUFFIX and p.is_file() and valid_run_id(p.stem)]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return [p.stem for p in files[:limit] if _is_run_db(p)]


def _is_run_db(path: Path) -> bool:
    """A historian file, not another SQLite file beside the runs (replay_nonces.sqlite, an
    outbox) nor something else named .sqlite."""
    try:
        open_run_db(path).close()
    except (OSError, ValueError, sqlite3.Error):
        return False
    return True
