"""The feed schedule: a perfusion-rate profile over time plus one-off boluses.

Pure logic over the clock's time. Step profile: from each point's `at` on, its rates hold.
A bolus adds its pump rate on top of the profile until its volume has been commanded; the
delivered volume is integrated from what was actually commanded (after the pump's limit), so a
bolus that hits the pump maximum simply takes longer instead of being cut short.

The boluses are a ledger: each has an id, starts once, is credited as it is pumped and finishes
once. `snapshot()`/`restore()` carry the ledger across a controller crash (controller/
recovery.py): a bolus interrupted half-way goes on with what is left, one that came due while the
controller was down starts late rather than never, and a finished one is never given again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from controller.config import ScheduleConfig
from drivers.contract.datasheet import PUMPS, channel


@dataclass
class BolusState:
    id: str
    """`s<k>`: the k-th bolus of the config's schedule (by time); `o<k>`: the k-th ordered."""
    at_s: float
    channel: str
    volume_ml: float
    rate_ml_per_h: float
    delivered_ml: float = 0.0

    @property
    def done(self) -> bool:
        return self.delivered_ml >= self.volume_ml - 1e-9


class FeedSchedule:
    def __init__(self, config: ScheduleConfig) -> None:
        self._points = [
            (p.at, {name: getattr(p, name) for name in PUMPS if getattr(p, name) is not None})
            for p in config.perfusion
        ]
        self._next_point = 0
        self.base_rates: dict[str, float] = dict.fromkeys(PUMPS, 0.0)
        self.boluses = [
            BolusState(f"s{k}", b.at, b.channel, b.volume_ml,
                       b.rate_ml_per_h if b.rate_ml_per_h is not None
                       else channel(b.channel).maximum)
            for k, b in enumerate(sorted(config.bolus, key=lambda b: b.at))
        ]
        self.ordered_boluses: list[BolusState] = []
        """Boluses an operator ordered during the run (not in the config's schedule)."""
        self._active: list[BolusState] = []
        self._next_bolus = 0
        self.paused = False
        self._rates = dict.fromkeys(PUMPS, 0.0)
        self._rates_paused: bool | None = None
        self._bolus_finished = False
        self.ledger: list[tuple[str, BolusState]] = []
        """("started" | "done", bolus) since the caller last emptied it: the feed ledger's news."""
        self.ledger_version = 0
        """Bumped whenever the ledger changes (a bolus starts, is credited, finishes, pause)."""

    def rates(self, t_s: float, horizon_s: float) -> dict[str, float]:
        """Pump rates due at `t_s` (mL/h), capped at each pump's datasheet maximum.

        Recomputed only when something changed (a point or bolus came due, a bolus is running,
        pause toggled): on most ticks this returns the same dict, which callers must not mutate.

        `horizon_s` is how long these rates will stand (the control period): a bolus's last
        step is slowed so it delivers exactly its remaining volume instead of overshooting.
        """
        changed = self._bolus_finished
        self._bolus_finished = False
        points = self._points
        while self._next_point < len(points) and points[self._next_point][0] <= t_s:
            self.base_rates.update(points[self._next_point][1])
            self._next_point += 1
            changed = True
        boluses = self.boluses
        # Paused, a bolus that falls due waits to be started: given late, never dropped.
        while (not self.paused and self._next_bolus < len(boluses)
               and boluses[self._next_bolus].at_s <= t_s):
            self._start(boluses[self._next_bolus])
            self._next_bolus += 1
        if changed or self._active or self._rates_paused is not self.paused:
            if self._rates_paused is not self.paused:
                self.ledger_version += 1
            self._rates = self._compute(horizon_s)
            self._rates_paused = self.paused
        return self._rates

    def _start(self, bolus: BolusState) -> None:
        self._active.append(bolus)
        self.ledger.append(("started", bolus))
        self.ledger_version += 1

    def _compute(self, horizon_s: float) -> dict[str, float]:
        if self.paused:
            return dict.fromkeys(PUMPS, 0.0)
        rates = dict(self.base_rates)
        for bolus in self._active:
            remaining_ml_per_h = (bolus.volume_ml - bolus.delivered_ml) * 3600.0 / horizon_s
            rates[bolus.channel] += min(bolus.rate_ml_per_h, remaining_ml_per_h)
        for name in PUMPS:
            rates[name] = min(rates[name], channel(name).maximum)
        return rates

    def add_bolus(self, volume_ml: float, channel_name: str, at_s: float) -> None:
        """A bolus ordered now (an operator's), delivered like a scheduled one."""
        bolus = BolusState(f"o{len(self.ordered_boluses)}", at_s, channel_name, volume_ml,
                           channel(channel_name).maximum)
        self.ordered_boluses.append(bolus)
        self._start(bolus)
        self._bolus_finished = True  # recompute the rates on the next call

    def account(self, commanded: dict[str, float], dt_s: float) -> None:
        """Credit the volume pumped over the last `dt_s` to the active boluses, oldest first."""
        if not self._active or self.paused:
            return
        for name in PUMPS:
            spare_ml = max(commanded.get(name, 0.0) - self.base_rates[name], 0.0) * dt_s / 3600.0
            for bolus in self._active:
                if bolus.channel != name or spare_ml <= 0.0:
                    continue
                take = min(spare_ml, bolus.volume_ml - bolus.delivered_ml)
                bolus.delivered_ml += take
                spare_ml -= take
                self.ledger_version += 1  # credited: a held-back bolus changes nothing
        still_active = [b for b in self._active if not b.done]
        if len(still_active) < len(self._active):
            self._bolus_finished = True
            self.ledger += [("done", b) for b in self._active if b.done]
        self._active = still_active

    @property
    def boluses_done(self) -> int:
        return sum(b.done for b in self.boluses)

    def snapshot(self) -> dict[str, Any]:
        """The ledger as JSON-able data: what was started, how much of each was given."""
        return {
            "next_bolus": self._next_bolus,
            "delivered_ml": [b.delivered_ml for b in self.boluses[:self._next_bolus]],
            "ordered": [asdict(b) for b in self.ordered_boluses],
            "paused": self.paused,
        }

    def restore(self, state: dict[str, Any]) -> list[BolusState]:
        """Continue the ledger of `snapshot()`; returns the boluses still to finish.

        The perfusion profile needs no state: it is a function of time, caught up on the next
        `rates()` call.
        """
        started = int(state["next_bolus"])
        if not 0 <= started <= len(self.boluses) or len(state["delivered_ml"]) != started:
            raise ValueError(f"checkpointed feed ledger has {started} started boluses; this "
                             f"schedule has {len(self.boluses)}")
        for bolus, delivered_ml in zip(self.boluses, state["delivered_ml"], strict=False):
            bolus.delivered_ml = float(delivered_ml)
        self._next_bolus = started
        self.ordered_boluses = [BolusState(**b) for b in state["ordered"]]
        self._active = sorted(
            (b for b in [*self.boluses[:started], *self.ordered_boluses] if not b.done),
            key=lambda b: b.at_s)
        self.paused = bool(state["paused"])
        self._bolus_finished = True
        return list(self._active)
