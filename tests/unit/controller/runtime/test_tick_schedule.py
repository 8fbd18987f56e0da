"""The run's tick schedule: a tick every period from the start, an overrun skips the periods it
covered (never bunches them), and every period of the run is a tick made or a tick skipped on
record: none lost, none counted past the run's end."""
from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

import pytest
from plugins.configs import load_default

from controller import clock
from controller.clock import Clock
from controller.runtime.device_link import ReactorCounters
from controller.runtime.run import Run, RunOptions
from controller.runtime.tick_groups import (
    REAL_TIME_GROUP_SIZE,
    START_SLOT_WALL_S,
    TickGroup,
    tick_forever,
    tick_groups,
)


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
    return schedule_group(duration_s, [work_s])[0]


def schedule_group(duration_s: float, work_s: list[dict[int, float]],
                   offset_s: float = 0.0) -> list[SlowReactor]:
    """Reactors ticking back to back in one task, as in-process reactors do."""
    config = load_default(**{'duration = "14d"': f"duration = {duration_s}"})
    run = Run(RunOptions(config=config, config_text=""))

    async def main() -> list[SlowReactor]:
        c = Clock()
        reactors = [SlowReactor(c, work) for work in work_s]
        await run._tick_forever(c, reactors, offset_s)  # type: ignore[arg-type]
        return reactors

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


def test_a_group_ticks_back_to_back_and_each_reactor_has_its_own_lateness() -> None:
    first, second = schedule_group(3.0, [{1: 0.25}, {}])
    assert first.started_at == pytest.approx([0.0, 1.0, 2.0])
    assert second.started_at == pytest.approx([0.0, 1.25, 2.0])
    assert list(second.lateness_s) == pytest.approx([0.0, 0.25, 0.0])
    assert list(first.lateness_s) == pytest.approx([0.0, 0.0, 0.0])


def test_an_overrun_in_a_group_skips_the_period_for_every_member() -> None:
    reactors = schedule_group(10.0, [{}, {3: 2.5}])
    for reactor in reactors:
        assert reactor.counters.skipped_ticks == 2
        assert reactor.counters.ticks + reactor.counters.skipped_ticks == 10


def test_a_group_offset_into_the_period_ticks_there_until_the_end() -> None:
    (reactor,) = schedule_group(3.0, [{}], offset_s=0.5)
    assert reactor.started_at == pytest.approx([0.5, 1.5, 2.5])
    assert reactor.counters.skipped_ticks == 0


def test_in_virtual_time_every_in_process_reactor_ticks_in_one_group() -> None:
    groups = tick_groups([True] * 100, virtual_time=True, period_s=1.0)
    assert groups == [TickGroup(tuple(range(100)), 0.0)]


def test_in_real_time_groups_are_small_and_spread_over_the_period() -> None:
    groups = tick_groups([True] * 100, virtual_time=False, period_s=1.0)
    assert max(len(g.members) for g in groups) <= REAL_TIME_GROUP_SIZE
    assert sorted(i for g in groups for i in g.members) == list(range(100))
    offsets = [g.offset_s for g in groups]
    assert offsets == sorted(set(offsets)) and offsets[0] == 0.0 and offsets[-1] < 1.0
    assert offsets[1] == pytest.approx(1.0 / len(groups))


def test_a_large_fleet_starts_over_several_periods_each_group_keeping_its_own_phase() -> None:
    """First ticks cost several steady ones: 1,000 reactors' in one period overran their
    slots. The groups start START_SLOT_WALL_S apart, over as many periods as that takes,
    and from then on tick at phases spread evenly over the period, as a small fleet's."""
    groups = tick_groups([True] * 1000, virtual_time=False, period_s=1.0)
    assert sorted(i for g in groups for i in g.members) == list(range(1000))
    count = len(groups)
    phases = sorted(g.offset_s % 1.0 for g in groups)
    assert phases == pytest.approx([g / count for g in range(count)])
    starts = sorted(g.offset_s for g in groups)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= START_SLOT_WALL_S - 1e-9
    assert starts[-1] < count * START_SLOT_WALL_S
    # Scaled time: a clock second is `speed` wall seconds' worth of the slot.
    fast = tick_groups([True] * 1000, virtual_time=False, period_s=1.0, speed=10.0)
    assert max(g.offset_s for g in fast) > 9 * max(g.offset_s for g in groups)


def test_a_reactor_on_a_real_link_ticks_alone_at_the_start_of_the_period() -> None:
    groups = tick_groups([True, False, True, False], virtual_time=False, period_s=2.0)
    assert TickGroup((1,), 0.0) in groups and TickGroup((3,), 0.0) in groups
    assert TickGroup((0, 2), 0.0, first_spread_s=START_SLOT_WALL_S / 2) in groups


def test_a_groups_first_ticks_are_spread_over_its_start_slot_then_back_to_back() -> None:
    """A first tick costs ten to twenty steady ones: back to back, the group's last member
    started its first tick that many first ticks late. Each first tick is due on its own, and
    late only from there; from the second period on the group ticks back to back."""

    async def main() -> list[SlowReactor]:
        c = Clock()
        reactors = [SlowReactor(c, {0: 0.15}) for _ in range(3)]  # first ticks: 0.15 s each
        await tick_forever(c, reactors, offset_s=0.0, period_s=1.0, duration_s=3.0,
                           stopped=asyncio.Event(), first_spread_s=0.2)
        return reactors

    reactors = clock.run(main(), None)
    assert [r.started_at for r in reactors] == [pytest.approx(a) for a in (
        [0.0, 1.0, 2.0], [0.2, 1.0, 2.0], [0.4, 1.0, 2.0])]
    assert [list(r.lateness_s) for r in reactors] == [[0.0, 0.0, 0.0]] * 3
    assert all(r.counters.skipped_ticks == 0 for r in reactors)


def test_first_ticks_are_spread_in_real_and_scaled_time_never_past_a_period() -> None:
    real = tick_groups([True] * 1000, virtual_time=False, period_s=1.0)
    assert [g.first_spread_s * len(g.members) for g in real] == pytest.approx(
        [START_SLOT_WALL_S] * len(real))
    virtual = tick_groups([True] * 1000, virtual_time=True, period_s=1.0)
    assert [g.first_spread_s for g in virtual] == [0.0]  # virtual time: nothing to spread
    scaled = tick_groups([True] * 1000, virtual_time=False, period_s=1.0, speed=600.0)
    assert max(g.first_spread_s * len(g.members) for g in scaled) <= 1.0
