"""Crash recovery's parts: the feed ledger, loop and alarm states carried across a restart, and
the refusals that keep a restart from continuing a run it cannot honour. The whole thing, with
real kills, is in test_crash_recovery.py."""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from plugins.configs import load_default, load_timetable, run_config

from controller import clock
from controller.alarms.board import AlarmBoard
from controller.alarms.spec import AlarmConfig
from controller.alarms.state_machine import AlarmState
from controller.config import Config, ConfigError, ScheduleConfig
from controller.control.control_loop import ControlLoop
from controller.control.schedule import FeedSchedule
from controller.runtime.recovery import RunLock, check_continuable, load_recovery
from controller.runtime.run import Run, RunOptions
from drivers.contract.reading import Quality, Reading

HOUR = 3600.0
PERIOD_S = 10.0


def schedule(*at_s: float) -> FeedSchedule:
    return FeedSchedule(ScheduleConfig.model_validate({"bolus": [
        {"at": t, "volume_ml": 1.0, "rate_ml_per_h": 12.0} for t in at_s]}))


def pump(sched: FeedSchedule, t0: float, t1: float) -> list[tuple[str, str]]:
    """Tick the schedule from t0 to t1 as the reactor does; return the ledger's news."""
    news = []
    commanded: dict[str, float] = {}
    t = t0
    while t < t1:
        sched.account(commanded, {name: rate * PERIOD_S / HOUR
                                  for name, rate in commanded.items()}, PERIOD_S)
        commanded = dict(sched.rates(t, PERIOD_S))
        news += [(what, b.id) for what, b in sched.ledger]
        sched.ledger.clear()
        t += PERIOD_S
    return news


def test_an_interrupted_bolus_goes_on_with_what_is_left() -> None:
    before = schedule(100.0, 1000.0)
    news = pump(before, 0.0, 200.0)  # s0 runs from 100 s; 300 s needed for 1 mL at 12 mL/h
    assert news == [("started", "s0")]
    state = before.snapshot()
    given_ml = before.boluses[0].delivered_ml
    assert 0.2 < given_ml < 0.5

    after = schedule(100.0, 1000.0)
    unfinished = after.restore(state)
    assert [b.id for b in unfinished] == ["s0"]
    news = pump(after, 1500.0, 2500.0)  # the outage ran past s1's due time
    assert news == [("started", "s1"), ("done", "s0"), ("done", "s1")]
    assert [b.delivered_ml for b in after.boluses] == pytest.approx([1.0, 1.0], abs=1e-12)


def test_a_finished_bolus_is_never_given_again() -> None:
    before = schedule(100.0)
    pump(before, 0.0, 1000.0)
    after = schedule(100.0)
    assert after.restore(before.snapshot()) == []
    assert pump(after, 1000.0, 3000.0) == []
    assert after.boluses_done == 1


def test_a_paused_schedule_defers_boluses_until_resumed() -> None:
    sched = schedule(100.0)
    sched.paused = True
    assert pump(sched, 0.0, 500.0) == []
    sched.paused = False
    assert pump(sched, 500.0, 1000.0) == [("started", "s0"), ("done", "s0")]


def test_a_ledger_from_another_schedule_is_refused() -> None:
    state = schedule(100.0, 200.0)
    pump(state, 0.0, 300.0)
    with pytest.raises(ValueError, match="2 started boluses; this schedule has 1"):
        schedule(100.0).restore(state.snapshot())


def _loop() -> ControlLoop:
    config = load_default().reactor[0].loops["temperature"]
    return ControlLoop("temperature", config, stats_after_s=0.0)


def _good(value: float, t_s: float) -> dict[str, Reading]:
    return {"temperature_c": Reading(value, "degC", t_s, Quality.GOOD)}


def test_a_restored_loop_holds_its_output_then_continues_from_it() -> None:
    before = _loop()
    before.take_over(40.0)
    for k in range(200):
        before.step(_good(36.9 + 0.001 * k, float(k)), float(k))
    state = before.snapshot()
    output = state["output"]

    after = _loop()
    after.take_over(0.0)  # the device went to its safe state during the outage
    after.restore(state)
    outputs = [after.step(_good(37.0, 1000.0 + k), 1000.0 + k) for k in range(5)]
    resume_after = after.resume_after_good
    assert outputs[:resume_after - 1] == [output] * (resume_after - 1)
    assert all(abs(o - output) < 1.0 for o in outputs)
    assert after.setpoint == before.setpoint and after.mode == before.mode


def test_alarm_states_survive_a_restart() -> None:
    configs = [AlarmConfig(name="t_high", channel="temperature_c", kind="high", limit=38.0,
                           priority="high"),
               AlarmConfig(name="ph_low", channel="ph", kind="low", limit=7.0,
                           priority="medium")]
    board = AlarmBoard(configs)
    board["t_high"].evaluate(True, 10.0)
    board.acknowledge("t_high", 20.0, "alice")
    board.shelve("ph_low", 5000.0, 30.0, "alice")
    restored = AlarmBoard(configs)
    restored.restore(board.snapshot())
    assert restored["t_high"].state is AlarmState.ACKED
    assert restored["t_high"].first_raised_t_s == 10.0
    assert restored["ph_low"].state is AlarmState.SHELVED
    assert restored["ph_low"].shelved_until == 5000.0


def _stop_as_if_killed(db: Path) -> None:
    """A killed controller writes no summary: make a finished run's file look like one."""
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET summary_json = NULL")


def test_a_completed_run_is_never_continued(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    summary = run_config(load_default(), db, duration="30m")
    with pytest.raises(ConfigError, match=r"already completed.*new run id"):
        load_recovery(db, summary["run_id"])
    with pytest.raises(ConfigError, match=r"holds run .* not 'other'"):
        _stop_as_if_killed(db)
        load_recovery(db, "other")
    assert load_recovery(tmp_path / "absent.sqlite", "x") is None


def test_an_in_process_chamber_cannot_be_continued(tmp_path: Path) -> None:
    """Its chamber died with the controller: continuing would be fiction."""
    db = tmp_path / "run.sqlite"
    config = load_default()
    summary = run_config(config, db, duration="30m")
    _stop_as_if_killed(db)
    options = RunOptions(config=config, config_text="", db_path=db, run_id=summary["run_id"])
    with pytest.raises(ConfigError, match=r"reactor\[0\].device = 'sim://' is in-process"):
        clock.run(Run(options).execute(), None)


@pytest.mark.parametrize(("load", "edit"), [
    (load_timetable, {'at = "4d"': 'at = "5d"'}),  # a schedule bolus a day later
    (load_default, {'after = "2d"': 'after = "1d"'}),  # a recipe phase's bolus a day earlier
], ids=["schedule", "recipe"])
def test_a_changed_schedule_or_recipe_is_refused(tmp_path: Path, load: Callable[..., Config],
                                                 edit: dict[str, str]) -> None:
    db = tmp_path / "run.sqlite"
    summary = run_config(load(), db, duration="30m")
    _stop_as_if_killed(db)
    recovery = load_recovery(db, summary["run_id"])
    assert recovery is not None and recovery.checkpoints["hsc-1"].t_s > 0
    changed = load(**edit)
    with pytest.raises(ConfigError, match=r"reactor\[0\]\.schedule or \.recipe differs"):
        check_continuable(recovery, changed.reactor, [False])
    check_continuable(recovery, load().reactor, [False])  # the same config is fine


def test_one_controller_per_run(tmp_path: Path) -> None:
    db = tmp_path / "run.sqlite"
    first = RunLock(db)
    try:
        with pytest.raises(ConfigError, match="still being written by another controller"):
            RunLock(db, wait_s=0.2)
    finally:
        first.release()
    RunLock(db, wait_s=0.2).release()  # free once the first is gone


@pytest.mark.parametrize("make", [Path.mkdir, lambda p: p.write_bytes(b"not sqlite" * 100)],
                         ids=["a-folder", "not-sqlite"])
def test_a_db_path_that_is_no_run_file_is_a_clear_error(tmp_path: Path,
                                                       make: Callable[[Path], object]) -> None:
    db = tmp_path / "run.sqlite"
    make(db)
    with pytest.raises(ConfigError, match=r"run\.sqlite: not a (readable )?run file"):
        load_recovery(db, "r1")
