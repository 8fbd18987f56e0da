"""Logged-in sessions: server-side, expiring, each with its CSRF token. STUB: interface fixed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controller.dashboard.accounts import Role


@dataclass(frozen=True)
class Session:
    id: str
    """Random, the cookie's value."""
    account: str
    role: Role
    csrf_token: str
    """Random; every state-changing request must carry it (form field or X-CSRF-Token)."""
    expires_at_s: float


class Sessions:
    """Sessions by id; an expired (absolute or idle) session is gone."""

    def __init__(self, *, ttl_s: float, idle_ttl_s: float, now_s: Callable[[], float]) -> None:
        raise NotImplementedError

    def open(self, account: str, role: Role) -> Session:
        raise NotImplementedError

    def get(self, session_id: str | None) -> Session | None:
        """The live session, touching its idle timer; None when unknown or expired."""
        raise NotImplementedError

    def close(self, session_id: str) -> None:
        raise NotImplementedError


def csrf_ok(session: Session, token: str | None) -> bool:
    """Constant-time comparison of the request's token with the session's."""
    raise NotImplementedError


class LoginThrottle:
    """Slows password guessing: after `max_failures` failures for a name within `window_s`,
    refuses that name until the window passes."""

    def __init__(self, *, max_failures: int, window_s: float,
                 now_s: Callable[[], float]) -> None:
        raise NotImplementedError

    def allowed(self, name: str) -> bool:
        raise NotImplementedError

    def failed(self, name: str) -> None:
        raise NotImplementedError

    def succeeded(self, name: str) -> None:
        raise NotImplementedError
