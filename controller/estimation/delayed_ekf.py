"""An extended Kalman filter that takes measurements late, at the time they were true.

At-line results arrive hours after their sample was drawn (`Reading.timestamp_s` is the draw
time). The filter keeps, for a window of `history_s`, every segment it ran (its time span, what
the pumps did, the continuous measurements at its end, and the posterior after it); a late
measurement is inserted at its draw time and the filter re-runs from the segment it falls in to
now. That is the exact answer (the same as if the result had been there at once), at the cost of
re-running the window's segments, a few milliseconds, once per sample.
"""
from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controller.estimation.culture_model import N_STATES, CultureModel, Dilution, Observation

S_PER_D = 86400.0


@dataclass(slots=True)
class Segment:
    t0_s: float
    t1_s: float
    dilution: Dilution
    observations: list[Observation]
    """Continuous measurements, applied at t1_s."""
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The posterior at t1_s (after the late measurements inside the segment)."""


class DelayedEKF:
    def __init__(self, model: CultureModel, x0: np.ndarray, p0: np.ndarray, t0_s: float,
                 history_s: float) -> None:
        self.model = model
        self.history_s = history_s
        self._base = (t0_s, x0.copy(), p0.copy())
        self._started_s = t0_s
        self._segments: list[Segment] = []
        self._late: list[Observation] = []
        """Late measurements inside the window, sorted by their time."""
        self.too_late = 0
        """Late measurements older than the window: dropped (counted)."""

    @property
    def t_s(self) -> float:
        return self._segments[-1].t1_s if self._segments else self._base[0]

    @property
    def x(self) -> np.ndarray:
        return self._segments[-1].x if self._segments else self._base[1]

    @property
    def p(self) -> np.ndarray:
        return self._segments[-1].p if self._segments else self._base[2]

    def step(self, t1_s: float, dilution: Dilution, observations: list[Observation]) -> None:
        """Run forward to t1_s with the pumps' `dilution` and apply `observations` there."""
        segment = Segment(self.t_s, t1_s, dilution, observations)
        x, p = self.x, self.p
        self._segments.append(segment)
        self._run(segment, x, p)
        self._prune()

    def add_late(self, observations: list[Observation]) -> int:
        """Insert measurements true at their own (earlier) times; re-run from the earliest.
        Returns how many were taken (the rest were older than the window; those drawn before
        the filter started are taken at its start)."""
        base_t = self._base[0]
        taken = [o for o in observations if base_t < o.t_s <= self.t_s]
        early = [o for o in observations if o.t_s <= base_t]
        used_early = len(early) if base_t == self._started_s else 0
        if early and used_early:
            # Drawn before the filter started (the seeding samples, drawn before the first
            # optical density): the culture the filter starts from, so applied at its start.
            t, x, p = self._base
            x, p = self.model.update(x, p, [Observation(o.kind, t, o.value) for o in early])
            self._base = (t, x, p)
            self._rerun_from(0)
        else:
            self.too_late += len(early)
        # One later than now (a clock skew) is applied now: the filter never runs ahead.
        now = [Observation(o.kind, self.t_s, o.value) for o in observations if o.t_s > self.t_s]
        if now:
            if self._segments:
                last = self._segments[-1]
                last.observations = [*last.observations, *now]
                self._rerun_from(len(self._segments) - 1)
            else:
                t, x, p = self._base
                x, p = self.model.update(x, p, now)
                self._base = (t, x, p)
        if not taken:
            return len(now) + used_early
        for o in taken:
            bisect.insort(self._late, o, key=lambda ob: ob.t_s)
        earliest = min(o.t_s for o in taken)
        index = bisect.bisect_left([s.t1_s for s in self._segments], earliest)
        self._rerun_from(index)
        return len(taken) + len(now) + used_early

    # --- checkpoints ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What a restart needs to carry on exactly, as plain JSON values: the window's base
        posterior and every segment's inputs (time span, dilution, measurements) and the late
        measurements. The segments' posteriors are left out: re-running the window from its
        base gives them again, bit for bit, and they are nine-tenths of the size."""
        t, x, p = self._base
        return {
            "base": [t, x.tolist(), p.tolist()],
            "started_s": self._started_s,
            "segments": [[s.t0_s, s.t1_s, [s.dilution.cells_per_d, s.dilution.liquid_per_d],
                          [[o.kind, o.t_s, o.value] for o in s.observations]]
                         for s in self._segments],
            "late": [[o.kind, o.t_s, o.value] for o in self._late],
            "too_late": self.too_late,
        }

    @classmethod
    def restored(cls, model: CultureModel, state: Mapping[str, Any],
                 history_s: float) -> DelayedEKF:
        """The filter of a `snapshot()`, its window re-run from the base; ValueError, KeyError
        or TypeError for a state that is not one."""
        t, x, p = state["base"]
        x, p = np.array(x, dtype=float), np.array(p, dtype=float)
        n = N_STATES
        if x.shape != (n,) or p.shape != (n, n) or not (np.isfinite(x).all()
                                                        and np.isfinite(p).all()):
            raise ValueError(f"the base posterior is not {n} finite states and their "
                             f"{n}x{n} covariance")
        ekf = cls(model, x, p, float(t), history_s)
        ekf._started_s = state["started_s"]
        ekf._segments = [Segment(t0, t1, Dilution(*dilution),
                                 [Observation(*o) for o in observations])
                         for t0, t1, dilution, observations in state["segments"]]
        ekf._late = [Observation(*o) for o in state["late"]]
        ekf.too_late = state["too_late"]
        ekf._rerun_from(0)
        return ekf

    def _rerun_from(self, index: int) -> None:
        if index == 0:
            _, x, p = self._base
        else:
            prev = self._segments[index - 1]
            x, p = prev.x, prev.p
        for segment in self._segments[index:]:
            x, p = self._run(segment, x, p)

    def _run(self, segment: Segment, x: np.ndarray,
             p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = self.model
        t = segment.t0_s
        times = [o.t_s for o in self._late]
        lo = bisect.bisect_right(times, segment.t0_s)
        hi = bisect.bisect_right(times, segment.t1_s)
        for obs in self._late[lo:hi]:
            x, p = model.propagate(x, p, (obs.t_s - t) / S_PER_D, segment.dilution)
            t = obs.t_s
            x, p = model.update(x, p, [obs])
        x, p = model.propagate(x, p, (segment.t1_s - t) / S_PER_D, segment.dilution)
        x, p = model.update(x, p, segment.observations)
        segment.x, segment.p = x, p
        return x, p

    def _prune(self) -> None:
        horizon = self.t_s - self.history_s
        while len(self._segments) > 1 and self._segments[0].t1_s <= horizon:
            first = self._segments.pop(0)
            self._base = (first.t1_s, first.x, first.p)
        base_t = self._base[0]
        while self._late and self._late[0].t_s <= base_t:
            self._late.pop(0)
