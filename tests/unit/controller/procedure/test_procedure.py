"""The recipe's procedure as pure logic: phases, exits, states, commands, reactions, durability.

Driven tick by tick with hand-made readings on a 60 s period; no event loop, no device."""
from __future__ import annotations

import itertools
from typing import Any

import pytest

from controller.config.recipe import RecipeConfig
from controller.procedure.procedure import Procedure
from controller.procedure.states import TRANSITIONS, State
from drivers.contract.reading import Quality, Reading

SAFE = {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}
DAY = 86400.0


def recipe(**over: Any) -> RecipeConfig:
    table: dict[str, Any] = {
        "phase": [
            {"name": "seed", "feed": {"strategy": "fixed", "feed_ml_per_h": 0.0},
             "exit": [{"when": "phase_time >= 1d"}]},
            {"name": "grow", "feed": {"strategy": "fixed", "feed_ml_per_h": 2.0},
             "loops": {"do": {"setpoint": 12.0}},
             "bolus": [{"after": "6h", "volume_ml": 2.0}],
             "hold": {"feed_ml_per_h": 0.5, "harvest_ml_per_h": 0.5},
             "exit": [{"when": "viable_cells_per_ml >= 1e6 for 2h", "next": "harvest"},
                      {"when": "phase_time >= 5d", "next": "harvest"}]},
            {"name": "harvest", "exit": [{"when": "confirmed"}]},
        ],
    }
    table.update(over)
    return RecipeConfig(**table)


def cells(value: float, t_s: float, quality: Quality = Quality.GOOD) -> dict[str, Reading]:
    return {"viable_cells_per_ml": Reading(value, "cells/mL", t_s, quality)}


def run(proc: Procedure, t0: float, t1: float, value: float = 1e5,
        quality: Quality = Quality.GOOD, period: float = 60.0) -> list[Any]:
    steps = []
    t = t0
    while t < t1:
        steps.append(proc.step(cells(value, t, quality), t))
        t += period
    return steps


def states(proc: Procedure) -> list[str]:
    return [d["state"] for _, _, d in proc.events if d["event"] == "state"]


def test_autostart_runs_phases_in_order_by_time_and_by_a_held_reading() -> None:
    proc = Procedure(recipe(), SAFE)
    first = proc.step(cells(1e5, 0.0), 0.0)
    assert proc.state is State.RUNNING and proc.phase is not None
    assert proc.phase.name == "seed" and first.rates["feed_ml_per_h"] == 0.0
    run(proc, 60.0, DAY)
    assert proc.phase.name == "seed"  # 1 d not reached before t = 1 d
    entering = proc.step(cells(1e5, DAY), DAY)
    assert proc.phase.name == "grow"
    assert entering.loop_settings["do"].setpoint == 12.0
    assert entering.rates == {"feed_ml_per_h": 2.0, "harvest_ml_per_h": 2.0,
                              "base_ml_per_h": 0.0}
    # The count crosses 1e6 at +1 d; it must stay there 2 h.
    run(proc, DAY + 60.0, 2 * DAY, value=1e5)
    run(proc, 2 * DAY, 2 * DAY + 2 * 3600.0, value=2e6)
    assert proc.phase.name == "grow"
    proc.step(cells(2e6, 2 * DAY + 2 * 3600.0), 2 * DAY + 2 * 3600.0)
    assert proc.phase.name == "harvest"
    grow = proc.summary()["phases"][1]
    assert grow["ended_by"] == "viable_cells_per_ml >= 1e6 for 2h"
    assert grow["started_s"] == DAY and grow["ended_s"] == 2 * DAY + 7200.0


def test_a_dip_or_a_bad_count_restarts_the_hold_timer() -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, DAY + 60.0)  # into grow
    t = DAY + 3600.0
    run(proc, DAY + 60.0, t, value=2e6)  # 59 min true
    proc.step(cells(2e6, t, Quality.BAD), t)  # bad: unknown, the timer restarts
    run(proc, t + 60.0, t + 2 * 3600.0, value=2e6)
    assert proc.phase is not None and proc.phase.name == "grow"
    proc.step(cells(2e6, t + 2 * 3600.0 + 60.0), t + 2 * 3600.0 + 60.0)
    assert proc.phase.name == "harvest"


def test_not_of_a_bad_reading_is_unknown_and_ends_nothing() -> None:
    proc = Procedure(recipe(phase=[
        {"name": "a", "exit": [{"when": "not viable_cells_per_ml > 1e6"}]},
    ]), SAFE)
    run(proc, 0.0, 3600.0, value=2e6, quality=Quality.STALE)
    assert proc.state is State.RUNNING
    proc.step(cells(5e5, 3600.0), 3600.0)
    assert proc.state is State.COMPLETE
    assert proc.summary()["phases"][0]["ended_by"] == "not viable_cells_per_ml > 1e6"


def test_a_phase_bolus_is_given_once_at_its_offset() -> None:
    proc = Procedure(recipe(), SAFE)
    steps = run(proc, 0.0, DAY + 12 * 3600.0)
    orders = [(s.boluses[0].id, i) for i, s in enumerate(steps) if s.boluses]
    assert len(orders) == 1 and orders[0][0] == "r0"
    assert orders[0][1] * 60.0 == DAY + 6 * 3600.0


def test_hold_then_held_on_the_next_step_restart_then_running() -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, DAY + 60.0)
    before, after = proc.command("hold", DAY + 60.0, "alice", "sampling")
    assert (before["state"], after["state"]) == ("running", "holding")
    held = proc.step(cells(1e5, DAY + 60.0), DAY + 60.0)
    assert proc.state is State.HOLDING  # the tick of the command shows holding
    assert held.rates == {"feed_ml_per_h": 0.5, "harvest_ml_per_h": 0.5, "base_ml_per_h": 0.0}
    assert held.boluses_wait
    proc.step(cells(1e5, DAY + 120.0), DAY + 120.0)
    assert proc.state is State.HELD
    proc.command("restart", DAY + 3 * 3600.0, "alice")
    proc.step(cells(1e5, DAY + 3 * 3600.0), DAY + 3 * 3600.0)
    assert proc.state is State.RESTARTING
    proc.step(cells(1e5, DAY + 3 * 3600.0 + 60.0), DAY + 3 * 3600.0 + 60.0)
    assert proc.state is State.RUNNING
    assert states(proc)[-4:] == ["holding", "held", "restarting", "running"]
    by = [d["by"] for _, _, d in proc.events if d["event"] == "state"]
    assert "operator:alice" in by


def test_phase_time_excludes_holds_so_a_bolus_and_an_exit_come_later_by_the_hold() -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, DAY + 3600.0)  # grow from t = 1 d, run for 1 h
    proc.command("hold", DAY + 3600.0, "bob")
    run(proc, DAY + 3600.0, DAY + 5 * 3600.0)  # 4 h held
    proc.command("restart", DAY + 5 * 3600.0, "bob")
    steps = run(proc, DAY + 5 * 3600.0, DAY + 12 * 3600.0)
    given = [i for i, s in enumerate(steps) if s.boluses]
    # 6 h of phase time: 1 h before the hold, then 5 h from the first running step after it.
    first_running = DAY + 5 * 3600.0 + 60.0
    assert DAY + 5 * 3600.0 + given[0] * 60.0 == pytest.approx(first_running + 5 * 3600.0,
                                                               abs=60.0)


def test_a_command_the_state_does_not_allow_is_refused_with_the_reason() -> None:
    proc = Procedure(recipe(), SAFE)
    proc.step(cells(1e5, 0.0), 0.0)
    with pytest.raises(ValueError, match="restart is not allowed while the recipe is running "
                                         r"\(allowed in: held\)"):
        proc.command("restart", 60.0, "alice")
    with pytest.raises(ValueError, match="start is not allowed while the recipe is running"):
        proc.command("start", 60.0, "alice")
    with pytest.raises(ValueError, match="waits for no confirmation"):
        proc.command("confirm", 60.0, "alice")
    assert proc.state is State.RUNNING and proc.events[-1][2]["event"] != "confirmed"


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("command", sorted(TRANSITIONS))
def test_every_command_in_every_state_moves_by_the_table_or_is_refused(
        state: State, command: str) -> None:
    proc = Procedure(recipe(autostart=False), SAFE)
    proc.state = state
    if state is not State.IDLE:
        proc._enter(0, 0.0)  # a phase, as any state but idle has
    allowed = TRANSITIONS[command].get(state)
    if allowed is None:
        with pytest.raises(ValueError, match=f"{command} is not allowed"):
            proc.command(command, 10.0, "op")
        assert proc.state is state
    else:
        proc.command(command, 10.0, "op")
        assert proc.state is allowed


def test_stop_ends_the_phase_by_the_command_and_stopped_is_final() -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, 3600.0)
    proc.command("stop", 3600.0, "carol", "contaminated")
    step = proc.step(cells(1e5, 3600.0), 3600.0)
    proc.step(cells(1e5, 3660.0), 3660.0)
    assert proc.state is State.STOPPED
    assert step.rates == {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}
    assert proc.summary()["phases"][0]["ended_by"] == "stop by carol: contaminated"
    with pytest.raises(ValueError):
        proc.command("restart", 3700.0, "carol")


def test_abort_takes_the_safe_rates_not_the_hold_outputs() -> None:
    safe = {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}
    proc = Procedure(recipe(), safe)
    run(proc, 0.0, DAY + 60.0)
    proc.command("abort", DAY + 60.0, "dave")
    step = proc.step(cells(1e5, DAY + 60.0), DAY + 60.0)
    assert step.rates == safe and step.rates is not SAFE
    proc.step(cells(1e5, DAY + 120.0), DAY + 120.0)
    assert proc.state is State.ABORTED


def test_alarm_and_interlock_reactions_follow_the_phase_declaration() -> None:
    proc = Procedure(recipe(phase=[
        {"name": "a", "on_alarm": {"high": "abort"},
         "exit": [{"when": "phase_time >= 1d"}]},
    ]), SAFE)
    proc.step(cells(1e5, 0.0), 0.0)
    proc.react("alarm", "ph_low", "medium", 10.0)
    assert proc.state is State.RUNNING  # medium: nothing by default
    proc.react("alarm", "temperature_high", "critical", 20.0)
    assert proc.state is State.HOLDING  # critical: hold by default
    proc.react("interlock", "overtemp_cut", None, 30.0)
    assert proc.state is State.HOLDING  # already holding: hold does nothing more
    proc.react("alarm", "comm_loss", "high", 40.0)
    assert proc.state is State.ABORTING
    assert proc.events[-1][2]["by"] == "alarm:comm_loss"


def test_an_interlock_trip_holds_by_default() -> None:
    proc = Procedure(recipe(), SAFE)
    proc.step(cells(1e5, 0.0), 0.0)
    proc.react("interlock", "overtemp_limit", None, 5.0)
    assert proc.state is State.HOLDING
    assert proc.events[-1][2]["by"] == "interlock:overtemp_limit"


def test_restart_is_refused_while_what_held_the_recipe_still_stands() -> None:
    """Reactions act on an alarm as it is raised: a restart under a critical alarm still
    standing would run on under it. So start and restart are refused while a standing alarm
    or tripped interlock is one the phase holds or aborts for, saying which."""
    proc = Procedure(recipe(phase=[
        {"name": "a", "on_alarm": {"high": "abort", "medium": "nothing"},
         "on_interlock": "hold", "exit": [{"when": "phase_time >= 1d"}]},
    ]), SAFE)
    proc.step(cells(1e5, 0.0), 0.0)
    proc.react("alarm", "temperature_high", "critical", 10.0)
    run(proc, 60.0, 180.0)
    assert proc.state is State.HELD
    standing = proc.standing([("temperature_high", "critical"), ("ph_low", "medium")],
                             {"overtemp_cut"})
    assert standing == ["critical alarm temperature_high (on_alarm.critical = hold)",
                        "interlock overtemp_cut (on_interlock = hold)"]
    with pytest.raises(ValueError, match=r"restart refused: critical alarm temperature_high "
                                         r".*still stands.*shelve the alarm"):
        proc.command("restart", 200.0, "alice", "", standing)
    assert proc.state is State.HELD
    # A medium alarm the phase ignores does not block; nothing standing, the restart applies.
    assert proc.standing([("ph_low", "medium")], ()) == []
    proc.command("restart", 210.0, "alice", "", proc.standing([("ph_low", "medium")], ()))
    assert proc.state is State.RESTARTING
    # A command the state does not allow keeps its own reason, standing or not.
    with pytest.raises(ValueError, match="restart is not allowed while the recipe is restarting"):
        proc.command("restart", 220.0, "alice", "", standing)


def test_a_phase_begun_under_what_stands_reacts_to_it_abort_before_hold() -> None:
    """Reactions act on an alarm as it is raised; a phase that begins while one stands reacts
    to it then, as if it were new, before its first rates and boluses go out."""
    stands: dict[str, Any] = {"alarms": [("comm_loss", "high")], "interlocks": set()}
    proc = Procedure(recipe(phase=[
        {"name": "mild", "on_alarm": {"high": "nothing"}, "on_interlock": "nothing",
         "exit": [{"when": "phase_time >= 1h"}]},
        {"name": "strict", "on_alarm": {"high": "hold"}, "on_interlock": "abort",
         "feed": {"strategy": "fixed", "feed_ml_per_h": 2.0},
         "hold": {"feed_ml_per_h": 0.5, "harvest_ml_per_h": 0.5},
         "bolus": [{"after": "0s", "volume_ml": 1.0}],
         "exit": [{"when": "phase_time >= 1d"}]},
    ]), SAFE, lambda: (stands["alarms"], stands["interlocks"]))
    run(proc, 0.0, 3600.0)
    assert proc.state is State.RUNNING and proc.phase.name == "mild"  # type: ignore[union-attr]
    step = proc.step(cells(1e5, 3600.0), 3600.0)
    assert proc.state is State.HOLDING and proc.phase.name == "strict"  # type: ignore[union-attr]
    assert step.boluses == [] and step.boluses_wait
    assert step.rates == {"feed_ml_per_h": 0.5, "harvest_ml_per_h": 0.5, "base_ml_per_h": 0.0}
    assert proc.events[-1][1] == ("recipe running -> holding (hold on alarm comm_loss (high), "
                                  "standing as phase strict began)")
    assert proc.events[-1][2]["by"] == "alarm:comm_loss"
    # Cleared, restarted: the phase's bolus at 0 s is given then, once.
    stands["alarms"] = []
    run(proc, 3660.0, 3720.0)
    proc.command("restart", 3720.0, "alice")
    given = [order for step in run(proc, 3780.0, 3900.0) for order in step.boluses]
    assert proc.state is State.RUNNING and [o.volume_ml for o in given] == [1.0]
    # A trip the phase aborts for, beside an alarm it holds for: abort wins.
    stands["alarms"], stands["interlocks"] = [("comm_loss", "high")], {"overtemp_cut"}
    proc2 = Procedure(proc.config, SAFE, lambda: (stands["alarms"], stands["interlocks"]))
    run(proc2, 0.0, 3660.0)
    assert proc2.state is State.ABORTING
    assert proc2.events[-1][2]["by"] == "interlock:overtemp_cut"


def test_a_phase_begun_with_nothing_standing_runs() -> None:
    asked = []
    proc = Procedure(recipe(), SAFE, lambda: asked.append(1) or ([("ph_low", "medium")], ()))
    run(proc, 0.0, DAY + 120.0)
    assert proc.state is State.RUNNING and proc.phase.name == "grow"  # type: ignore[union-attr]
    assert len(asked) == 2  # asked as each phase began, not every tick


def test_confirm_ends_a_phase_that_waits_for_it_and_the_last_phase_completes() -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, DAY + 60.0)
    run(proc, DAY + 60.0, 6 * DAY + 120.0)  # grow ends by time at 5 d
    assert proc.phase is not None and proc.phase.name == "harvest"
    proc.command("confirm", 6 * DAY + 200.0, "erin")
    with pytest.raises(ValueError, match="already confirmed"):
        proc.command("confirm", 6 * DAY + 201.0, "erin")
    step = proc.step(cells(1e5, 6 * DAY + 240.0), 6 * DAY + 240.0)
    assert proc.state is State.COMPLETE
    assert step.rates == {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0, "base_ml_per_h": 0.0}
    assert [p["name"] for p in proc.summary()["phases"]] == ["seed", "grow", "harvest"]
    assert proc.summary()["phases"][1]["ended_by"] == "phase_time >= 5d"


def test_a_restored_running_recipe_comes_back_held_where_it_was_and_gives_nothing_twice(
) -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, DAY + 7 * 3600.0)  # grow, its bolus given at 6 h
    snap = proc.snapshot()
    again = Procedure(recipe(), SAFE)
    again.restore(snap, DAY + 9 * 3600.0)
    assert again.state is State.HELD and again.phase is not None
    assert again.phase.name == "grow"
    assert again.phase_time_s == snap["phase_time_s"]
    assert "was running" in again.events[-1][1]
    again.command("restart", DAY + 10 * 3600.0, "frank")
    steps = run(again, DAY + 10 * 3600.0, DAY + 20 * 3600.0)
    assert not any(s.boluses for s in steps)  # the bolus of this phase was given already
    # The outage and the hold are not phase time: 7 h before, then from the restart on.
    assert again.phase_time_s < 7 * 3600.0 + 10 * 3600.0


def test_on_restart_resume_carries_on_running() -> None:
    proc = Procedure(recipe(on_restart="resume"), SAFE)
    run(proc, 0.0, 3600.0)
    again = Procedure(recipe(on_restart="resume"), SAFE)
    again.restore(proc.snapshot(), 7200.0)
    assert again.state is State.RUNNING


def test_idle_without_autostart_until_start() -> None:
    proc = Procedure(recipe(autostart=False), SAFE)
    step = proc.step(cells(1e5, 0.0), 0.0)
    assert proc.state is State.IDLE and proc.telemetry == {"state": "idle", "phase": None}
    assert step.boluses_wait
    proc.command("start", 60.0, "gina")
    step = proc.step(cells(1e5, 60.0), 60.0)
    assert proc.telemetry == {"state": "running", "phase": "seed"}
    assert step.loop_settings == {}  # seed sets no loop


def test_cell_specific_feed_follows_the_cells_and_holds_on_a_bad_count() -> None:
    proc = Procedure(recipe(phase=[
        {"name": "perfuse", "feed": {"strategy": "cell_specific", "nl_per_cell_per_d": 0.1,
                                     "source": "viable_cells_per_ml", "max_ml_per_h": 10.0},
         "exit": [{"when": "phase_time >= 1d"}]},
    ]), SAFE)
    volume = Reading(50.0, "mL", 0.0)
    step = proc.step({**cells(2e6, 0.0), "volume_ml": volume}, 0.0)
    # 0.1 nL/cell/d x 2e6 cells/mL x 50 mL = 10 mL/d
    assert step.rates["feed_ml_per_h"] == pytest.approx(10.0 / 24.0, abs=0.01)
    assert step.rates["harvest_ml_per_h"] == step.rates["feed_ml_per_h"]
    step = proc.step({**cells(4e6, 120.0, Quality.BAD), "volume_ml": volume}, 120.0)
    assert step.rates["feed_ml_per_h"] == pytest.approx(10.0 / 24.0, abs=0.01)
    step = proc.step({**cells(4e6, 240.0), "volume_ml": volume}, 240.0)
    assert step.rates["feed_ml_per_h"] == pytest.approx(20.0 / 24.0, abs=0.01)


def test_inhibitor_dilution_raises_perfusion_above_its_setpoint_within_bounds() -> None:
    proc = Procedure(recipe(phase=[
        {"name": "dilute", "feed": {"strategy": "inhibitor_dilution", "setpoint": 0.05,
                                    "kp_ml_per_h": 50.0, "ti_s": "6h", "min_ml_per_h": 1.0,
                                    "max_ml_per_h": 12.0},
         "exit": [{"when": "phase_time >= 3d"}]},
    ]), SAFE)

    def inhibitor(value: float, t: float) -> dict[str, Reading]:
        return {"est_inhibitor_ng_per_ml": Reading(value, "ng/mL", t)}

    rates = [proc.step(inhibitor(0.02, t), t).rates["feed_ml_per_h"]
             for t in range(0, 3600, 60)]
    assert rates[-1] == 1.0  # below its setpoint: the minimum
    rates = [proc.step(inhibitor(0.2, t), t).rates["feed_ml_per_h"]
             for t in range(3600, 30 * 3600, 60)]
    assert rates[-1] == 12.0  # far above: rises to the maximum, not beyond
    assert all(a <= b for a, b in itertools.pairwise(rates))
    snap = proc.snapshot()
    assert snap["feeding"]["output"] == 12.0


@pytest.mark.parametrize(("was", "comes_back"), [
    (State.HOLDING, State.HELD), (State.HELD, State.HELD), (State.RESTARTING, State.HELD),
    (State.STOPPING, State.STOPPED), (State.ABORTING, State.ABORTED),
    (State.COMPLETE, State.COMPLETE), (State.STOPPED, State.STOPPED)])
def test_a_crash_in_any_state_comes_back_settled_and_never_moving(
        was: State, comes_back: State) -> None:
    proc = Procedure(recipe(), SAFE)
    run(proc, 0.0, 3600.0)
    snap = {**proc.snapshot(), "state": was.value}
    again = Procedure(recipe(), SAFE)
    again.restore(snap, 7200.0)
    assert again.state is comes_back
    step = again.step(cells(1e5, 7260.0), 7260.0)
    assert again.state is comes_back  # nothing moves on by itself after a restart
    assert step.boluses_wait and not step.boluses
