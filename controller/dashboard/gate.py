"""Who is asking, and what they may do: the dashboard's use of the auth core (accounts,
passwords, sessions) for one request.

Without a CONFIG the dashboard is open and read-only, like `bioreactor watch`: anyone who can
reach it may look, nobody may act. With one, every page but /login and /static needs a live
session; actions also need the role's permission, the session's CSRF token, and a transport
that may carry them (TLS, or plain HTTP bound to loopback).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from controller.dashboard.accounts import Account, DashboardConfig, Role, authenticate, may
from controller.dashboard.acting import transport_allows_actions
from controller.dashboard.sessions import LoginThrottle, Session, Sessions, csrf_ok
from controller.operator.protocol import ACTIONS

SESSION_COOKIE = "dashboard_session"
LOGIN_CSRF_COOKIE = "dashboard_login_csrf"
"""Login's CSRF token before there is a session (double-submit: cookie and form must match),
so another site cannot log a browser in under the attacker's account."""


class LoginRequired(Exception):
    """The request needs a session and has none (or an expired one)."""


@dataclass
class Gate:
    config: DashboardConfig | None
    bind_host: str
    tls: bool
    now_s: Callable[[], float]
    sessions: Sessions | None = field(init=False, default=None)
    throttle: LoginThrottle | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.config is not None:
            self.sessions = Sessions(ttl_s=self.config.session_ttl_s,
                                     idle_ttl_s=self.config.idle_ttl_s, now_s=self.now_s)
            self.throttle = LoginThrottle(now_s=self.now_s)

    @property
    def read_only(self) -> bool:
        return self.config is None

    @property
    def transport_ok(self) -> bool:
        return transport_allows_actions(self.bind_host, self.tls)

    def session(self, request: Request) -> Session | None:
        """The request's live session; None in read-only mode. LoginRequired otherwise."""
        if self.sessions is None:
            return None
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise LoginRequired
        return session

    def actions_for(self, session: Session | None) -> list[str]:
        """The actions this user may take here and now: none read-only, over a transport that
        may not carry them, or for a viewer."""
        if session is None or not self.transport_ok:
            return []
        return [a for a in ACTIONS if may(session.role, a)]

    def why_no_actions(self, session: Session | None) -> str | None:
        """A banner's text when actions are off for everyone, else None."""
        if self.read_only:
            return "read-only: no accounts configured"
        if not self.transport_ok:
            return (f"operator actions are off: plain HTTP on {self.bind_host} (not loopback); "
                    "serve with --tls-cert/--tls-key to act")
        if session is not None and session.role is Role.VIEWER:
            return "viewer: you may look, not act"
        return None

    def login(self, username: str, password: str) -> Session | None:
        """A new session for a right name and password, else None (counted by the throttle).
        Slow (argon2id): call it off the event loop."""
        if self.config is None or self.sessions is None or self.throttle is None:
            return None  # read-only: nobody logs in
        if not self.throttle.allowed(username):
            return None
        account = authenticate(self.config, username, password)
        if account is None:
            self.throttle.failed(username)
            return None
        self.throttle.succeeded(username)
        return self.sessions.open(account.name, account.role)

    def logout(self, session: Session) -> None:
        if self.sessions is not None:
            self.sessions.close(session.id)

    @staticmethod
    def csrf_ok(session: Session, token: str | None) -> bool:
        return csrf_ok(session, token)

    def account(self, session: Session) -> Account | None:
        return None if self.config is None else self.config.find(session.account)
