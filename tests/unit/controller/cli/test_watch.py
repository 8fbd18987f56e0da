"""The watch view as pure functions: a state folded from messages, and its rendering (the live
view against a real broker is in tests/integration/controller/cli/test_watch_live.py and
tests/system/test_watch_process.py)."""
from __future__ import annotations

import json

from plugins.telemetry import sample_telemetry

from controller.cli.watch_render import render
from controller.mqtt.topics import (
    LOST_PAYLOAD,
    Topics,
    alarm_payload,
    event_payload,
    node_status_topic,
    setting_payload,
    status_payload,
    telemetry_payload,
)
from controller.view.fleet_state import FleetState
from controller.view.payload import nesting_depth

T = Topics("r1")


def _alarm(name: str, severity: str, message: str, *, active: bool = True) -> bytes:
    return alarm_payload(wall_ts=0, t_s=7200.0, name=name, severity=severity, active=active,
                         message=message)


def test_render_shows_state_age_units_alarms_events_and_replies() -> None:
    state = FleetState()
    assert "waiting" in render(state, 0.0)
    state.update(T.status, status_payload("running", run_id="run-0007"), 0.0)
    state.update(T.setting("temperature.setpoint"), setting_payload(
        value=37.0, unit="degC", minimum=30.0, maximum=40.0), 0.0)
    assert state.update(T.telemetry, sample_telemetry(1), 1.0) is True
    state.update(T.telemetry, sample_telemetry(4), 2.0)  # 2 and 3 missing
    state.update(T.alarms, _alarm("ph_bad", "warning", "unack: pH probe fault"), 2.0)
    state.update(T.alarms, _alarm("temperature_high", "critical", "acked: 38.6 > 38.5"), 2.0)
    state.update(T.alarms, _alarm("do_low", "alarm", "rtn_unack: back in band",
                                  active=False), 2.0)
    state.update(T.alarms, _alarm("gone", "alarm", "unack: x"), 2.0)
    state.update(T.alarms, _alarm("gone", "alarm", "normal: acknowledged", active=False), 2.0)
    state.update(T.events, event_payload(wall_ts=0, t_s=187_445.0, kind="feed",
                                         message="bolus s0 started"), 2.0)
    state.update(T.cmd_reply, json.dumps({"nonce": "ab", "ok": False, "code": "replayed",
                                          "message": "nonce seen before", "t_s": 240.0}).encode(),
                 2.0)
    state.update(Topics("r2").status, LOST_PAYLOAD, 2.0)
    state.update("elsewhere/x", b"{}", 2.0)
    state.update(T.telemetry, b"not json", 2.0)

    text = render(state, 5.0)
    assert ("== r1  state=running  run=run-0007  seq=4  run time 00:04:00  "
            "data age 00:00:03  GAPS=2") in text
    assert "temperature_c" in text and "37.02" in text and "degC" in text
    assert "null" in text and "[BAD]" in text
    assert "loop temperature" in text and "setpoint 37 degC" in text and "mode auto" in text
    assert "heater_pct=11 %" in text
    board = [line.strip() for line in text.splitlines() if line.startswith("    ")
             and any(p in line for p in ("CRITICAL", "MEDIUM", "HIGH"))]
    assert board == [  # active first, by priority; then what still waits for an operator
        "CRITICAL acked          temperature_high: 38.6 > 38.5  (at 02:00:00)",
        "MEDIUM   unack          ph_bad: pH probe fault  (at 02:00:00)",
        "HIGH     rtn_unack      do_low: back in band  (at 02:00:00)",
    ]
    assert "gone" not in text
    assert "2d 04:04:05  feed: bolus s0 started" in text
    assert "00:04:00  REFUSED replayed: nonce seen before" in text
    assert "== r2  state=lost  no telemetry yet" in text
    assert "ignored messages: not_json 1" in text
    assert render(state, 90_005.0).count("data age 1d 01:00:03") == 1  # the age keeps counting


def test_a_lost_node_shows_its_reactors_lost_but_not_those_done() -> None:
    """Sparkplug's NDEATH: the node's will speaks for every reactor whose status names it."""
    state = FleetState()
    for rid, reactor_state in (("r1", "running"), ("r2", "done"), ("r3", "running")):
        state.update(Topics(rid).status, status_payload(
            reactor_state, run_id="run-a", node="lab-a" if rid != "r3" else "lab-b"), 0.0)
    state.update(node_status_topic("lab-a"), status_payload("running", reactors=["r1", "r2"]),
                 0.0)
    assert "== r1  state=running  run=run-a" in render(state, 1.0)
    state.update(node_status_topic("lab-a"), LOST_PAYLOAD, 2.0)
    text = render(state, 3.0)
    assert "== r1  state=lost (node lab-a lost)  run=run-a" in text
    assert "== r2  state=done  run=run-a" in text
    assert "== r3  state=running  run=run-a" in text  # another node's reactor
    assert state.nodes == {"lab-a": "lost"}
    state.update(node_status_topic("lab-a"), status_payload("running", reactors=["r1"]), 4.0)
    assert "== r1  state=running  run=run-a" in render(state, 5.0)  # the node's birth


def test_a_recipe_shows_its_state_and_phase_and_a_reactor_without_one_shows_none() -> None:
    state = FleetState()
    state.update(T.telemetry, telemetry_payload(
        seq=1, wall_ts=0, t_s=60.0, readings={},
        recipe={"state": "held", "phase": "perfusion_ramp"}), 0.0)
    state.update(Topics("r2").telemetry, sample_telemetry(1), 0.0)
    text = render(state, 0.0)
    r1, r2 = text.split("== r2")
    assert "\n  recipe held, phase perfusion_ramp\n" in r1
    assert "recipe" not in r2
    state.update(T.telemetry, telemetry_payload(
        seq=2, wall_ts=0, t_s=120.0, readings={}, recipe={"state": "complete", "phase": None}),
        0.0)
    assert "  recipe complete, no phase\n" in render(state, 0.0)
    state.update(T.telemetry, sample_telemetry(3), 0.0)  # the recipe's key gone: nothing shown
    assert "recipe" not in render(state, 0.0)


def test_a_priority_field_wins_over_the_severity() -> None:
    state = FleetState()
    body = json.loads(_alarm("feed_delivery_mismatch", "alarm", "unack: off by 0.4 mL"))
    state.update(T.alarms, json.dumps({**body, "priority": "low", "run_id": "r-9"}).encode(), 0)
    assert "LOW      unack          feed_delivery_mismatch" in render(state, 0.0)


def test_wrong_types_show_as_unknown_not_as_a_crash() -> None:
    state = FleetState()
    state.update(T.status, b'{"state": {"x": 1}, "run_id": 7}', 0.0)
    state.update(T.telemetry, json.dumps({
        "seq": "5", "t_s": True, "readings": [1, 2], "setpoints": {"temperature": "hot"},
        "outputs": {"heater_pct": [1]}, "modes": {"temperature": 3},
        "recipe": {"state": 4, "phase": ["x"]}}).encode(), 0.0)
    state.update(T.alarms, b'{"name": ["a"], "active": "yes", "severity": 3}', 0.0)
    state.update(T.events, b'{"t_s": -5, "kind": null}', 0.0)
    state.update(T.cmd_reply, b'{"ok": 1}', 0.0)
    text = render(state, 0.0)
    assert "== r1  state=?  seq=null  run time ?" in text
    assert "setpoint null" in text and "mode ?" in text and "heater_pct=null %" in text
    assert "  recipe ?, phase ?\n" in text
    assert "?        cleared        ?" not in text  # an inactive alarm of no state is not shown
    assert "?  ?: " in text and "REFUSED ?: " in text


def test_hostile_payloads_are_refused_by_reason_and_change_nothing() -> None:
    state = FleetState()
    state.update(T.telemetry, sample_telemetry(1), 0.0)
    before = render(state, 0.0)
    deep = b"[" * 8000 + b"]" * 8000
    hostile = [deep, b"\x00\xff" * 500_000, b'{"state": "\xc3\x28"}', b"[1, 2]", b"{" * 20]
    for payload in hostile:
        assert state.update(T.status, payload, 0.0) is True  # redrawn: the count shows
    state.update(T.cmd, deep, 0.0)  # an operator's topic: not read at all
    assert state.rejected == {"too_deep": 2, "too_large": 1, "not_utf8": 1, "not_object": 1}
    assert render(state, 0.0).replace(
        "ignored messages: not_object 1, not_utf8 1, too_deep 2, too_large 1\n", "") == before


def test_control_characters_cannot_reach_the_terminal() -> None:
    state = FleetState()
    state.update("bioreactor/r\x1b[2J/status", b'{"state": "running\\u001b[2J\\u0007"}', 0.0)
    state.update(T.telemetry, json.dumps({"seq": 1, "recipe": {
        "state": "held\x1b[2J", "phase": "seed\x07"}}).encode(), 0.0)
    text = render(state, 0.0)
    assert "\x1b" not in text and "\x07" not in text and "state=running?[2J?" in text
    assert "recipe held?[2J, phase seed?" in text


def test_nesting_depth_ignores_brackets_inside_strings() -> None:
    assert nesting_depth('{"a": "[[[{{{", "b": [[1]]}') == 3
    assert nesting_depth('{"a": "x\\"[[[", "b": 1}') == 1
    assert nesting_depth("[" * 8000) == 8000
