"""A phase's exits watched tick by tick: the conditions of controller/config/conditions.py
evaluated against judged readings, with a hold-timer per comparison.

Three-valued (Kleene) logic, because a reading that is not GOOD says nothing: a comparison on
it is *unknown*, and so is `not` of it; `and` is false if any term is false, `or` true if any is
true, and otherwise unknown propagates. Only a condition that is *true* ends a phase, so a
failed probe can neither end a phase (`glucose_mm < 5` on a dead probe) nor, through `not`,
make a negated condition hold. A comparison's hold-timer (`for 6h`) restarts whenever the
comparison is not true, including when its reading goes bad.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from controller.config.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    Confirmed,
    Not,
    comparisons,
)
from controller.config.recipe import PhaseExit
from drivers.contract.reading import Quality, Reading

_GOOD = Quality.GOOD
"""Read once: an enum member read through its class costs a metaclass lookup every tick."""


class ExitWatch:
    """The exits of one phase: which one holds first, remembering since when each comparison
    has been true (the hold-timers, checkpointed)."""

    def __init__(self, exits: Sequence[PhaseExit]) -> None:
        self._exits = [(exit_.when, exit_.condition) for exit_ in exits]
        self._compares: list[Compare] = [c for _, cond in self._exits for c in comparisons(cond)]
        self.true_since_s: list[float | None] = [None] * len(self._compares)
        """Per comparison, in reading order over all exits: since when it has been true."""
        self._k = 0
        self._phase_time_s = 0.0
        self._confirmed = False

    def first_holding(self, readings: Mapping[str, Reading], now_s: float,
                      phase_time_s: float, confirmed: bool) -> int | None:
        """The index of the first exit whose condition holds now, or None. `now_s` is also
        the run clock (`run_time`); `phase_time_s` the phase's running time."""
        self._k = 0
        self._phase_time_s = phase_time_s
        self._confirmed = confirmed
        found = None
        for i, (_, condition) in enumerate(self._exits):
            # Every exit is evaluated, so every hold-timer runs whichever exit wins.
            if self._eval(condition, readings, now_s) is True and found is None:
                found = i
        return found

    def when_of(self, index: int) -> str:
        return self._exits[index][0]

    def reset(self) -> None:
        """Restart every hold-timer (a hold or a restart: a condition must hold anew)."""
        self.true_since_s = [None] * len(self._compares)

    def _eval(self, condition: Condition, readings: Mapping[str, Reading],
              now_s: float) -> bool | None:
        if isinstance(condition, Compare):
            return self._compare(condition, readings, now_s)
        if isinstance(condition, Confirmed):
            return self._confirmed
        if isinstance(condition, Not):
            inner = self._eval(condition.term, readings, now_s)
            return None if inner is None else not inner
        results = [self._eval(term, readings, now_s) for term in condition.terms]
        if isinstance(condition, All):
            if False in results:
                return False
            return None if None in results else True
        assert isinstance(condition, AnyOf)
        if True in results:
            return True
        return None if None in results else False

    def _compare(self, compare: Compare, readings: Mapping[str, Reading],
                 now_s: float) -> bool | None:
        k = self._k
        self._k += 1
        operand = compare.operand
        if operand == "phase_time":
            value: float | None = self._phase_time_s
        elif operand == "run_time":
            value = now_s
        else:
            reading = readings.get(operand)
            value = (reading.value if reading is not None and reading.quality is _GOOD
                     else None)
        if value is None or not compare.holds(value):
            self.true_since_s[k] = None
            return None if value is None else False
        since = self.true_since_s[k]
        if since is None:
            self.true_since_s[k] = since = now_s
        return now_s - since >= compare.for_s

