"""The hardware-in-the-loop configs are what a user runs first over a wire: whatever they
schedule must happen within their run, or nobody ever sees feeding (or its recovery after a
restart) over the wire (issue 11: the run was 2 d and the first feed at 2 d)."""
from __future__ import annotations

from pathlib import Path

import pytest
from plugins.configs import REPO

from controller.config import load_config, safety_warnings

HIL_CONFIGS = sorted((REPO / "configs").glob("hil_*.toml"))


def test_there_are_hil_configs() -> None:
    assert [p.name for p in HIL_CONFIGS] == [
        "hil_modbus_rtu.toml", "hil_modbus_tcp.toml", "hil_serial.toml"]


@pytest.mark.parametrize("path", HIL_CONFIGS, ids=lambda p: p.name)
def test_every_feed_of_a_hil_config_happens_within_its_run(path: Path) -> None:
    config = load_config(path)
    schedule = config.reactor[0].schedule
    assert safety_warnings(config) == []  # none "at or after the run's end"
    assert len(schedule.bolus) >= 2
    assert any(step.feed_ml_per_h > 0 for step in schedule.perfusion)
    assert all(bolus.at < config.run.duration for bolus in schedule.bolus)
