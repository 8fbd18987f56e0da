"""Where a sweep keeps its results: one JSON record per finished run under DIR/runs/ (written
as each run ends, so a killed sweep loses only the runs in flight), and the tables
DIR/results.parquet and DIR/results.csv rebuilt from all the records.

Every file here is written whole or not at all (`write_whole`): a sweep killed while it
rewrites its tables leaves the last ones, and a reader (a notebook, the dashboard, a sync job)
never sees half a table. One sweep at a time owns DIR (`SweepStore.owned`): a second one, in
another terminal or from a timer, would run the same cases again and start their historians
over under the first one's runs.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from controller.config import ConfigError
from controller.runtime.recovery import RunLock
from controller.sweep.task import OK

RUNS = "runs"
PARQUET = "results.parquet"
CSV = "results.csv"
LOCK = ".sweep.lock"


class SweepDirInUse(OSError):
    """Another sweep owns DIR."""


def write_whole(path: Path, write: Callable[[Path], object]) -> None:
    """`write(partial)` writes the file beside `path`, then it takes `path`'s place in one
    rename: a reader sees the old file or the new one, never part of one."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:  # gone if the write failed (a full disk), or kept if it cannot be (not a file)
        with contextlib.suppress(OSError):
            partial.unlink()


class SweepStore:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.runs = out / RUNS
        self.runs.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """DIR for this sweep alone while inside; SweepDirInUse if another sweep has it. The
        run's own lock (`RunLock`, an `flock`: the kernel lets go when its holder dies, so a
        killed sweep never leaves DIR locked), with the holder's pid in it for the message."""
        lock_file = self.out / LOCK
        try:
            lock = RunLock(lock_file.with_suffix(""), wait_s=0.0)
        except ConfigError:
            holder = lock_file.read_text(errors="replace").strip() or "?"
            raise SweepDirInUse(f"{self.out} is in use by another sweep (pid {holder}): wait "
                                "for it to end, or give this one another --out") from None
        try:
            os.ftruncate(lock.fd, 0)
            os.pwrite(lock.fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            lock.release()  # the file stays (unlinking it would race)

    def db_path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.sqlite"

    def record_path(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.json"

    def finished(self, run_id: str) -> dict[str, Any] | None:
        """The run's record if it finished ok; None to run it (again, if it failed: a failure
        may be the machine's, a full disk, and a deterministic one costs one more attempt)."""
        try:
            record = json.loads(self.record_path(run_id).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return record if record.get("status") == OK else None

    def save(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, indent=1) + "\n"
        write_whole(self.record_path(record["run_id"]), lambda partial: partial.write_text(text))

    def write_tables(self, rows: list[dict[str, Any]]) -> list[str]:
        """results.parquet and results.csv; the columns, in order."""
        columns = list(dict.fromkeys(k for row in rows for k in row))
        full = [{c: row.get(c) for c in columns} for row in rows]
        arrays = [pa.array([row[c] for row in full]) for c in columns]
        # A column with no value yet (no run failed: no error) is text, not pyarrow's null type.
        arrays = [a.cast(pa.string()) if pa.types.is_null(a.type) else a for a in arrays]
        table = pa.table(dict(zip(columns, arrays, strict=True)))
        write_whole(self.out / PARQUET, lambda partial: pq.write_table(table, partial))
        write_whole(self.out / CSV, lambda partial: _write_csv(partial, columns, full))
        return columns


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def table_rows(axes: Iterable[str], records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run and reactor: the axis values, the run, its status and its metrics."""
    axes = list(axes)
    rows = []
    for record in records:
        head = {axis: _cell(record["case"].get(axis)) for axis in axes}
        head.update(run_id=record["run_id"], status=record["status"], error=record["error"],
                    wall_seconds=record["wall_seconds"])
        for metrics in record["reactors"] or [{}]:
            rows.append({**head, **metrics})
    return _uniform(rows, axes)


def _cell(value: Any) -> Any:
    """Scalars as they are; a fault list (or any table) as its JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _uniform(rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
    """An axis column of mixed kinds (1 and "1h") as text, so the table has one type a column."""
    for axis in axes:
        kinds = {type(row[axis]) for row in rows if row.get(axis) is not None}
        if len(kinds - {int, float}) > 1 or (len(kinds) > 1 and kinds - {int, float}):
            for row in rows:
                if row.get(axis) is not None:
                    row[axis] = json.dumps(row[axis])
    return rows
