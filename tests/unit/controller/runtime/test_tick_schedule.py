"""The run's tick schedule: a tick every period from the start, an overrun skips the periods it
covered (never bunches them), and every period of the run is a tick made or a tick skipped on
record: none lost, none counted past the run's end."""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import pytest
from plugins.configs import load_default

from controller import clock
from controller.clock import Clock
from controller.runtime.device_link import ReactorCounters
from controller.runtime.run import Run, RunOptions


@dataclass
class SlowReactor:
    """A reactor whose ticks take `work_s[i]` of clock time (the i-th tick), and record when."""

    clock: Clock
    work_s: dict[int, float]
    counters: ReactorCounters = field(default_factory=ReactorCounters)
    lateness_s: deque[float] = field(default_factory=deque)
    started_at: list[float] = field(default_factory=list)

    async def tick(self) -> None:
        self.started_at.append(self.clock.now())
        work = self.work_s.get(len(self.started_at) - 1, 0.0)
        self.counters.ticks += 1
        if work:
            await self.clock.sleep_until(self.clock.now() + work)


def schedule(duration_s: float, work_s: dict[int, float]) -> SlowReactor:
    config = load_default(**{'duration = "14d"': f"duration = {duration_s}"})
    run = Run(RunOptions(config=config, config_text=""))

    async def main() -> SlowReactor:
        c = Clock()
        reactor = SlowReactor(c, work_s)
        await run._tick_forever(c, reactor)  # type: ignore[arg-type]
        return reactor

    return clock.run(main(), None)


def test_without_overruns_every_period_is_a_tick() -> None:
    reactor = schedule(10.0, {})
    assert reactor.started_at == pytest.approx([float(i) for i in range(10)])
    assert reactor.counters.skipped_ticks == 0


def test_an_overrun_skips_the_periods_it_covered() -> None:
    reactor = schedule(10.0, {3: 2.5})  # tick 3 (t=3) runs until 5.5: periods 4 and 5 skipped
    assert reactor.started_at == pytest.approx([0.0, 1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0])
    assert reactor.counters.skipped_ticks == 2
    assert reactor.counters.ticks + reactor.counters.skipped_ticks == 10


@pytest.mark.parametrize("work_s", [3.5, 30.0])
def test_an_overrun_past_the_end_counts_only_the_periods_inside_the_run(work_s: float) -> None:
    reactor = schedule(10.0, {8: work_s})  # the tick at t=8 runs past the end (t=10)
    assert reactor.started_at == pytest.approx([float(i) for i in range(9)])
    assert reactor.counters.skipped_ticks == 1  # t=9; not the periods after the end
    assert reactor.counters.ticks + reactor.counters.skipped_ticks == math.ceil(10.0 / 1.0)
