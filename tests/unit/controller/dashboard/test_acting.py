"""What the dashboard refuses before signing, and where it serves actions at all. (Signing and
the controller's acceptance: tests/integration/controller/dashboard/test_acting_live.py.)"""
from __future__ import annotations

import pytest
from plugins.processes import free_port

from controller.dashboard.accounts import Account, Role
from controller.dashboard.acting import ActionRefused, act, prepare, transport_allows_actions
from controller.mqtt.link import MqttSettings

HASH = ("$argon2id$v=19$m=8,t=1,p=1$QHhn4Xm+F2cS5ti/dMbt0A$"
        "EORIXya/M6qjcvRA0eIwmTjnTUlbR+OqKmZvBLOGiOc")


def account(role: Role) -> Account:
    return Account(name="alice", key_hex="00" * 16, role=role, password_hash=HASH)


def refused(role: Role, action: str, params: dict[str, str] | None = None,
            reason: str = "why", reactor: str = "hsc-1") -> ActionRefused:
    with pytest.raises(ActionRefused) as info:
        prepare(account(role), reactor=reactor, action=action, params=params or {},
                reason=reason)
    return info.value


def test_form_strings_are_typed_and_other_fields_ignored() -> None:
    typed, reason = prepare(account(Role.OPERATOR), reactor="hsc-1", action="shelve_alarm",
                            params={"alarm": "do_low", "duration_s": "2h"}, reason="  probe  ")
    assert typed == {"alarm": "do_low", "duration_s": 7200.0} and reason == "probe"
    typed, _ = prepare(account(Role.OPERATOR), reactor="hsc-1", action="ack_alarm",
                       params={"alarm": "do_low", "duration_s": "", "csrf_token": "x"},
                       reason="seen")
    assert typed == {"alarm": "do_low"}
    typed, _ = prepare(account(Role.SUPERVISOR), reactor="hsc-1", action="set_mode",
                       params={"loop": "ph", "mode": "manual"}, reason="calibration")
    assert typed == {"loop": "ph", "mode": "manual"}


@pytest.mark.parametrize("role, action", [
    (Role.VIEWER, "ack_alarm"), (Role.VIEWER, "pause_schedule"), (Role.OPERATOR, "set_mode"),
    (Role.OPERATOR, "reset_interlock"), (Role.OPERATOR, "abort"),
])
def test_a_role_without_the_action_is_forbidden(role: Role, action: str) -> None:
    error = refused(role, action)
    assert error.code == "forbidden" and f"may not {action}" in str(error)


@pytest.mark.parametrize("params, reason, reactor, expected", [
    ({"loop": "ph"}, "why", "hsc-1", "set_setpoint: missing value"),
    ({"loop": "ph", "value": "seven"}, "why", "hsc-1", "value must be a number, got 'seven'"),
    ({"loop": "ph", "value": "7.2"}, "   ", "hsc-1", "reason: required"),
    ({"loop": "ph", "value": "7.2"}, "x" * 1001, "hsc-1", "reason: 1001 characters, at most "
                                                          "1000"),
    ({"loop": "ph", "value": "7.2"}, "why", "../hsc-1/#", "reactor:"),
    ({"loop": "ph", "value": "7.2"}, "why", "réacteur", "is not a name of 1-64"),
    ({"loop": "ph", "value": "nan"}, "why", "hsc-1", "value must be a finite number"),
    ({"loop": "p h", "value": "7.2"}, "why", "hsc-1", "loop must be a name of 1-64"),
    ({"loop": "ph", "value": "7.2"}, "ok\nforged: row", "hsc-1", "no control characters"),
    ({"loop": "ph", "value": "7.2"}, "\x1b[2J", "hsc-1", "no control characters"),
])
def test_malformed_actions_are_refused_with_why(params: dict[str, str], reason: str,
                                                reactor: str, expected: str) -> None:
    error = refused(Role.OPERATOR, "set_setpoint", params, reason, reactor)
    assert error.code == "malformed" and expected in str(error)


def test_an_unknown_action_is_malformed() -> None:
    error = refused(Role.SUPERVISOR, "format_disk")
    assert error.code == "malformed" and "unknown action 'format_disk'" in str(error)


async def test_a_refused_action_never_reaches_for_the_broker() -> None:
    """Nothing listens on the port: had `act` tried to send, it would fail with MqttError."""
    settings = MqttSettings.from_url(f"mqtt://127.0.0.1:{free_port()}")
    nonces: list[str] = []
    with pytest.raises(ActionRefused) as info:
        await act(account(Role.VIEWER), reactor="hsc-1", action="ack_alarm",
                  params={"alarm": "do_low"}, reason="seen", settings=settings,
                  wall_clock=lambda: 0.0, new_nonce=lambda: nonces.append("n") or "ab" * 8,
                  timeout_s=5.0)
    assert info.value.code == "forbidden" and nonces == []


@pytest.mark.parametrize("host, tls, allowed", [
    ("127.0.0.1", False, True), ("127.8.9.10", False, True), ("::1", False, True),
    ("[::1]", False, True), ("localhost", False, True), ("LOCALHOST", False, True),
    ("::ffff:127.0.0.1", False, True),
    ("0.0.0.0", False, False), ("::", False, False), ("", False, False),
    ("192.168.1.20", False, False), ("10.0.0.1", False, False), ("fe80::1", False, False),
    ("dashboard.lab", False, False), ("localhost.evil.example", False, False),
    ("0.0.0.0", True, True), ("192.168.1.20", True, True), ("dashboard.lab", True, True),
])
def test_actions_need_tls_or_a_loopback_bind(host: str, tls: bool, allowed: bool) -> None:
    assert transport_allows_actions(host, tls) is allowed
