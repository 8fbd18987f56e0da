"""ExitWatch compiles each exit once into closures; here it must agree, tick by tick, with a
plain walk of the condition tree (the Kleene rules of controller/procedure/exits.py), on which
exit holds and on every hold-timer, over random readings that include bad and missing ones."""
from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from controller.config.conditions import (
    All,
    AnyOf,
    Compare,
    Condition,
    Confirmed,
    Not,
    comparisons,
    parse_condition,
)
from controller.config.recipe import PhaseExit
from controller.procedure.exits import ExitWatch
from drivers.contract.reading import Quality, Reading

EXITS = [
    "glucose_mm < 5 for 1min",
    "not viable_cells_per_ml > 3 or phase_time >= 40min",
    "(glucose_mm <= 4 and lactate_mm > 2 for 2min) or (confirmed and run_time > 30min)",
    "not (lactate_mm >= 3 or not glucose_mm < 6 for 3min)",
]


class TreeWalk:
    """The reference: the condition tree walked every tick, one hold-timer per comparison in
    reading order."""

    def __init__(self, texts: list[str]) -> None:
        self.conditions = [parse_condition(text) for text in texts]
        self.true_since_s: list[float | None] = [
            None for cond in self.conditions for _ in comparisons(cond)]

    def first_holding(self, readings: Mapping[str, Reading], now_s: float,
                      phase_time_s: float, confirmed: bool) -> int | None:
        self.k = 0
        found = None
        for i, cond in enumerate(self.conditions):
            if self.eval(cond, readings, now_s, phase_time_s, confirmed) is True and found is None:
                found = i
        return found

    def eval(self, cond: Condition, readings: Mapping[str, Reading], now_s: float,
             phase_time_s: float, confirmed: bool) -> bool | None:
        if isinstance(cond, Confirmed):
            return confirmed
        if isinstance(cond, Not):
            inner = self.eval(cond.term, readings, now_s, phase_time_s, confirmed)
            return None if inner is None else not inner
        if isinstance(cond, All | AnyOf):
            results = [self.eval(t, readings, now_s, phase_time_s, confirmed)
                       for t in cond.terms]
            if isinstance(cond, All):
                return False if False in results else None if None in results else True
            return True if True in results else None if None in results else False
        assert isinstance(cond, Compare)
        k = self.k
        self.k += 1
        if cond.operand == "phase_time":
            value: float | None = phase_time_s
        elif cond.operand == "run_time":
            value = now_s
        else:
            reading = readings.get(cond.operand)
            value = (reading.value if reading is not None and reading.quality is Quality.GOOD
                     else None)
        if value is None or not cond.holds(value):
            self.true_since_s[k] = None
            return None if value is None else False
        if self.true_since_s[k] is None:
            self.true_since_s[k] = now_s
        return now_s - self.true_since_s[k] >= cond.for_s  # type: ignore[operator]


@pytest.mark.parametrize("seed", range(5))
def test_the_compiled_exits_agree_with_a_tree_walk_tick_by_tick(seed: int) -> None:
    rng = random.Random(seed)
    watch = ExitWatch([PhaseExit(when=text) for text in EXITS])
    reference = TreeWalk(EXITS)
    held = 0
    for tick in range(2000):
        now_s = tick * 20.0
        readings = {}
        for name in ("glucose_mm", "lactate_mm", "viable_cells_per_ml"):
            draw = rng.random()
            if draw < 0.05:
                continue  # missing
            quality = Quality.STALE if draw < 0.1 else Quality.GOOD
            readings[name] = Reading(rng.uniform(0.0, 8.0), "u", now_s, quality)
        if rng.random() < 0.01:
            watch.reset()
            reference.true_since_s = [None] * len(reference.true_since_s)
        args = (readings, now_s, now_s * 0.5, rng.random() < 0.3)
        found = watch.first_holding(*args)
        assert found == reference.first_holding(*args), tick
        assert watch.true_since_s == reference.true_since_s, tick
        held += found is not None
    assert 0 < held < 2000  # the sequence both holds and does not: the test has teeth
