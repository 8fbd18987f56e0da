"""Logged-in sessions: server-side, expiring, each with its CSRF token.

Server-side (the cookie holds only a random id) so a logout or an expiry ends the session at
once, and a role is never taken from anything the browser sent. Time comes only through the
injected `now_s` (monotonic seconds in the server, a fake clock in tests).

Sessions and LoginThrottle are safe to call from several threads (each method holds the
object's lock): a server verifies passwords in a worker thread, off its event loop, and may open
the session from there while the loop serves other requests.
"""
from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from controller.dashboard.accounts import Role

TOKEN_BYTES = 32
"""Session ids and CSRF tokens: 256 random bits from `secrets`, url-safe base64."""
MAX_SESSIONS = 1000
"""More than a site's staff would ever hold open; beyond it the least recently used goes."""
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_S = 300.0
"""Five wrong passwords for a name in five minutes, then that name waits: a person who mistypes
is not stopped, a guesser gets about 1400 tries a day per name instead of thousands a minute."""
MAX_THROTTLED_NAMES = 10000
"""Names a LoginThrottle remembers at most (guessed names included): memory stays bounded."""


@dataclass(frozen=True)
class Session:
    id: str
    """Random, the cookie's value."""
    account: str
    role: Role
    csrf_token: str
    """Random; every state-changing request must carry it (form field or X-CSRF-Token)."""
    expires_at_s: float
    """When it ends unless used again: the earlier of the absolute and the idle deadline."""


@dataclass
class _Entry:
    session: Session
    absolute_deadline_s: float
    last_used_s: float


class Sessions:
    """Sessions by id; an expired (absolute or idle) session is gone.

    Absolute expiry (`ttl_s` after login) bounds what a stolen cookie is worth; idle expiry
    (`idle_ttl_s` after the last request) closes a session left open on a shared screen.
    """

    def __init__(self, *, ttl_s: float, idle_ttl_s: float, now_s: Callable[[], float],
                 max_sessions: int = MAX_SESSIONS) -> None:
        if not (ttl_s > 0 and idle_ttl_s > 0 and max_sessions >= 1):
            raise ValueError("ttl_s and idle_ttl_s must be > 0 and max_sessions >= 1")
        self._ttl_s = ttl_s
        self._idle_ttl_s = idle_ttl_s
        self._now_s = now_s
        self._max = max_sessions
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        """Least recently used first."""
        self._lock = threading.RLock()

    def count(self) -> int:
        """Sessions held (a method, not `__len__`: an object with none must stay truthy)."""
        with self._lock:
            return len(self._entries)

    def open(self, account: str, role: Role) -> Session:
        """A new session (a fresh id: never reuse one from before the login, against
        session fixation); expired ones are purged, and the least recently used dropped when
        `max_sessions` are open."""
        with self._lock:
            now = self._now_s()
            self.purge()
            while len(self._entries) >= self._max:
                self._entries.popitem(last=False)
            session = Session(id=secrets.token_urlsafe(TOKEN_BYTES), account=account,
                              role=role, csrf_token=secrets.token_urlsafe(TOKEN_BYTES),
                              expires_at_s=0.0)
            entry = _Entry(session, now + self._ttl_s, now)
            entry.session = replace(session, expires_at_s=self._expiry(entry))
            self._entries[session.id] = entry
            return entry.session

    def get(self, session_id: str | None) -> Session | None:
        """The live session, touching its idle timer; None when unknown or expired."""
        if not session_id:
            return None
        with self._lock:
            entry = self._entries.get(session_id)
            if entry is None:
                return None
            now = self._now_s()
            if now >= entry.session.expires_at_s:
                del self._entries[session_id]
                return None
            entry.last_used_s = now
            entry.session = replace(entry.session, expires_at_s=self._expiry(entry))
            self._entries.move_to_end(session_id)
            return entry.session

    def close(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)

    def close_account(self, account: str) -> None:
        """End every session of `account` (its password or role changed, or it was removed)."""
        with self._lock:
            for sid in [sid for sid, e in self._entries.items()
                        if e.session.account == account]:
                del self._entries[sid]

    def purge(self) -> None:
        """Forget every expired session."""
        with self._lock:
            now = self._now_s()
            for sid in [sid for sid, e in self._entries.items()
                        if now >= e.session.expires_at_s]:
                del self._entries[sid]

    def _expiry(self, entry: _Entry) -> float:
        return min(entry.absolute_deadline_s, entry.last_used_s + self._idle_ttl_s)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison of a request's token with the one it must equal; an empty or
    missing token never matches."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def csrf_ok(session: Session, token: str | None) -> bool:
    """The request's token is the session's."""
    return tokens_match(session.csrf_token, token)


class LoginThrottle:
    """Slows password guessing: after `max_failures` failures for a name within `window_s`,
    refuses that name until the window passes.

    Per name, not per client address: behind a reverse proxy every client has the proxy's
    address (one guesser would lock everyone out), and the X-Forwarded-For that would tell them
    apart is written by the client, so a guesser would simply vary it. Counting per name caps the
    guesses against each account whatever their source. The price: anyone can keep one name
    locked out of logging in (not out of its open sessions) by failing on purpose; the window is
    short and the lockout is logged by the server. Unknown names are counted like known ones, so
    the throttle does not tell which names exist. A successful login clears the name's count.
    """

    def __init__(self, *, max_failures: int = LOGIN_MAX_FAILURES,
                 window_s: float = LOGIN_WINDOW_S, now_s: Callable[[], float],
                 max_names: int = MAX_THROTTLED_NAMES) -> None:
        if not (max_failures >= 1 and window_s > 0 and max_names >= 1):
            raise ValueError("max_failures and max_names must be >= 1, window_s > 0")
        self._max_failures = max_failures
        self._window_s = window_s
        self._now_s = now_s
        self._max_names = max_names
        self._failures: dict[str, list[float]] = {}
        """Failure times within the window (the last `max_failures` of them), by name."""
        self._lock = threading.Lock()

    def names_held(self) -> int:
        """Names remembered (at most `max_names`)."""
        with self._lock:
            return len(self._failures)

    def allowed(self, name: str) -> bool:
        with self._lock:
            return len(self._recent(name)) < self._max_failures

    def failed(self, name: str) -> None:
        with self._lock:
            times = self._recent(name)
            times.append(self._now_s())
            self._failures[name] = times[-self._max_failures:]
            if len(self._failures) > self._max_names:
                self._make_room()

    def _make_room(self) -> None:
        """Forget names whose window passed; if that is not enough, the name with the fewest
        (then oldest) failures, so flooding with made-up names cannot wipe a real name's
        count (the flood's names have one failure each, the attacked name several)."""
        for name in list(self._failures):
            self._recent(name)
        while len(self._failures) > self._max_names:
            weakest = min(self._failures, key=lambda n: (len(self._failures[n]),
                                                         self._failures[n][-1]))
            del self._failures[weakest]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)

    def _recent(self, name: str) -> list[float]:
        """This name's failures still inside the window (older ones forgotten)."""
        since = self._now_s() - self._window_s
        times = [t for t in self._failures.get(name, []) if t > since]
        if not times:
            self._failures.pop(name, None)
        return times
