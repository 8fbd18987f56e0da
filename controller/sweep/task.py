"""One case run to its end: the function a local process or a Dask worker calls.

Its argument and result are plain dicts (picklable, nothing open), and it never raises for a
run that fails: the failure is the result (`status = failed` with the error), so one bad case
makes one row, not a crashed sweep.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller import clock
from controller.clock import Clock
from controller.config import Config
from controller.runtime.run import Run, RunOptions
from controller.sweep.metrics import reactor_metrics

OK = "ok"
FAILED = "failed"
"""The run itself failed: its error is in the record; the sweep runs it again on resume."""
LOST = "lost"
"""The run's worker died under it (killed, out of memory, the cluster gone)."""


def run_case(task: dict[str, Any], setup: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run `task` (run_id, config, config_text, db) from scratch; its record, ok or failed."""
    if setup is not None:
        setup()
    started = Clock.wall_monotonic()
    record: dict[str, Any] = {"run_id": task["run_id"], "case": task["case"]}
    try:
        config = Config.model_validate(task["config"])
        # The records written here, not by a writer child: the sweep's workers fill the cores,
        # and the child's unpickling cost more than the inserts (docs/benchmarks.md, Sweeps).
        summary = clock.run(Run(RunOptions(config=config, config_text=task["config_text"],
                                           db_path=Path(task["db"]), run_id=task["run_id"],
                                           historian_in_process=True,
                                           start_over=True)).execute(),
                            None)
        if summary["stopped_by"] != "completed":
            raise RuntimeError(f"the run stopped early: {summary['stopped_by']}")
        record.update(status=OK, error=None, reactors=reactor_metrics(summary))
    except Exception as exc:  # any failure of the run is its row, not the sweep's end
        record.update(status=FAILED, error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(), reactors=[])
    record["wall_seconds"] = Clock.wall_monotonic() - started
    return record

