"""Operator commands on the alarm board: shelve, unshelve, remove from / return to service.

Two levels. First `verify` + `apply` against a real AlarmBoard behind a thin target, for every
apply and refuse path. Then a real Reactor (the in-process emulated chamber, the real
historian, a real MQTT outbox that is never drained) in virtual time: what reaches the audit
trail, the alarm journal and the `alarms` and `cmd/reply` topics.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller import clock as clock_module
from controller.alarms.board import AlarmBoard
from controller.alarms.setup import alarm_board
from controller.alarms.state_machine import AlarmState, Transition
from controller.clock import Clock
from controller.config import Config, parse_config
from controller.mqtt.link import MqttSettings
from controller.mqtt.node import NodePresence
from controller.operator.actions import apply
from controller.operator.audit import read_audit
from controller.operator.bounds import bounds_from_config
from controller.operator.outgoing import build_command, parse_params
from controller.operator.protocol import Command, CommandRefused, sign
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.run import open_reactor_driver
from drivers.contract.reading import Reading

NOW_WALL = 1_767_225_600.0
KEY = bytes(range(32))
S = AlarmState

# The chamber holds 50 mL, so this alarm stands from the first evaluation on.
VOLUME_WATCH = """
[[reactor.alarm]]
name = "volume_watch"
channel = "volume_ml"
kind = "high"
limit = 10.0
priority = "low"
"""


def config_with(extra: str) -> Config:
    text = DEFAULT_CONFIG_PATH.read_text()
    anchor = "# The recipe (docs/recipes.md)"
    assert anchor in text
    return parse_config(text.replace(anchor, extra + "\n" + anchor, 1))


# --- verify + apply against a real board -------------------------------------------------------
@dataclass
class BoardTarget:
    """The alarm half of a CommandTarget over a real AlarmBoard, recording every transition."""

    board: AlarmBoard
    journal: list[Transition] = field(default_factory=list)

    def record_alarm_transitions(self, transitions: list[Transition]) -> None:
        self.journal += transitions


def evaluate(board: AlarmBoard, t_s: float) -> list[Transition]:
    """Everything well but the volume (50 mL, above volume_watch's 10 mL)."""
    values = {"volume_ml": 50.0, "temperature_c": 37.0, "do_pct_air": 25.0, "ph": 7.3}
    readings = {name: Reading(value, "u", t_s) for name, value in values.items()}
    return board.evaluate(readings, {"temperature_c": 37.0, "do_pct_air": 25.0, "ph": 7.3}, t_s)


@pytest.fixture
def config() -> Config:
    return config_with(VOLUME_WATCH)


@pytest.fixture
def target(config: Config) -> BoardTarget:
    reactor = config.reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    evaluate(board, 0.0)
    assert board["volume_watch"].state is S.UNACK
    return BoardTarget(board)


class Sender:
    """Signs commands with fresh nonces and verifies them against the config's bounds."""

    def __init__(self, config: Config) -> None:
        reactor = config.reactor[0]
        board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
        self.bounds = bounds_from_config(reactor, board, bolus_max_ml=20.0,
                                         outside_alarms=["outbox_full"])
        self.guard = ReplayGuard()

    def body(self, action: str, params: dict[str, Any]) -> bytes:
        return json.dumps(sign({"operator": "alice", "reactor": "hsc-1", "action": action,
                                "params": params, "reason": "probe swap", "ts": NOW_WALL,
                                "nonce": secrets.token_hex(16)}, KEY)).encode()

    def verify(self, action: str, **params: Any) -> Command:
        return verify(self.body(action, params), {"alice": KEY}, self.guard, NOW_WALL,
                      self.bounds)

    def refusal(self, action: str, **params: Any) -> CommandRefused:
        with pytest.raises(CommandRefused) as info:
            self.verify(action, **params)
        return info.value


@pytest.fixture
def sender(config: Config) -> Sender:
    return Sender(config)


def applied(command: Command, target: BoardTarget, t_s: float) -> Any:
    """`apply` on the alarm half of a CommandTarget; the Change, with `old`/`new` as dicts."""
    return apply(command, target, t_s)  # type: ignore[arg-type]


def refused_on_apply(command: Command, target: BoardTarget, t_s: float) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        applied(command, target, t_s)
    return info.value


def test_shelve_applies_and_the_shelf_expires(sender: Sender, target: BoardTarget) -> None:
    command = sender.verify("shelve_alarm", alarm="volume_watch", duration_s=600)
    change = applied(command, target, 100.0)
    assert change.old == {"alarm": "volume_watch", "state": "unack"}
    assert change.new == {"alarm": "volume_watch", "state": "shelved", "shelved_until_s": 700.0}
    (shelved,) = target.journal
    assert (shelved.from_state, shelved.to_state, shelved.operator) == (S.UNACK, S.SHELVED,
                                                                         "alice")
    assert "probe swap" in shelved.reason
    assert evaluate(target.board, 695.0) == []              # still shelved, nobody paged
    (back,) = evaluate(target.board, 700.0)
    assert (back.from_state, back.to_state, back.reason) == (S.SHELVED, S.UNACK, "shelf expired")
    assert back.notify


def test_unshelve_applies_and_refuses_when_not_shelved(sender: Sender,
                                                       target: BoardTarget) -> None:
    applied(sender.verify("shelve_alarm", alarm="volume_watch", duration_s=60), target, 10.0)
    change = applied(sender.verify("unshelve_alarm", alarm="volume_watch"), target, 20.0)
    assert (change.old["state"], change.new["state"]) == ("shelved", "unack")
    again = refused_on_apply(sender.verify("unshelve_alarm", alarm="volume_watch"), target, 30.0)
    assert again.code == "wrong_state" and "not shelved" in again.message
    assert again.claimed["nonce"]  # audited with the sender's nonce


def test_remove_from_and_return_to_service(sender: Sender, target: BoardTarget) -> None:
    change = applied(sender.verify("remove_alarm_from_service", alarm="volume_watch"), target,
                     10.0)
    assert change.new == {"alarm": "volume_watch", "state": "out_of_service"}
    assert evaluate(target.board, 20.0) == []               # not evaluated while out of service
    shelve = refused_on_apply(sender.verify("shelve_alarm", alarm="volume_watch", duration_s=60),
                              target, 25.0)
    assert shelve.code == "wrong_state" and "out of service" in shelve.message
    twice = refused_on_apply(sender.verify("remove_alarm_from_service", alarm="volume_watch"),
                             target, 26.0)
    assert twice.code == "wrong_state"
    change = applied(sender.verify("return_alarm_to_service", alarm="volume_watch"), target,
                     30.0)
    assert (change.old["state"], change.new["state"]) == ("out_of_service", "normal")
    (again,) = evaluate(target.board, 35.0)                  # evaluated afresh: still too full
    assert (again.from_state, again.to_state) == (S.NORMAL, S.UNACK)
    in_service = refused_on_apply(sender.verify("return_alarm_to_service", alarm="volume_watch"),
                                  target, 40.0)
    assert in_service.code == "wrong_state" and "not out of service" in in_service.message


def test_shelving_a_critical_alarm_is_forbidden_but_removing_it_is_not(
        sender: Sender, target: BoardTarget) -> None:
    refusal = sender.refusal("shelve_alarm", alarm="temperature_high", duration_s=60)
    assert refusal.code == "forbidden"
    assert "critical" in refusal.message and "unshelvable_priorities" in refusal.message
    change = applied(sender.verify("remove_alarm_from_service", alarm="temperature_high"),
                     target, 10.0)
    assert change.new["state"] == "out_of_service"


@pytest.mark.parametrize("duration_s", [0, -5, 8 * 3600 + 1, 1e9])
def test_shelf_duration_outside_the_bounds_names_param_value_and_range(
        sender: Sender, duration_s: float) -> None:
    refusal = sender.refusal("shelve_alarm", alarm="volume_watch", duration_s=duration_s)
    assert refusal.code == "out_of_range"
    assert f"duration_s = {float(duration_s):g}" in refusal.message
    assert "0 < duration_s <= 28800" in refusal.message


def test_the_longest_shelf_is_accepted(sender: Sender, target: BoardTarget) -> None:
    command = sender.verify("shelve_alarm", alarm="volume_watch", duration_s=8 * 3600)
    assert applied(command, target, 0.0).new["shelved_until_s"] == 8 * 3600


@pytest.mark.parametrize("action", ["shelve_alarm", "unshelve_alarm",
                                    "remove_alarm_from_service", "return_alarm_to_service"])
def test_unknown_alarms_and_alarms_off_the_board_are_unknown_targets(sender: Sender,
                                                                     action: str) -> None:
    params: dict[str, Any] = {"duration_s": 60} if action == "shelve_alarm" else {}
    unknown = sender.refusal(action, alarm="fire", **params)
    assert unknown.code == "unknown_target" and "volume_watch" in unknown.message
    outside = sender.refusal(action, alarm="outbox_full", **params)
    assert outside.code == "unknown_target" and "only be acknowledged" in outside.message


@pytest.mark.parametrize("params", [{"alarm": "volume_watch"},
                                   {"alarm": "volume_watch", "duration_s": "1h"},
                                   {"alarm": "volume_watch", "duration_s": 60, "why": "x"}])
def test_malformed_shelve_params(sender: Sender, params: dict[str, Any]) -> None:
    assert sender.refusal("shelve_alarm", **params).code == "malformed"


def test_the_board_refuses_what_stale_bounds_let_through(config: Config,
                                                         target: BoardTarget) -> None:
    """Bounds from another config (no unshelvable priorities, 1-day shelves) still cannot make
    the board shelve a critical alarm or shelve longer than its policy: `forbidden` at apply."""
    lax = config_with(VOLUME_WATCH + "\n[reactor.alarm_board]\nunshelvable_priorities = []\n"
                      'max_shelve_s = "1d"\n')
    sender = Sender(lax)
    critical = sender.verify("shelve_alarm", alarm="temperature_high", duration_s=60)
    assert refused_on_apply(critical, target, 1.0).code == "forbidden"
    long = sender.verify("shelve_alarm", alarm="volume_watch", duration_s=86400)
    refusal = refused_on_apply(long, target, 1.0)
    assert refusal.code == "forbidden" and "0 < duration_s <= 28800" in refusal.message
    assert target.board["volume_watch"].state is S.UNACK


def test_bounds_follow_the_board_config() -> None:
    config = config_with(VOLUME_WATCH.replace('priority = "low"',
                                              'priority = "low"\nmax_shelve_s = "1h"')
                         + '\n[reactor.alarm_board]\nmax_shelve_s = "2h"\n'
                         'unshelvable_priorities = ["high", "critical"]\n')
    reactor = config.reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    limits = bounds_from_config(reactor, board, bolus_max_ml=1.0).alarm_limits
    assert limits["volume_watch"].max_shelve_s == 3600.0   # the alarm's own limit is shorter
    assert limits["ph_deviation"].max_shelve_s == 7200.0   # the board's
    assert not limits["ph_high"].shelvable and not limits["temperature_high"].shelvable
    assert limits["ph_deviation"].shelvable                # medium


def test_client_sends_shelve_durations_as_seconds(sender: Sender, target: BoardTarget) -> None:
    params = parse_params("shelve_alarm", ["alarm=volume_watch", "duration_s=2h"])
    assert params == {"alarm": "volume_watch", "duration_s": 7200.0}
    signed = build_command(operator="alice", reactor="hsc-1", action="shelve_alarm",
                           params=params, reason="probe swap", key=KEY, now_wall_s=NOW_WALL,
                           nonce="cd" * 16)
    command = verify(json.dumps(signed).encode(), {"alice": KEY}, sender.guard, NOW_WALL,
                     sender.bounds)
    assert applied(command, target, 0.0).new["shelved_until_s"] == 7200.0
    with pytest.raises(ValueError, match="duration_s"):
        parse_params("shelve_alarm", ["alarm=volume_watch", "duration_s=soon"])


# --- a real reactor: audit trail, alarm journal, MQTT outbox ------------------------------------
def _command(action: str, **params: Any) -> bytes:
    return json.dumps(sign({"operator": "alice", "reactor": "hsc-1", "action": action,
                            "params": params, "reason": f"test {action}", "ts": time.time(),
                            "nonce": secrets.token_hex(16)}, KEY)).encode()


async def _scenario(config: Config, tmp_path: Path, script: dict[float, list[bytes]],
                    until_s: float) -> list[tuple[str, dict[str, Any]]]:
    """Tick the reactor once a second until `until_s`, handing it `script[t]` at time t; the
    messages its telemetry queued, as (topic suffix, payload)."""
    clock = Clock()
    historian = Historian(tmp_path / "run.sqlite",
                          RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    reactor = Reactor(config.reactor[0], open_reactor_driver(config, 0, clock.now), clock,
                      historian, control_period_s=1.0, stats_after_s=0.0)
    telemetry = NodePresence("n", MqttSettings.from_url("mqtt://127.0.0.1:9"),
                             tmp_path / "outbox.sqlite", clock, run_id="t", time_scale=1.0,
                             ).add_reactor("hsc-1", reactor.commands.receive)  # never started
    await reactor.start()
    reactor.attach_presence(telemetry, {"alice": KEY}, ReplayGuard())
    t = 0.0
    while t <= until_s:
        for payload in script.get(t, []):
            reactor.commands.receive("bioreactor/hsc-1/cmd", payload)
        await reactor.tick()
        t += 1.0
        await clock.sleep_until(t)
    await reactor.go_safe("test")
    historian.close()
    telemetry.outbox.commit()
    messages = [(m.topic.removeprefix("bioreactor/hsc-1/"), json.loads(m.payload))
                for m in telemetry.outbox.peek(limit=1_000_000)]
    telemetry.outbox.close()
    return messages


def _journal(db: Path, alarm: str) -> list[tuple[float, str, str, str | None]]:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT t_s, data_json FROM events WHERE kind = 'alarm_state' "
                           "ORDER BY rowid").fetchall()
    out = []
    for t_s, data_json in rows:
        data = json.loads(data_json)
        if data["alarm"] == alarm:
            out.append((t_s, data["from"], data["to"], data["operator"]))
    return out


def test_a_reactor_applies_audits_journals_and_publishes_board_commands(tmp_path: Path) -> None:
    script = {
        10.0: [_command("shelve_alarm", alarm="volume_watch", duration_s=60),
               _command("shelve_alarm", alarm="temperature_high", duration_s=60),
               _command("shelve_alarm", alarm="volume_watch", duration_s=9 * 3600),
               _command("unshelve_alarm", alarm="ph_high"),
               _command("remove_alarm_from_service", alarm="nope")],
        100.0: [_command("remove_alarm_from_service", alarm="volume_watch")],
        120.0: [_command("return_alarm_to_service", alarm="volume_watch")],
    }
    messages = clock_module.run(_scenario(config_with(VOLUME_WATCH), tmp_path, script, 140.0),
                                None)
    db = tmp_path / "run.sqlite"
    # the audit trail: every command, applied or refused, with old -> new and who and why
    audit = read_audit(db)
    outcomes = [(r["action"], r["outcome"]) for r in audit]
    assert outcomes == [("shelve_alarm", "forbidden"), ("shelve_alarm", "out_of_range"),
                        ("remove_alarm_from_service", "unknown_target"),
                        ("shelve_alarm", "applied"), ("unshelve_alarm", "wrong_state"),
                        ("remove_alarm_from_service", "applied"),
                        ("return_alarm_to_service", "applied")]
    shelf = audit[3]
    assert (shelf["operator"], shelf["reason"]) == ("alice", "test shelve_alarm")
    assert json.loads(shelf["old_json"]) == {"alarm": "volume_watch", "state": "unack"}
    assert json.loads(shelf["new_json"]) == {"alarm": "volume_watch", "state": "shelved",
                                             "shelved_until_s": 70.0}
    assert "not shelved" in audit[4]["message"]
    # the alarm journal: raised, shelved, back on expiry, out of service, back, raised again
    assert _journal(db, "volume_watch") == [
        (0.0, "normal", "unack", None), (10.0, "unack", "shelved", "alice"),
        (70.0, "shelved", "unack", None), (100.0, "unack", "out_of_service", "alice"),
        (120.0, "out_of_service", "normal", "alice"), (120.0, "normal", "unack", None)]
    # MQTT: each transition on `alarms`, each command answered on `cmd/reply`
    alarms = [(m["t_s"], m["active"], m["message"].split(":")[0])
              for topic, m in messages if topic == "alarms" and m["name"] == "volume_watch"]
    assert alarms == [(0.0, True, "unack"), (10.0, False, "shelved"), (70.0, True, "unack"),
                      (100.0, False, "out_of_service"), (120.0, False, "normal"),
                      (120.0, True, "unack")]
    shelved_msg = next(m["message"] for topic, m in messages
                       if topic == "alarms" and m["message"].startswith("shelved"))
    assert "alice: test shelve_alarm" in shelved_msg
    replies = sorted(m["code"] for topic, m in messages if topic == "cmd/reply")
    assert replies == sorted(outcome for _, outcome in outcomes)


FLOOD_ALARMS = "".join(f"""
[[reactor.alarm]]
name = "volume_watch_{i}"
channel = "volume_ml"
kind = "high"
limit = {10.0 + i}
""" for i in range(5)) + """
[reactor.alarm_board]
flood_threshold = 3
flood_window_s = "1m"
"""


def test_a_flood_reaches_mqtt_as_one_summary_and_an_end(tmp_path: Path) -> None:
    messages = clock_module.run(_scenario(config_with(FLOOD_ALARMS), tmp_path, {}, 120.0), None)
    alarms = [m for topic, m in messages if topic == "alarms"]
    assert [m["name"] for m in alarms] == ["flood", "flood"]  # no message per alarm
    start, end = alarms
    names = ", ".join(f"volume_watch_{i}" for i in range(5))
    assert start["active"] and start["t_s"] == 0.0
    assert start["message"].startswith(f"unack: alarm flood: 5 activations within 60 s ({names})")
    assert not end["active"] and end["t_s"] == 60.0
    assert f"5 notifications held back ({names})" in end["message"]
    assert "5 alarms unacknowledged" in end["message"]
    # machine-readable too: a dashboard need not parse the text
    assert start["flood"] == end["flood"] == {
        "count": 5, "alarms": [f"volume_watch_{i}" for i in range(5)]}
    # the journal has every alarm's activation, and the summary's count and names as data
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        rows = [json.loads(d) for (d,) in con.execute(
            "SELECT data_json FROM events WHERE kind = 'alarm_state' ORDER BY rowid")]
    assert {r["alarm"] for r in rows if r["to"] == "unack"} >= {f"volume_watch_{i}"
                                                                 for i in range(5)}
    (summary,) = [r for r in rows if r["alarm"] == "flood" and r["to"] == "unack"]
    assert summary["count"] == 5 and summary["alarms"] == [f"volume_watch_{i}" for i in range(5)]



def test_alarms_outside_the_board_acknowledge_once(tmp_path: Path) -> None:
    """outbox_full, restart_hold and the supply-lost alarms are raised outside the board: a
    second acknowledgement is refused like any other, never an error in the tick."""

    async def scenario() -> list[bool]:
        config = parse_config(DEFAULT_CONFIG_PATH.read_text())
        clock = Clock()
        historian = Historian(tmp_path / "run.sqlite",
                              RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
        reactor = Reactor(config.reactor[0], open_reactor_driver(config, 0, clock.now),
                          clock, historian, control_period_s=1.0, stats_after_s=0.0)
        try:
            desk = reactor.commands
            acks = [desk.ack_alarm("outbox_full", "alice", 0.0)]  # never raised
            reactor.outside_alarms.set(0.5, "outbox_full", active=True, message="full")
            acks += [desk.ack_alarm("outbox_full", "alice", 1.0),
                     desk.ack_alarm("outbox_full", "alice", 2.0)]
            return acks
        finally:
            historian.close()

    assert clock_module.run(scenario(), None) == [False, True, False]
