"""The watch view live: `watch()` against a real broker, fed by a fake controller or a fuzzer."""
from __future__ import annotations

import asyncio
import contextlib
import io
import random

import aiomqtt
from plugins.hostile import SEED, any_topic, hostile_payload
from plugins.telemetry import sample_telemetry
from plugins.waiting import async_wait_until

from controller.cli.watch import watch
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import Topics, status_payload

T = Topics("r1")


async def test_watch_live(broker) -> None:
    b = broker()
    out = io.StringIO()
    settings = MqttSettings.from_url(b.url)
    # No periodic redraw within the test: every frame counted is one a message asked for.
    task = asyncio.create_task(watch(settings, "r1", out, min_interval_s=0.25, refresh_s=3600))
    try:
        await async_wait_until(lambda: "broker: connected" in out.getvalue(), 10,
                               "the view to subscribe")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="fake-ctrl") as c:
            await c.publish(T.status, status_payload("running"), qos=1, retain=True)
            for seq in range(1, 41):  # 40 messages in ~0.4 s: throttled to a few redraws
                await c.publish(T.telemetry, sample_telemetry(seq), qos=1)
                await asyncio.sleep(0.01)  # the pace is the scenario: faster than redraws
            # another reactor: filtered
            await c.publish(Topics("r2").telemetry, sample_telemetry(1), qos=1)
        await async_wait_until(lambda: "seq=40" in out.getvalue().split("== r1")[-1], 10,
                               "the trailing redraw")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    text = out.getvalue()
    frames = text.count("== r1")
    assert 1 <= frames <= 5, frames
    assert "state=running" in text and "r2" not in text
    assert "seq=40" in text.split("== r1")[-1]  # the trailing redraw shows the latest
    assert "\x1b[2J" not in text  # not a TTY: plain output


async def test_watch_keeps_going_through_fuzzed_messages_on_a_real_broker(broker) -> None:
    """The seeded hostile payloads of the unit fuzz test, this time through Mosquitto."""
    b = broker()
    out = io.StringIO()
    task = asyncio.create_task(watch(MqttSettings.from_url(b.url), None, out))
    rng = random.Random(SEED)
    try:
        await async_wait_until(lambda: "broker: connected" in out.getvalue(), 10,
                               "the view to subscribe")
        async with aiomqtt.Client("127.0.0.1", b.port, identifier="fuzzer") as c:
            for _ in range(300):
                topic, payload = any_topic(rng), hostile_payload(rng)
                if topic.isprintable():  # Mosquitto drops a client for a control character
                    await c.publish(topic, payload, qos=1)
            await c.publish(T.telemetry, sample_telemetry(777_777), qos=1)
        await async_wait_until(lambda: "seq=777777" in out.getvalue(), 20,
                               "a good message after the fuzzed ones")
        assert not task.done(), "watch stopped"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert "ignored messages:" in out.getvalue().split("seq=777777")[-1]
