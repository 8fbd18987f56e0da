"""Garbage collection around a run's start: paused while building and through the first ticks,
the objects of both left out of it, everything as before after the run."""
from __future__ import annotations

import gc

from controller.runtime.run import StartUpObjects


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
