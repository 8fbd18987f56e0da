"""The report shows a recipe: its phases read from the `recipe` events, shaded on every plot and
named at the top, its held spans hatched, and a table of what ended each phase. A run without a
recipe draws none of it. The run file is written by the real historian and the plots rendered
by the real matplotlib; the figures are inspected as they are saved."""
from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from controller import report
from controller.report import plots
from controller.report.run_db import PhaseSpan
from controller.runtime.historian import Historian, RunInfo
from drivers.contract.reading import Reading

DAY = 86400.0
PERIOD_S = 600.0
TICKS = 576  # 4 days
LAST_TICK_S = (TICKS - 1) * PERIOD_S


def _state(hist: Historian, t_s: float, new: str, old: str, phase: str | None, by: str) -> None:
    hist.record_event("R", t_s, "recipe", f"recipe {old} -> {new} by {by}",
                      {"event": "state", "state": new, "from_state": old, "phase": phase,
                       "by": by})


def _phase(hist: Historian, t_s: float, event: str, name: str, index: int,
           **more: object) -> None:
    hist.record_event("R", t_s, "recipe", f"phase {name} {event}",
                      {"event": event, "phase": name, "index": index, **more})


def make_run(path: Path, *, recipe: bool) -> Path:
    """Four days of one reactor; with `recipe`, three phases (the last still running at the
    end), a hold from day 1.5 to 1.75 and another from day 3.5 that the run stopped inside."""
    hist = Historian(path, RunInfo("recipe-1", "2026-12-02T08:00:00+00:00", 3, PERIOD_S, "",
                                   [("R", "sim://R")]))
    hist.record_setpoint("R", 0.0, "temperature", "temperature_c", "heater_pct", 37.0, "auto")
    outputs = {"heater_pct": 20.0, "feed_ml_per_h": 1.0, "harvest_ml_per_h": 1.0}
    for tick in range(TICKS):
        t_s = tick * PERIOD_S
        hist.record_tick("R", t_s, {"temperature_c": Reading(37.0, "degC", t_s),
                                    "total_cells_per_ml": Reading(1e5 * (1 + t_s / DAY),
                                                                  "cells/mL", t_s),
                                    "volume_ml": Reading(50.0, "mL", t_s)}, outputs)
        if tick % 6 == 0:
            hist.record_diagnostics("R", t_s, {"viable_cells_per_ml": 1e5 * (1 + t_s / DAY),
                                               "primitive_fraction": 0.1})
    if recipe:
        _state(hist, 0.0, "running", "idle", None, "operator:alice")
        _phase(hist, 0.0, "phase_started", "seed", 0)
        _phase(hist, DAY, "phase_ended", "seed", 0, started_s=0.0, ended_by="t_phase > 1d")
        _phase(hist, DAY, "phase_started", "expansion", 1)
        _state(hist, 1.5 * DAY, "holding", "running", "expansion", "operator:alice")
        _state(hist, 1.5 * DAY + 60, "held", "holding", "expansion", "recipe")
        _state(hist, 1.75 * DAY, "restarting", "held", "expansion", "operator:alice")
        _state(hist, 1.75 * DAY + 60, "running", "restarting", "expansion", "recipe")
        _phase(hist, 2.5 * DAY, "phase_ended", "expansion", 1, started_s=DAY,
               ended_by="est_inhibitor_ng_per_ml > 2 for 2h")
        _phase(hist, 2.5 * DAY, "phase_started", "production", 2)
        _state(hist, 3.5 * DAY, "holding", "running", "production", "alarm:temperature_high")
        _state(hist, 3.5 * DAY + 60, "held", "holding", "production", "recipe")
    hist.record_event("R", 0.0, "run", "reactor started", {"device": "sim://R"})
    hist.close(None)
    return path


EXPECTED_PHASES = [
    PhaseSpan("seed", 0, 0.0, DAY, "t_phase > 1d"),
    PhaseSpan("expansion", 1, DAY, 2.5 * DAY, "est_inhibitor_ng_per_ml > 2 for 2h"),
    PhaseSpan("production", 2, 2.5 * DAY, LAST_TICK_S, None),
]
EXPECTED_HELD = [(1.5 * DAY, 1.75 * DAY), (3.5 * DAY, LAST_TICK_S)]

SHADED_AXES = {"R-loop-temperature.png": 2, "R-cells.png": 1, "R-metabolites.png": 1,
               "R-feeds.png": 1, "R-product.png": 3}
"""Every plot the report draws against time, and the axes each shades (twins share them)."""


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """Each figure the report saves, by file name, kept for inspection (still saved)."""
    figures: dict[str, Figure] = {}
    save = plots._save

    def keep(fig: Figure, path: Path) -> Path:
        figures[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def _with_gid(fig: Figure, gid: str) -> list[list[Rectangle]]:
    """Per axes of the figure, its patches drawn with `gid`."""
    return [[p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == gid]
            for ax in fig.axes]


def _days(spans: list[Rectangle]) -> list[float]:
    """Each span's start and end on the plot's time axis (days), flat."""
    return [x for p in spans for x in (p.get_x(), p.get_x() + p.get_width())]


def test_phases_and_holds_are_read_from_the_recipe_events(tmp_path: Path) -> None:
    con = report.open_run_db(make_run(tmp_path / "run.sqlite", recipe=True))
    try:
        timeline = report.read_recipe(con, "R", LAST_TICK_S)
        assert not report.read_recipe(con, "other", LAST_TICK_S)
    finally:
        con.close()
    assert timeline.phases == EXPECTED_PHASES
    assert timeline.held == EXPECTED_HELD


def test_every_plot_shades_the_phases_and_hatches_the_holds(
        tmp_path: Path, saved_figures: dict[str, Figure]) -> None:
    index = report.write_report(make_run(tmp_path / "run.sqlite", recipe=True),
                                tmp_path / "out")
    assert set(saved_figures) == set(SHADED_AXES)
    for name, fig in saved_figures.items():
        phases = _with_gid(fig, plots.PHASE_GID)
        held = _with_gid(fig, plots.HELD_GID)
        shaded = [i for i, spans in enumerate(phases) if spans]
        assert len(shaded) == SHADED_AXES[name], name
        for i in shaded:
            assert len(phases[i]) == len(EXPECTED_PHASES), name
            assert len(held[i]) == len(EXPECTED_HELD), name
            assert _days(phases[i]) == pytest.approx(
                [t / DAY for s in EXPECTED_PHASES for t in (s.start_s, s.end_s)]), name
            assert _days(held[i]) == pytest.approx(
                [t / DAY for span in EXPECTED_HELD for t in span]), name
            assert all(p.get_hatch() == plots.HELD_HATCH for p in held[i])
        first = fig.axes[shaded[0]]
        names = [t.get_text() for t in first.texts if t.get_gid() == plots.PHASE_GID]
        assert names == ["seed", "expansion", "production"], name
        assert sum(t.get_gid() == plots.PHASE_GID for ax in fig.axes[1:] for t in ax.texts) == 0
        # alternating fills: neighbours differ, every other one the same
        colors = [p.get_facecolor() for p in phases[shaded[0]]]
        assert colors[0] != colors[1] and colors[0] == colors[2], name
    text = index.read_text(encoding="utf-8")
    section = text[text.index("<h3>Recipe</h3>"):text.index("<h3>Alarms and interlocks</h3>")]
    assert ("<tr><td>expansion</td><td>1 d 00:00:00</td><td>2 d 12:00:00</td>"
            "<td>est_inhibitor_ng_per_ml &gt; 2 for 2h</td></tr>") in section
    assert "<td>production</td><td>2 d 12:00:00</td><td>3 d 23:50:00</td>" in section
    assert "(still running at the end)" in section
    assert "1 d 12:00:00 to 1 d 18:00:00, 3 d 12:00:00 to 3 d 23:50:00" in section


def test_a_run_without_a_recipe_draws_no_shading(
        tmp_path: Path, saved_figures: dict[str, Figure]) -> None:
    index = report.write_report(make_run(tmp_path / "run.sqlite", recipe=False),
                                tmp_path / "out")
    assert set(saved_figures) == set(SHADED_AXES)
    for name, fig in saved_figures.items():
        for ax in fig.axes:
            assert not [a for a in (*ax.patches, *ax.texts)
                        if a.get_gid() in (plots.PHASE_GID, plots.HELD_GID)], name
            assert "recipe held" not in ax.get_legend_handles_labels()[1]
    assert "<h3>Recipe</h3>" not in index.read_text(encoding="utf-8")


def _timeline(tmp_path: Path, events: list[tuple[float, dict[str, object]]]
              ) -> report.RecipeTimeline:
    hist = Historian(tmp_path / "edge.sqlite", RunInfo("edge", "2026-12-02T08:00:00+00:00", 1,
                                                       60.0, "", [("R", "sim://R")]))
    for t_s, data in events:
        hist.record_event("R", t_s, "recipe", "recipe", data)
    hist.close(None)
    con = report.open_run_db(tmp_path / "edge.sqlite")
    try:
        return report.read_recipe(con, "R", 1000.0)
    finally:
        con.close()


def test_a_restarted_controller_announcing_its_phase_again_does_not_split_it(
        tmp_path: Path) -> None:
    a = {"event": "phase_started", "phase": "a", "index": 0}
    timeline = _timeline(tmp_path, [
        (0.0, a), (300.0, a),  # the restart after a crash says where it is
        (400.0, {"event": "phase_ended", "phase": "a", "index": 0, "started_s": 0.0,
                 "ended_by": "command stop by alice"})])
    assert timeline.phases == [PhaseSpan("a", 0, 0.0, 400.0, "command stop by alice")]
    assert timeline.held == []


def test_lost_and_reordered_phase_events_still_give_contiguous_phases(tmp_path: Path) -> None:
    timeline = _timeline(tmp_path, [
        # an end whose start is not on record starts at its own started_s
        (100.0, {"event": "phase_ended", "phase": "a", "index": 0, "started_s": 20.0,
                 "ended_by": "x > 1"}),
        (100.0, {"event": "phase_started", "phase": "b", "index": 1}),
        # c's start recorded before b's end, at the same moment
        (200.0, {"event": "phase_started", "phase": "c", "index": 2}),
        (200.0, {"event": "phase_ended", "phase": "b", "index": 1, "started_s": 100.0,
                 "ended_by": "y < 2"}),
        (300.0, {"event": "phase_started", "phase": "d", "index": 3}),  # c's end lost
        (350.0, {"event": "state", "state": "holding", "from_state": "running", "phase": "d",
                 "by": "interlock:heater_cutout"}),
        (360.0, {"event": "state", "state": "held", "from_state": "holding", "phase": "d",
                 "by": "recipe"}),
        (500.0, {"event": "state", "state": "aborting", "from_state": "held", "phase": "d",
                 "by": "operator:bob"}),
        (510.0, {"event": "phase_ended", "phase": "d", "index": 3, "started_s": 300.0,
                 "ended_by": "command abort by bob"}),
        (520.0, {"event": "not one we know"}),
    ])
    assert timeline.phases == [PhaseSpan("a", 0, 20.0, 100.0, "x > 1"),
                               PhaseSpan("b", 1, 100.0, 200.0, "y < 2"),
                               PhaseSpan("c", 2, 200.0, 300.0, None),
                               PhaseSpan("d", 3, 300.0, 510.0, "command abort by bob")]
    assert timeline.held == [(350.0, 500.0)]
