"""Fuzzing the watch view's reading of messages: any payload on any topic (seeded, repeatable).

Anyone with publish rights on `cmd` or `settings/+/set` can write under `bioreactor/<id>/`, and a
retained message greets every new viewer, so the view must fold and draw whatever arrives.
"""
from __future__ import annotations

import random

from plugins.hostile import SEED, any_topic, hostile_payload
from plugins.telemetry import sample_telemetry

from controller.cli.watch_render import render
from controller.mqtt.topics import Topics
from controller.view.fleet_state import MAX_REACTORS, FleetState

CASES = 3000


def test_any_payload_on_any_topic_is_folded_and_drawn() -> None:
    rng = random.Random(SEED)
    state = FleetState()
    for case in range(CASES):
        topic, payload = any_topic(rng), hostile_payload(rng)
        try:
            state.update(topic, payload, float(case))
            screen = render(state, float(case))
        except Exception as exc:  # name the case so a failure reproduces from the seed
            raise AssertionError(f"case {case}: {topic!r} {payload[:200]!r}") from exc
        assert "\x1b" not in screen and "\x07" not in screen, (case, topic, payload[:200])
    assert len(state.reactors) <= MAX_REACTORS
    assert state.rejected["too_deep"] > 0 and state.rejected["not_json"] > 0
    assert state.rejected["not_utf8"] > 0 and state.rejected["too_many_reactors"] > 0
    # the fuzzing did not leave the view deaf: a good message still shows
    state.update(Topics("r1").telemetry, sample_telemetry(10**6), float(CASES))
    assert f"seq={10**6}" in render(state, float(CASES))
