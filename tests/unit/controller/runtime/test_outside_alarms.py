"""Alarms raised outside the board across a restart: what the checkpoint keeps of them."""
from __future__ import annotations

import json
from typing import Any

from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms


class Records:
    def record_event(self, *args: Any, **kwargs: Any) -> None:
        pass


def outside() -> OutsideAlarms:
    return OutsideAlarms(ReactorJournal("r1", Records()), on_change=lambda: None)  # type: ignore[arg-type]


def restarted(before: OutsideAlarms) -> OutsideAlarms:
    """A new controller's alarms from `before`'s checkpoint, through JSON as on disk."""
    after = outside()
    after.restore(json.loads(json.dumps(before.snapshot())))
    return after


def test_a_one_shot_alarm_still_stands_after_a_restart_until_acknowledged() -> None:
    before = outside()
    before.set(10.0, "device_rebooted", active=True, priority="medium",
               message="device rebooted (boot id 7 -> 9)")
    after = restarted(before)
    assert after.standing() == [("device_rebooted", "medium")]
    assert after.active["device_rebooted"] == (
        "medium", 10.0, "device rebooted (boot id 7 -> 9)")
    assert after.acknowledge("device_rebooted") is True
    assert after.standing() == []
    assert restarted(after).standing() == []  # acknowledged: gone from the next checkpoint too


def test_an_alarm_with_a_condition_is_left_to_its_source_after_a_restart() -> None:
    """Its source raises it again if the condition still holds; restored, it would stand for
    good when the source starts afresh and never sees it clear."""
    before = outside()
    before.set(10.0, "volume_balance", active=True, message="balance off by 2 mL")
    after = restarted(before)
    assert after.standing() == []
    assert after.unacknowledged == {"volume_balance"}  # the operator must still learn of it


def test_a_checkpoint_from_before_one_shot_alarms_were_kept_restores_none_standing() -> None:
    after = outside()
    after.restore({"unacknowledged": ["device_rebooted"],
                   "first_raised": {"device_rebooted": ["medium", 10.0]}})
    assert after.standing() == []
    assert after.unacknowledged == {"device_rebooted"}


def test_a_checkpoint_naming_a_condition_alarm_as_one_shot_is_not_trusted_with_it() -> None:
    after = outside()
    after.restore({"unacknowledged": [], "first_raised": {},
                   "one_shot_active": {"volume_balance": ["high", 1.0, "forged"],
                                       "outbox_full": ["high", 2.0, "outbox full"]}})
    assert after.standing() == [("outbox_full", "high")]
