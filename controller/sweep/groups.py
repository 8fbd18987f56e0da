"""The runs of a sweep grouped over its seeds: each combination of the other axes' values with
every metric's mean (min-max), the runs whose recipe completed and the alarms raised. This is
the table docs/recipes.md compares recipes by (it replaced scripts/compare_recipes.py)."""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controller.sweep.spec import SEED
from controller.sweep.task import OK

SEED_AXES = (SEED, "run.seed")


@dataclass(frozen=True)
class Group:
    values: tuple[Any, ...]
    """The other axes' values, in the sweep's axis order."""
    runs: int
    spreads: dict[str, tuple[float, float, float] | None]
    """metric -> (mean, min, max) over the group's runs; None when no run has it."""
    completed: int
    """Runs whose recipe reached `complete`."""
    alarms: dict[str, int]
    """Alarm name -> runs that raised it."""


def group_over_seeds(rows: Sequence[dict[str, Any]], axes: Sequence[str],
                     metrics: Sequence[str]) -> tuple[list[str], list[Group]] | None:
    """The groups and their axes, or None when the sweep has no seed axis."""
    seed_axes = [a for a in axes if a in SEED_AXES]
    if not seed_axes:
        return None
    # Axes of one value (a constant set for every run) would only repeat it on every row.
    others = [a for a in axes if a not in seed_axes and len({r[a] for r in rows}) > 1]
    keys: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == OK:
            keys.setdefault(tuple(row[a] for a in others), []).append(row)
    groups = []
    for values, members in keys.items():
        spreads: dict[str, tuple[float, float, float] | None] = {}
        for metric in metrics:
            numbers = [float(r[metric]) for r in members if r.get(metric) is not None]
            spreads[metric] = ((statistics.fmean(numbers), min(numbers), max(numbers))
                               if numbers else None)
        alarms = Counter(name for r in members for name in (r.get("alarm_names") or "").split())
        groups.append(Group(values, len(members), spreads,
                            sum(r.get("recipe_state") == "complete" for r in members),
                            dict(sorted(alarms.items()))))
    return others, groups


def spread_text(spread: tuple[float, float, float] | None, fmt: str = ".3g") -> str:
    """`38.6 (34-42.6)`: mean (min-max)."""
    if spread is None:
        return "n/a"
    mean, low, high = spread
    return f"{mean:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def alarms_text(alarms: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in alarms.items()) or "none"


def markdown(axes: Sequence[str], groups: Sequence[Group], metrics: Sequence[str]) -> str:
    """The groups as a Markdown table, to paste into a document."""
    header = [*axes, "runs", *metrics, "recipe completed", "alarms raised (runs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in groups:
        cells = [*(str(v) for v in g.values), str(g.runs),
                 *(spread_text(g.spreads[m]) for m in metrics), f"{g.completed}/{g.runs}",
                 alarms_text(g.alarms)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
