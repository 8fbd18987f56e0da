"""The chamber's default process alarms (controller/alarms/defaults.py `default_alarms`): the cell
count disagreeing with its reference, and the volume moving while perfusion is balanced."""
from __future__ import annotations

import random

import pytest

from controller.alarms.board import AlarmBoard
from controller.alarms.defaults import default_alarms
from drivers.contract.reading import Quality, Reading

H = 3600.0
LOOPS = {"temperature": ("temperature_c", 37.0, 0.1)}


def board() -> AlarmBoard:
    alarms = [a for a in default_alarms(LOOPS) if a.name in ("volume_rate",
                                                              "cell_count_bad_quality")]
    assert len(alarms) == 2
    return AlarmBoard(alarms)


def test_they_come_with_any_loops_or_none() -> None:
    for loops in ({}, LOOPS):
        names = {a.name for a in default_alarms(loops)}
        assert {"volume_rate", "cell_count_bad_quality"} <= names


def volume_alarm_after(bolus_ml: float = 0.0, clog_ml_per_h: float = 0.0) -> float | None:
    """Seconds from 2 h until `volume_rate` raises (None: never in 8 h), for a load cell with
    0.05 mL noise on a 50 mL chamber: a bolus at 30 mL/h from 2 h, or a clog from 2 h on."""
    rng = random.Random(1)
    b = board()
    volume_ml = 50.0
    for t in range(0, int(8 * H), 5):  # the board runs every 5 s
        if 2 * H <= t < 2 * H + bolus_ml / 30.0 * H:
            volume_ml += 30.0 / H * 5
        if t >= 2 * H:
            volume_ml -= clog_ml_per_h / H * 5
        b.evaluate({"volume_ml": Reading(volume_ml + rng.gauss(0, 0.05), "mL", t)}, {}, t)
    raised = b["volume_rate"].first_raised_t_s
    return None if raised is None else raised - 2 * H


@pytest.mark.parametrize("bolus_ml", [2.0, 10.0, 15.0])
def test_a_scheduled_bolus_does_not_raise_volume_rate(bolus_ml: float) -> None:
    assert volume_alarm_after(bolus_ml=bolus_ml) is None


def test_a_bolus_of_a_third_of_the_chamber_is_a_real_volume_change() -> None:
    assert volume_alarm_after(bolus_ml=20.0) is not None


@pytest.mark.parametrize(("clog_ml_per_h", "within_s"), [(1.0, 2.25 * H), (-1.0, 2.25 * H),
                                                         (6.0, 1.75 * H)])
def test_a_clogged_line_raises_volume_rate_within_hours(clog_ml_per_h: float,
                                                        within_s: float) -> None:
    # Feed clogged (harvest runs on: falling) or harvest clogged (rising), at the pump's rate.
    after = volume_alarm_after(clog_ml_per_h=clog_ml_per_h)
    assert after is not None and 1.5 * H <= after <= within_s  # never before its 90 min delay


def test_a_volume_steady_within_its_noise_stays_quiet() -> None:
    assert volume_alarm_after() is None


def test_an_inconsistent_cell_count_raises_after_a_minute() -> None:
    b = board()
    for t in range(0, 300, 5):
        quality = Quality.INCONSISTENT if t >= 100 else Quality.GOOD
        b.evaluate({"total_cells_per_ml": Reading(2e5, "cells/mL", t, quality)}, {}, t)
    assert b["cell_count_bad_quality"].first_raised_t_s == 160


def test_a_device_without_these_channels_raises_neither() -> None:
    b = board()
    for t in range(0, int(4 * H), 5):
        b.evaluate({"temperature_c": Reading(37.0, "degC", t)}, {}, t)
    assert b.first_raised == []
