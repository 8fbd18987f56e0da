"""The runs grouped over their seeds: the recipe comparison's table (docs/recipes.md)."""
from __future__ import annotations

from typing import Any

from controller.sweep.groups import alarms_text, group_over_seeds, markdown, spread_text


def row(config: str, seed: int, fold: float | None, status: str = "ok",
        alarms: str = "", recipe: str | None = "complete") -> dict[str, Any]:
    return {"config": config, "seed": seed, "period": 5.0, "status": status,
            "total_fold": fold, "alarm_names": alarms, "recipe_state": recipe}


def test_groups_over_the_seeds_of_each_combination_of_the_varying_axes() -> None:
    rows = [row("a", 1, 10.0, alarms="do_low ph_low"), row("a", 2, 20.0, alarms="do_low"),
            row("a", 3, 0.0, status="failed"), row("b", 1, 5.0, recipe="running"),
            row("b", 2, None)]
    grouped = group_over_seeds(rows, ["config", "seed", "period"], ["total_fold"])
    assert grouped is not None
    axes, groups = grouped
    assert axes == ["config"]  # `period` has one value: not a grouping
    a, b = groups
    assert (a.values, a.runs, a.spreads, a.completed, a.alarms) == (
        ("a",), 2, {"total_fold": (15.0, 10.0, 20.0)}, 2, {"do_low": 2, "ph_low": 1})
    assert (b.runs, b.spreads, b.completed, b.alarms) == (2, {"total_fold": (5.0, 5.0, 5.0)},
                                                          1, {})
    assert markdown(axes, groups, ["total_fold"]).splitlines() == [
        "| config | runs | total_fold | recipe completed | alarms raised (runs) |",
        "|---|---|---|---|---|",
        "| a | 2 | 15 (10-20) | 2/2 | do_low (2), ph_low (1) |",
        "| b | 2 | 5 (5-5) | 1/2 | none |",
    ]


def test_no_seed_axis_no_groups() -> None:
    assert group_over_seeds([row("a", 1, 1.0)], ["config"], ["total_fold"]) is None


def test_texts() -> None:
    assert spread_text((38.61, 34.0, 42.62)) == "38.6 (34-42.6)"
    assert spread_text(None) == "n/a"
    assert alarms_text({}) == "none"
