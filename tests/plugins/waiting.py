"""Waiting on a condition instead of a fixed sleep: as fast as the condition allows on an idle
machine, and as patient as `timeout_s` on a loaded one (two xdist workers, other jobs)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.02


def wait_until(predicate: Callable[[], T], timeout_s: float, what: str,
               poll_s: float = POLL_S) -> T:
    """Poll `predicate` until it is truthy and return its value; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
    return value


async def async_wait_until(predicate: Callable[[], T], timeout_s: float, what: str,
                           poll_s: float = POLL_S) -> T:
    """`wait_until` for a test on the event loop: it yields to the loop while it waits."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(poll_s)
    return value
