"""When the garbage collector runs during a run: it must not stop a real-time fleet's ticks.

CPython's collector pauses everything while it walks the objects of the generations it
collects. The controller makes almost no cyclic garbage (none in 36,000 ticks of the
default reactor, ten simulated hours, measured with `gc.DEBUG_SAVEALL`), but it allocates many
small tracked objects that live one tick (each reactor's readings: about 40), so the young
generation fills with every reactor's latest readings between collections. Left to itself, a 1,000-
reactor fleet made a young collection of 16,000-20,000 objects about once a second, 10-27 ms
each, and every reactor of the group it fell on was that late (`benchmarks/fleet_in_process.py`).

So: paused while the reactors are built and through their first ticks, their long-lived
objects then frozen out of it (StartUpObjects); in real or scaled time, the young
generations collected right after each tick group, in the gap before the next group, when
they hold one group's objects (TickCollections); the old one every FULL_COLLECTION_EVERY_S
of clock time, after a group too, instead of whenever the allocation counts say.
"""
from __future__ import annotations

import gc

from controller.clock import Clock

SETTLE_PERIODS = 2
"""Control periods into the run that garbage collection stays paused (StartUpObjects)."""


class StartUpObjects:
    """Garbage collection around the start: paused while the reactors are built, then the
    objects built so far (configs, models, a fleet's reactors: half a million for 1,000) are
    left out of it while the run ticks.

    They live as long as the run, but every full collection would walk them again: measured
    with 1,000 reactors, the start spent 1.3 s in six such collections, and one during the run
    took 0.4-0.6 s, making a whole period's ticks that late. Everything is as it was after the
    run, so a process that runs several runs (the tests) frees them.
    """

    def __enter__(self) -> StartUpObjects:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def built(self) -> None:
        """The run is about to tick: freeze what exists (not collected first: that walk alone
        took 0.5 s for 1,000 reactors, for the little garbage a start makes, which is freed
        after the run). Collection stays paused through the first ticks (`settled`)."""
        gc.freeze()

    def settled(self) -> None:
        """The first ticks are done: freeze what they built too, collect as usual from now on.

        Why not at `built`: a reactor's first ticks build state that lives for the run
        (recipe, checkpoints, the soft sensor's). Right after a freeze the old generation
        counts as empty, so with collection on, ten young collections into those first ticks
        already made a full one: 56 ms in the second period of 1,000 reactors (measured with
        gc.callbacks), every reactor of the groups behind it that late, which was the worst
        reactor's p99 lateness of a 60 s run."""
        gc.freeze()
        if self._was_enabled:
            gc.enable()

    def __exit__(self, *exc: object) -> None:
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()


FULL_COLLECTION_EVERY_S = 600.0
"""[est] How often the old generation is collected while a real-time run ticks: the cyclic
garbage a run makes (an exception's traceback, a dropped connection's objects) waits at most
this long; one such collection of a 1,000-reactor fleet costs tens of milliseconds, once in
600 periods at 1 Hz (docs/benchmarks.md)."""

NO_AUTOMATIC_FULL = 1 << 30
"""The old generation's threshold while TickCollections runs: never reached, so the
allocation counts never start a full collection in the middle of a group's ticks."""


class TickCollections:
    """In real or scaled time, the collector runs between tick groups, never inside one.

    Use as a context manager around the ticking, `start()` once the start-up's objects are
    frozen (StartUpObjects.settled), and `after_group()` when a group's ticks are done. Young
    generations there (one group's objects since the last call: a fraction of a millisecond);
    the old one every `full_every_s` of clock time. Automatic collection stays on for what runs
    between groups (MQTT, records), with its full collections switched off.
    """

    def __init__(self, clock: Clock, full_every_s: float = FULL_COLLECTION_EVERY_S) -> None:
        self._clock = clock
        self._full_every_s = full_every_s
        self._next_full_s = float("inf")
        self._thresholds = gc.get_threshold()
        self._started = False
        self.full_collections = 0

    def __enter__(self) -> TickCollections:
        return self

    def start(self) -> None:
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, NO_AUTOMATIC_FULL)
        self._next_full_s = self._clock.now() + self._full_every_s
        self._started = True

    def __exit__(self, *exc: object) -> None:
        gc.set_threshold(*self._thresholds)

    def after_group(self) -> None:
        if not self._started:
            return
        now = self._clock.now()
        if now >= self._next_full_s:
            self._next_full_s = now + self._full_every_s
            self.full_collections += 1
            gc.collect()
        else:
            gc.collect(1)
