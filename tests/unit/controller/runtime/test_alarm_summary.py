"""The retained alarm summary as pure logic: what needs attention on the board and outside it,
published only when it changes, and folded by a late subscriber's view."""
from __future__ import annotations

import json
from typing import Any

import pytest

from controller.alarms.board import AlarmBoard
from controller.alarms.spec import AlarmConfig
from controller.mqtt.topics import (
    SummaryAlarm,
    Topics,
    alarm_payload,
    alarm_summary_payload,
    status_payload,
)
from controller.runtime.alarm_summary import AlarmSummary, needing_attention
from controller.runtime.command_desk import standing_now
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from controller.view.fleet_state import FleetState
from drivers.contract.reading import Reading

T = Topics("r1")


class Records:
    def record_event(self, *args: Any, **kwargs: Any) -> None:
        pass


def board() -> AlarmBoard:
    return AlarmBoard([AlarmConfig(name="hot", channel="temperature_c", kind="high",
                                   limit=38.0, priority="high"),
                       AlarmConfig(name="acid", channel="ph", kind="low", limit=6.9,
                                   priority="medium")])


def outside() -> OutsideAlarms:
    return OutsideAlarms(ReactorJournal("r1", Records()), on_change=lambda: None)  # type: ignore[arg-type]


def readings(temperature_c: float, ph: float, t_s: float) -> dict[str, Reading]:
    return {"temperature_c": Reading(temperature_c, "degC", t_s),
            "ph": Reading(ph, "pH", t_s)}


def test_the_summary_holds_what_needs_attention_and_changes_only_with_it() -> None:
    b, o, summary = board(), outside(), AlarmSummary()
    assert summary.changed(b, o) == ()  # the first is always published: a run's empty board
    assert summary.changed(b, o) is None
    b.evaluate(readings(38.5, 7.2, 10.0), {}, 10.0)
    [hot] = summary.changed(b, o) or ()
    assert hot == SummaryAlarm("hot", "high", "unack", True, hot.message, 10.0)
    assert "38" in hot.message
    b.acknowledge("hot", 20.0, "alice")
    assert [(a.name, a.state, a.active) for a in summary.changed(b, o) or ()] == [
        ("hot", "acked", True)]
    b.evaluate(readings(37.0, 7.2, 30.0), {}, 30.0)  # cleared after acknowledgement: normal
    assert summary.changed(b, o) == ()
    b.evaluate(readings(37.0, 6.5, 40.0), {}, 40.0)
    b.shelve("acid", 4000.0, 41.0, "alice")
    o.set(42.0, "volume_balance", active=True, priority="high", message="balance off 3 mL")
    o.set(43.0, "device_rebooted", active=True, priority="medium", message="rebooted")
    assert [(a.name, a.state, a.active) for a in summary.changed(b, o) or ()] == [
        ("acid", "shelved", False), ("device_rebooted", "unack", True),
        ("volume_balance", "unack", True)]
    o.set(50.0, "volume_balance", active=False, message="balance closes")
    o.acknowledge("device_rebooted")  # a one-shot alarm: the acknowledgement ends it
    now = needing_attention(b, o)
    assert [(a.name, a.state, a.active) for a in now] == [
        ("acid", "shelved", False), ("volume_balance", "rtn_unack", False)]
    assert now[1].message == "cleared"
    o.acknowledge("volume_balance")
    assert [a.name for a in needing_attention(b, o)] == ["acid"]


def test_an_outside_alarm_stands_for_the_recipe_until_cleared_or_a_one_shot_acknowledged(
) -> None:
    b, o = board(), outside()
    o.set(1.0, "feed_delivery_mismatch", active=True, priority="high", message="off")
    o.set(2.0, "outbox_full", active=True, message="full")  # default priority: high
    alarms, tripped = standing_now(b, o, _no_interlocks())
    assert not tripped
    assert list(alarms) == [("feed_delivery_mismatch", "high"), ("outbox_full", "high")]
    o.acknowledge("feed_delivery_mismatch")  # acknowledged, still active: still stands
    o.acknowledge("outbox_full")
    assert list(standing_now(b, o, _no_interlocks())[0]) == [("feed_delivery_mismatch", "high")]
    o.set(3.0, "feed_delivery_mismatch", active=False, message="matches")
    assert list(standing_now(b, o, _no_interlocks())[0]) == []


class _NoInterlocks:
    tripped: frozenset[str] = frozenset()


def _no_interlocks() -> Any:
    return _NoInterlocks()


def test_a_late_subscriber_starts_from_the_summary_and_folds_later_messages_onto_it() -> None:
    state = FleetState()
    state.update(T.alarms, alarm_payload(wall_ts=0, t_s=5.0, name="stale_one", severity="alarm",
                                         active=True, message="unack: old"), 0.0)
    summary = alarm_summary_payload(wall_ts=0, t_s=100.0, alarms=[
        SummaryAlarm("hot", "high", "acked", True, "temperature_c 38.4 > 38", 90.0),
        SummaryAlarm("acid", "medium", "shelved", False, "shelved by alice", 95.0)])
    assert state.update(T.alarm_summary, summary, 1.0)
    view = state.reactors["r1"]
    assert {n: (a.priority, a.state, a.active) for n, a in view.alarms.items()} == {
        "hot": ("high", "acked", True), "acid": ("medium", "shelved", False)}
    assert view.alarms["hot"].message == "temperature_c 38.4 > 38"
    state.update(T.alarms, alarm_payload(wall_ts=0, t_s=110.0, name="hot", severity="alarm",
                                         active=False, message="normal: returned"), 2.0)
    assert set(view.alarms) == {"acid"}


@pytest.mark.parametrize("body", [
    {"alarms": "not a list"}, {"alarms": [1, "x", None, []]}, {"no_alarms": True},
    {"alarms": [{"name": ["a"], "active": "yes", "severity": 3}]},
])
def test_a_malformed_summary_leaves_a_readable_board(body: dict[str, Any]) -> None:
    state = FleetState()
    state.update(T.alarm_summary, json.dumps(body).encode(), 0.0)
    alarms = state.reactors["r1"].alarms
    assert all(isinstance(a.name, str) and isinstance(a.state, str) for a in alarms.values())
    assert len(alarms) <= 1


def test_a_summary_of_an_unknown_priority_is_refused_before_it_is_sent() -> None:
    with pytest.raises(ValueError, match="alarm priority 'urgent' not one of low, medium"):
        alarm_summary_payload(wall_ts=0, t_s=0.0,
                              alarms=[SummaryAlarm("x", "urgent", "unack", True, "", 0.0)])


@pytest.mark.parametrize("summary_first", [True, False])
def test_a_summary_left_by_an_earlier_run_is_dropped_once_the_new_run_is_known(
        summary_first: bool) -> None:
    """A new run publishes its own (empty) summary at its first alarm evaluation; until then
    the broker still holds the last run's. The retained messages come in either order."""
    old = alarm_summary_payload(wall_ts=0, t_s=900.0, run_id="run-a", alarms=[
        SummaryAlarm("hot", "high", "unack", True, "temperature_c 38.4 > 38", 890.0)])
    status = status_payload("running", wall_ts=0, run_id="run-b", node="n1")
    state = FleetState()
    for topic, payload in ([(T.alarm_summary, old), (T.status, status)] if summary_first
                           else [(T.status, status), (T.alarm_summary, old)]):
        state.update(topic, payload, 0.0)
    assert state.reactors["r1"].alarms == {}
    same_run = alarm_summary_payload(wall_ts=0, t_s=5.0, run_id="run-b", alarms=[
        SummaryAlarm("hot", "high", "unack", True, "again", 5.0)])
    state.update(T.alarm_summary, same_run, 1.0)
    assert set(state.reactors["r1"].alarms) == {"hot"}
