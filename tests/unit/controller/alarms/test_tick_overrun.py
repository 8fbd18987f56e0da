"""The tick_overrun rule: sustained skipping raises it, one stall does not, and it clears."""
from __future__ import annotations

from controller.alarms.tick_overrun import TickOverrun


def feed(overrun: TickOverrun, skipped_per_5_s: list[int], start_s: float = 0.0,
         skipped: int = 0) -> list[tuple[float, bool]]:
    """Observe every 5 s (the alarm period) with the given skips in each 5 s; the changes."""
    changes = []
    for i, n in enumerate(skipped_per_5_s):
        skipped += n
        change = overrun.observe(start_s + 5.0 * i, skipped)
        if change is not None:
            changes.append((start_s + 5.0 * i, change))
    return changes


def test_one_stall_is_not_an_alarm() -> None:
    overrun = TickOverrun(period_s=1.0)
    assert feed(overrun, [0] * 10 + [5] + [0] * 30) == []


def test_a_sustained_overrun_raises_within_a_window_and_clears_after() -> None:
    overrun = TickOverrun(period_s=1.0)
    # Two of every five periods skipped (40 %) from the start: raised once a window is full.
    changes = feed(overrun, [2] * 20)
    assert changes == [(60.0, True)] and overrun.active
    assert overrun.share == 0.4
    changes = feed(overrun, [0] * 20, start_s=100.0, skipped=40)
    assert [c for _, c in changes] == [False]
    assert changes[0][0] <= 100.0 + 60.0


def test_the_window_is_sixty_periods_when_they_are_longer_than_a_minute() -> None:
    assert TickOverrun(period_s=5.0).window_s == 300.0
    assert TickOverrun(period_s=0.5).window_s == 60.0
