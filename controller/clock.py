"""One clock for the whole daemon, in real, scaled or virtual time.

The clock *is* the event loop's clock: every timer (asyncio.sleep, wait_for timeouts) already
uses `loop.time()`, so bending that one function bends all of them consistently. The daemon's
code is the same in every mode; only the loop it runs on differs:

- real time: the stock event loop;
- scaled time (`speed=FACTOR`): loop time runs FACTOR times faster than the wall clock, for a
  served emulator or a demo;
- virtual time (`speed=max`): when every task is waiting, loop time jumps straight to the next
  timer, so two weeks of culture run in seconds and a run is repeatable from its seed. Real I/O
  (thread wake-ups, signals) is still polled on every loop iteration, so SIGINT works and worker
  threads can hand results back; a loop with no timers at all blocks on real I/O as usual.

Virtual time is only meaningful when every device is in-process: waiting on a real socket under
virtual time would see its timeout fire at once.
"""
from __future__ import annotations

import asyncio
import math
import selectors
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _TimeBendingSelector(selectors.BaseSelector):
    """Wraps the loop's selector: a wait of `timeout` loop-seconds becomes a jump or a scaled
    wait."""

    def __init__(self, inner: selectors.BaseSelector, wait: Callable[[float], list[Any]]) -> None:
        self._inner = inner
        self._wait = wait

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None or timeout <= 0:
            return self._inner.select(timeout)
        return self._wait(timeout)

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """Loop time starts at 0 and advances only by jumping to the next due timer.

    Real I/O (signals, worker threads handing back results) is polled without waiting once
    every `POLL_EVERY` loop iterations rather than on each: a poll is a system call that would
    otherwise cost as much as the rest of a control tick, and nothing real waits on virtual time.
    """

    POLL_EVERY = 32

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self._until_poll = 0
        inner = selectors.DefaultSelector()
        super().__init__(_VirtualSelector(inner, self))
        self._inner_selector = inner

    def time(self) -> float:
        return self._virtual_now

    def _select(self, timeout: float | None) -> list[Any]:
        if timeout is None:  # no timers at all: only real I/O can wake us
            return self._inner_selector.select(None)
        self._until_poll -= 1
        if self._until_poll <= 0:
            self._until_poll = self.POLL_EVERY
            events = self._inner_selector.select(0)
            if events:
                return events
        if timeout > 0:
            self._virtual_now += timeout
        return []


class _VirtualSelector(_TimeBendingSelector):
    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeEventLoop) -> None:
        super().__init__(inner, loop._select)

    def select(self, timeout: float | None = None) -> list[Any]:
        return self._wait(timeout)  # type: ignore[arg-type]


class ScaledTimeEventLoop(asyncio.SelectorEventLoop):
    """Loop time runs `speed` times faster than the monotonic wall clock."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._origin = time.monotonic()
        inner = selectors.DefaultSelector()
        super().__init__(_TimeBendingSelector(inner, self._scaled_wait))
        self._inner_selector = inner
        if not (speed > 0 and math.isfinite(speed)):
            self.close()
            raise ValueError(f"speed must be a positive finite number, got {speed!r}")

    def time(self) -> float:
        return (time.monotonic() - self._origin) * self._speed

    def _scaled_wait(self, timeout: float) -> list[Any]:
        return self._inner_selector.select(timeout / self._speed)


def loop_factory(speed: float | None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event-loop constructor for a speed: None is virtual time, 1.0 the stock loop."""
    if speed is None:
        return VirtualTimeEventLoop
    if speed == 1.0:
        return asyncio.SelectorEventLoop
    return lambda: ScaledTimeEventLoop(speed)


def run(main: Awaitable[T], speed: float | None) -> T:
    """Run `main` to completion on a loop whose clock runs at `speed`."""
    with asyncio.Runner(loop_factory=loop_factory(speed)) as runner:
        return runner.run(main)  # type: ignore[arg-type]


class Clock:
    """Seconds since the run's epoch, on the running loop's (possibly bent) time.

    Create it inside the running loop. `wall_time()` is the only door to the wall clock, for
    timestamps that humans and other machines read. `start_s` is where the run's time stands
    now: 0 for a new run, later for a run continued after a crash (controller/runtime/recovery.py).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._epoch = self._loop.time() - start_s
        self.virtual = isinstance(self._loop, VirtualTimeEventLoop)

    def now(self) -> float:
        return self._loop.time() - self._epoch

    async def sleep_until(self, t_s: float) -> None:
        await asyncio.sleep(t_s - (self._loop.time() - self._epoch))

    @staticmethod
    def wall_time() -> float:
        return time.time()

    @staticmethod
    def wall_monotonic() -> float:
        """For measuring how long the process itself took (benchmarks, wall_seconds)."""
        return time.perf_counter()
