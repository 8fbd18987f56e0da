"""An operator's action from the dashboard: checked against the role, signed with the
operator's key exactly as `bioreactor cmd` signs it, sent, and the controller's reply returned.
STUB: interface fixed."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from controller.dashboard.accounts import Account
from controller.mqtt.link import MqttSettings


class ActionRefused(Exception):
    """Refused by the dashboard before anything was signed: `code` is `forbidden` (the role
    may not) or `malformed` (params the controller would refuse); message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def act(account: Account, *, reactor: str, action: str, params: Mapping[str, str],
              reason: str, settings: MqttSettings, wall_clock: Callable[[], float],
              new_nonce: Callable[[], str], timeout_s: float) -> dict[str, Any]:
    """Send one signed command; the controller's reply (`ok`, `code`, `message`, ...).

    Raises ActionRefused before signing, TimeoutError when no reply comes in time,
    aiomqtt.MqttError when the broker cannot be reached.
    """
    raise NotImplementedError


def transport_allows_actions(bind_host: str, tls: bool) -> bool:
    """Operator actions are served over TLS, or over plain HTTP only on a loopback bind."""
    raise NotImplementedError
