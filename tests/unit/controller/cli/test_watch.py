"""The watch view: the pure render (the live view against a real broker is in
tests/integration/controller/cli/test_watch_live.py)."""
from __future__ import annotations

from plugins.telemetry import sample_telemetry

from controller.cli.watch import WatchState, render
from controller.mqtt.topics import (
    LOST_PAYLOAD,
    Topics,
    alarm_payload,
    status_payload,
)

T = Topics("r1")


def test_render_shows_everything() -> None:
    state = WatchState()
    assert "waiting" in render(state)
    state.update(T.status, status_payload("running"))
    assert state.update(T.telemetry, sample_telemetry(1)) is True
    state.update(T.telemetry, sample_telemetry(4))  # 2 and 3 missing
    state.update(T.alarms, alarm_payload(wall_ts=0, t_s=1, name="ph_bad", severity="alarm",
                                         active=True, message="pH probe fault"))
    state.update(Topics("r2").status, LOST_PAYLOAD)
    state.update("elsewhere/x", b"{}")
    state.update(T.telemetry, b"not json")
    text = render(state)
    assert "== r1  state=running  seq=4" in text and "GAPS=2" in text
    assert "temperature_c" in text and "37.02" in text and "degC" in text
    assert "ph" in text and "null" in text and "[BAD]" in text
    assert "loop temperature" in text and "mode=auto" in text and "heater_pct=11" in text
    assert "alarm alarm ph_bad ACTIVE: pH probe fault" in text
    assert "== r2  state=lost" in text

