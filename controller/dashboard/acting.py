"""An operator's action from the dashboard: checked against the role, signed with the
operator's key exactly as `bioreactor cmd` signs it, sent, and the controller's reply returned.

The dashboard adds checks in front (role, a reason, well-formed params) and none behind: the
controller verifies the signature, bounds, replay and state and audits the command as it does
for `bioreactor cmd` (controller/operator/protocol.py), because both build it with
controller/operator/outgoing.py and send it with controller/mqtt/command_sender.py.
"""
from __future__ import annotations

import ipaddress
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from controller.dashboard.accounts import Account, may
from controller.mqtt.command_sender import send_command
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import Topics
from controller.operator.outgoing import build_command, parse_params
from controller.operator.protocol import ACTIONS, NAME_PATTERN

MAX_REASON_CHARS = 1000
"""The controller refuses a longer reason (controller/operator/verify.py): refused here first."""


class ActionRefused(Exception):
    """Refused by the dashboard before anything was signed: `code` is `forbidden` (the role
    may not) or `malformed` (params the controller would refuse); message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def prepare(account: Account, *, reactor: str, action: str, params: Mapping[str, str],
            reason: str) -> tuple[dict[str, Any], str]:
    """The typed params and the trimmed reason, or ActionRefused: every check made before
    signing, so a refused action never reaches the broker.

    Only the params the action takes are read from `params`: a reactor page's alarm row is one
    form with several buttons (acknowledge, shelve), so an acknowledgement arrives with the
    shelve's `duration_s` beside it. Every param an action takes is required, so ignoring the
    others cannot change what is sent.
    """
    spec = ACTIONS.get(action)
    if spec is None:
        raise ActionRefused("malformed", f"unknown action {action!r} (known: "
                            f"{', '.join(ACTIONS)})")
    if not may(account.role, action):
        raise ActionRefused("forbidden", f"{account.name} ({account.role}) may not {action}")
    try:
        Topics(reactor)
    except ValueError as exc:
        raise ActionRefused("malformed", f"reactor: {exc}") from None
    if not NAME_PATTERN.fullmatch(reactor):  # what the controller checks in a command
        raise ActionRefused("malformed", f"reactor: {reactor!r:.80} is not a name of 1-64 "
                            "characters [A-Za-z0-9_.@:-]")
    reason = reason.strip()
    if not reason:
        raise ActionRefused("malformed", "reason: required (every action is on record with "
                            "why)")
    if not _one_line_of_text(reason):
        raise ActionRefused("malformed", "reason: one line of text, no control characters")
    if len(reason) > MAX_REASON_CHARS:
        raise ActionRefused("malformed", f"reason: {len(reason)} characters, at most "
                            f"{MAX_REASON_CHARS}")
    try:
        typed = parse_params(action, [f"{name}={params[name]}" for name in spec
                                      if name in params])
    except ValueError as exc:
        raise ActionRefused("malformed", str(exc)) from None
    return typed, reason


async def act(account: Account, *, reactor: str, action: str, params: Mapping[str, str],
              reason: str, settings: MqttSettings, wall_clock: Callable[[], float],
              new_nonce: Callable[[], str], timeout_s: float) -> dict[str, Any]:
    """Send one signed command; the controller's reply (`ok`, `code`, `message`, ...).

    Raises ActionRefused before signing, TimeoutError when no reply comes in time,
    aiomqtt.MqttError when the broker cannot be reached.
    """
    typed, reason = prepare(account, reactor=reactor, action=action, params=params,
                            reason=reason)
    command = build_command(operator=account.name, reactor=reactor, action=action,
                            params=typed, reason=reason, key=account.key(),
                            now_wall_s=wall_clock(), nonce=new_nonce())
    return await send_command(settings, command, timeout_s=timeout_s)


def _one_line_of_text(text: str) -> bool:
    """No control characters (a reason is shown in terminals: no escape sequences, no line
    breaks forging the next audit row) and no lone surrogates (not Unicode: the controller
    refuses them, and no UTF-8 form can carry one)."""
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def transport_allows_actions(bind_host: str, tls: bool) -> bool:
    """Operator actions are served over TLS, or over plain HTTP only on a loopback bind.

    On any other plain-HTTP bind a password and a session cookie would cross the network in
    clear, so the dashboard stays read-only there. `0.0.0.0`/`::` (every interface) and host
    names other than `localhost` (they may resolve to anything) count as not loopback.
    """
    if tls:
        return True
    host = bind_host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
