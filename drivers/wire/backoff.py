"""Reconnect backoff shared by the wire drivers: exponential, capped, deterministic.

No jitter: one controller talks to its own devices, there is no herd to spread, and a
deterministic schedule keeps runs repeatable.
"""
from __future__ import annotations


class Backoff:
    def __init__(self, initial_s: float = 0.1, maximum_s: float = 5.0,
                 factor: float = 2.0) -> None:
        if not (0 < initial_s <= maximum_s) or factor < 1:
            raise ValueError(
                f"backoff needs 0 < initial_s <= maximum_s and factor >= 1, got "
                f"initial_s={initial_s}, maximum_s={maximum_s}, factor={factor}"
            )
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.factor = factor
        self._next_s = initial_s
        self.attempts = 0

    def next_delay_s(self) -> float:
        """The wait before the next attempt; each call lengthens the following one."""
        delay = self._next_s
        self._next_s = min(self._next_s * self.factor, self.maximum_s)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next_s = self.initial_s
        self.attempts = 0
