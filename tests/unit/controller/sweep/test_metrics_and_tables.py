"""A run's summary as table rows, and the tables written from the records."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from controller.sweep.metrics import reactor_metrics
from controller.sweep.store import SweepDirInUse, SweepStore, table_rows
from controller.sweep.task import LOST


def reactor_part(**over: Any) -> dict[str, Any]:
    part = {
        "product": {"total_fold_expansion": 40.0, "cd34_fold_expansion": 9.5,
                    "primitive_fold_expansion": 1.2, "cd34_fraction": 0.3},
        "loops": {"ph": {"within_band_fraction": 0.99}, "do": {"within_band_fraction": None}},
        "alarms": [{"name": "ph_low", "priority": "high", "first_raised_t_s": 5.0},
                   {"name": "do_low", "priority": "low", "first_raised_t_s": 9.0}],
        "interlocks": [{"name": "overtemp", "tripped": True}, {"name": "overtemp",
                                                                 "tripped": False}],
        "delivery_ml": {"feed_ml_per_h": {"commanded": 950.0, "measured": 942.0}},
        "recipe": {"state": "complete"},
    }
    part.update(over)
    return part


def test_the_metrics_of_each_reactor() -> None:
    rows = reactor_metrics({"reactors": {"r1": reactor_part(),
                                         "r2": reactor_part(recipe=None, delivery_ml={})}})
    assert rows[0] == {
        "reactor": "r1", "total_fold": 40.0, "cd34_fold": 9.5, "primitive_fold": 1.2,
        "in_band_ph": 0.99, "in_band_do": None, "alarms_raised": 2,
        "alarm_names": "do_low ph_low", "interlocks_tripped": 1, "interlock_names": "overtemp",
        "medium_ml": 942.0, "recipe_state": "complete"}
    assert rows[1]["medium_ml"] is None and rows[1]["recipe_state"] is None


def record(run_id: str, case: dict[str, Any], status: str = "ok",
           reactors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"run_id": run_id, "case": case, "status": status,
            "error": None if status == "ok" else "RuntimeError: boom", "wall_seconds": 1.5,
            "reactors": reactors if reactors is not None else [
                {"reactor": "r1", "total_fold": 3.0}]}


def test_rows_carry_axes_run_and_status_and_failed_runs_have_a_row() -> None:
    rows = table_rows(["seed", "faults"], [
        record("a", {"seed": 1, "faults": []}),
        record("b", {"seed": 2, "faults": ["co2_supply_lost@1h"]}, "failed", []),
    ])
    assert rows == [
        {"seed": 1, "faults": "[]", "run_id": "a", "status": "ok", "error": None,
         "wall_seconds": 1.5, "reactor": "r1", "total_fold": 3.0},
        {"seed": 2, "faults": '["co2_supply_lost@1h"]', "run_id": "b", "status": "failed",
         "error": "RuntimeError: boom", "wall_seconds": 1.5},
    ]


def test_an_axis_of_mixed_kinds_becomes_text() -> None:
    rows = table_rows(["x"], [record("a", {"x": 1}), record("b", {"x": "1h"}),
                              record("c", {"x": 2.5})])
    assert [r["x"] for r in rows] == ["1", '"1h"', "2.5"]
    numbers = table_rows(["x"], [record("a", {"x": 1}), record("b", {"x": 2.5})])
    assert [r["x"] for r in numbers] == [1, 2.5]


def test_tables_and_records(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    store.save(record("a", {"seed": 1}))
    store.save(record("b", {"seed": 2}, "failed", []))
    store.save(record("c", {"seed": 3}, LOST, []))
    assert store.finished("a") == record("a", {"seed": 1})
    assert store.finished("b") is None  # a failed run is tried again on resume
    assert store.finished("c") is None
    assert store.finished("d") is None
    rows = table_rows(["seed"], [store.finished("a"), record("b", {"seed": 2}, "failed", [])])
    columns = store.write_tables(rows)
    assert columns == ["seed", "run_id", "status", "error", "wall_seconds", "reactor",
                       "total_fold"]
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.column_names == columns
    assert table.to_pylist()[1] == {"seed": 2, "run_id": "b", "status": "failed",
                                    "error": "RuntimeError: boom", "wall_seconds": 1.5,
                                    "reactor": None, "total_fold": None}
    with (tmp_path / "results.csv").open() as stream:
        csv_rows = list(csv.DictReader(stream))
    assert csv_rows[0]["total_fold"] == "3.0" and csv_rows[1]["reactor"] == ""


def test_a_reader_of_the_tables_never_sees_half_of_one(tmp_path: Path) -> None:
    """The tables are rewritten after every run; a reader that opened them before a rewrite
    (a notebook, a sync job) still reads the whole table it opened, and a rewrite that fails
    leaves the last tables whole, with nothing half-written beside them."""
    store = SweepStore(tmp_path)
    old = [{"seed": s, "run_id": f"r{s}", "total_fold": 2.0} for s in range(500)]
    store.write_tables(old)
    with (tmp_path / "results.csv").open() as csv_stream, \
            (tmp_path / "results.parquet").open("rb") as parquet_stream:
        store.write_tables(old[:3])
        assert len(list(csv.DictReader(csv_stream))) == 500
        assert pq.read_table(parquet_stream).num_rows == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.parquet",
                                                          "runs"]  # no partial left behind
    (tmp_path / "results.csv.partial").mkdir()  # the CSV's rewrite fails (as on a full disk)
    with pytest.raises(IsADirectoryError):
        store.write_tables(old[:1])
    with (tmp_path / "results.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == 3  # the last table, whole


def test_one_sweep_at_a_time_owns_its_folder(tmp_path: Path) -> None:
    first, second = SweepStore(tmp_path), SweepStore(tmp_path)
    refusal = rf"^{tmp_path} is in use by another sweep \(pid {os.getpid()}\): wait for it"
    with first.owned(), pytest.raises(SweepDirInUse, match=refusal), second.owned():
        pass
    with second.owned():  # free once the first is done
        pass
