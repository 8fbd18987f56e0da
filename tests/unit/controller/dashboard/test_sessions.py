"""Sessions expire (absolute and idle) on the injected clock; CSRF tokens compare in constant
time; the login throttle counts failures per name; memory stays bounded."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from controller.dashboard.accounts import Role
from controller.dashboard.sessions import LoginThrottle, Sessions, csrf_ok


class FakeClock:
    def __init__(self) -> None:
        self.t_s = 1000.0

    def __call__(self) -> float:
        return self.t_s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def sessions(clock: FakeClock, **kwargs: float) -> Sessions:
    return Sessions(ttl_s=kwargs.get("ttl_s", 3600.0), idle_ttl_s=kwargs.get("idle_ttl_s", 600.0),
                    now_s=clock, max_sessions=int(kwargs.get("max_sessions", 1000)))


def test_a_session_is_random_and_found_by_its_id(clock: FakeClock) -> None:
    store = sessions(clock)
    one, two = store.open("alice", Role.OPERATOR), store.open("alice", Role.OPERATOR)
    assert one.id != two.id and one.csrf_token != two.csrf_token and one.id != one.csrf_token
    assert len(one.id) >= 43 and len(one.csrf_token) >= 43  # 32 bytes, url-safe base64
    assert all(c.isalnum() or c in "-_" for c in one.id + one.csrf_token)
    found = store.get(one.id)
    assert found is not None and (found.account, found.role) == ("alice", Role.OPERATOR)
    assert found.csrf_token == one.csrf_token
    assert store.get("not-a-session") is None and store.get(None) is None and store.get("") is None


def test_idle_expiry_is_reset_by_use(clock: FakeClock) -> None:
    store = sessions(clock)
    session = store.open("alice", Role.OPERATOR)
    assert session.expires_at_s == 1600.0
    clock.t_s += 599
    touched = store.get(session.id)
    assert touched is not None and touched.expires_at_s == 1599.0 + 600
    clock.t_s += 599
    assert store.get(session.id) is not None
    clock.t_s += 600
    assert store.get(session.id) is None
    clock.t_s -= 600  # gone is gone, even if asked earlier again
    assert store.get(session.id) is None and store.count() == 0


def test_absolute_expiry_however_busy(clock: FakeClock) -> None:
    store = sessions(clock)
    session = store.open("alice", Role.OPERATOR)
    while clock.t_s < 1000.0 + 3600 - 300:
        clock.t_s += 300
        live = store.get(session.id)
        assert live is not None and live.expires_at_s <= 4600.0
    assert store.get(session.id).expires_at_s == 4600.0  # type: ignore[union-attr]
    clock.t_s = 4600.0
    assert store.get(session.id) is None


def test_logout_and_closing_an_account(clock: FakeClock) -> None:
    store = sessions(clock)
    a1, a2 = store.open("alice", Role.OPERATOR), store.open("alice", Role.OPERATOR)
    b = store.open("bob", Role.VIEWER)
    store.close(a1.id)
    store.close(a1.id)  # twice is fine
    assert store.get(a1.id) is None and store.get(a2.id) is not None
    store.close_account("alice")
    assert store.get(a2.id) is None and store.get(b.id) is not None


def test_expired_sessions_are_purged_and_the_count_capped(clock: FakeClock) -> None:
    store = sessions(clock, max_sessions=3)
    old = [store.open("alice", Role.VIEWER) for _ in range(3)]
    clock.t_s += 601
    fresh = store.open("bob", Role.VIEWER)
    assert store.count() == 1  # the three idle ones were purged, not kept until asked for
    more = [store.open("bob", Role.VIEWER) for _ in range(2)]
    store.get(fresh.id)  # now the most recently used
    newest = store.open("carol", Role.VIEWER)
    assert store.count() == 3
    assert store.get(more[0].id) is None  # the least recently used went
    assert all(store.get(s.id) is not None for s in (fresh, more[1], newest))
    assert all(store.get(s.id) is None for s in old)


def test_bad_settings_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        Sessions(ttl_s=0, idle_ttl_s=10, now_s=clock)


def test_csrf(clock: FakeClock) -> None:
    session = sessions(clock).open("alice", Role.OPERATOR)
    other = sessions(clock).open("alice", Role.OPERATOR)
    assert csrf_ok(session, session.csrf_token)
    for token in (None, "", other.csrf_token, session.csrf_token[:-1], session.id, "ü" * 43):
        assert not csrf_ok(session, token)


def test_the_throttle_refuses_a_name_after_its_failures_until_the_window_passes(
        clock: FakeClock) -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300.0, now_s=clock)
    for _ in range(3):
        assert throttle.allowed("alice")
        throttle.failed("alice")
        clock.t_s += 10
    assert not throttle.allowed("alice")
    assert throttle.allowed("bob")  # per name
    clock.t_s += 300 - 30 + 0.5  # the first failure leaves the window
    assert throttle.allowed("alice")
    throttle.failed("alice")
    assert not throttle.allowed("alice")


def test_a_success_clears_the_count(clock: FakeClock) -> None:
    throttle = LoginThrottle(max_failures=2, window_s=300.0, now_s=clock)
    throttle.failed("alice")
    throttle.succeeded("alice")
    throttle.failed("alice")
    assert throttle.allowed("alice")


def test_a_flood_of_made_up_names_does_not_wipe_a_real_names_count(clock: FakeClock) -> None:
    throttle = LoginThrottle(max_failures=3, window_s=300.0, now_s=clock, max_names=100)
    for _ in range(3):
        throttle.failed("alice")
    for i in range(1000):
        throttle.failed(f"guess-{i}")
    assert not throttle.allowed("alice")
    assert throttle.names_held() <= 100  # bounded memory
    clock.t_s += 301
    throttle.failed("bob")
    assert throttle.names_held() == 1 and throttle.allowed("alice")


def test_logins_in_worker_threads_while_requests_are_served(clock: FakeClock) -> None:
    """A server verifies passwords off its event loop and opens sessions from there."""
    store = sessions(clock, max_sessions=50)
    throttle = LoginThrottle(now_s=clock, max_names=50)
    opened: list[str] = []

    def login(worker: int) -> None:
        for i in range(300):
            opened.append(store.open(f"user{worker}", Role.OPERATOR).id)
            throttle.failed(f"guess-{worker}-{i}")
            store.get(opened[-1])
            store.purge()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(login, range(4)))
    assert len(opened) == 1200 and len(set(opened)) == 1200
    assert store.count() == 50 and throttle.names_held() <= 50
    assert all(store.get(sid) is not None for sid in opened[-1:])


def test_empty_stores_are_still_truthy(clock: FakeClock) -> None:
    """`assert self.sessions and self.throttle` in a server must not fail before the first
    login: neither defines `__len__`."""
    assert sessions(clock) and LoginThrottle(now_s=clock)
