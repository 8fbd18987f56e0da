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

from collections.abc import Callable, Mapping, Sequence

from controller.config.conditions import (
    HOLDS,
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


Evaluator = Callable[["ExitWatch", Mapping[str, Reading], float], "bool | None"]
"""A condition compiled for the tick: (watch, readings, now_s) -> True, False or None."""


class ExitWatch:
    """The exits of one phase: which one holds first, remembering since when each comparison
    has been true (the hold-timers, checkpointed).

    Each exit's condition is compiled once into nested closures (`_compile`), so a tick walks
    no type tests and no operator strings; every term is still evaluated every tick, in
    reading order, so every hold-timer runs as it would under a tree walk."""

    def __init__(self, exits: Sequence[PhaseExit]) -> None:
        self._exits = [(exit_.when, exit_.condition) for exit_ in exits]
        self._compares: list[Compare] = [c for _, cond in self._exits for c in comparisons(cond)]
        self.true_since_s: list[float | None] = [None] * len(self._compares)
        """Per comparison, in reading order over all exits: since when it has been true."""
        counter = [0]
        self._evaluators = tuple(_compile(cond, counter) for _, cond in self._exits)
        assert counter[0] == len(self._compares)  # one hold-timer per comparison, in order
        self._phase_time_s = 0.0
        self._confirmed = False

    def first_holding(self, readings: Mapping[str, Reading], now_s: float,
                      phase_time_s: float, confirmed: bool) -> int | None:
        """The index of the first exit whose condition holds now, or None. `now_s` is also
        the run clock (`run_time`); `phase_time_s` the phase's running time."""
        self._phase_time_s = phase_time_s
        self._confirmed = confirmed
        found = None
        for i, evaluate in enumerate(self._evaluators):
            # Every exit is evaluated, so every hold-timer runs whichever exit wins.
            if evaluate(self, readings, now_s) is True and found is None:
                found = i
        return found

    def when_of(self, index: int) -> str:
        return self._exits[index][0]

    def reset(self) -> None:
        """Restart every hold-timer (a hold or a restart: a condition must hold anew)."""
        self.true_since_s = [None] * len(self._compares)


def _compile(condition: Condition, counter: list[int]) -> Evaluator:
    """`condition` as a closure; `counter` numbers the comparisons (their hold-timers) in
    reading order, the order `comparisons` lists them and the closures visit them in."""
    if isinstance(condition, Compare):
        k = counter[0]
        counter[0] += 1
        return _compile_compare(condition, k)
    if isinstance(condition, Confirmed):
        def confirmed(watch: ExitWatch, readings: Mapping[str, Reading],
                      now_s: float) -> bool | None:
            return watch._confirmed
        return confirmed
    if isinstance(condition, Not):
        term = _compile(condition.term, counter)

        def negated(watch: ExitWatch, readings: Mapping[str, Reading],
                    now_s: float) -> bool | None:
            inner = term(watch, readings, now_s)
            return None if inner is None else not inner
        return negated
    terms = tuple(_compile(term, counter) for term in condition.terms)
    if isinstance(condition, All):
        def all_of(watch: ExitWatch, readings: Mapping[str, Reading],
                   now_s: float) -> bool | None:
            results = [term(watch, readings, now_s) for term in terms]
            if False in results:
                return False
            return None if None in results else True
        return all_of
    assert isinstance(condition, AnyOf)

    def any_of(watch: ExitWatch, readings: Mapping[str, Reading], now_s: float) -> bool | None:
        results = [term(watch, readings, now_s) for term in terms]
        if True in results:
            return True
        return None if None in results else False
    return any_of


def _compile_compare(compare: Compare, k: int) -> Evaluator:
    """One comparison with its hold-timer `k`: unknown (None) on a reading that is not GOOD,
    and the timer restarts whenever it is not true."""
    operand = compare.operand
    holds = HOLDS[compare.op]  # chosen once per comparison, not every tick
    limit = compare.value
    for_s = compare.for_s

    def evaluate(watch: ExitWatch, readings: Mapping[str, Reading],
                 now_s: float) -> bool | None:
        if operand == "phase_time":
            value: float | None = watch._phase_time_s
        elif operand == "run_time":
            value = now_s
        else:
            reading = readings.get(operand)
            value = reading.value if reading is not None and reading.quality is _GOOD else None
        true_since_s = watch.true_since_s
        if value is None or not holds(value, limit):
            true_since_s[k] = None
            return None if value is None else False
        since = true_since_s[k]
        if since is None:
            true_since_s[k] = since = now_s
        return now_s - since >= for_s
    return evaluate
