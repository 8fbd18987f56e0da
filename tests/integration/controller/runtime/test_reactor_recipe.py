"""A recipe run by a real Reactor over the in-process emulated chamber, in virtual time: the
phase's rates reach the pumps, its bolus is given and booked as measured, a new phase's
setpoint reaches its loop, a signed-and-verified hold puts the pumps at the hold outputs on the
tick it is applied, and the whole of it is on record and in the checkpoint."""
from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH, run_default_with_fault
from plugins.reactors import first_reactor

from controller import clock as clock_module
from controller.cli.main import apply_overrides
from controller.clock import Clock
from controller.config import load_config, parse_config
from controller.operator.protocol import Command
from controller.runtime.historian import Historian
from controller.runtime.reactor import Reactor

RECIPE = """# The recipe (docs/recipes.md)
[reactor.recipe]
name = "short"

[[reactor.recipe.phase]]
name = "a"
feed = { strategy = "fixed", feed_ml_per_h = 6.0 }
[[reactor.recipe.phase.bolus]]
after = "60s"
volume_ml = 0.5
rate_ml_per_h = 30.0
[[reactor.recipe.phase.exit]]
when = "phase_time >= 10m"

[[reactor.recipe.phase]]
name = "b"
loops = { do = { setpoint = 20.0 } }
feed = { strategy = "fixed", feed_ml_per_h = 2.0 }
hold = { feed_ml_per_h = 0.5, harvest_ml_per_h = 0.5 }
[[reactor.recipe.phase.exit]]
when = "confirmed"

"""


def with_recipe(recipe: str) -> str:
    """The default config's text with its recipe replaced by `recipe`."""
    text = DEFAULT_CONFIG_PATH.read_text()
    start = text.index("# The recipe (docs/recipes.md)")
    end = text.index("# Verified delivery")
    return text[:start] + recipe + text[end:]


def recipe_reactor(db: Path, clock: Clock) -> tuple[Reactor, Historian]:
    return first_reactor(parse_config(with_recipe(RECIPE)), db, clock)


def command(action: str, nonce: str) -> Command:
    return Command("alice", "hsc-1", action, {}, "test", 0.0, nonce)


async def _scenario(tmp_path: Path) -> dict[str, Any]:
    clock = Clock()
    reactor, historian = recipe_reactor(tmp_path / "run.sqlite", clock)
    seen: dict[str, Any] = {}
    await reactor.start()
    for _ in range(600):  # phase a: 10 min (t = 0-599 s), its bolus at 1 min
        await reactor.tick()
        await asyncio.sleep(1.0)
    seen["a_written"] = dict(reactor.link.written)
    seen["a_bolus"] = next(b for b in reactor.schedule.recipe_boluses if b.id == "r0")
    for _ in range(5):
        await reactor.tick()
        await asyncio.sleep(1.0)
    seen["b_telemetry"] = dict(reactor.procedure.telemetry)  # type: ignore[union-attr]
    seen["b_written"] = dict(reactor.link.written)
    seen["do_setpoint"] = next(lp.setpoint for lp in reactor.loops if lp.name == "do")
    reactor.commands.inbox.append(command("hold", "0" * 16))
    await reactor.tick()
    seen["holding"] = (dict(reactor.procedure.telemetry), dict(reactor.link.written))  # type: ignore[union-attr]
    await asyncio.sleep(1.0)
    await reactor.tick()
    seen["held"] = dict(reactor.procedure.telemetry)  # type: ignore[union-attr]
    seen["checkpoint"] = reactor.checkpoints.state()["recipe"]
    reactor.commands.inbox.append(command("confirm", "1" * 16))  # refused: not running
    reactor.commands.inbox.append(command("restart", "2" * 16))
    for _ in range(2):  # restarting on the tick it is applied, running on the next
        await asyncio.sleep(1.0)
        await reactor.tick()
    await asyncio.sleep(1.0)
    reactor.commands.inbox.append(command("confirm", "3" * 16))
    await reactor.tick()
    seen["end"] = reactor.procedure.summary()  # type: ignore[union-attr]
    seen["end_written"] = dict(reactor.link.written)
    await reactor.go_safe("test")
    historian.close()
    return seen


def test_a_recipe_drives_the_pumps_the_loops_and_the_records(tmp_path: Path) -> None:
    seen = clock_module.run(_scenario(tmp_path), None)
    assert seen["a_written"]["feed_ml_per_h"] == 6.0
    assert seen["a_written"]["harvest_ml_per_h"] == 6.0
    bolus = seen["a_bolus"]
    assert bolus.state == "done" and abs(bolus.delivered_ml - 0.5) < 0.05
    assert seen["b_telemetry"] == {"state": "running", "phase": "b"}
    assert seen["b_written"]["feed_ml_per_h"] == 2.0
    assert seen["do_setpoint"] == 20.0
    telemetry, written = seen["holding"]
    assert telemetry == {"state": "holding", "phase": "b"}
    assert written["feed_ml_per_h"] == 0.5 and written["harvest_ml_per_h"] == 0.5
    assert seen["held"] == {"state": "held", "phase": "b"}
    assert seen["checkpoint"]["state"] == "held" and seen["checkpoint"]["phase_index"] == 1
    assert seen["end"]["state"] == "complete"
    assert [(p["name"], p["ended_by"]) for p in seen["end"]["phases"]] == [
        ("a", "phase_time >= 10m"), ("b", "confirmed")]
    assert seen["end_written"]["feed_ml_per_h"] == 0.5  # complete: the last phase's hold
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        audit = con.execute("SELECT action, outcome FROM audit WHERE operator = 'alice' "
                            "ORDER BY rowid").fetchall()
        events = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'recipe' ORDER BY rowid")]
        (do_at,) = con.execute("SELECT t_s FROM setpoints WHERE loop = 'do' "
                               "AND setpoint = 20.0 ORDER BY t_s").fetchone()
    assert audit == [("hold", "applied"), ("confirm", "wrong_state"), ("restart", "applied"),
                     ("confirm", "applied")]
    assert [e["event"] for e in events if e["event"] != "state"] == [
        "phase_started", "phase_ended", "phase_started", "confirmed", "phase_ended"]
    assert do_at == 600.0  # on record when phase b set it


async def _hold_mid_bolus(tmp_path: Path) -> dict[str, Any]:
    clock = Clock()
    reactor, historian = recipe_reactor(tmp_path / "run.sqlite", clock)
    await reactor.start()
    seen: dict[str, Any] = {}
    for _ in range(90):  # the bolus starts at 60 s and pumps for 60 s at 30 mL/h
        await reactor.tick()
        await asyncio.sleep(1.0)
    bolus = reactor.schedule.recipe_boluses[0]
    seen["before"] = (bolus.state, bolus.delivered_ml)
    reactor.commands.inbox.append(command("hold", "4" * 16))
    for _ in range(300):  # five minutes held
        await reactor.tick()
        await asyncio.sleep(1.0)
    seen["held"] = (bolus.state, bolus.delivered_ml, dict(reactor.link.written))
    reactor.commands.inbox.append(command("restart", "5" * 16))
    for _ in range(120):
        await reactor.tick()
        await asyncio.sleep(1.0)
    seen["after"] = (bolus.state, bolus.delivered_ml, bolus.commanded_ml)
    await reactor.go_safe("test")
    historian.close()
    return seen


def test_a_hold_mid_bolus_pauses_it_and_the_restart_finishes_its_volume(tmp_path: Path) -> None:
    seen = clock_module.run(_hold_mid_bolus(tmp_path), None)
    state, delivered = seen["before"]
    assert state == "running" and 0.1 < delivered < 0.4
    state, held_ml, written = seen["held"]
    assert state == "running" and held_ml == pytest.approx(delivered, abs=0.01)
    assert written["feed_ml_per_h"] == 0.0  # phase a's hold: the default, pumps stopped
    state, delivered, commanded = seen["after"]
    assert state == "done"
    assert commanded == pytest.approx(0.5, abs=1e-6)
    assert delivered == pytest.approx(0.5, abs=0.05)


def test_an_interlock_trip_holds_a_running_recipe(tmp_path: Path) -> None:
    """A heater stuck on at 1 h: overtemp_limit trips and the recipe (default: on_interlock =
    hold) stops moving on; the whole culture, physics and all, in virtual time."""
    summary = run_default_with_fault("heater_stuck_on@1h", tmp_path / "run.sqlite", "2h")
    recipe = summary["reactors"]["hsc-1"]["recipe"]
    assert recipe["state"] == "held" and recipe["phase"] == "seed"
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        moves = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'recipe' ORDER BY rowid")]
    held = [m for m in moves if m["event"] == "state" and m["state"] == "holding"]
    assert [m["by"] for m in held] == ["interlock:overtemp_limit"]


async def _restart_under_a_trip(tmp_path: Path) -> dict[str, Any]:
    config = apply_overrides(load_config(DEFAULT_CONFIG_PATH), duration=None, speed=None,
                             seed=None, faults=["heater_stuck_on@10m"])
    clock = Clock()
    reactor, historian = first_reactor(config, tmp_path / "run.sqlite", clock)
    await reactor.start()
    procedure = reactor.procedure
    assert procedure is not None
    while procedure.state.value != "held":  # the trip holds it (minutes after the fault)
        assert clock.now() < 3600.0, "the stuck heater never held the recipe"
        await reactor.tick()
        await asyncio.sleep(1.0)
    tripped = sorted(reactor.interlocks.tripped)
    reactor.commands.inbox.append(command("restart", "4" * 16))
    await reactor.tick()
    state_after = procedure.state.value
    await reactor.go_safe("test")
    historian.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        audit = con.execute("SELECT action, outcome, message FROM audit WHERE operator = "
                            "'alice' ORDER BY rowid").fetchall()
    return {"tripped": tripped, "state_after": state_after, "audit": audit}


def test_a_restart_is_refused_while_the_trip_that_held_the_recipe_stands(
        tmp_path: Path) -> None:
    """Reactions act on a trip as it happens: the refusal is what keeps an operator's restart
    from running the recipe on under a latched over-temperature trip."""
    seen = clock_module.run(_restart_under_a_trip(tmp_path), None)
    assert "overtemp_limit" in seen["tripped"]
    assert seen["state_after"] == "held"
    [(action, outcome, message)] = seen["audit"]
    assert (action, outcome) == ("restart", "wrong_state")
    assert "interlock overtemp_limit (on_interlock = hold)" in message
    assert "reset the interlock first" in message


MILD_THEN_STRICT = """# The recipe (docs/recipes.md)
[reactor.recipe]
name = "mild-then-strict"

[[reactor.recipe.phase]]
name = "mild"
on_interlock = "nothing"
on_alarm = { critical = "nothing" }
[[reactor.recipe.phase.exit]]
when = "phase_time >= 30m"

[[reactor.recipe.phase]]
name = "strict"
feed = { strategy = "fixed", feed_ml_per_h = 2.0 }
[[reactor.recipe.phase.bolus]]
after = "0s"
volume_ml = 0.5
[[reactor.recipe.phase.exit]]
when = "phase_time >= 1d"

"""


async def _strict_phase_under_a_trip(tmp_path: Path) -> dict[str, Any]:
    config = apply_overrides(parse_config(with_recipe(MILD_THEN_STRICT)), duration=None,
                             speed=None, seed=None, faults=["heater_stuck_on@1m"])
    clock = Clock()
    reactor, historian = first_reactor(config, tmp_path / "run.sqlite", clock)
    await reactor.start()
    procedure = reactor.procedure
    assert procedure is not None
    tripped_in_mild: list[str] = []
    while procedure.phase is None or procedure.phase.name == "mild":
        assert clock.now() < 3600.0, "the mild phase never ended"
        if reactor.interlocks.tripped and not tripped_in_mild:
            tripped_in_mild = sorted(reactor.interlocks.tripped)
            state_at_trip = procedure.state.value
        await reactor.tick()
        await asyncio.sleep(1.0)
    seen = {"tripped_in_mild": tripped_in_mild, "state_at_trip": state_at_trip,
            "tripped_at_strict": sorted(reactor.interlocks.tripped),
            "state": procedure.state.value, "written": dict(reactor.link.written),
            "boluses": list(reactor.schedule.recipe_boluses)}
    await reactor.go_safe("test")
    historian.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        seen["moves"] = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'recipe' ORDER BY rowid")]
        seen["messages"] = [m for (m,) in con.execute(
            "SELECT message FROM events WHERE kind = 'recipe' ORDER BY rowid")]
    return seen


def test_a_phase_begun_under_a_standing_trip_holds_for_it_at_once(tmp_path: Path) -> None:
    """A trip the mild phase ignores still stands (latched) when the strict phase begins:
    the strict phase holds at once, as if the trip were new, before its first rate or bolus
    goes out. Before, the strict phase ran on under it."""
    seen = clock_module.run(_strict_phase_under_a_trip(tmp_path), None)
    assert "overtemp_limit" in seen["tripped_in_mild"]
    assert seen["state_at_trip"] == "running"  # the mild phase ignored it
    assert seen["state"] == "holding"
    assert seen["written"]["feed_ml_per_h"] == 0.0  # the phase's hold outputs, not its 2 mL/h
    assert seen["boluses"] == []  # its bolus at 0 s waits for the restart
    held = [m for m in seen["moves"] if m["event"] == "state" and m["state"] == "holding"]
    # Both over-temperature trips are latched; the first by name is the one on record.
    first = seen["tripped_at_strict"][0]
    assert [(m["by"], m["phase"]) for m in held] == [(f"interlock:{first}", "strict")]
    assert any(f"hold on interlock {first}, standing as phase strict began" in text
               for text in seen["messages"])
