"""Payloads anyone with publish rights could send under `bioreactor/<id>/`: seeded, so a failure
reproduces. Each case is any JSON shape (mostly the controller's field names, each meeting every
wrong type), a valid message with bytes flipped or a field replaced, noise, or a field nested to
any depth up to the 8,000 levels that once crashed `watch`."""
from __future__ import annotations

import json
import random
from typing import Any

from controller.mqtt.topics import alarm_payload, event_payload, status_payload
from plugins.telemetry import sample_telemetry

SEED = 20261102
KEYS = ("state", "run_id", "seq", "t_s", "wall_ts", "readings", "value", "unit", "quality",
        "setpoints", "outputs", "modes", "name", "severity", "priority", "active", "message",
        "kind", "data", "ok", "code", "nonce", "temperature", "heater_pct", "flood",
        "recipe", "phase")
SUFFIXES = ("status", "telemetry", "alarms", "events", "cmd", "cmd/reply", "settings/x",
            "settings/x/set", "settings/a/b", "unknown/deeper/topic")
VALID = (sample_telemetry(3), status_payload("running", run_id="run-1"),
         alarm_payload(wall_ts=0, t_s=5, name="ph_bad", severity="alarm", active=True,
                       message="unack: probe"),
         event_payload(wall_ts=0, t_s=5, kind="feed", message="bolus", data={"x": 1.0}))


def any_value(rng: random.Random, depth: int) -> Any:
    """A JSON value of any type; containers nest up to `depth`, their keys mostly the
    controller's, so each field meets every wrong type."""
    kind = rng.randrange(9 if depth > 0 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-10**30, 10**30)
    if kind == 3:
        return rng.choice([rng.uniform(-1e300, 1e300), 1e308 * 10, float("nan"), -0.0])
    if kind == 4:
        return "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(0, 300)))
    if kind == 5:
        return rng.choice(["running", "lost", "good", "unack: x", "acked: y", "critical"])
    if kind == 6:
        return rng.choice(KEYS)
    if kind == 7:
        return [any_value(rng, depth - 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(KEYS): any_value(rng, depth - 1) for _ in range(rng.randrange(0, 8))}


def hostile_payload(rng: random.Random) -> bytes:
    style = rng.randrange(5)
    if style == 4:  # a field nested to any depth, up to the 8,000 levels that crashed the view
        levels = rng.choice([rng.randrange(1, 30), rng.randrange(30, 8001)])
        openers = [rng.choice(['{"readings":', '{"data":', "["]) for _ in range(levels)]
        closing = "".join("]" if o == "[" else "}" for o in reversed(openers))
        return ("".join(openers) + json.dumps(any_value(rng, 2)) + closing).encode()
    if style == 0:  # a structure of any shape, sometimes deeper than the limit
        return json.dumps(any_value(rng, rng.randrange(1, 24))).encode()
    if style == 1:  # a valid message with bytes flipped, cut or inserted
        raw = bytearray(rng.choice(VALID))
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(len(raw))
            raw[at:at + rng.randrange(0, 3)] = rng.randbytes(rng.randrange(0, 3))
        return bytes(raw)
    if style == 2:  # noise
        return rng.randbytes(rng.randrange(0, 2000))
    # a valid message with one field replaced by anything
    body = json.loads(rng.choice(VALID))
    body[rng.choice(list(body))] = any_value(rng, 3)
    return json.dumps(body).encode()


def any_topic(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["bioreactor", "bioreactor//status", "elsewhere/r1/status",
                           "bioreactor/\x1b[31m/status"])
    reactor = rng.choice(["r1", "r2", f"r{rng.randrange(200)}"])
    return f"bioreactor/{reactor}/{rng.choice(SUFFIXES)}"
