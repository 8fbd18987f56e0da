"""Operator commands: only signed, fresh, in-bounds commands from known operators are applied."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plugins.configs import REPO, load_default

from controller.alarms.setup import alarm_board
from controller.config import ScheduleConfig
from controller.control.control_loop import ControlLoop
from controller.control.schedule import FeedSchedule
from controller.operator import protocol
from controller.operator.actions import apply
from controller.operator.bounds import CommandBounds, LoopBounds, bounds_from_config
from controller.operator.outgoing import build_command, parse_params
from controller.operator.protocol import (
    ACTIONS,
    MAX_COMMAND_BYTES,
    Command,
    CommandRefused,
    applied_reply,
    canonical,
    refused_reply,
    sign,
)
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify
from controller.procedure.procedure import Procedure

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
KEY = bytes(range(32))
KEYS = {"alice": KEY, "bob": b"b" * 32}
BOUNDS = CommandBounds(
    "hsc-1",
    {"temperature": LoopBounds(35.0, 39.0, 0.0, 100.0), "ph": LoopBounds(6.8, 7.6, 0.0, 15.0)},
    bolus_max_ml=20.0,
    alarms=frozenset({"comm_loss"}),
)

# The worked example of docs/mqtt-commands.md: if this changes, the doc must change with it.
DOC_KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
DOC_BODY = {
    "operator": "alice",
    "reactor": "hsc-1",
    "action": "set_setpoint",
    "params": {"loop": "temperature", "value": 36.5},
    "reason": "lower temperature for the day-7 differentiation check",
    "ts": 1767225600.25,
    "nonce": "3f9a1c0e5b7d2468a1b2c3d4e5f60718",
}
DOC_CANONICAL = (
    '{"action":"set_setpoint","nonce":"3f9a1c0e5b7d2468a1b2c3d4e5f60718","operator":"alice",'
    '"params":{"loop":"temperature","value":36.5},"reactor":"hsc-1",'
    '"reason":"lower temperature for the day-7 differentiation check","ts":1767225600.25}'
)
DOC_SIG = "46f3388f59d2da0e87c7efbd26d28cff036b75e07ef1081189d3a2c2aba0538b"


def body(action: str = "set_setpoint", params: dict[str, Any] | None = None, *,
         operator: str = "alice", ts: float = NOW, nonce: str = "00112233445566778899aabbccddeeff",
         reactor: str = "hsc-1") -> dict[str, Any]:
    if params is None:
        params = {"loop": "temperature", "value": 36.5}
    return {"operator": operator, "reactor": reactor, "action": action, "params": params,
            "reason": "test", "ts": ts, "nonce": nonce}


def raw(b: dict[str, Any], key: bytes = KEY) -> bytes:
    return json.dumps(sign(b, key)).encode()


def check(data: bytes, guard: ReplayGuard | None = None, now: float = NOW) -> Command:
    return verify(data, KEYS, guard if guard is not None else ReplayGuard(), now, BOUNDS)


def refused(data: bytes, guard: ReplayGuard | None = None, now: float = NOW) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        check(data, guard, now)
    return info.value


@dataclass
class FakeReactor:
    """A CommandTarget of pure logic: the real ControlLoop and FeedSchedule, bolus and alarm
    lists."""

    loops: dict[str, ControlLoop]
    schedule: FeedSchedule
    boluses: list[tuple[float, str, float]] = field(default_factory=list)
    alarms: set[str] = field(default_factory=lambda: {"comm_loss"})
    procedure: Procedure | None = None

    def loop(self, name: str) -> ControlLoop:
        return self.loops[name]

    def add_bolus(self, volume_ml: float, channel: str, at_s: float) -> None:
        self.boluses.append((volume_ml, channel, at_s))

    def ack_alarm(self, name: str, operator: str, t_s: float) -> bool:
        active = name in self.alarms
        self.alarms.discard(name)
        return active

    def recipe_command(self, action: str, operator: str, reason: str,
                       t_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.procedure is None:  # as the runtime's command desk does without a recipe
            raise KeyError("recipe")
        return self.procedure.command(action, t_s, operator, reason)


@pytest.fixture
def reactor() -> FakeReactor:
    config = load_default().reactor[0]
    loops = {name: ControlLoop(name, lc, stats_after_s=0.0) for name, lc in config.loops.items()}
    return FakeReactor(loops, FeedSchedule(ScheduleConfig()))


# --- a good command of every action applies -----------------------------------------------------
def test_set_setpoint_applies(reactor: FakeReactor) -> None:
    command = check(raw(body()))
    assert command.operator == "alice" and command.params == {"loop": "temperature",
                                                              "value": 36.5}
    change = apply(command, reactor, 100.0)
    assert change.old == {"setpoint": 37.0} and change.new == {"setpoint": 36.5}
    assert reactor.loops["temperature"].setpoint == 36.5


def test_manual_mode_and_output_then_back_to_auto(reactor: FakeReactor) -> None:
    guard = ReplayGuard()
    loop = reactor.loops["temperature"]
    loop.pid.track(12.0)
    manual = check(raw(body("set_mode", {"loop": "temperature", "mode": "manual"},
                            nonce="aa" * 8)), guard)
    change = apply(manual, reactor, 1.0)
    assert change.old == {"mode": "auto", "output": 12.0}
    assert change.new == {"mode": "manual", "output": 12.0}  # bumpless: the output is held
    output = check(raw(body("set_output", {"loop": "temperature", "value": 40},
                            nonce="bb" * 8)), guard)
    assert apply(output, reactor, 2.0).new == {"output": 40.0}
    assert loop.pid.output == 40.0 and loop.mode == "manual"
    auto = check(raw(body("set_mode", {"loop": "temperature", "mode": "auto"},
                          nonce="cc" * 8)), guard)
    assert apply(auto, reactor, 3.0).new == {"mode": "auto", "output": 40.0}
    assert loop.mode == "auto"


def test_set_output_in_auto_mode_is_refused_on_apply(reactor: FakeReactor) -> None:
    command = check(raw(body("set_output", {"loop": "temperature", "value": 40.0})))
    with pytest.raises(CommandRefused) as info:
        apply(command, reactor, 1.0)
    assert info.value.code == "wrong_mode"
    assert info.value.claimed["nonce"] == command.nonce  # so the refusal can be audited
    assert reactor.loops["temperature"].mode == "auto"


def test_bolus_pause_resume_and_ack(reactor: FakeReactor) -> None:
    guard = ReplayGuard()
    bolus = check(raw(body("bolus", {"volume_ml": 5, "channel": "base_ml_per_h"},
                           nonce="01" * 8)), guard)
    change = apply(bolus, reactor, 7200.0)
    assert reactor.boluses == [(5.0, "base_ml_per_h", 7200.0)]
    assert change.new == {"volume_ml": 5.0, "channel": "base_ml_per_h", "at_s": 7200.0,
                          "schedule_paused": False}
    pause = check(raw(body("pause_schedule", {}, nonce="02" * 8)), guard)
    assert apply(pause, reactor, 1.0) == protocol.Change({"paused": False}, {"paused": True})
    assert reactor.schedule.paused
    assert reactor.schedule.rates(10.0, 1.0)["feed_ml_per_h"] == 0.0
    resume = check(raw(body("resume_schedule", {}, nonce="03" * 8)), guard)
    assert apply(resume, reactor, 2.0).new == {"paused": False}
    assert not reactor.schedule.paused
    ack = check(raw(body("ack_alarm", {"alarm": "comm_loss"}, nonce="04" * 8)), guard)
    change = apply(ack, reactor, 3.0)
    assert change.old == {"alarm": "comm_loss", "unacknowledged": True}
    assert reactor.alarms == set()


def test_recipe_commands_apply_to_the_procedure_or_are_refused_with_the_reason(
        reactor: FakeReactor) -> None:
    """start, hold, restart, stop, abort, confirm carry no params and move the default
    config's recipe by its state table; a command its state does not allow is refused
    (wrong_state) with the procedure's reason, and one to a reactor without a recipe is an
    unknown target. Every command in every state is covered in tests/unit/controller/procedure."""
    recipe = load_default().reactor[0].recipe
    assert recipe is not None
    guard = ReplayGuard()
    nonces = iter(f"{i:02x}" * 8 for i in range(1, 100))

    def command(action: str) -> Command:
        return check(raw(body(action, {}, nonce=next(nonces))), guard)

    assert command("hold").params == {}
    with pytest.raises(CommandRefused) as info:
        apply(command("hold"), reactor, 10.0)
    assert info.value.code == "unknown_target" and "runs no recipe" in info.value.message
    reactor.procedure = Procedure(recipe, {"feed_ml_per_h": 0.0, "harvest_ml_per_h": 0.0,
                                           "base_ml_per_h": 0.0})
    reactor.procedure.step({}, 0.0)  # autostart: running the first phase
    change = apply(command("hold"), reactor, 60.0)
    assert change.old == {"state": "running", "phase": "seed"}
    assert change.new == {"state": "holding", "phase": "seed"}
    with pytest.raises(CommandRefused) as info:
        apply(command("start"), reactor, 60.0)
    assert info.value.code == "wrong_state"
    assert "start is not allowed while the recipe is holding" in info.value.message
    reactor.procedure.step({}, 120.0)  # holding -> held
    assert apply(command("restart"), reactor, 180.0).new["state"] == "restarting"
    reactor.procedure.step({}, 180.0)
    reactor.procedure.step({}, 240.0)
    with pytest.raises(CommandRefused) as info:
        apply(command("restart"), reactor, 300.0)
    assert info.value.code == "wrong_state" and "restart is not allowed while the recipe is " \
        "running (allowed in: held)" in info.value.message
    with pytest.raises(CommandRefused) as info:
        apply(command("confirm"), reactor, 300.0)
    assert info.value.code == "wrong_state" and "waits for no confirmation" in info.value.message
    assert apply(command("stop"), reactor, 300.0).new == {"state": "stopping", "phase": "seed"}
    assert apply(command("abort"), reactor, 360.0).new["state"] == "aborting"


def test_every_action_is_covered_by_the_tests_above() -> None:
    """The alarm board's actions are covered in test_alarm_commands.py, reset_interlock in
    test_interlock_commands.py."""
    assert set(ACTIONS) == {"set_setpoint", "set_mode", "set_output", "bolus", "pause_schedule",
                            "resume_schedule", "ack_alarm", "shelve_alarm", "unshelve_alarm",
                            "remove_alarm_from_service", "return_alarm_to_service",
                            "reset_interlock", "start", "hold", "restart", "stop", "abort",
                            "confirm"}


def test_replies() -> None:
    command = check(raw(body()))
    reply = applied_reply(command, protocol.Change({"setpoint": 37.0}, {"setpoint": 36.5}), 5.0)
    assert reply == {"nonce": command.nonce, "ok": True, "code": "applied",
                     "message": "set_setpoint applied", "old": {"setpoint": 37.0},
                     "new": {"setpoint": 36.5}, "t_s": 5.0}
    refusal = refused(raw(body(), key=b"x" * 32))
    reply = refused_reply(refusal, 6.0)
    assert reply["ok"] is False and reply["code"] == "bad_signature"
    assert reply["nonce"] == "00112233445566778899aabbccddeeff"
    assert refused_reply(refused(b"{"), 7.0)["nonce"] is None


# --- refusals -----------------------------------------------------------------------------------
def test_unsigned() -> None:
    assert refused(json.dumps(body()).encode()).code == "unsigned"
    assert refused(json.dumps({**body(), "sig": ""}).encode()).code == "unsigned"


def test_wrong_key() -> None:
    error = refused(raw(body(), key=KEYS["bob"]))
    assert error.code == "bad_signature"
    assert error.claimed["operator"] == "alice"


def test_tampered_body() -> None:
    signed = sign(body(), KEY)
    signed["params"]["value"] = 39.0
    assert refused(json.dumps(signed).encode()).code == "bad_signature"


def test_unknown_operator() -> None:
    assert refused(raw(body(operator="mallory"))).code == "unknown_operator"


def test_replayed_nonce_is_refused() -> None:
    guard = ReplayGuard()
    data = raw(body())
    check(data, guard)
    assert refused(data, guard, NOW + 1).code == "replayed"
    # The same nonce in a freshly signed command is still a replay.
    assert refused(raw(body(ts=NOW + 2)), guard, NOW + 2).code == "replayed"


def test_a_refused_authentic_command_consumes_its_nonce() -> None:
    guard = ReplayGuard()
    data = raw(body(params={"loop": "temperature", "value": 45.0}))
    assert refused(data, guard).code == "out_of_range"
    assert refused(data, guard).code == "replayed"


def test_forged_commands_do_not_consume_nonces() -> None:
    guard = ReplayGuard()
    assert refused(raw(body(), key=b"x" * 32), guard).code == "bad_signature"
    assert guard.remembered == 0
    check(raw(body()), guard)


def test_stale_and_future_timestamps() -> None:
    assert refused(raw(body(ts=NOW - 31))).code == "stale"
    assert refused(raw(body(ts=NOW + 31))).code == "stale"
    check(raw(body(ts=NOW - 29)))
    guard = ReplayGuard(max_skew_s=5)
    assert refused(raw(body(ts=NOW - 6)), guard).code == "stale"


def test_replay_guard_forgets_only_what_the_window_refuses_anyway() -> None:
    guard = ReplayGuard(max_skew_s=30)
    for i in range(100):
        assert guard.remember(f"{i:016x}", NOW + i, NOW + i)
    assert guard.remembered == 31  # only nonces whose ts is still within the window are kept
    assert not guard.remember(f"{99:016x}", NOW + 99, NOW + 100)


def _on_topic(data: bytes, **where: Any) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        verify(data, KEYS, ReplayGuard(), NOW, BOUNDS, **where)
    return info.value


def test_a_command_on_a_setting_topic_must_write_that_setting() -> None:
    ph = raw(body(params={"loop": "ph", "value": 7.25}))
    error = _on_topic(ph, setting="temperature.setpoint")
    assert error.code == "wrong_topic" and "temperature" in error.message
    assert error.claimed["operator"] == "alice"
    assert _on_topic(raw(body("pause_schedule", {})), setting="ph.setpoint").code == "wrong_topic"
    assert _on_topic(raw(body()), setting="temperature.gain").code == "wrong_topic"
    command = verify(ph, KEYS, ReplayGuard(), NOW, BOUNDS, setting="ph.setpoint")
    assert command.params == {"loop": "ph", "value": 7.25}


def test_a_retained_message_is_never_a_command() -> None:
    error = _on_topic(raw(body()), retained=True)
    assert error.code == "retained" and error.claimed["nonce"] == body()["nonce"]


def test_an_oversized_message_is_refused_before_it_is_parsed() -> None:
    error = _on_topic(b"[" * (MAX_COMMAND_BYTES + 1))  # would be a RecursionError if parsed
    assert error.code == "malformed" and f"{MAX_COMMAND_BYTES + 1} bytes" in error.message


def test_out_of_range_names_parameter_value_and_range() -> None:
    error = refused(raw(body(params={"loop": "temperature", "value": 45.0})))
    assert error.code == "out_of_range"
    assert error.message == "value = 45 outside the allowed range [35, 39]"
    error = refused(raw(body("bolus", {"volume_ml": 25.0, "channel": "feed_ml_per_h"})))
    assert (error.code, error.message) == (
        "out_of_range", "volume_ml = 25 outside the allowed range 0 < volume_ml <= 20")
    assert refused(raw(body("bolus", {"volume_ml": -1, "channel": "feed_ml_per_h"}))).code \
        == "out_of_range"
    assert refused(raw(body("set_output", {"loop": "ph", "value": 20.0}))).code == "out_of_range"
    error = refused(raw(body("set_mode", {"loop": "ph", "mode": "cascade"})))
    assert (error.code, error.message) == (
        "out_of_range", "mode = 'cascade' not allowed (allowed: auto, manual)")


def test_unknown_targets() -> None:
    assert refused(raw(body(params={"loop": "glucose", "value": 1.0}))).code == "unknown_target"
    assert refused(raw(body("ack_alarm", {"alarm": "fire"}))).code == "unknown_target"
    error = refused(raw(body(reactor="hsc-2")))
    assert error.code == "unknown_target" and "hsc-2" in error.message


def test_unknown_action() -> None:
    error = refused(raw(body("open_valve", {"valve": 1})))
    assert error.code == "unknown_action" and error.claimed["action"] == "open_valve"


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[1, 2]", b'"a string"', b"\xff\xfe", b"{" * 5000,
    b'{"a": 1, "a": 2}', b'{"ts": NaN}', b'{"ts": 1e999}', b'{"x": "\\ud800"}',
    b" " * 9000,
])
def test_malformed_bytes(data: bytes) -> None:
    assert refused(data).code == "malformed"


@pytest.mark.parametrize("edit", [
    {"operator": 7}, {"operator": ""}, {"operator": "a b"}, {"params": []}, {"ts": "now"},
    {"ts": True}, {"ts": 10**400}, {"nonce": "abc"}, {"nonce": "Z" * 16}, {"reason": ""},
    {"reason": 3}, {"action": None},
])
def test_wrong_types_are_malformed(edit: dict[str, Any]) -> None:
    b = {**body(), **edit}
    signed = {**b, "sig": hmac.new(KEY, canonical(b), hashlib.sha256).hexdigest()}
    assert refused(json.dumps(signed).encode()).code == "malformed"


def test_missing_and_extra_fields_are_malformed() -> None:
    b = body()
    del b["reason"]
    error = refused(raw(b))
    assert error.code == "malformed" and "reason" in error.message
    assert refused(raw({**body(), "priority": 1})).code == "malformed"
    assert refused(json.dumps({**sign(body(), KEY), "sig": "12"}).encode()).code == "malformed"


@pytest.mark.parametrize("params", [
    {"loop": "temperature"}, {"loop": "temperature", "value": 36.0, "ramp": 1},
    {"loop": "temperature", "value": "36"}, {"loop": "temperature", "value": True},
    {"loop": 1, "value": 36.0},
])
def test_bad_params_are_malformed(params: dict[str, Any]) -> None:
    assert refused(raw(body(params=params))).code == "malformed"


# --- robustness ---------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_verify(data: bytes) -> None:
    with pytest.raises(CommandRefused):
        check(data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(protocol.FIELDS)) | st.text(max_size=8), _json,
                       max_size=9))
def test_arbitrary_json_objects_never_crash_verify(obj: dict[str, Any]) -> None:
    with pytest.raises(CommandRefused):
        check(json.dumps(obj).encode())


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ACTIONS)),
       st.dictionaries(st.sampled_from(["loop", "value", "mode", "volume_ml", "channel",
                                        "alarm", "duration_s"]), _json, max_size=3))
def test_signed_commands_with_arbitrary_params_never_crash(action: str,
                                                          params: dict[str, Any]) -> None:
    """Authentic commands reach the param checks: those must refuse, never crash."""
    with contextlib.suppress(CommandRefused):
        check(raw(body(action, params)))


# --- canonical form and the documented example --------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(st.permutations(sorted(DOC_BODY)), st.sampled_from([None, 2, "\t"]))
def test_key_order_and_whitespace_do_not_change_the_signature(order: list[str],
                                                               indent: Any) -> None:
    shuffled = {k: DOC_BODY[k] for k in order}
    assert canonical(shuffled) == DOC_CANONICAL.encode()
    signed = sign(shuffled, KEY)
    assert signed["sig"] == DOC_SIG
    sent = json.dumps({k: signed[k] for k in reversed(list(signed))}, indent=indent).encode()
    check(sent, now=DOC_BODY["ts"])  # verified over the canonical form, not the bytes sent


def test_documented_example_is_true() -> None:
    key = protocol.parse_key(DOC_KEY_HEX)
    assert key == KEY
    assert hmac.new(key, DOC_CANONICAL.encode(), hashlib.sha256).hexdigest() == DOC_SIG
    assert sign(DOC_BODY, key)["sig"] == DOC_SIG
    doc = (REPO / "docs" / "mqtt-commands.md").read_text()
    for text in (DOC_KEY_HEX, DOC_CANONICAL, DOC_SIG, json.dumps(DOC_BODY["params"])):
        assert text in doc


def test_non_ascii_is_signed_as_utf8() -> None:
    b = {**body(), "reason": "pH drift, Øyvind asked"}
    assert "Øyvind".encode() in canonical(b)
    check(raw(b))


def test_parse_key() -> None:
    assert protocol.parse_key("00 01\n" + "02" * 14) == bytes([0, 1] + [2] * 14)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        protocol.parse_key("0011")
    with pytest.raises(ValueError, match="hex"):
        protocol.parse_key("zz" * 16)


def test_bounds_from_config() -> None:
    do_bounds = "setpoint_min = 10.0       # operator bounds: 10-60 % air saturation\n"
    config = load_default(**{do_bounds: "", "setpoint_max = 60.0\n": ""})
    reactor = config.reactor[0]
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    bounds = bounds_from_config(reactor, board, bolus_max_ml=10.0,
                                outside_alarms=["outbox_full"])
    assert bounds.reactor_id == "hsc-1" and bounds.bolus_max_ml == 10.0
    assert bounds.loops["temperature"] == LoopBounds(35.0, 37.5, 0.0, 100.0)  # the config's
    assert bounds.loops["do"] == LoopBounds(0.0, 300.0, 0.0, 60.0)  # datasheet, config out_max
    # The board's own alarms and those raised outside it may be acknowledged; only the board's
    # may be shelved or taken out of service.
    assert bounds.alarms == {"outbox_full", *board.alarms}
    assert bounds.alarm_limits.keys() == set(board.alarms)


def test_operator_names_the_config_allows_are_accepted() -> None:
    keys = {"alice@lab-2": KEY}
    command = verify(raw(body(operator="alice@lab-2")), keys, ReplayGuard(), NOW, BOUNDS)
    assert command.operator == "alice@lab-2"


# --- the client's pure half ---------------------------------------------------------------------
def test_client_builds_a_command_the_controller_accepts(reactor: FakeReactor) -> None:
    params = parse_params("set_setpoint", ["loop=temperature", "value=36.8"])
    assert params == {"loop": "temperature", "value": 36.8}
    signed = build_command(operator="alice", reactor="hsc-1", action="set_setpoint",
                           params=params, reason="test", key=KEY, now_wall_s=NOW,
                           nonce="ab" * 16)
    command = check(json.dumps(signed).encode())
    assert apply(command, reactor, 1.0).new == {"setpoint": 36.8}


@pytest.mark.parametrize("action, args, message", [
    ("set_setpoint", ["loop=temperature"], "missing value"),
    ("set_setpoint", ["loop=temperature", "value=hot"], "value must be a number"),
    ("set_setpoint", ["loop=temperature", "value=1", "x=2"], "unknown param x"),
    ("set_setpoint", ["loop"], "k=v"),
    ("set_setpoint", ["loop=ph", "value=nan"], "value must be a finite number"),
    ("bolus", ["volume_ml=1e999", "channel=feed_ml_per_h"], "volume_ml must be a finite"),
    ("fly", [], "unknown action"),
])
def test_client_refuses_bad_params_before_sending(action: str, args: list[str],
                                                  message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_params(action, args)
