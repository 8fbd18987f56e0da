"""`run_sweep`: a sweep file's cases run (those not finished before), their records kept as
they finish, then the tables and the summary page rebuilt from every record."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.sweep.cases import Case, build_cases
from controller.sweep.executors import Executor, LocalPool, Setup
from controller.sweep.page import write_page
from controller.sweep.spec import load_sweep
from controller.sweep.store import SweepStore, table_rows
from controller.sweep.task import LOST, OK

SweepProgress = Callable[[int, int, dict[str, Any]], None]
"""progress(finished, total, record) after each run ends (and once for the runs found done)."""


@dataclass
class SweepOptions:
    sweep_path: Path
    out: Path
    executor: Executor = field(default_factory=lambda: LocalPool(1))
    setup: Setup | None = None
    progress: SweepProgress | None = None


@dataclass
class SweepResult:
    total: int
    reused: int
    """Runs found finished in DIR from an earlier sweep, not run again."""
    ran: int
    failed: int
    lost: int
    columns: list[str]
    page: Path


def run_sweep(options: SweepOptions) -> SweepResult:
    """Run what is missing; a SweepError (before anything runs) for a bad file or case,
    SweepDirInUse if another sweep owns DIR."""
    sweep = load_sweep(options.sweep_path)
    cases = build_cases(sweep)
    store = SweepStore(options.out)
    with store.owned():
        records = {case.run_id: done for case in cases
                   if (done := store.finished(case.run_id)) is not None}
        reused = len(records)
        todo = [task_of(case, store) for case in cases if case.run_id not in records]
        if options.progress is not None and reused:
            options.progress(reused, len(cases), {})
        try:
            ran = _run(todo, options, store, records, len(cases))
        finally:  # interrupted or not, the tables show every run finished so far
            ordered = [records[c.run_id] for c in cases if c.run_id in records]
            columns = store.write_tables(table_rows(sweep.axes, ordered))
            page = write_page(options.out, sweep, ordered, columns)
    statuses = [r["status"] for r in records.values()]
    return SweepResult(total=len(cases), reused=reused, ran=ran,
                       failed=sum(s not in (OK, LOST) for s in statuses),
                       lost=statuses.count(LOST), columns=columns, page=page)


def _run(todo: list[dict[str, Any]], options: SweepOptions, store: SweepStore,
         records: dict[str, dict[str, Any]], total: int) -> int:
    """The tasks run, each record kept (in `records` too) as it comes; how many ran."""
    ran = 0
    for record in options.executor.run(todo, options.setup):
        store.save(record)
        records[record["run_id"]] = record
        ran += 1
        if options.progress is not None:
            options.progress(len(records), total, record)
    return ran


def task_of(case: Case, store: SweepStore) -> dict[str, Any]:
    """What a worker needs, as plain data: no open objects cross a process boundary."""
    return {"run_id": case.run_id, "case": case.values,
            "config": case.config.model_dump(mode="json"), "config_text": case.config_text,
            "db": str(store.db_path(case.run_id).resolve())}

