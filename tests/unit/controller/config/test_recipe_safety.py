"""The config check's safety rules for recipes (controller/config/safety_check.py): a setpoint a
phase sets is held to the same limits as a loop's own; a phase that can only end on the
culture's state and a hold that does not keep the volume are said out loud."""
from __future__ import annotations

import pytest

from controller.config import ConfigError, safety_warnings
from tests.plugins.configs import load_default

EXPAND_1 = 'name = "expand-1"\n'


def warnings_of(**edits: str) -> list[str]:
    return [line for _, line in safety_warnings(load_default(**edits))]


def test_the_shipped_recipes_pass_without_a_warning() -> None:
    assert warnings_of() == []


def test_a_phase_setpoint_beyond_a_hard_limit_is_refused_naming_the_phase() -> None:
    # The operator bounds would refuse 38.5 first: widen them so the safety rule is what acts.
    with pytest.raises(ConfigError) as err:
        load_default(**{"setpoint_max = 37.5": "setpoint_max = 40.0",
                        EXPAND_1: EXPAND_1 + "loops = { temperature = { setpoint = 38.5 } }\n"})
    assert ("reactor[0].recipe.phase[1] (expand-1).loops.temperature.setpoint = 38.5: at or "
            "beyond a safety limit: the overtemp_limit interlock trips at 38") in str(err.value)


def test_a_phase_that_waits_on_the_culture_alone_warns() -> None:
    lines = warnings_of(**{'when = "phase_time >= 2d"':
                           'when = "est_viable_cells_per_ml >= 3e5 for 2h"'})
    assert lines == ["reactor[0].recipe.phase[0] (seed).exit: no exit on phase_time or "
                     "run_time: if the culture never meets its conditions the phase never ends "
                     "(add a time fallback exit)"]


def test_a_hold_that_fills_the_chamber_warns() -> None:
    lines = warnings_of(**{"hold = { feed_ml_per_h = 6.0, harvest_ml_per_h = 6.0 }":
                           "hold = { feed_ml_per_h = 6.0, harvest_ml_per_h = 2.0 }"})
    assert lines == ["reactor[0].recipe.phase[4] (production).hold: holding fills the chamber "
                     "at 4 mL/h (feed + base - harvest); a long hold reaches the volume "
                     "interlocks (expected: harvest_ml_per_h = feed + base)"]
