"""The reconnect gate and link counters every wire driver shares.

A control tick must never stall on a dead link. So a driver that lost its link does not try
again on every call: until the backoff delay has passed, the gate fails each call at once with
ConnectionLostError, and the tick goes on with bad-quality readings. Then one attempt is made;
a failure lengthens the next delay (Backoff), a success resets it.

Backoff delays are wall seconds, because links run on the wall; the gate schedules on the
controller's clock, which runs `time_scale` times faster, and reports delays in wall seconds.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivers.contract.errors import ConnectionLostError
from drivers.wire.backoff import Backoff


@dataclass
class LinkCounters:
    """What happened on one link since the driver was built; reported by `diagnostics()`."""

    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    frames_bad: int = 0
    replies_stale: int = 0
    device_errors: int = 0
    link_losses: int = 0
    reconnects: int = 0
    connect_failures: int = 0

    def report(self, names: Iterable[str]) -> dict[str, float]:
        """The named counters as floats (diagnostics are numbers a historian can plot)."""
        return {name: float(getattr(self, name)) for name in names}

    def faults(self) -> dict[str, int]:
        """The Driver contract's `link_faults`."""
        return {"timeouts": self.timeouts, "replies_stale": self.replies_stale,
                "retries": self.retries}


class ReconnectGate:
    """When a dead link may be tried again. It never waits: it says "not yet" by raising."""

    def __init__(self, url: str, *, now: Callable[[], float], time_scale: float,
                 backoff: Backoff, counters: LinkCounters) -> None:
        self.url = url
        self.counters = counters
        self._now = now
        self._time_scale = time_scale
        self._backoff = backoff
        self._next_attempt_at = -math.inf
        self._down_reason = ""
        self._ever_connected = False

    def open_now(self) -> None:
        """Let the next attempt happen at once: an explicit connect() is not held back."""
        self._next_attempt_at = -math.inf

    def check(self) -> None:
        """Raise ConnectionLostError while the backoff delay has not passed."""
        wait = self._next_attempt_at - self._now()
        if wait > 0:
            reason = f" ({self._down_reason})" if self._down_reason else ""
            raise ConnectionLostError(f"{self.url}: link down{reason}; next reconnect attempt "
                                      f"in {wait / self._time_scale:.3g} s")

    def schedule(self, reason: str) -> None:
        """The link is down: the next attempt waits for the next backoff delay."""
        self._next_attempt_at = self._now() + self._backoff.next_delay_s() * self._time_scale
        self._down_reason = reason

    def down(self, reason: str) -> None:
        """The link is down, perhaps already known: schedule only if no attempt is pending, so
        one outage reported twice (hook and failed request) does not lengthen the backoff."""
        if self._next_attempt_at <= self._now():
            self.schedule(reason)

    def lost(self, reason: str) -> None:
        """An open link went away."""
        self.counters.link_losses += 1
        self.schedule(reason)

    def failed(self, reason: str) -> None:
        """An attempt to open the link failed."""
        self.counters.connect_failures += 1
        self.schedule(reason)

    def connected(self) -> None:
        """An attempt succeeded: the backoff starts afresh; every success after the first
        counts as a reconnect."""
        if self._ever_connected:
            self.counters.reconnects += 1
        self._ever_connected = True
        self._backoff.reset()
        self._down_reason = ""
