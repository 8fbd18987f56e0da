"""The feed schedule: a perfusion-rate profile over time plus one-off boluses.

Pure logic over the clock's time. Step profile: from each point's `at` on, its rates hold.
A bolus adds its pump rate on top of the profile until its volume has been commanded (after the
pump's limit, so a bolus that hits the pump maximum simply takes longer).

The boluses are a ledger, and the ledger books what the pump totalisers measured, not what was
asked for (docs/recovery.md, "Verified delivery"): each bolus keeps `commanded_ml` and
`delivered_ml` (measured beyond the perfusion's own share). Once its volume has been commanded
it is judged on the next measurement: within the tolerance it is done; short, it stays open
(`short`, or `completing` under `on_short = "complete"`, which keeps pumping until the measured
volume is in, up to a cap). `snapshot()`/`restore()` carry the ledger across a controller crash
(controller/runtime/recovery.py): a bolus interrupted half-way goes on with what is left, one that
came due while the controller was down starts late rather than never, a finished one is never
given again, and what the pump gave while the controller was down is booked on restart
(`account_outage`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from controller.config import ScheduleConfig
from drivers.contract.datasheet import PUMPS, channel

OVER_DELIVERY_ML = 0.005
"""A bolus given more than its volume by this much is recorded as over-delivered (an `over`
event): far above the totaliser's resolution, far below any tolerance."""
COMPLETE_WITHIN_ML = 1e-3
"""Under `on_short = "complete"`, a bolus this close to its volume (measured) is complete."""
PUMPING = ("running", "completing")


@dataclass
class BolusState:
    id: str
    """`s<k>`: the k-th bolus of the config's schedule (by time); `o<k>`: the k-th ordered."""
    at_s: float
    channel: str
    volume_ml: float
    rate_ml_per_h: float
    delivered_ml: float = 0.0
    """Measured by the pump's totaliser, beyond the perfusion's share."""
    commanded_ml: float = 0.0
    state: str = "pending"
    """pending, running (its volume being commanded), completing (short, pumped on under
    `complete`), short (stopped short: open, alarmed), done."""
    judging: bool = False
    """Its commanding has ended: judged at the next measurement (the totaliser lags a tick)."""

    @property
    def done(self) -> bool:
        return self.state == "done"


class FeedSchedule:
    def __init__(self, config: ScheduleConfig) -> None:
        self.delivery = config.delivery
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
        self.recipe_boluses: list[BolusState] = []
        """Boluses a recipe's phases gave (`r<k>`: the k-th of the run)."""
        self._given_rates: Mapping[str, float] | None = None
        self.boluses_wait = False
        """A recipe holds: boluses neither start nor pump (given late, never dropped); the
        base rates stand."""
        self._active: list[BolusState] = []
        self._next_bolus = 0
        self.paused = False
        self._rates = dict.fromkeys(PUMPS, 0.0)
        self._rates_paused: bool | None = None
        self._bolus_finished = False
        self.ledger: list[tuple[str, BolusState]] = []
        """(event, bolus) since the caller last emptied it: the feed ledger's news. Events:
        started, mismatch (measured differs from commanded beyond the tolerance), completing,
        short, over (delivered beyond its volume), booked (delivered while the controller was
        down), done."""
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
        while (not self.paused and not self.boluses_wait and self._next_bolus < len(boluses)
               and boluses[self._next_bolus].at_s <= t_s):
            self._start(boluses[self._next_bolus])
            self._next_bolus += 1
        if changed or (self._active and not self.boluses_wait) \
                or self._rates_paused is not self.paused:
            if self._rates_paused is not self.paused:
                self.ledger_version += 1
            self._rates = self._compute(horizon_s)
            self._rates_paused = self.paused
        return self._rates

    def _start(self, bolus: BolusState) -> None:
        bolus.state = "running"
        self._active.append(bolus)
        self.ledger.append(("started", bolus))
        self.ledger_version += 1

    def _compute(self, horizon_s: float) -> dict[str, float]:
        if self.paused:
            return dict.fromkeys(PUMPS, 0.0)
        rates = dict(self.base_rates)
        for bolus in () if self.boluses_wait else self._active:
            remaining_ml_per_h = self._to_command_ml(bolus) * 3600.0 / horizon_s
            if remaining_ml_per_h > 0.0:
                rates[bolus.channel] += min(bolus.rate_ml_per_h, remaining_ml_per_h)
        for name in PUMPS:
            rates[name] = min(rates[name], channel(name).maximum)
        return rates

    def set_base_rates(self, rates: Mapping[str, float]) -> None:
        """A recipe's rates (mL/h) in place of the perfusion profile, from now on. Called after
        `account`, which shares the last interval out by the rates that stood in it. A recipe
        hands the same dict until its rates change, so most ticks cost one identity check."""
        if rates is self._given_rates:
            return
        self._given_rates = rates
        if any(self.base_rates[name] != value for name, value in rates.items()):
            self.base_rates.update(rates)
            self._bolus_finished = True  # recompute the rates on the next call

    def set_boluses_wait(self, wait: bool) -> None:
        if wait is not self.boluses_wait:
            self.boluses_wait = wait
            self._bolus_finished = True

    def add_recipe_bolus(self, bolus_id: str, volume_ml: float, channel_name: str,
                         rate_ml_per_h: float | None, at_s: float) -> None:
        """A recipe phase's bolus, due now, delivered like a scheduled one."""
        bolus = BolusState(bolus_id, at_s, channel_name, volume_ml,
                           channel(channel_name).maximum if rate_ml_per_h is None
                           else rate_ml_per_h)
        self.recipe_boluses.append(bolus)
        self._start(bolus)
        self._bolus_finished = True

    def add_bolus(self, volume_ml: float, channel_name: str, at_s: float) -> None:
        """A bolus ordered now (an operator's), delivered like a scheduled one."""
        bolus = BolusState(f"o{len(self.ordered_boluses)}", at_s, channel_name, volume_ml,
                           channel(channel_name).maximum)
        self.ordered_boluses.append(bolus)
        self._start(bolus)
        self._bolus_finished = True  # recompute the rates on the next call

    def _to_command_ml(self, bolus: BolusState) -> float:
        """What is left to command: its volume; completing, what is still missing (measured)
        up to the cap. Nothing while it waits for its verdict."""
        if bolus.judging:
            return 0.0
        if bolus.state == "running":
            return bolus.volume_ml - bolus.commanded_ml
        if bolus.state == "completing":
            cap_ml = bolus.volume_ml * self.delivery.max_commanded_factor
            return min(bolus.volume_ml - bolus.delivered_ml, cap_ml - bolus.commanded_ml)
        return 0.0

    def account(self, commanded: Mapping[str, float], measured_ml: Mapping[str, float],
                dt_s: float, *, fresh: bool = True) -> None:
        """Credit the last `dt_s` to the active boluses, oldest first: `commanded` (the pump
        rates that stood, mL/h) beyond the perfusion profile, `measured_ml` (what the
        totalisers grew) beyond the perfusion's share. `fresh`: the measurement is up to date
        (a good reading), so boluses whose commanding ended can be judged."""
        if not self._active:
            return
        for name in PUMPS:
            rate = commanded.get(name, 0.0)
            base = self.base_rates[name]
            spare_ml = max(rate - base, 0.0) * dt_s / 3600.0
            measured = max(measured_ml.get(name, 0.0) - min(rate, base) * dt_s / 3600.0, 0.0)
            if spare_ml > 0.0 or measured > 0.0:
                self._credit(name, spare_ml, measured)
        if fresh:
            self._judge()

    def account_outage(self, commanded: Mapping[str, float],
                       measured_ml: Mapping[str, float]) -> None:
        """Book what the pumps gave while the controller was down. The device ran on with the
        rates last commanded (`commanded`, mL/h, from the checkpoint) until its watchdog
        stopped it, so each pump's measured volume is shared between the perfusion and the
        boluses in proportion to those rates. The boluses' share fills each pumping bolus up
        to its volume, oldest first (two boluses pump together when an outage delayed one into
        the next's slot), and what none of them needed goes to the newest: a bolus the outage
        completed is never pumped again. It counts as commanded too (the device was carrying
        out the command). A bolus given more than its volume is then recorded `over` when
        judged."""
        for name in PUMPS:
            rate = commanded.get(name, 0.0)
            measured = measured_ml.get(name, 0.0)
            if measured <= 0.0:
                continue
            # Nothing commanded yet flow measured: the crash fell between the checkpoint and
            # the write that stopped the bolus's last step, so it is all the bolus's.
            share_ml = (measured * (rate - min(rate, self.base_rates[name])) / rate
                        if rate > 0.0 else measured)
            pumping = [b for b in self._active if b.channel == name and b.state in PUMPING]
            for i, bolus in enumerate(pumping):
                if share_ml <= 0.0:
                    break
                needed_ml = max(bolus.volume_ml - bolus.delivered_ml, 0.0)
                take_ml = share_ml if i == len(pumping) - 1 else min(share_ml, needed_ml)
                self._book_outage(bolus, take_ml)
                share_ml -= take_ml
        self.ledger_version += 1

    def _book_outage(self, bolus: BolusState, volume_ml: float) -> None:
        if volume_ml <= 0.0:
            return
        bolus.commanded_ml += volume_ml
        bolus.delivered_ml += volume_ml
        bolus.judging = bolus.commanded_ml >= bolus.volume_ml - 1e-9
        self.ledger.append(("booked", bolus))

    def _credit(self, name: str, spare_ml: float, measured_ml: float) -> None:
        last = None
        for bolus in self._active:
            if bolus.channel != name:
                continue
            last = bolus
            take = min(spare_ml, max(self._to_command_ml(bolus), 0.0))
            bolus.commanded_ml += take
            spare_ml -= take
            got = min(measured_ml, max(bolus.volume_ml - bolus.delivered_ml, 0.0))
            bolus.delivered_ml += got
            measured_ml -= got
        if last is not None:
            last.delivered_ml += measured_ml  # more than asked for: the newest bolus got it
            self.ledger_version += 1  # credited: a held-back bolus changes nothing

    def _judge(self) -> None:
        """Judge boluses whose commanding ended before this measurement; flag those whose
        commanding ended now (judged on the next one)."""
        delivery = self.delivery
        finished = False
        for bolus in self._active:
            if bolus.judging:
                finished |= self._verdict(bolus)
            elif bolus.state == "running":
                bolus.judging = bolus.commanded_ml >= bolus.volume_ml - 1e-9
            elif bolus.volume_ml - bolus.delivered_ml <= COMPLETE_WITHIN_ML:
                self._finish(bolus, "done")
                finished = True
            else:
                cap_ml = bolus.volume_ml * delivery.max_commanded_factor
                bolus.judging = bolus.commanded_ml >= cap_ml - 1e-9
        if finished:
            self._bolus_finished = True
            self._active = [b for b in self._active if b.state in PUMPING]

    def _verdict(self, bolus: BolusState) -> bool:
        """The measured volume against the commanded: done, short or completing. True if the
        bolus stops pumping."""
        bolus.judging = False
        tolerance = self.delivery.tolerance
        if (bolus.state == "running"
                and abs(bolus.delivered_ml - bolus.commanded_ml) > tolerance(bolus.commanded_ml)):
            self.ledger.append(("mismatch", bolus))
        if bolus.delivered_ml >= bolus.volume_ml - tolerance(bolus.volume_ml):
            if bolus.delivered_ml > bolus.volume_ml + OVER_DELIVERY_ML:
                self.ledger.append(("over", bolus))
            self._finish(bolus, "done")
            return True
        if bolus.state == "running" and self.delivery.on_short == "complete":
            self._finish(bolus, "completing")
            return False
        self._finish(bolus, "short")
        return True

    def _finish(self, bolus: BolusState, state: str) -> None:
        bolus.state = state
        self.ledger.append((state, bolus))
        self.ledger_version += 1

    @property
    def boluses_done(self) -> int:
        """The config's and the recipe's boluses done (an operator's are not counted)."""
        return sum(b.done for b in [*self.boluses, *self.recipe_boluses])

    def snapshot(self) -> dict[str, Any]:
        """The ledger as JSON-able data: what was started, how much of each was commanded and
        given, and where each stands."""
        return {
            "next_bolus": self._next_bolus,
            "started": [[b.commanded_ml, b.delivered_ml, b.state, b.judging]
                        for b in self.boluses[:self._next_bolus]],
            "ordered": [asdict(b) for b in self.ordered_boluses],
            "recipe": [asdict(b) for b in self.recipe_boluses],
            "paused": self.paused,
        }

    def restore(self, state: dict[str, Any]) -> list[BolusState]:
        """Continue the ledger of `snapshot()`; returns the boluses still pumping.

        The perfusion profile needs no state: it is a function of time, caught up on the next
        `rates()` call.
        """
        started = int(state["next_bolus"])
        if not 0 <= started <= len(self.boluses) or len(state["started"]) != started:
            raise ValueError(f"checkpointed feed ledger has {started} started boluses; this "
                             f"schedule has {len(self.boluses)}")
        for bolus, (commanded_ml, delivered_ml, bolus_state, judging) in zip(
                self.boluses, state["started"], strict=False):
            bolus.commanded_ml = float(commanded_ml)
            bolus.delivered_ml = float(delivered_ml)
            bolus.state = str(bolus_state)
            bolus.judging = bool(judging)
        self._next_bolus = started
        self.ordered_boluses = [BolusState(**b) for b in state["ordered"]]
        self.recipe_boluses = [BolusState(**b) for b in state.get("recipe", [])]
        self._active = sorted(
            (b for b in [*self.boluses[:started], *self.ordered_boluses, *self.recipe_boluses]
             if b.state in PUMPING),
            key=lambda b: b.at_s)
        self.paused = bool(state["paused"])
        self._bolus_finished = True
        return list(self._active)
