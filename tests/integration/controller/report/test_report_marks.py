"""The report shows when alarms were raised and interlocks tripped: listed on the page (all of
them, apart from the capped event list) and marked on every plot."""
from __future__ import annotations

from pathlib import Path

from controller import report
from controller.alarms.state_machine import AlarmState, Transition
from controller.report import plots
from controller.runtime.historian import Historian, RunInfo
from drivers.contract.reading import Reading

DAY = 86400.0


def make_run(path: Path, *, ticks: int = 600, period_s: float = 600.0,
             chatter: int = 0) -> Path:
    """A 4-day run of one reactor with a pH alarm, a supply alarm and an interlock trip/reset,
    plus `chatter` on/off cycles of a deviation alarm."""
    hist = Historian(path, RunInfo("marks-1", "2024-05-01T08:00:00+00:00", 1, period_s, "",
                                   [("R", "sim://")]))
    hist.record_setpoint("R", 0.0, "ph", "ph", "co2_pct", 7.3, "auto")
    for tick in range(ticks):
        t_s = tick * period_s
        ph = 7.3 if t_s < 3 * DAY else 8.0
        hist.record_tick("R", t_s, {"ph": Reading(ph, "pH", t_s)}, {"co2_pct": 10.0})
    raised = Transition("ph_high", AlarmState.NORMAL, AlarmState.UNACK, 3 * DAY + 790,
                        "ph above 7.6", "high")
    hist.record_event("R", raised.t_s, "alarm_state", "ph_high: normal -> unack",
                      raised.as_dict())
    hist.record_event("R", 3 * DAY + 985, "interlock", "co2_supply_lost tripped at 7.706",
                      {"interlock": "co2_supply_lost", "tripped": True, "value": 7.706})
    hist.record_event("R", 3 * DAY + 985, "alarm", "co2_supply_lost: interlock tripped",
                      {"alarm": "co2_supply_lost", "active": True, "priority": "high"})
    hist.record_event("R", 3.5 * DAY, "interlock", "co2_supply_lost reset at 7.39",
                      {"interlock": "co2_supply_lost", "tripped": False, "value": 7.39})
    for k in range(chatter):
        t = DAY + 600.0 * k
        for before, after in ((AlarmState.NORMAL, AlarmState.UNACK),
                              (AlarmState.UNACK, AlarmState.RTN_UNACK)):
            tr = Transition("do_deviation", before, after, t, "chatter", "medium")
            hist.record_event("R", t, "alarm_state", "do_deviation", tr.as_dict())
            t += 60.0
    hist.record_event("R", 10.0, "run", "reactor started", {"device": "sim://"})
    hist.close(None)
    return path


def test_marks_are_read_in_time_order_with_what_happened(tmp_path: Path) -> None:
    db = make_run(tmp_path / "run.sqlite")
    con = report.open_run_db(db)
    try:
        marks = report.read_marks(con, "R")
    finally:
        con.close()
    assert [(m.kind, m.name, m.on, m.detail, m.priority) for m in marks] == [
        ("alarm", "ph_high", True, "raised", "high"),
        ("interlock", "co2_supply_lost", True, "tripped", None),
        ("alarm", "co2_supply_lost", True, "raised", "high"),
        ("interlock", "co2_supply_lost", False, "reset", None),
    ]
    assert marks[0].t_s == 3 * DAY + 790


def test_the_page_lists_every_alarm_and_interlock_with_its_time(tmp_path: Path) -> None:
    db = make_run(tmp_path / "run.sqlite")
    text = report.write_report(db, tmp_path / "out").read_text(encoding="utf-8")
    section = text[text.index("<h3>Alarms and interlocks</h3>"):text.index("<figure>")]
    for row in ("<td>3 d 00:13:10</td><td class='num'>3.009</td><td>alarm</td><td>ph_high</td>"
                "<td>raised</td><td>high</td>",
                "<td>3 d 00:16:25</td><td class='num'>3.011</td><td>interlock</td>"
                "<td>co2_supply_lost</td><td>tripped</td>",
                "<td>3 d 12:00:00</td><td class='num'>3.500</td><td>interlock</td>"
                "<td>co2_supply_lost</td><td>reset</td>"):
        assert row in section, row


def test_a_quiet_run_says_so(tmp_path: Path) -> None:
    hist = Historian(tmp_path / "quiet.sqlite", RunInfo("q", "2024-05-01T08:00:00+00:00", 1,
                                                        60.0, "", [("R", "sim://")]))
    for tick in range(100):
        hist.record_tick("R", tick * 60.0, {"ph": Reading(7.3, "pH", tick * 60.0)},
                         {"co2_pct": 10.0})
    hist.close(None)
    text = report.write_report(tmp_path / "quiet.sqlite", tmp_path / "out").read_text()
    assert "No alarm raised and no interlock tripped." in text


def test_the_plots_mark_first_activations_and_every_trip(tmp_path: Path) -> None:
    db = make_run(tmp_path / "run.sqlite", chatter=30)
    con = report.open_run_db(db)
    try:
        marks = report.read_marks(con, "R")
    finally:
        con.close()
    assert sum(m.name == "do_deviation" for m in marks) == 60  # raised and returned, 30 times
    shown = report.first_marks(marks)
    assert [(m.name, m.kind, m.on) for m in shown] == [
        ("do_deviation", "alarm", True), ("ph_high", "alarm", True),
        ("co2_supply_lost", "interlock", True), ("co2_supply_lost", "alarm", True),
        ("co2_supply_lost", "interlock", False)]
    _, axes = plots._new_figure(rows=2)
    axes[0].plot([0, 4], [7.3, 8.0])
    assert plots._draw_marks(axes, shown) == "upper right"
    for ax in axes:  # one line per mark through both axes
        assert len(ax.lines) - (1 if ax is axes[0] else 0) == len(shown)
    legend = axes[0].get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[2] == "3 d 00:16:25  co2_supply_lost (interlock tripped)"
    assert labels[4] == "3 d 12:00:00  co2_supply_lost (interlock reset)"
    _, high = axes[0].get_ylim()
    assert high > 8.0 + 0.5 * (8.0 - 7.3)  # headroom above the data for the legend
    assert plots._draw_marks(axes, []) == "best"
