"""Replay protection for signed commands."""
from __future__ import annotations

import heapq

import structlog

from controller.operator.nonce_store import NonceStore, NonceStoreError

log = structlog.get_logger(__name__)

DEFAULT_MAX_SKEW_S = 30.0
"""Commands older or newer than this (wall seconds) are refused as stale."""


class ReplayGuard:
    """Nonces accepted within the skew window, so a captured command cannot be sent again.

    A command older than `max_skew_s` is refused as stale anyway, so a nonce only needs keeping
    until its command's `ts + max_skew_s` has passed: memory is bounded by the number of
    commands accepted in one window (and only authenticated commands get here).

    With a `store` the guard survives restarts and new runs of the same reactor: the nonces
    still inside the window are loaded at construction, and every accepted nonce is committed
    to the store before `remember` returns (so before its command is queued). A store that
    cannot be read or written does not stop commands: this process still refuses replays from
    memory, the failure is logged and counted in `store_failures` for the runtime to put on
    record. Time is the wall clock (the sender's `ts` is wall time too): a wall-clock step
    larger than the window opens or shuts it accordingly.
    """

    def __init__(self, max_skew_s: float = DEFAULT_MAX_SKEW_S, *,
                 store: NonceStore | None = None, now_wall_s: float = 0.0) -> None:
        """`now_wall_s`: the wall time at start, from which a `store`'s nonces are loaded."""
        if not max_skew_s > 0:
            raise ValueError(f"max_skew_s must be > 0, got {max_skew_s}")
        self.max_skew_s = float(max_skew_s)
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._store = store
        self.store_failures = 0
        self.last_store_error = ""
        if store is not None:
            self._load(store, now_wall_s)

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
        self._hold(nonce, ts)
        if self._store is not None:
            try:
                self._store.add(nonce, ts, now_wall_s)
            except NonceStoreError as exc:
                self._store_failed(exc)
        return True

    def _load(self, store: NonceStore, now_wall_s: float) -> None:
        try:
            entries = store.load(since_wall_s=now_wall_s - self.max_skew_s)
        except NonceStoreError as exc:
            self._store_failed(exc)
            return
        for nonce, ts in entries:
            self._hold(nonce, ts)
        log.info("replay guard loaded", reactor=store.reactor_id, nonces=len(entries),
                 store=str(store.path))

    def _hold(self, nonce: str, ts: float) -> None:
        expiry = ts + self.max_skew_s
        self._expiry[nonce] = expiry
        heapq.heappush(self._heap, (expiry, nonce))

    def _store_failed(self, exc: NonceStoreError) -> None:
        self.store_failures += 1
        self.last_store_error = str(exc)
        log.error("nonce store failed: replays are refused by this process only",
                  error=str(exc))

    def _evict(self, now_wall_s: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now_wall_s:
            expiry, nonce = heapq.heappop(heap)
            if self._expiry.get(nonce) == expiry:
                del self._expiry[nonce]
