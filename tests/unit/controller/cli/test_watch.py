"""The watch view: pure render, and a live run against a real broker."""
from __future__ import annotations

import asyncio
import io
import math

from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import (
    LOST_PAYLOAD, Topics, alarm_payload, status_payload, telemetry_payload,
)
from controller.cli.watch import WatchState, render, watch

T = Topics("r1")


def tel(seq: int) -> bytes:
    return telemetry_payload(
        seq=seq, wall_ts=0, t_s=60.0 * seq,
        readings={"temperature_c": (37.02, "degC", "good"), "ph": (math.nan, "pH", "bad")},
        setpoints={"temperature": 37.0}, outputs={"heater_pct": 11.0},
        modes={"temperature": "auto"})


def test_render_shows_everything() -> None:
    state = WatchState()
    assert "waiting" in render(state)
    state.update(T.status, status_payload("running"))
    assert state.update(T.telemetry, tel(1)) is True
    state.update(T.telemetry, tel(4))  # 2 and 3 missing
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


async def test_watch_live(broker) -> None:
    b = broker()
    out = io.StringIO()
    settings = MqttSettings.from_url(b.url)
    task = asyncio.create_task(watch(settings, "r1", out, min_interval_s=0.25))
    import aiomqtt
    try:
        await asyncio.sleep(0.3)
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="fake-ctrl") as c:
            await c.publish(T.status, status_payload("running"), qos=1, retain=True)
            for seq in range(1, 41):  # 40 messages in ~0.4 s: throttled to a few redraws
                await c.publish(T.telemetry, tel(seq), qos=1)
                await asyncio.sleep(0.01)
            await c.publish(Topics("r2").telemetry, tel(1), qos=1)  # other reactor: filtered
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    text = out.getvalue()
    frames = text.count("== r1")
    assert 1 <= frames <= 5, frames
    assert "state=running" in text and "r2" not in text
    assert "seq=40" in text.split("== r1")[-1]  # the trailing redraw shows the latest
    assert "\x1b[2J" not in text  # not a TTY: plain output
