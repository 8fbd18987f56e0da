"""The ISA-18.2 state machine of one alarm (the board, controller/alarms/board.py, runs many).

Pure logic: no I/O and no clock. Every call takes the run time `t_s` (seconds since the run's
epoch, non-decreasing for `evaluate`) and returns the `Transition`s it caused, so the caller
records all of them (historian, audit) and publishes the ones with `notify=True`.

States (ISA-18.2 figure "alarm state transition diagram"):

    NORMAL      --condition (after on_delay)-->                UNACK
    UNACK       --ack-->                                       ACKED
    UNACK       --condition clears (after off_delay)-->        RTN_UNACK   (not latched)
    UNACK       --condition clears (after off_delay)-->        LATCHED     (latched)
    ACKED       --condition clears-->                          NORMAL
    RTN_UNACK   --ack-->                                       NORMAL
    RTN_UNACK   --condition returns-->                         UNACK
    LATCHED     --ack (reset)-->                               NORMAL
    LATCHED     --condition returns-->                         UNACK
    any but OOS --shelve-->                                    SHELVED
    SHELVED     --unshelve / shelf expires-->                  the state it would be in now
    any         --remove from service-->                       OUT_OF_SERVICE
    OOS         --return to service-->                         NORMAL (re-evaluated from scratch)

While SHELVED the alarm keeps following its condition underneath (no acknowledgement can
happen then), so on expiry it comes back as UNACK if the condition holds, RTN_UNACK/LATCHED if
something happened during the shelf and cleared, ACKED if it was acknowledged, active, before
the shelf and still is, NORMAL otherwise. Changes underneath are recorded as SHELVED -> SHELVED
transitions with `notify=False`, so the journal shows them but nobody is paged.

An OUT_OF_SERVICE alarm is not evaluated at all (a sensor removed for maintenance).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from controller.alarms.spec import FLOOD, VALUE_KINDS, AlarmConfig, Priority

_S_PER_H = 3600.0
_INF = math.inf
_RATE_POINTS = 32  # samples kept per rate window (decimated), enough for a robust slope


class AlarmState(str, Enum):
    NORMAL = "normal"
    UNACK = "unack"                    # active, unacknowledged
    ACKED = "acked"                    # active, acknowledged
    RTN_UNACK = "rtn_unack"            # returned to normal, unacknowledged
    LATCHED = "latched"                # returned, latched: needs an acknowledgement to reset
    SHELVED = "shelved"                # suppressed by an operator until an expiry time
    OUT_OF_SERVICE = "out_of_service"  # not evaluated


ACTIVE_STATES = frozenset({AlarmState.UNACK, AlarmState.ACKED})
UNACKED_STATES = frozenset({AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED})
STANDING_STATES = ACTIVE_STATES | {AlarmState.LATCHED}
"""An alarm stands while active, acknowledged or not, or latched (returned, not yet reset)."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of one alarm (or of the board's flood summary, alarm == "flood").

    `notify` says whether to publish it to people; record all transitions regardless.
    """

    alarm: str
    from_state: AlarmState
    to_state: AlarmState
    t_s: float
    reason: str
    priority: Priority = "medium"
    notify: bool = True
    operator: str | None = None
    count: int | None = None
    """Flood transitions: activations in the window (start) or notifications held back (end)."""
    alarms: tuple[str, ...] = ()
    """Flood transitions: the alarms that flooded (start) or whose notifications were held
    back (end), so one message can say what a pager would otherwise have said N times."""
    value: float | None = None
    """What a value alarm last judged (the reading; a rate alarm's rate per hour), so a
    notification says how far out it was; None for condition alarms and the flood."""

    def as_dict(self) -> dict[str, Any]:
        return {"alarm": self.alarm, "from": self.from_state.value, "to": self.to_state.value,
                "t_s": self.t_s, "reason": self.reason, "priority": self.priority,
                "notify": self.notify, "operator": self.operator, "count": self.count,
                "alarms": list(self.alarms)}

    @property
    def is_activation(self) -> bool:
        """The alarm became (or, after a shelf, came back as) active and unacknowledged."""
        return self.alarm != FLOOD and self.to_state is AlarmState.UNACK


class Alarm:
    """The ISA-18.2 state machine of one alarm, with on/off delays and value deadband."""

    def __init__(self, config: AlarmConfig) -> None:
        self.config = config
        self._state = AlarmState.NORMAL  # underlying state (kept up to date while shelved)
        self._shelved_until: float | None = None
        self._out_of_service = False
        self._active = False             # the debounced condition
        self._pending_since: float | None = None  # raw condition != _active since
        self._last_t_s: float | None = None
        self._samples: deque[tuple[float, float]] = deque()  # rate alarms: (t, pv)
        self._slope_per_h: float | None = None
        self.first_raised_t_s: float | None = None
        self.last_change_t_s: float | None = None
        self.last_reason = ""
        """Why the alarm last moved, as its last notified transition said (the retained alarm
        summary's message)."""
        self._judged_value: float | None = None  # value alarms: the last value compared

    # -- views ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def priority(self) -> Priority:
        return self.config.priority

    @property
    def state(self) -> AlarmState:
        if self._out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self._shelved_until is not None:
            return AlarmState.SHELVED
        return self._state

    @property
    def underlying_state(self) -> AlarmState:
        """The state the alarm would show if it were not shelved (NORMAL when out of service)."""
        return self._state

    @property
    def condition_active(self) -> bool:
        """The condition after the on/off delays (what the state machine follows)."""
        return self._active

    @property
    def shelved_until(self) -> float | None:
        return self._shelved_until

    # -- crash recovery ---------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The state a restarted controller must not forget: an acknowledged alarm stays
        acknowledged, a latched one latched, a shelf keeps its expiry."""
        return {"state": self._state.value, "shelved_until": self._shelved_until,
                "out_of_service": self._out_of_service, "active": self._active,
                "pending_since": self._pending_since, "last_t_s": self._last_t_s,
                "first_raised_t_s": self.first_raised_t_s,
                "last_change_t_s": self.last_change_t_s}

    def restore(self, state: dict[str, Any]) -> None:
        self._state = AlarmState(state["state"])
        self._shelved_until = state["shelved_until"]
        self._out_of_service = bool(state["out_of_service"])
        self._active = bool(state["active"])
        self._pending_since = state["pending_since"]
        self._last_t_s = state["last_t_s"]
        self.first_raised_t_s = state["first_raised_t_s"]
        self.last_change_t_s = state["last_change_t_s"]

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, condition: bool, t_s: float,
                 since_t_s: float | None = None) -> list[Transition]:
        """Feed the raw condition at `t_s`; on/off delays are applied here. `since_t_s`: when
        the condition became what it is, if the caller knows it better than this call's time
        (never later than `t_s`)."""
        last_t_s = self._last_t_s
        if last_t_s is not None and last_t_s <= t_s < _INF:
            self._last_t_s = t_s  # the common case of _check_time, inline: every 5 s per alarm
        else:
            self._check_time(t_s)
        out = self._expire(t_s) if self._shelved_until is not None else []
        if self._out_of_service:
            return out
        if bool(condition) == self._active:
            self._pending_since = None
            return out
        if self._pending_since is None:
            self._pending_since = t_s if since_t_s is None else min(since_t_s, t_s)
        delay = self.config.off_delay_s if self._active else self.config.on_delay_s
        if t_s - self._pending_since >= delay:
            self._pending_since = None
            self._active = bool(condition)
            if self._active and self.first_raised_t_s is None:
                self.first_raised_t_s = t_s
            out += self._follow_condition(t_s)
        return out

    def evaluate_value(self, pv: float, t_s: float, setpoint: float | None = None,
                       sample_t_s: float | None = None) -> list[Transition]:
        """Value alarms: compute the condition from `pv` with the deadband, then `evaluate`.

        `sample_t_s` (default `t_s`) is when the value was true; rate alarms use it.
        """
        cfg = self.config
        if cfg.kind not in VALUE_KINDS:
            raise ValueError(f"alarm {cfg.name!r} is a {cfg.kind} alarm, not a value alarm")
        if not math.isfinite(pv):
            raise ValueError(f"alarm {cfg.name!r}: pv {pv!r} is not a finite number")
        limit = cfg.limit
        assert limit is not None
        # While active, the value must come back inside the limit by the deadband to return.
        db = cfg.deadband if self._active else 0.0
        if cfg.kind == "high":
            condition = pv > limit - db
        elif cfg.kind == "low":
            condition = pv < limit + db
        elif cfg.kind == "deviation":
            if setpoint is None or not math.isfinite(setpoint):
                raise ValueError(f"alarm {cfg.name!r}: a deviation alarm needs a finite "
                                 f"setpoint, got {setpoint!r}")
            condition = abs(pv - setpoint) > limit - db
        else:
            rate = self._rate_per_h(pv, t_s if sample_t_s is None else sample_t_s)
            if rate is None:  # not enough history yet: keep the condition as it is
                return self.evaluate(self._active, t_s)
            condition = abs(rate) > limit - db
            pv = rate
        self._judged_value = pv
        return self.evaluate(condition, t_s)

    def settle(self, condition: bool, t_s: float) -> bool:
        """The board's common case without a list of transitions: True when
        `evaluate(condition, t_s)` would only note the time and return none (the condition is
        the debounced one, the alarm is in service and not shelved, time did not go back),
        and then the time is noted as `evaluate` notes it. False, with nothing changed,
        otherwise: the caller then calls `evaluate`, which judges the change, the on/off delay,
        the shelf or the bad time."""
        last_t_s = self._last_t_s
        if (condition != self._active or self._shelved_until is not None
                or self._out_of_service or last_t_s is None or not last_t_s <= t_s < _INF):
            return False
        self._last_t_s = t_s
        self._pending_since = None
        return True

    def settle_value(self, pv: float, t_s: float, setpoint: float | None = None) -> bool:
        """`settle` for a high, low or deviation alarm given a finite `pv` (rate alarms keep
        a slope history, so they always go through `evaluate_value`): the condition is
        computed as `evaluate_value` computes it; True (and `pv` noted as the value judged)
        when `evaluate_value` would return no transition and change nothing else; False, with
        nothing changed, otherwise (also for a setpoint that is missing or not finite:
        `evaluate_value` says what is wrong with it)."""
        cfg = self.config
        kind = cfg.kind
        limit = cfg.limit
        db = cfg.deadband if self._active else 0.0
        if kind == "high":
            condition = pv > limit - db  # type: ignore[operator]
        elif kind == "low":
            condition = pv < limit + db  # type: ignore[operator]
        elif kind == "deviation" and setpoint is not None and math.isfinite(setpoint):
            condition = abs(pv - setpoint) > limit - db  # type: ignore[operator]
        else:
            return False
        if not self.settle(condition, t_s):
            return False
        self._judged_value = pv
        return True

    def hold(self, t_s: float) -> list[Transition]:
        """No usable input this cycle: keep condition and timers, only let a shelf expire."""
        self._check_time(t_s)
        return self._expire(t_s)

    # -- operator actions -------------------------------------------------------------------

    def acknowledge(self, t_s: float, operator: str) -> list[Transition]:
        _check_operator(operator)
        state = self.state
        if state is AlarmState.UNACK:
            return [self._go(AlarmState.ACKED, t_s, "acknowledged", operator)]
        if state in (AlarmState.RTN_UNACK, AlarmState.LATCHED):
            why = "acknowledged (latch reset)" if state is AlarmState.LATCHED else "acknowledged"
            return [self._go(AlarmState.NORMAL, t_s, why, operator)]
        raise ValueError(f"cannot acknowledge alarm {self.name!r}: it is {state.value}, "
                         "only unack, rtn_unack and latched alarms can be acknowledged")

    def shelve(self, until_t_s: float, t_s: float, operator: str) -> list[Transition]:
        _check_operator(operator)
        if self._out_of_service:
            raise ValueError(f"cannot shelve alarm {self.name!r}: it is out of service")
        if not math.isfinite(until_t_s) or until_t_s <= t_s:
            raise ValueError(f"cannot shelve alarm {self.name!r} until {until_t_s}: the expiry "
                             f"must be after now ({t_s})")
        if until_t_s - t_s > self.config.max_shelve_s:
            raise ValueError(f"cannot shelve alarm {self.name!r} for {until_t_s - t_s:.0f} s: "
                             f"longer than its max_shelve_s {self.config.max_shelve_s:.0f} s")
        before = self.state
        self._shelved_until = until_t_s
        why = ("shelf extended" if before is AlarmState.SHELVED else "shelved") \
            + f" until t={until_t_s:g}"
        return [self._transition(before, AlarmState.SHELVED, t_s, why, operator)]

    def unshelve(self, t_s: float, operator: str) -> list[Transition]:
        _check_operator(operator)
        if self.state is not AlarmState.SHELVED:
            raise ValueError(f"cannot unshelve alarm {self.name!r}: it is {self.state.value}, "
                             "not shelved")
        self._shelved_until = None
        return [self._transition(AlarmState.SHELVED, self._state, t_s, "unshelved", operator)]

    def remove_from_service(self, t_s: float, operator: str) -> list[Transition]:
        _check_operator(operator)
        before = self.state
        if before is AlarmState.OUT_OF_SERVICE:
            raise ValueError(f"cannot remove alarm {self.name!r} from service: it already is")
        self._out_of_service = True
        self._shelved_until = None
        self._reset()
        return [self._transition(before, AlarmState.OUT_OF_SERVICE, t_s,
                                 "removed from service", operator)]

    def return_to_service(self, t_s: float, operator: str) -> list[Transition]:
        _check_operator(operator)
        if not self._out_of_service:
            raise ValueError(f"cannot return alarm {self.name!r} to service: it is "
                             f"{self.state.value}, not out of service")
        self._out_of_service = False
        self._reset()
        return [self._transition(AlarmState.OUT_OF_SERVICE, AlarmState.NORMAL, t_s,
                                 "returned to service", operator)]

    # -- internals --------------------------------------------------------------------------

    def _check_time(self, t_s: float) -> None:
        if not math.isfinite(t_s):
            raise ValueError(f"alarm {self.name!r}: t_s {t_s!r} is not a finite number")
        if self._last_t_s is not None and t_s < self._last_t_s:
            raise ValueError(f"alarm {self.name!r}: time went backwards "
                             f"({t_s} after {self._last_t_s})")
        self._last_t_s = t_s

    def _reset(self) -> None:
        self._state = AlarmState.NORMAL
        self._active = False
        self._pending_since = None
        self._samples.clear()
        self._slope_per_h = None

    def _expire(self, t_s: float) -> list[Transition]:
        if self._shelved_until is None or self._out_of_service or t_s < self._shelved_until:
            return []
        self._shelved_until = None
        return [self._transition(AlarmState.SHELVED, self._state, t_s, "shelf expired")]

    def _follow_condition(self, t_s: float) -> list[Transition]:
        """The automatic transitions after the debounced condition changed."""
        s = self._state
        if self._active:
            if s in (AlarmState.NORMAL, AlarmState.RTN_UNACK, AlarmState.LATCHED):
                return [self._go(AlarmState.UNACK, t_s, self._describe(True))]
            return []
        if s is AlarmState.UNACK:
            target = AlarmState.LATCHED if self.config.latched else AlarmState.RTN_UNACK
            return [self._go(target, t_s, self._describe(False))]
        if s is AlarmState.ACKED:
            return [self._go(AlarmState.NORMAL, t_s, self._describe(False))]
        return []

    def _describe(self, active: bool) -> str:
        cfg = self.config
        if not active:
            return "condition cleared" + (" (latched)" if cfg.latched else "")
        if cfg.kind == "comm_errors":
            return f"more than {cfg.limit:.0%} of reads failing"
        what = {"high": f"above {cfg.limit}", "low": f"below {cfg.limit}",
                "deviation": f"more than {cfg.limit} from setpoint",
                "rate": f"changing faster than {cfg.limit}/h",
                "stale": "reading stale", "bad_quality": "reading quality bad",
                "comm_loss": "communication lost"}[cfg.kind]
        return f"{cfg.channel} {what}" if cfg.channel else what

    def _go(self, to: AlarmState, t_s: float, reason: str,
            operator: str | None = None) -> Transition:
        """Move the underlying state; while shelved, record it as a suppressed change."""
        before = self._state
        self._state = to
        if self._shelved_until is not None:
            return self._transition(AlarmState.SHELVED, AlarmState.SHELVED, t_s,
                                    f"while shelved: {reason} ({before.value} -> {to.value})",
                                    operator, notify=False)
        return self._transition(before, to, t_s, reason, operator)

    def _transition(self, before: AlarmState, to: AlarmState, t_s: float, reason: str,
                    operator: str | None = None, notify: bool = True) -> Transition:
        if before is not to:
            self.last_change_t_s = t_s
        if notify:
            self.last_reason = reason
        return Transition(self.name, before, to, t_s, reason, self.priority, notify, operator,
                          value=self._judged_value)

    def _rate_per_h(self, pv: float, t: float) -> float | None:
        """Least-squares slope over the decimated samples of the window, refitted only when a
        sample is kept (every window/_RATE_POINTS): between, the last fit stands."""
        window = self.config.rate_window_s
        samples = self._samples
        if samples and t - samples[-1][0] < window / _RATE_POINTS:
            return self._slope_per_h
        samples.append((t, pv))
        while samples[0][0] < t - window:
            samples.popleft()
        self._slope_per_h = _slope_per_h(samples, window)
        return self._slope_per_h


def _slope_per_h(samples: deque[tuple[float, float]], window: float) -> float | None:
    """None until the samples span half the window."""
    if len(samples) < 3 or samples[-1][0] - samples[0][0] < window / 2:
        return None
    n = len(samples)
    t_mean = sum(p[0] for p in samples) / n
    v_mean = sum(p[1] for p in samples) / n
    sxx = sum((p[0] - t_mean) ** 2 for p in samples)
    sxy = sum((p[0] - t_mean) * (p[1] - v_mean) for p in samples)
    return sxy / sxx * _S_PER_H


def _check_operator(operator: str) -> None:
    if not isinstance(operator, str) or not operator.strip():
        raise ValueError(f"operator {operator!r}: an operator action must name who did it")
