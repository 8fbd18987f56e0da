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

REAL_TIME_GROUP_SIZE = 5
"""[est] At most this many in-process reactors tick back to back in real time. A group's last
reactor starts after the others' ticks: ~0.1-0.3 ms each when steady (with MQTT), but 1.6-3 ms
each in a reactor's first period (its first checkpoints, the recipe's start, its first retained
publications). With 10 a group, the last of each started 16-30 ms late once, and a reactor's
p99 lateness over a minute is its largest two: that, and the records' hand-off inside a tick
(historian.FLUSH_TICK_ROWS), made a 1,000-reactor fleet's worst p99 21-34 ms. Five halve it,
for 200 timers a period instead of 100 (docs/benchmarks.md, "Smaller tick groups and record
hand-offs")."""

START_SLOT_WALL_S = 0.025
"""[est] The wall time a group's first ticks are given before the next group's start: a
reactor's first tick costs up to ~3 ms with MQTT (above), ten to twenty times a steady one,
and the historian's pipe can push back for a few ms under a thousand first checkpoints; a
group of 5 took 8-15 ms in its first period. So a large fleet's groups start over more than
one period (1,000 reactors: 200 groups over 5 periods, 25 ms apart), each keeping its own
phase of the period, 5 ms apart; with every group starting in the first period their first
ticks overran their slots and the start's lateness cascaded to 110-130 ms by its end."""


class Tickable(Protocol):
    counters: ReactorCounters
    lateness_s: deque[float]

    async def tick(self) -> None: ...


@dataclass(frozen=True)
class TickGroup:
    """Reactors (by index) that tick back to back, `offset_s` into every period."""

    members: tuple[int, ...]
    offset_s: float = 0.0
    first_spread_s: float = 0.0
    """How far apart the members' first ticks are due (clock seconds): in real or scaled time
    a first tick costs ten to twenty steady ones, so back to back the group's last member
    started its first tick 15-25 ms late; spread over the group's start slot, each starts
    near its own due time. Back to back from the second period on."""


def tick_groups(in_process: Sequence[bool], *, virtual_time: bool, period_s: float,
                speed: float = 1.0) -> list[TickGroup]:
    """In-process reactors in groups (one in virtual time: no time passes while they work) at
    phases spread evenly over the period, a fleet whose first ticks would not fit in one period
    starting over as many as START_SLOT_WALL_S a group needs (clock seconds are `speed` wall
    seconds' worth), a group's first ticks spread over that slot; every other reactor alone,
    at the period's start."""
    batched = [i for i, local in enumerate(in_process) if local]
    alone = [TickGroup((i,)) for i, local in enumerate(in_process) if not local]
    if not batched:
        return alone
    size = len(batched) if virtual_time else REAL_TIME_GROUP_SIZE
    count = math.ceil(len(batched) / size)
    # Group g keeps its phase g/count of the period; it starts in period g % periods, so the
    # groups starting in one period are `periods` slots apart.
    periods = 1 if virtual_time else math.ceil(count * START_SLOT_WALL_S * speed / period_s)
    slot_s = 0.0 if virtual_time else min(START_SLOT_WALL_S * speed, period_s)
    groups = [TickGroup(members := tuple(batched[g::count]),
                        offset_s=g * period_s / count + (g % periods) * period_s,
                        first_spread_s=slot_s / len(members))
              for g in range(count)]
    return groups + alone


async def tick_forever(clock: Clock, reactors: Sequence[Tickable], *, offset_s: float,
                       period_s: float, duration_s: float, stopped: asyncio.Event,
                       after_group: Callable[[], None] | None = None,
                       first_spread_s: float = 0.0) -> None:
    """Tick `reactors` back to back every period, `offset_s` into it, until `duration_s`.

    Every period of the run is a tick made or a tick skipped on record: an overrun skips the
    periods it covered (never bunches them), and only periods inside the run count. Each
    reactor's lateness is taken when its own tick starts. In the first period the reactors'
    ticks are due `first_spread_s` apart (TickGroup.first_spread_s), each late from its own due
    time; back to back from then on. `stopped` is an asyncio.Event: it is
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
        if n == 0 and first_spread_s > 0.0:
            await _first_ticks(clock, reactors, t, first_spread_s)
        else:
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


async def _first_ticks(clock: Clock, reactors: Sequence[Tickable], t: float,
                       spread_s: float) -> None:
    """The group's first period: reactor k's first tick due at `t + k * spread_s`."""
    for k, reactor in enumerate(reactors):
        due = t + k * spread_s
        if clock.now() < due:
            await clock.sleep_until(due)
        reactor.lateness_s.append(clock.now() - due)
        await reactor.tick()
