"""drivers.contract.durations: the duration strings people write (configs, fault specs, the command
line), and the progress-line format. One parser serves the controller and the emulated device."""
from __future__ import annotations

import math

import pytest

import controller.config.run
import drivers.contract.validation
import sim_hardware.faults.specs
from drivers.contract.durations import format_duration, parse_duration_s
from drivers.contract.validation import Seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("14d", 14 * 86400.0),
        ("36h", 36 * 3600.0),
        ("90m", 90 * 60.0),
        ("30s", 30.0),
        ("30", 30.0),  # a bare number in a string is seconds
        ("1.5h", 5400.0),
        ("2.", 2.0),
        (".5m", 30.0),
        ("0d", 0.0),
        ("  7 d ", 7 * 86400.0),  # surrounding and inner blanks are tolerated
        ("0.25d", 21600.0),
        ("90min", 5400.0),  # fault specs have always taken `min`; now the config does too
        ("3d", 259200.0),
        ("120", 120.0),
    ],
)
def test_accepted_strings(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), (3600, 3600.0), (2.5, 2.5), (45, 45.0),
                                               (1.5, 1.5)])
def test_numbers_are_seconds(value: float, seconds: float) -> None:
    result = parse_duration_s(value)
    assert result == seconds
    assert isinstance(result, float)


@pytest.mark.parametrize(
    "text", ["", "d", "14 days", "14D", "1h30m", "fourteen", "14w", "1e3", "-5s", "5 s s", "1,5h",
             "90mins", "5 mn", "soon"]
)
def test_rejected_strings_show_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration_s(text)
    message = str(info.value)
    assert repr(text) in message
    assert "'14d'" in message and "'30s'" in message


def test_errors_name_what_was_being_read() -> None:
    with pytest.raises(ValueError, match=r"^fault co2_supply_lost: at 'soon' not understood"):
        parse_duration_s("soon", "fault co2_supply_lost: at")
    with pytest.raises(ValueError, match=r"^fault x: duration '-2h'"):
        parse_duration_s("-2h", "fault x: duration")
    with pytest.raises(ValueError, match=r"^fault x: duration -2\.0 is negative"):
        parse_duration_s(-2.0, "fault x: duration")


def test_the_controller_and_the_emulator_share_the_one_parser() -> None:
    # sim_hardware may not import controller; both import this one from drivers, so a time
    # means the same in a config and in a fault spec.
    # Both read times through the one `Seconds` field type, built on parse_duration_s.
    assert controller.config.run.Seconds is Seconds
    assert sim_hardware.faults.specs.Seconds is Seconds
    assert drivers.contract.validation.parse_duration_s is parse_duration_s
    assert not hasattr(sim_hardware.faults.specs, "parse_seconds")
    spec = sim_hardware.faults.specs.parse_fault("sensor_drift@90min:channel=ph,duration=1.5h")
    assert (spec.at_s, spec.duration_s) == (5400.0, 5400.0)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_negative_numbers_are_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration_s(value)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_durations(value: bool) -> None:
    # bool is an int subclass; `duration = true` in a config is a mistake, not 1 second
    with pytest.raises(ValueError, match="not a number"):
        parse_duration_s(value)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    # TOML has `nan` and `inf` literals, and float('nan') < 0 is False, so a NaN slips through the
    # negative check. A perfusion point `at = nan` is then accepted by the config and silently
    # blocks every later point of the schedule (see test_config).
    with pytest.raises(ValueError):
        parse_duration_s(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "00:00:00"),
        (59.4, "00:00:59"),
        (59.6, "00:01:00"),
        (3661, "01:01:01"),
        (86399, "23:59:59"),
        (86400, "1d 00:00:00"),
        (3 * 86400 + 4 * 3600 + 5 * 60 + 6, "3d 04:05:06"),
        (14 * 86400, "14d 00:00:00"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["14d", "36h", "90m", "30s", "1d"])
def test_format_round_trips_whole_seconds(text: str) -> None:
    formatted = format_duration(parse_duration_s(text))
    days, _, clock = formatted.rpartition(" ")
    h, m, s = (int(x) for x in clock.split(":"))
    total = (int(days.removesuffix("d")) if days else 0) * 86400 + h * 3600 + m * 60 + s
    assert total == parse_duration_s(text)
