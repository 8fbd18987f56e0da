"""A restarted reactor continues its soft sensor from the checkpoint: the estimates a recipe's
exits and feeding read are there on the first tick, as they were at the filter's last update,
and the filter runs on from it; a checkpoint made under another soft-sensor configuration is
not applied (the filter starts afresh, and an event says why)."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.reactors import first_reactor

from controller import clock as clock_module
from controller.clock import Clock
from controller.config import load_config
from controller.runtime.reactor import Reactor
from controller.runtime.recovery import ReactorCheckpoint
from controller.runtime.run import open_reactor_driver

TICKS = 1300
"""Past the filter's start and two updates (every 10 min)."""


def _garble(how: str, snapshot: str) -> object:
    state = json.loads(snapshot)
    if how == "not json":
        return snapshot[: len(snapshot) // 2]
    if how == "a table":
        return state
    if how == "no filter":
        del state["filter"]
    elif how == "a short state":
        state["filter"]["base"][1] = state["filter"]["base"][1][:3]
    elif how == "nan covariance":
        state["filter"]["base"][2][0][0] = float("nan")
    return json.dumps(state)


async def _restart(tmp_path: Path, *, change_config: bool = False,
                   garble: str | None = None) -> dict[str, Any]:
    config = load_config(DEFAULT_CONFIG_PATH)
    clock = Clock()
    first, historian = first_reactor(config, tmp_path / "run.sqlite", clock)
    await first.start()
    for _ in range(TICKS):
        await first.tick()
        await clock.sleep_until(clock.now() + 1.0)
    assert first.soft_sensor is not None
    before = dict(first.soft_sensor.estimates)
    updates_before = first.soft_sensor.updates
    # What the historian stores and a restart reads: the state through JSON.
    state = json.loads(json.dumps(first.checkpoints.state()))
    if garble is not None:
        state["soft_sensor"] = _garble(garble, state["soft_sensor"])
    checkpoint_t_s = clock.now()
    await first.go_safe("crash")
    await clock.sleep_until(clock.now() + 120.0)  # two minutes down
    reactor_config = config.reactor[0]
    if change_config:
        faster = reactor_config.soft_sensor.model_copy(update={"update_period_s": 300.0})
        reactor_config = reactor_config.model_copy(update={"soft_sensor": faster})
    second = Reactor(reactor_config, open_reactor_driver(config, 0, clock.now), clock,
                     historian, control_period_s=1.0, stats_after_s=0.0)
    await second.start(restore=ReactorCheckpoint("hsc-1", checkpoint_t_s, time.time(), state))
    assert second.soft_sensor is not None
    sensor = second.soft_sensor
    right_after = dict(sensor.estimates)
    updates_right_after = sensor.updates
    ticks_before = second.counters.ticks
    for _ in range(700):  # past the next update
        await second.tick()
        await clock.sleep_until(clock.now() + 1.0)
    out = {"before": before, "right_after": right_after, "updates_before": updates_before,
           "updates_right_after": updates_right_after, "updates_after": sensor.updates,
           "tick_errors": second.counters.tick_errors,
           "ticks": second.counters.ticks - ticks_before}
    await second.go_safe("test")
    historian.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as db:
        out["events"] = [(m, json.loads(d) if d else None) for m, d in db.execute(
            "SELECT message, data_json FROM events WHERE kind = 'estimation' ORDER BY rowid")]
    return out


def test_a_restarted_reactor_has_its_estimates_at_once_and_runs_the_filter_on(
        tmp_path: Path) -> None:
    out = clock_module.run(_restart(tmp_path), None)
    before, after = out["before"], out["right_after"]
    assert before and after.keys() == before.keys()
    for name, reading in before.items():  # the same estimates, stamped with the same update
        assert after[name].value == reading.value, name
        assert after[name].timestamp_s == reading.timestamp_s, name
    assert out["updates_right_after"] == out["updates_before"] >= 3
    assert out["updates_after"] > out["updates_before"]  # and the filter runs on
    [(message, data)] = out["events"]
    assert message.startswith("soft sensor restored as of its update at")
    assert data["filter_t_s"] == before["est_viable_cells_per_ml"].timestamp_s


def test_a_checkpoint_of_another_soft_sensor_configuration_is_not_applied(
        tmp_path: Path) -> None:
    out = clock_module.run(_restart(tmp_path, change_config=True), None)
    assert out["right_after"] == {}  # no estimate until the new filter starts
    assert out["updates_after"] >= 1
    [(message, data)] = out["events"]
    assert "configuration changed" in message and data == {"restored": False}


@pytest.mark.parametrize("garble", ["not json", "a table", "no filter", "a short state",
                                    "nan covariance"])
def test_an_unreadable_soft_sensor_checkpoint_is_refused_and_control_carries_on(
        tmp_path: Path, garble: str) -> None:
    """A hand-edited or foreign soft-sensor part of a checkpoint: the reactor starts and
    controls (no tick fails), the filter starts afresh, and an event says why."""
    out = clock_module.run(_restart(tmp_path, garble=garble), None)
    assert out["right_after"] == {}
    assert out["tick_errors"] == 0 and out["ticks"] == 700
    assert out["updates_after"] >= 1  # the new filter started on the first density
    [(message, data)] = out["events"]
    assert "unreadable" in message and data == {"restored": False}
