"""controller.runtime.probe_standards: what the standardisation puts on record (events, system
audit rows, the failing alarm, telemetry readings), without a whole run."""
from __future__ import annotations

from typing import Any

import pytest

from controller.config import ReactorConfig
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from controller.runtime.probe_standards import ProbeStandards
from drivers.contract.reading import Quality, Reading

HOUR = 3600.0


class Records:
    """The historian's recording calls, kept in lists."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, Any]] = []
        self.audit: list[Any] = []

    def record_event(self, reactor_id: str, t_s: float, kind: str, message: str,
                     data: Any = None) -> None:
        self.events.append((t_s, kind, message, data))

    def record_audit(self, record: Any) -> None:
        self.audit.append(record)


def good(value: float, t_s: float, unit: str) -> Reading:
    return Reading(value, unit, t_s, Quality.GOOD)


@pytest.fixture
def setup() -> tuple[ProbeStandards, Records, OutsideAlarms]:
    records = Records()
    journal = ReactorJournal("r1", records)  # type: ignore[arg-type]
    outside = OutsideAlarms(journal, on_change=lambda: None)
    standards = ProbeStandards(ReactorConfig(id="r1").standardisation, journal, outside,
                               wall_time=lambda: 1.7e9, on_change=lambda: None)
    return standards, records, outside


def run(standards: ProbeStandards, do_offset, hours: int) -> list[dict[str, Reading]]:
    """A DO probe reading 25 + offset(t) % air, a blood-gas pO2 of a true 25 % air every 6 h
    (published 30 min after its draw), the pH probe and its reference agreeing."""
    seen = []
    po2 = ph_ref = Reading(float("nan"), "", 0.0, Quality.BAD)
    for minute in range(hours * 60):
        t = minute * 60.0
        if minute % 360 == 30:
            drawn = t - 1800.0
            po2 = good(25.0 * 1.494, drawn, "mmHg")
            ph_ref = good(7.30, drawn, "pH")
        readings = {"do_pct_air": good(25.0 + do_offset(t), t, "% air sat"),
                    "ph": good(7.30, t, "pH"), "bga_po2_mmhg": po2, "bga_ph": ph_ref}
        standards.apply(readings, t)
        seen.append(readings)
    return seen


def test_a_fast_drifting_do_probe_is_corrected_on_record_and_alarmed(setup) -> None:
    standards, records, outside = setup
    start = 24 * HOUR
    seen = run(standards, lambda t: 0.5 * max(0.0, t - start) / HOUR, 48)
    # One comparison event per reference and probe: 8 references of each in 48 h.
    compared = [e for e in records.events if e[1] == "standardisation"
                and "re-standardised" not in e[2]]
    assert len(compared) == 16
    restandardised = [e for e in records.events if "do_pct_air re-standardised" in e[2]]
    assert restandardised and len(records.audit) == len(restandardised)
    row = records.audit[-1]
    assert (row.operator, row.action, row.outcome) == ("system", "standardise", "applied")
    assert '"channel":"do_pct_air"' in row.params_json
    alarms = [e for e in records.events if e[1] == "alarm"]
    assert alarms and alarms[0][3]["alarm"] == "do_pct_air_probe_failing"
    assert alarms[0][3]["active"] and alarms[0][3]["priority"] == "high"
    assert start < alarms[0][0] <= start + 26 * HOUR
    assert "do_pct_air_probe_failing" in outside.unacknowledged
    assert outside.acknowledge("do_pct_air_probe_failing") is True
    assert outside.acknowledge("do_pct_air_probe_failing") is False  # known, nothing pending
    # The readings the loops see are corrected; telemetry carries the correction.
    last = seen[-1]["do_pct_air"].value
    correction = standards.telemetry["do_pct_air_correction"].value
    assert correction == pytest.approx(standards.standardiser.probes["do_pct_air"].correction)
    t_last = (48 * 60 - 1) * 60.0
    assert last == pytest.approx(25.0 + 0.5 * (t_last - start) / HOUR - correction)
    assert abs(last - 25.0) < 3.5  # the correction lags the drift by at most ~6 h
    summary = standards.summary()["do_pct_air"]
    assert summary["failing"] and summary["references"] == 8
    assert summary["restandardisations"] == len(restandardised)


def test_a_probe_that_agrees_with_its_reference_is_left_alone(setup) -> None:
    standards, records, _ = setup
    seen = run(standards, lambda t: 0.0, 30)
    assert records.audit == []
    assert not any(e[1] == "alarm" for e in records.events)
    assert seen[-1]["do_pct_air"].value == 25.0 and seen[-1]["ph"].value == 7.30
    assert standards.telemetry["ph_correction"].value == 0.0
    assert standards.telemetry["ph_offset_est"].value == pytest.approx(0.0, abs=1e-9)


def test_the_state_survives_a_restart(setup) -> None:
    standards, records, _ = setup
    run(standards, lambda t: 2.0, 13)
    journal = ReactorJournal("r1", records)  # type: ignore[arg-type]
    again = ProbeStandards(ReactorConfig(id="r1").standardisation, journal,
                           OutsideAlarms(journal, on_change=lambda: None), wall_time=lambda: 0.0,
                           on_change=lambda: None)
    again.restore(standards.snapshot())
    assert again.summary() == standards.summary()
    assert again.telemetry["do_pct_air_correction"].value == pytest.approx(
        standards.telemetry["do_pct_air_correction"].value)
