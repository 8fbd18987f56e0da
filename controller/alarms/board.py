"""The alarm board: all alarms of one reactor evaluated together against the readings, with
flood summarising and the operators' shelving policy. Pure logic: no I/O and no clock.

Every call takes the run time `t_s` (seconds since the run's epoch, non-decreasing for
`evaluate`) and returns the `Transition`s it caused, so the caller records all of them
(historian, audit) and publishes the ones with `notify=True`. Each alarm's own states and
transitions: controller/alarms/state_machine.py.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from math import isfinite
from typing import Any, Protocol

from controller.alarms.spec import DEFAULT_MAX_SHELVE_S, FLOOD, AlarmConfig, Priority
from controller.alarms.state_machine import (
    STANDING_STATES,
    UNACKED_STATES,
    Alarm,
    AlarmState,
    Transition,
)
from drivers.contract.reading import Quality

PRIORITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class ReadingLike(Protocol):
    """What the board reads of a reading; read-only, so a frozen `Reading` is one."""

    @property
    def value(self) -> float: ...
    @property
    def quality(self) -> Quality: ...
    @property
    def timestamp_s(self) -> float: ...


@dataclass(frozen=True, slots=True)
class FirstRaised:
    name: str
    priority: Priority
    t_s: float


_USABLE_FOR_VALUES = (Quality.GOOD, Quality.OUT_OF_RANGE)  # OUT_OF_RANGE: clamped to the bound
# Every quality but these is "bad", so qualities added later (FROZEN, IMPLAUSIBLE...) alarm too;
# STALE is the stale alarm's business, COMM_ERROR the comm_loss alarm's.
_NOT_BAD = (Quality.GOOD, Quality.STALE, Quality.COMM_ERROR)
_GOOD, _OUT_OF_RANGE = Quality.GOOD, Quality.OUT_OF_RANGE
_STALE, _COMM_ERROR = Quality.STALE, Quality.COMM_ERROR
_SETTLED_VALUE_KINDS = frozenset({"high", "low", "deviation"})
"""Value alarms `Alarm.settle_value` can settle (a rate alarm's slope keeps a history)."""


def _plan_channel(cfg: AlarmConfig) -> str:
    """The alarm's input channel, for `AlarmBoard._plan`. Every alarm but a system one has a
    channel (`AlarmConfig` refuses one without); a system alarm (comm_loss, comm_errors) reads
    none, so its "" is never looked up."""
    return "" if cfg.channel is None else cfg.channel


class ShelvingForbidden(ValueError):
    """The board's policy, not the alarm's state, refuses a shelf (priority, duration)."""


@dataclass
class _Flood:
    times: deque[tuple[float, str]] = field(default_factory=deque)  # (t_s, alarm) activations
    active: bool = False
    held_back: int = 0
    held_names: list[str] = field(default_factory=list)
    started_t_s: float = 0.0


class AlarmBoard:
    """All alarms of one reactor, evaluated together, with flood summarising.

    Flood: when more than `flood_threshold` activations fall within `flood_window_s`, one
    `flood` transition (notify=True, count = activations in the window) is emitted and the
    automatic transitions that follow get notify=False, until the window holds at most half the
    threshold again; then a `flood` end transition (count = notifications held back) is emitted.
    Alarms whose priority is in `flood_exempt` (default: critical) always notify: a temperature
    excursion must not drown in a burst of pump alarms. Operator actions always notify.
    Both flood transitions name their alarms (`Transition.alarms`).

    Shelving policy: no shelf longer than `max_shelve_s` (nor the alarm's own `max_shelve_s`),
    and none at all for a priority in `unshelvable` (default: critical; such an alarm can still
    be removed from service, a deliberate maintenance step rather than a quick silence).
    """

    def __init__(self, configs: Iterable[AlarmConfig], *, flood_threshold: int = 10,
                 flood_window_s: float = 600.0,
                 flood_exempt: Iterable[str] = ("critical",),
                 max_shelve_s: float = DEFAULT_MAX_SHELVE_S,
                 unshelvable: Iterable[str] = ("critical",)) -> None:
        if flood_threshold < 1:
            raise ValueError(f"flood_threshold {flood_threshold} must be >= 1")
        if not flood_window_s > 0:
            raise ValueError(f"flood_window_s {flood_window_s} must be > 0")
        self.alarms: dict[str, Alarm] = {}
        for cfg in configs:
            if cfg.name in self.alarms:
                raise ValueError(f"alarm names must be unique; repeated: {cfg.name!r}")
            self.alarms[cfg.name] = Alarm(cfg)
        self.flood_threshold = flood_threshold
        self.flood_window_s = float(flood_window_s)
        self.flood_exempt = frozenset(flood_exempt)
        self.max_shelve_s = float(max_shelve_s)
        self.unshelvable = frozenset(unshelvable)
        if not self.max_shelve_s > 0:
            raise ValueError(f"max_shelve_s {max_shelve_s} must be > 0")
        for what, given in (("flood_exempt", self.flood_exempt),
                            ("unshelvable", self.unshelvable)):
            unknown = given - PRIORITY_RANK.keys()
            if unknown:
                raise ValueError(f"{what} {sorted(unknown)}: unknown priorities "
                                 f"(known: {list(PRIORITY_RANK)})")
        self._flood = _Flood()
        self._plan = tuple((alarm, cfg.kind, _plan_channel(cfg), cfg.limit, cfg.rate_window_s)
                           for alarm in self.alarms.values() for cfg in (alarm.config,))
        """Per alarm, what `evaluate` looks at first (the configs are frozen)."""

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: alarm.snapshot() for name, alarm in self.alarms.items()}

    def restore(self, states: Mapping[str, dict[str, Any]]) -> None:
        """Alarms the checkpoint does not know (added to the config since) start normal."""
        for name, state in states.items():
            if name in self.alarms:
                self.alarms[name].restore(state)

    def __getitem__(self, name: str) -> Alarm:
        try:
            return self.alarms[name]
        except KeyError:
            raise KeyError(f"unknown alarm {name!r}; known: {', '.join(self.alarms)}") from None

    @property
    def flooding(self) -> bool:
        return self._flood.active

    def evaluate(self, readings: Mapping[str, ReadingLike], setpoints: Mapping[str, float],
                 t_s: float, comm_ok: bool = True,
                 read_failures: Callable[[float], float] | None = None,
                 comm_down_since_s: float | None = None) -> list[Transition]:
        """`read_failures(window_s)`: the share of reads that failed over the last window_s
        (comm_errors alarms); None means none failed. `comm_down_since_s`: when the link
        failed, if known; comm_loss's on-delay counts from then (a failed operation waits out
        its deadline before any tick can judge it)."""
        out: list[Transition] = []
        get = readings.get
        for alarm, kind, channel, limit, window_s in self._plan:
            # The common case first: a usable reading whose condition is the debounced one,
            # settled by the alarm without a list of transitions (`Alarm.settle`); anything
            # else (a change, a delay running, a shelf, bad data, the link's alarms, rate
            # alarms) goes the whole way, as before.
            if kind in _SETTLED_VALUE_KINDS:
                reading = get(channel)
                if reading is not None:
                    quality, value = reading.quality, reading.value
                    if ((quality is _GOOD or quality is _OUT_OF_RANGE)
                            and isinstance(value, (int, float)) and isfinite(value)
                            and alarm.settle_value(value, t_s, setpoints.get(channel))):
                        continue
            elif kind == "bad_quality":
                reading = get(channel)
                if reading is not None and reading.quality is not _COMM_ERROR:
                    value = reading.value
                    finite = isinstance(value, (int, float)) and isfinite(value)
                    if alarm.settle(reading.quality not in _NOT_BAD or not finite, t_s):
                        continue
            elif kind == "stale":
                reading = get(channel)
                if reading is not None and reading.quality is not _COMM_ERROR and alarm.settle(
                        reading.quality is _STALE
                        or (limit is not None and t_s - reading.timestamp_s > limit), t_s):
                    continue
            elif kind == "comm_loss":
                if alarm.settle(not comm_ok, t_s):
                    continue  # (when the link went down matters only to a change)
            elif kind == "comm_errors":
                share = 0.0 if read_failures is None else read_failures(window_s)
                if not alarm.settle(share > limit, t_s):  # type: ignore[operator]
                    out += alarm.evaluate(share > limit, t_s)  # type: ignore[operator]
                continue
            out += self._evaluate_one(alarm, readings, setpoints, t_s, comm_ok, read_failures,
                                      comm_down_since_s)
        flood = self._flood
        if not out and not flood.active and not flood.times:
            return out  # what _flood_filter returns for no transitions and no flood
        return self._flood_filter(out, t_s)

    def _evaluate_one(self, alarm: Alarm, readings: Mapping[str, ReadingLike],
                      setpoints: Mapping[str, float], t_s: float,
                      comm_ok: bool,
                      read_failures: Callable[[float], float] | None = None,
                      comm_down_since_s: float | None = None) -> list[Transition]:
        cfg = alarm.config
        if cfg.kind == "comm_loss":
            return alarm.evaluate(not comm_ok, t_s, since_t_s=comm_down_since_s)
        if cfg.kind == "comm_errors":
            share = 0.0 if read_failures is None else read_failures(cfg.rate_window_s)
            return alarm.evaluate(share > cfg.limit, t_s)  # type: ignore[operator]
        reading = readings.get(cfg.channel)  # type: ignore[arg-type]
        if reading is not None and reading.quality is Quality.COMM_ERROR:
            return alarm.hold(t_s)  # consequential: the comm alarms speak for the link
        if cfg.kind == "stale":
            stale = (reading is None or reading.quality is Quality.STALE
                     or (cfg.limit is not None and t_s - reading.timestamp_s > cfg.limit))
            return alarm.evaluate(stale, t_s)
        if reading is None:  # the stale alarm speaks for a missing reading
            return alarm.hold(t_s)
        finite = isinstance(reading.value, (int, float)) and math.isfinite(reading.value)
        if cfg.kind == "bad_quality":
            return alarm.evaluate(reading.quality not in _NOT_BAD or not finite, t_s)
        # A slope through clamped values is meaningless, so rate alarms take GOOD readings only.
        usable = (Quality.GOOD,) if cfg.kind == "rate" else _USABLE_FOR_VALUES
        if not finite or reading.quality not in usable:
            return alarm.hold(t_s)  # never clear nor raise a value alarm on bad data
        setpoint = None
        if cfg.kind == "deviation":
            if cfg.channel not in setpoints:
                raise ValueError(f"alarm {cfg.name!r}: no setpoint given for {cfg.channel}")
            setpoint = setpoints[cfg.channel]  # type: ignore[index]
        return alarm.evaluate_value(reading.value, t_s, setpoint, sample_t_s=reading.timestamp_s)

    def _flood_filter(self, transitions: list[Transition], t_s: float) -> list[Transition]:
        """Hold back notifications during a flood; one summary when it starts and ends.

        The batch is counted before any of it is let through: a burst that starts a flood
        (a dropped link, a power dip) is summarised whole instead of its first alarms paging
        one by one before the summary.
        """
        flood = self._flood
        flood.times.extend((tr.t_s, tr.alarm) for tr in transitions if tr.is_activation)
        while flood.times and flood.times[0][0] <= t_s - self.flood_window_s:
            flood.times.popleft()
        out: list[Transition] = []
        if not flood.active and len(flood.times) > self.flood_threshold:
            flood.active, flood.held_back, flood.held_names = True, 0, []
            flood.started_t_s = t_s
            names = tuple(dict.fromkeys(name for _, name in flood.times))
            top: Priority = max((self.alarms[a].priority for a in names),
                                key=PRIORITY_RANK.__getitem__, default="high")
            out.append(Transition(
                FLOOD, AlarmState.NORMAL, AlarmState.UNACK, t_s,
                f"alarm flood: {len(flood.times)} activations within "
                f"{self.flood_window_s:g} s ({', '.join(names)}); individual notifications "
                "held back until it ends", top, True, None, len(flood.times), names))
        for tr in transitions:
            if flood.active and tr.notify and tr.priority not in self.flood_exempt:
                tr = replace(tr, reason=tr.reason + " [flood]", notify=False)
                flood.held_back += 1
                if tr.alarm not in flood.held_names:
                    flood.held_names.append(tr.alarm)
            out.append(tr)
        if flood.active and len(flood.times) <= self.flood_threshold // 2:
            flood.active = False
            unacked = self.unacknowledged()
            top = max((a.priority for a in unacked), key=PRIORITY_RANK.__getitem__,
                      default="low")
            held = tuple(flood.held_names)
            out.append(Transition(
                FLOOD, AlarmState.UNACK, AlarmState.NORMAL, t_s,
                f"alarm flood over after {t_s - flood.started_t_s:g} s: {flood.held_back} "
                f"notifications held back ({', '.join(held) or 'none'}); {len(unacked)} "
                "alarms unacknowledged: " + ", ".join(a.name for a in unacked),
                top, True, None, flood.held_back, held))
        return out

    # -- operator actions, by alarm name ------------------------------------------------------

    def acknowledge(self, name: str, t_s: float, operator: str) -> list[Transition]:
        return self[name].acknowledge(t_s, operator)

    def acknowledge_all(self, t_s: float, operator: str) -> list[Transition]:
        out: list[Transition] = []
        for alarm in self.unacknowledged():
            out += alarm.acknowledge(t_s, operator)
        return out

    def shelve(self, name: str, until_t_s: float, t_s: float, operator: str) -> list[Transition]:
        """Shelve within the board's policy; ShelvingForbidden names the rule that refuses."""
        alarm = self[name]
        if not self.may_shelve(name):
            raise ShelvingForbidden(
                f"cannot shelve alarm {name!r}: it is {alarm.priority} priority, and "
                f"{'/'.join(sorted(self.unshelvable, key=PRIORITY_RANK.__getitem__))} alarms "
                "may not be shelved on this board (unshelvable_priorities); remove it from "
                "service instead if its input is being worked on")
        limit = self.max_shelve_s_for(name)
        if until_t_s - t_s > limit:
            raise ShelvingForbidden(
                f"cannot shelve alarm {name!r} for {until_t_s - t_s:g} s: allowed 0 < "
                f"duration_s <= {limit:g} (the shorter of the alarm's max_shelve_s "
                f"{alarm.config.max_shelve_s:g} s and the board's {self.max_shelve_s:g} s)")
        return alarm.shelve(until_t_s, t_s, operator)

    def may_shelve(self, name: str) -> bool:
        return self[name].priority not in self.unshelvable

    def max_shelve_s_for(self, name: str) -> float:
        """The longest shelf allowed for this alarm: its own limit or the board's, the shorter."""
        return min(self[name].config.max_shelve_s, self.max_shelve_s)

    def unshelve(self, name: str, t_s: float, operator: str) -> list[Transition]:
        return self[name].unshelve(t_s, operator)

    def remove_from_service(self, name: str, t_s: float, operator: str) -> list[Transition]:
        return self[name].remove_from_service(t_s, operator)

    def return_to_service(self, name: str, t_s: float, operator: str) -> list[Transition]:
        return self[name].return_to_service(t_s, operator)

    # -- views ------------------------------------------------------------------------------

    def active(self) -> list[Alarm]:
        """Alarms standing: UNACK, ACKED, or LATCHED (returned but not yet reset), worst first."""
        return _by_priority(a for a in self.alarms.values()
                            if a.state in STANDING_STATES)

    def unacknowledged(self) -> list[Alarm]:
        """Alarms waiting for an acknowledgement: UNACK, RTN_UNACK, LATCHED, worst first."""
        return _by_priority(a for a in self.alarms.values() if a.state in UNACKED_STATES)

    def shelved(self) -> list[Alarm]:
        return [a for a in self.alarms.values() if a.state is AlarmState.SHELVED]

    def out_of_service(self) -> list[Alarm]:
        return [a for a in self.alarms.values() if a.state is AlarmState.OUT_OF_SERVICE]

    @property
    def first_raised(self) -> list[FirstRaised]:
        """Per alarm that ever activated (shelved or not): its first activation, in time order."""
        raised = [FirstRaised(a.name, a.priority, a.first_raised_t_s)
                  for a in self.alarms.values() if a.first_raised_t_s is not None]
        return sorted(raised, key=lambda f: (f.t_s, -PRIORITY_RANK[f.priority], f.name))


def _by_priority(alarms: Iterable[Alarm]) -> list[Alarm]:
    return sorted(alarms, key=lambda a: (-PRIORITY_RANK[a.priority],
                                         a.last_change_t_s or 0.0, a.name))


__all__ = ["PRIORITY_RANK", "AlarmBoard", "FirstRaised", "ReadingLike", "ShelvingForbidden"]
