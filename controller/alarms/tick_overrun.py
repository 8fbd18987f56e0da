"""When skipped ticks become an alarm (`tick_overrun`). Pure logic: no I/O and no clock.

A tick that overruns its period makes the scheduler skip the periods it missed (counted as
`skipped_ticks`); one stall (a slow write, a pause of the host) skips a few and is no one's
business. The rule: more than RAISE_SHARE (10 %) of the periods in the last window skipped raises
the alarm; it clears once at most CLEAR_SHARE (2 %) are. The window is WINDOW_S (60 s) or
WINDOW_PERIODS (60) periods, the longer, and the alarm is judged only over a full window: at
10 % of 60 periods, six skipped ticks in a minute, the loops (tuned for their period) miss one
correction in ten for a whole minute, which a slow link or an overloaded host does and a single
stall does not. The gap between the two shares keeps a link hovering near the limit from
chattering.
"""
from __future__ import annotations

from collections import deque

ALARM = "tick_overrun"
PRIORITY = "medium"
RAISE_SHARE = 0.10
CLEAR_SHARE = 0.02
WINDOW_S = 60.0
WINDOW_PERIODS = 60


class TickOverrun:
    def __init__(self, period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s {period_s} must be > 0")
        self.period_s = period_s
        self.window_s = max(WINDOW_S, WINDOW_PERIODS * period_s)
        self.active = False
        self.share = 0.0
        """The share of periods skipped over the last full window."""
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, t_s: float, skipped_ticks: int) -> bool | None:
        """Take the run's skipped-tick count at `t_s`; the alarm's new state if it changed,
        else None."""
        samples = self._samples
        samples.append((t_s, skipped_ticks))
        while len(samples) > 1 and samples[1][0] <= t_s - self.window_s:
            samples.popleft()
        since_s, skipped_then = samples[0]
        if t_s - since_s < self.window_s:
            return None  # not a full window yet
        self.share = (skipped_ticks - skipped_then) * self.period_s / (t_s - since_s)
        if not self.active and self.share > RAISE_SHARE:
            self.active = True
            return True
        if self.active and self.share <= CLEAR_SHARE:
            self.active = False
            return False
        return None

    def message(self) -> str:
        state = "sustained" if self.active else "over"
        return (f"tick overrun {state}: {self.share:.0%} of the control periods skipped over "
                f"the last {self.window_s:g} s (raised above {RAISE_SHARE:.0%}, cleared at "
                f"{CLEAR_SHARE:.0%}): ticks take longer than their period (a slow device link "
                "or an overloaded host), so the loops correct less often than tuned")
