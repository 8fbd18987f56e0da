"""Which reactors tick together, and when in the period: the daemon's tick schedule.

Reactors whose device lives in this process never wait on I/O inside a tick, so the ones that
share the control period tick one after another in one task: one timer a period instead of one
per reactor. In real or scaled time a group is kept small and the groups are spread over the
period, so a reactor's tick starts at most one group's work after its own due time (with 1,000
reactors in one group the last would start ~0.1 s late every period). A reactor on a real link
keeps a task of its own: its reads wait out a slow device's deadline, which must not delay the
others.
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from controller.clock import Clock
from controller.runtime.device_link import ReactorCounters

REAL_TIME_GROUP_SIZE = 10
"""[est] At most this many in-process reactors tick back to back in real time: 10 of the
default reactor's ~0.1 ms ticks keep the last one within ~1 ms of its due time."""

START_SLOT_WALL_S = 0.05
"""[est] The wall time a group's first ticks are given before the next group's start: a
reactor's first tick costs ~0.8 ms (its first checkpoints handed to the historian, the recipe's
start, the soft sensor's first update; measured 0.7-0.8 ms each in a 1,000-reactor start),
eight times a steady one, and the historian's pipe can push back for a few ms under a
thousand first checkpoints. So a large fleet's groups start over more than one period (1,000
reactors: 100 groups over 3 periods, 30 ms apart), each keeping its own phase of the period,
10 ms apart; with every group starting in the first period, 10 ms apart, their first ticks
overran their slots and the start's lateness cascaded to 110-130 ms by its end."""


class Tickable(Protocol):
    counters: ReactorCounters
    lateness_s: deque[float]

    async def tick(self) -> None: ...


@dataclass(frozen=True)
class TickGroup:
    """Reactors (by index) that tick back to back, `offset_s` into every period."""

    members: tuple[int, ...]
    offset_s: float = 0.0


def tick_groups(in_process: Sequence[bool], *, virtual_time: bool, period_s: float,
                speed: float = 1.0) -> list[TickGroup]:
    """In-process reactors in groups (one in virtual time: no time passes while they work) at
    phases spread evenly over the period, a fleet whose first ticks would not fit in one period
    starting over as many as START_SLOT_WALL_S a group needs (clock seconds are `speed` wall
    seconds' worth); every other reactor alone, at the period's start."""
    batched = [i for i, local in enumerate(in_process) if local]
    alone = [TickGroup((i,)) for i, local in enumerate(in_process) if not local]
    if not batched:
        return alone
    size = len(batched) if virtual_time else REAL_TIME_GROUP_SIZE
    count = math.ceil(len(batched) / size)
    # Group g keeps its phase g/count of the period; it starts in period g % periods, so the
    # groups starting in one period are `periods` slots apart.
    periods = 1 if virtual_time else math.ceil(count * START_SLOT_WALL_S * speed / period_s)
    groups = [TickGroup(tuple(batched[g::count]),
                        offset_s=g * period_s / count + (g % periods) * period_s)
              for g in range(count)]
    return groups + alone


async def tick_forever(clock: Clock, reactors: Sequence[Tickable], *, offset_s: float,
                       period_s: float, duration_s: float, stopped: asyncio.Event,
                       after_group: Callable[[], None] | None = None) -> None:
    """Tick `reactors` back to back every period, `offset_s` into it, until `duration_s`.

    Every period of the run is a tick made or a tick skipped on record: an overrun skips the
    periods it covered (never bunches them), and only periods inside the run count. Each
    reactor's lateness is taken when its own tick starts. `stopped` is an asyncio.Event: it is
    checked as well as cancellation, because a library that swallows a CancelledError
    (asyncio.wait_for on 3.11 can, in a race) must not keep a run alive. `after_group` runs
    once the group's ticks are done, before the wait for the next period (the garbage
    collector's slot: controller/runtime/garbage_collection.py).
    """
    n = 0
    first = clock.now() + offset_s  # later than 0 for a run continued after a crash
    t = first
    periods = math.ceil((duration_s - first) / period_s)
    is_set = stopped.is_set
    if offset_s > 0.0:
        await clock.sleep_until(first)
    while t < duration_s and not is_set():
        for reactor in reactors:
            reactor.lateness_s.append(clock.now() - t)
            await reactor.tick()
        if after_group is not None:
            after_group()
        n += 1
        t = first + n * period_s
        now = clock.now()
        if now > t:  # overran: skip the ticks we missed rather than bunch them up
            skip_to = int((now - first) // period_s) + 1
            skipped = min(skip_to, periods) - n
            for reactor in reactors:
                reactor.counters.skipped_ticks += skipped
            n = skip_to
            t = first + n * period_s
        await clock.sleep_until(t)
