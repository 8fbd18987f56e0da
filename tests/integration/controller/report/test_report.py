"""The run report: page, plots and the SQL bucketing, on small synthetic runs."""
from __future__ import annotations

import math
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from controller import report
from controller.runtime.historian import Historian, RunInfo
from drivers.contract.reading import Quality, Reading

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")
LOOPS = (("temperature", "temperature_c", "heater_pct", 37.0),
         ("do", "do_pct_air", "o2_pct", 25.0),
         ("ph", "ph", "co2_pct", 7.3))
SPIKE_TICK = 1234
CONFIG_TOML = """
[[reactor]]
id = "A"
[reactor.loops.do]
pv = "do_pct_air"
mv = "o2_pct"
band = 3.0
"""


def _readings(t_s: float, tick: int) -> dict[str, Reading]:
    """A plausible chamber; assays drawn every 2 h, the first result missing until then."""
    drawn = math.floor(t_s / 7200) * 7200
    has_sample = t_s >= 7200
    sample_q = Quality.GOOD if has_sample else Quality.BAD

    def sampled(value: float) -> Reading:
        return Reading(value if has_sample else NAN, "", drawn if has_sample else NAN, sample_q)

    return {
        "temperature_c": Reading(45.0 if tick == SPIKE_TICK else 37.0 + 0.01 * math.sin(tick),
                                 "degC", t_s),
        "do_pct_air": Reading(25.0 + math.sin(t_s / 3600), "%", t_s),
        "ph": Reading(7.3, "pH", t_s),
        "total_cells_per_ml": Reading(1e5 * math.exp(t_s / 86400), "cells/mL", t_s),
        "volume_ml": Reading(50.0, "mL", t_s),
        "viable_cells_per_ml": sampled(0.9e5 * math.exp(drawn / 86400)),
        "glucose_mm": sampled(20.0 - drawn / 7200),
        "lactate_mm": sampled(2.0 + drawn / 7200),
    }


def _comm_failure(t_s: float) -> dict[str, Reading]:
    """What the reactor records when a read fails: NaN values, timestamp 0, COMM_ERROR."""
    names = ("temperature_c", "do_pct_air", "ph", "total_cells_per_ml", "volume_ml",
             "viable_cells_per_ml", "glucose_mm", "lactate_mm")
    return {n: Reading(NAN, "", 0.0, Quality.COMM_ERROR) for n in names}


def make_run(path: Path, reactors: tuple[str, ...] = ("A", "B"), *, ticks: int = 2880,
             period_s: float = 30.0, diagnostics: bool = True, events: int = 3,
             summary: bool = True) -> Path:
    """A small run: `ticks` control ticks per reactor with a one-tick temperature spike."""
    hist = Historian(path, RunInfo("run-test-1", "2024-05-01T08:00:00+00:00", 42, period_s,
                                   CONFIG_TOML, [(r, f"sim://{r}") for r in reactors]))
    outputs = {"heater_pct": 20.0, "o2_pct": 5.0, "co2_pct": 3.0, "feed_ml_per_h": 1.0,
               "harvest_ml_per_h": 1.0, "base_ml_per_h": 0.0}
    for r in reactors:
        for name, pv, mv, sp in LOOPS:
            hist.record_setpoint(r, 0.0, name, pv, mv, sp, "auto")
        hist.record_setpoint(r, ticks * period_s / 2, "ph", "ph", "co2_pct", 7.2, "auto")
        for k in range(events):
            hist.record_event(r, k * 60.0, "comm" if k % 2 else "run", f"event {k} <b>",
                              {"k": k})
        for tick in range(ticks):
            t_s = tick * period_s
            readings = _comm_failure(t_s) if tick == SPIKE_TICK + 10 else _readings(t_s, tick)
            hist.record_tick(r, t_s, readings, outputs)
            if diagnostics and tick % 20 == 0:
                d = t_s / 86400
                hist.record_diagnostics(r, t_s, {
                    "viable_cells_per_ml": 1e5 * math.exp(d), "dead_cells_per_ml": 1e4,
                    "glucose_mm": 20 - d, "glutamine_mm": 4.0, "lactate_mm": 2 + d,
                    "ammonia_mm": 0.1 * d, "fold_expansion": math.exp(d)})
    hist.close(_summary(reactors) if summary else None)
    return path


def _summary(reactors: tuple[str, ...]) -> dict[str, object]:
    """Shaped like controller.runtime.run's summary: per-reactor results under `reactors`."""
    per_reactor = {
        r: {"fold_expansion": 17.25 + i, "viable_cells_per_ml_final": 2.5e6,
            "errors": {"read": 1, "write": 0, "tick": 0},
            "loops": {"temperature": {"setpoint": 37.0, "band": 0.1,
                                      "within_band_fraction": 0.9871, "iae": 123.456,
                                      "max_abs_error": 8.0},
                      "ph": {"setpoint": 7.2, "band": 0.05, "within_band_fraction": 0.5,
                             "iae": 9.75, "max_abs_error": 0.1}}}
        for i, r in enumerate(reactors)
    }
    return {"run_id": "run-test-1", "seed": 42, "stopped_by": "completed",
            "simulated_seconds": 86370.0, "ticks": 2880, "reactors": per_reactor,
            **per_reactor[reactors[0]]}


def _expected_pngs(reactor: str) -> list[str]:
    return [f"{reactor}-loop-{name}.png" for name, *_ in LOOPS] + [
        f"{reactor}-{plot}.png" for plot in ("cells", "metabolites", "feeds")]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two reactors with ground truth and a summary: (run database, index.html)."""
    root = tmp_path_factory.mktemp("full")
    db = make_run(root / "run.sqlite")
    return db, report.write_report(db, root / "report")


def test_report_writes_the_page_and_every_plot_as_a_png(full_report: tuple[Path, Path]) -> None:
    _, page = full_report
    assert page.name == "index.html" and page.is_file()
    for reactor in ("A", "B"):  # a plot set per reactor
        for name in _expected_pngs(reactor):
            png = page.parent / name
            assert png.is_file(), name
            assert png.read_bytes()[:8] == PNG_MAGIC, name


def test_page_references_every_png_by_relative_path(full_report: tuple[Path, Path]) -> None:
    _, page = full_report
    text = page.read_text(encoding="utf-8")
    sources = set(re.findall(r"<img src='([^']+)'", text))
    assert sources == {name for r in ("A", "B") for name in _expected_pngs(r)}
    assert all("/" not in src for src in sources)  # self-contained: next to index.html


def test_page_shows_run_and_summary_values(full_report: tuple[Path, Path]) -> None:
    _, page = full_report
    text = page.read_text(encoding="utf-8")
    for expected in ("run-test-1", "42", "30 s", "98.7 %", "123.5", "8", "50.0 %", "9.75",
                     "17.25", "18.25", "completed"):
        assert expected in text, expected
    assert "event 1 &lt;b&gt;" in text  # messages are escaped, not markup


def test_loop_band_prefers_the_summary_then_the_config_then_the_default(
        full_report: tuple[Path, Path]) -> None:
    db, _ = full_report
    con = report.open_run_db(db)
    try:
        run = report.read_run(con)
    finally:
        con.close()
    assert report.loop_band(run, "A", "ph") == 0.05  # summary
    assert report.loop_band(run, "A", "do") == 3.0  # config_toml, summary has no do loop
    assert report.loop_band(run, "B", "do") == 2.0  # default
    assert report.loop_band(run, "A", "stirrer") is None


def test_bucketing_keeps_a_one_tick_spike_in_the_max(tmp_path: Path) -> None:
    db = make_run(tmp_path / "run.sqlite", ("A",), ticks=2000, period_s=1.0,
                  diagnostics=False, events=0)
    con = report.open_run_db(db)
    try:
        buckets = report.bucket_ticks(con, "A", ["temperature_c", "heater_pct"], (0.0, 1999.0),
                                      n_buckets=20)
    finally:
        con.close()
    temp = buckets.columns["temperature_c"]
    assert len(buckets.t_s) == 20 and np.all(np.diff(buckets.t_s) > 0)
    spike_bucket = int(SPIKE_TICK / (1999.0 / 20))
    assert temp.maximum[spike_bucket] == 45.0  # 1 tick in ~100 still sets the max
    assert np.all(np.delete(temp.maximum, spike_bucket) < 37.1)
    assert temp.mean[spike_bucket] < 37.2  # ... while the mean barely moves
    # the comm-error tick is not a process value: out of min/max, counted as not GOOD
    assert np.nanmin(temp.minimum) > 36.9
    assert temp.not_good is not None and temp.not_good.sum() == 1
    assert temp.not_good[int((SPIKE_TICK + 10) / (1999.0 / 20))] == 1
    assert buckets.columns["heater_pct"].not_good is None  # outputs have no quality code


def test_parallel_bucketing_equals_one_pass(full_report: tuple[Path, Path]) -> None:
    db, _ = full_report
    columns = ["temperature_c", "ph", "feed_ml_per_h"]
    span = (0.0, 2879 * 30.0)
    con = report.open_run_db(db)
    try:
        one = report.bucket_ticks(con, "B", columns, span, n_buckets=97)
    finally:
        con.close()
    split = report.bucket_ticks_parallel(db, "B", columns, span, n_buckets=97, workers=4)
    np.testing.assert_array_equal(split.t_s, one.t_s)
    for c in columns:
        for field in ("minimum", "maximum", "mean"):
            np.testing.assert_array_equal(getattr(split.columns[c], field),
                                          getattr(one.columns[c], field))


def test_bucketing_rejects_unknown_columns(full_report: tuple[Path, Path]) -> None:
    db, _ = full_report
    con = report.open_run_db(db)
    try:
        with pytest.raises(KeyError, match="no_such"):
            report.bucket_ticks(con, "A", ["no_such; DROP TABLE ticks"], (0.0, 1.0))
    finally:
        con.close()


def test_samples_are_read_once_per_draw_and_missing_ones_dropped(
        full_report: tuple[Path, Path]) -> None:
    db, _ = full_report
    con = report.open_run_db(db)
    try:
        samples = report.read_samples(con, "A", ["glucose_mm", "viable_cells_per_ml"])
    finally:
        con.close()
    glucose = samples["glucose_mm"]
    # 2880 ticks x 30 s = 24 h: draws at 2 h .. 22 h; none before the first result, and the
    # comm failure's timestamp 0 does not pose as a sample
    np.testing.assert_array_equal(glucose.t_s, np.arange(1, 12) * 7200.0)
    np.testing.assert_allclose(glucose.value, 20.0 - np.arange(1, 12))
    assert len(samples["viable_cells_per_ml"].t_s) == 11


def test_run_without_diagnostics_summary_or_few_events_still_reports(tmp_path: Path) -> None:
    db = make_run(tmp_path / "run.sqlite", ("solo",), ticks=300, diagnostics=False,
                  events=report.EVENT_LIMIT + 50, summary=False)
    page = report.write_report(db, tmp_path / "out")
    for name in _expected_pngs("solo"):
        assert (page.parent / name).read_bytes()[:8] == PNG_MAGIC, name
    text = page.read_text(encoding="utf-8")
    assert "No summary recorded" in text
    assert "no ground-truth diagnostics recorded" in text
    assert text.count("<td>event ") == report.EVENT_LIMIT
    assert "and 50 more events not shown" in text
    assert f"{report.EVENT_LIMIT + 50} events by kind: comm 125, run 125" in text


def test_missing_database_names_the_path_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "run.sqlite"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        report.write_report(missing, tmp_path / "out")
    assert not missing.exists() and not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_run_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValueError, match="not a run database"):
        report.write_report(other, tmp_path / "out")


def test_a_flat_one_reactor_summary_is_shown_too() -> None:
    """A summary may hold one reactor's results at top level, without `reactors`."""
    run = report.Run("flat", "2024-05-01T08:00:00+00:00", 7, 5.0, {}, {
        "fold_expansion": 12.5,
        "loops": {"do": {"setpoint": 25.0, "within_band_fraction": 0.95, "iae": 3.5,
                         "max_abs_error": 4.25}}})
    text = report.render_html(run, [], report.Events([], {}))
    for expected in ("12.5", "95.0 %", "3.5", "4.25", "25", "No events recorded"):
        assert expected in text, expected
