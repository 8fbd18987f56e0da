"""controller.clock: virtual, scaled and real time through the event loop's own clock.

Every test runs its coroutine with clock.run(...) from a plain (sync) test, so each gets a loop
of the kind under test rather than pytest-asyncio's.
"""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from controller import clock
from controller.clock import (
    Clock,
    ScaledTimeEventLoop,
    VirtualTimeEventLoop,
    loop_factory,
)
from controller.config import parse_speed

DAY = 86400.0


# --- virtual time --------------------------------------------------------------------------------


def test_virtual_day_long_sleep_is_instant_and_exact() -> None:
    async def main() -> tuple[float, float, bool]:
        c = Clock()
        before = c.now()
        await asyncio.sleep(DAY)
        return before, c.now(), c.virtual

    wall0 = time.perf_counter()
    before, after, virtual = clock.run(main(), None)
    wall = time.perf_counter() - wall0
    assert virtual
    assert before == 0.0
    assert after - before == DAY  # exactly, not approximately
    assert wall < 0.5


def test_virtual_two_weeks_of_ticks_take_no_wall_time() -> None:
    async def main() -> tuple[int, float]:
        c = Clock()
        ticks = 0
        while c.now() < 14 * DAY:
            await c.sleep_until((ticks + 1) * 3600.0)  # hourly, on the hour
            ticks += 1
            assert c.now() == ticks * 3600.0
        return ticks, c.now()

    wall0 = time.perf_counter()
    ticks, end = clock.run(main(), None)
    assert ticks == 14 * 24
    assert end == 14 * DAY
    assert time.perf_counter() - wall0 < 1.0


def test_virtual_tasks_wake_in_virtual_time_order() -> None:
    async def main() -> list[tuple[float, str]]:
        c = Clock()
        woke: list[tuple[float, str]] = []

        async def sleeper(name: str, period: float, n: int) -> None:
            for _ in range(n):
                await asyncio.sleep(period)
                woke.append((c.now(), name))

        await asyncio.gather(sleeper("a", 3.0, 3), sleeper("b", 2.5, 4))
        return woke

    woke = clock.run(main(), None)
    assert woke == [
        (2.5, "b"), (3.0, "a"), (5.0, "b"), (6.0, "a"), (7.5, "b"), (9.0, "a"), (10.0, "b"),
    ]


def test_virtual_sleep_until_and_wait_for_use_loop_time() -> None:
    async def main() -> tuple[float, float, float]:
        c = Clock()
        await c.sleep_until(100.0)
        t1 = c.now()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30.0)
        t2 = c.now()
        await c.sleep_until(50.0)  # in the past: returns at once
        return t1, t2, c.now()

    assert clock.run(main(), None) == (100.0, 130.0, 130.0)


def test_virtual_loop_waits_for_a_worker_thread() -> None:
    """asyncio.to_thread hands its result back; virtual time does not strand the loop."""

    def work(x: int) -> int:
        time.sleep(0.05)  # real work in real time
        return x * 2

    async def main() -> tuple[int, int, float]:
        c = Clock()
        # alone: no timers, so the loop blocks on real I/O until the thread wakes it
        alone = await asyncio.to_thread(work, 21)
        t_alone = c.now()

        # alongside a ticking task: virtual time may run on, but the result still arrives
        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                await asyncio.sleep(1.0)

        tick = asyncio.create_task(ticker())
        with_ticker = await asyncio.to_thread(work, 4)
        stop.set()
        await tick
        return alone, with_ticker, t_alone

    result: list[object] = []
    runner = threading.Thread(target=lambda: result.append(clock.run(main(), None)), daemon=True)
    runner.start()
    runner.join(timeout=5.0)
    assert not runner.is_alive(), "the virtual-time loop hung waiting for a worker thread"
    assert result == [(42, 8, 0.0)]


# --- real and scaled time ------------------------------------------------------------------------


def _timed_sleep(seconds: float):
    async def main() -> tuple[float, float, str, bool]:
        c = Clock()
        start_wall = time.monotonic()
        start = c.now()
        await asyncio.sleep(seconds)
        return (time.monotonic() - start_wall, c.now() - start,
                type(asyncio.get_running_loop()).__name__, c.virtual)

    return main()


def test_speed_one_is_the_stock_loop_in_real_time() -> None:
    wall, loop_elapsed, loop_name, virtual = clock.run(_timed_sleep(0.05), 1.0)
    assert loop_name == "_UnixSelectorEventLoop"
    assert not virtual
    assert wall >= 0.05 - 1e-6  # asyncio may fire a timer one clock resolution early
    assert wall < 1.0
    assert loop_elapsed == pytest.approx(wall, abs=0.02)


def test_scaled_time_speed_100() -> None:
    wall, loop_elapsed, loop_name, virtual = clock.run(_timed_sleep(1.0), 100.0)
    assert loop_name == "ScaledTimeEventLoop"
    assert not virtual
    assert loop_elapsed >= 1.0 - 1e-6
    assert 0.005 <= wall < 0.5  # about 0.01 s of wall time
    assert loop_elapsed == pytest.approx(wall * 100.0, rel=0.05)


def test_scaled_loop_rejects_non_positive_speed() -> None:
    for speed in (0.0, -2.0):
        with pytest.raises(ValueError, match="speed"):
            ScaledTimeEventLoop(speed)


def test_loop_factory_picks_the_loop_for_the_speed() -> None:
    assert loop_factory(None) is VirtualTimeEventLoop
    assert loop_factory(1.0) is asyncio.SelectorEventLoop
    loop = loop_factory(10.0)()
    try:
        assert isinstance(loop, ScaledTimeEventLoop)
        assert loop._speed == 10.0
    finally:
        loop.close()


def test_wall_time_is_the_wall_clock_even_under_virtual_time() -> None:
    async def main() -> tuple[float, float]:
        before = Clock.wall_time()
        await asyncio.sleep(10 * DAY)
        return before, Clock.wall_time()

    before, after = clock.run(main(), None)
    assert 0.0 <= after - before < 1.0


# --- parse_speed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "speed"),
    [("max", None), ("MAX", None), (" max ", None), ("10", 10.0), ("1", 1.0), (2.5, 2.5),
     ("0.5", 0.5), (3, 3.0)],
)
def test_parse_speed_accepts(text: str | float, speed: float | None) -> None:
    assert parse_speed(text) == speed


@pytest.mark.parametrize("text", [0, -1, "0", "-1", "fast", "", "nan", float("nan")])
def test_parse_speed_rejects_with_a_message(text: str | float) -> None:
    with pytest.raises(ValueError) as info:
        parse_speed(text)
    message = str(info.value)
    assert "'max' or a positive finite number" in message
    assert repr(text) in message


@pytest.mark.parametrize("text", ["inf", float("inf")])
def test_parse_speed_rejects_infinity(text: str | float) -> None:
    # float('inf') > 0, so 'inf' passes as a speed factor. ScaledTimeEventLoop(inf) then has a
    # clock of 0*inf = nan or inf and every select timeout is timeout/inf = 0: the loop spins and
    # `clock.run(asyncio.sleep(1), float('inf'))` never returns. A config `speed = "inf"` passes
    # validation the same way.
    with pytest.raises(ValueError):
        parse_speed(text)
