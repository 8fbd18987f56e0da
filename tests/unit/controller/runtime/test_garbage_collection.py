"""Garbage collection during a run: around its start, paused while building and through the
first ticks, the objects of both left out of it; in real time, between tick groups only (young
generations after each group, the old one on a schedule); everything as before after the run."""
from __future__ import annotations

import gc

from controller.runtime.garbage_collection import (
    NO_AUTOMATIC_FULL,
    StartUpObjects,
    TickCollections,
)


def test_collection_is_paused_until_the_first_ticks_are_done_and_restored_after() -> None:
    assert gc.isenabled()
    with StartUpObjects() as start_up:
        assert not gc.isenabled()
        built = [object() for _ in range(10)]
        start_up.built()
        assert not gc.isenabled()  # the first ticks' long-lived state is still being made
        frozen_at_build = gc.get_freeze_count()
        first_ticks = [[i] for i in range(1000)]
        start_up.settled()
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen_at_build + len(first_ticks)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    del built, first_ticks


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def test_between_groups_the_young_generations_are_collected_and_the_old_on_schedule() -> None:
    clock = _Clock()
    generations: list[int] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            generations.append(info["generation"])

    before = gc.get_threshold()
    gc.callbacks.append(seen)
    try:
        with TickCollections(clock, full_every_s=600.0) as collections:  # type: ignore[arg-type]
            collections.after_group()
            assert generations == []  # not before start(): the start-up's own rule holds
            collections.start()
            assert gc.get_threshold()[2] == NO_AUTOMATIC_FULL  # no full one inside a group
            garbage = [[i] for i in range(500)]
            del garbage
            for _ in range(3):
                clock.t += 1.0
                collections.after_group()
            assert generations == [1, 1, 1] and gc.get_count()[0] < 50
            clock.t = 600.0
            collections.after_group()
            clock.t = 601.0
            collections.after_group()
            assert generations[-2:] == [2, 1] and collections.full_collections == 1
    finally:
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before
