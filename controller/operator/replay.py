"""Replay protection for signed commands."""
from __future__ import annotations

import heapq
from collections.abc import Iterable

DEFAULT_MAX_SKEW_S = 30.0
"""Commands older or newer than this (wall seconds) are refused as stale."""


class ReplayGuard:
    """Nonces accepted within the skew window, so a captured command cannot be sent again.

    A command older than `max_skew_s` is refused as stale anyway, so a nonce only needs keeping
    until its command's `ts + max_skew_s` has passed: memory is bounded by the number of
    commands accepted in one window (and only authenticated commands get here).

    A restart forgets the nonces; the timestamp window still bounds a replay to commands signed
    in the last `max_skew_s` seconds. To close even that gap, the runtime reloads the nonces of
    recently accepted commands from the audit trail with `seed()` at start. Time is the wall
    clock (the sender's `ts` is wall time too): a wall-clock step larger than the window opens
    or shuts it accordingly.
    """

    def __init__(self, max_skew_s: float = DEFAULT_MAX_SKEW_S) -> None:
        if not max_skew_s > 0:
            raise ValueError(f"max_skew_s must be > 0, got {max_skew_s}")
        self.max_skew_s = float(max_skew_s)
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    @property
    def remembered(self) -> int:
        """How many nonces are held (not __len__: an empty guard must not be falsy)."""
        return len(self._expiry)

    def fresh(self, ts: float, now_wall_s: float) -> bool:
        return abs(now_wall_s - ts) <= self.max_skew_s

    def remember(self, nonce: str, ts: float, now_wall_s: float) -> bool:
        """Record `nonce`; False if it was already recorded (a replay)."""
        self._evict(now_wall_s)
        if nonce in self._expiry:
            return False
        expiry = ts + self.max_skew_s
        self._expiry[nonce] = expiry
        heapq.heappush(self._heap, (expiry, nonce))
        return True

    def seed(self, nonces: Iterable[str], now_wall_s: float) -> None:
        """Remember nonces from before a restart for one full window from now (conservative:
        their commands' exact `ts` does not matter, a nonce kept too long costs nothing)."""
        for nonce in nonces:
            self.remember(nonce, now_wall_s, now_wall_s)

    def _evict(self, now_wall_s: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now_wall_s:
            expiry, nonce = heapq.heappop(heap)
            if self._expiry.get(nonce) == expiry:
                del self._expiry[nonce]
