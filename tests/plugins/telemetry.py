"""A telemetry message as a controller publishes it, for the views that read them."""
from __future__ import annotations

import math

from controller.mqtt.topics import telemetry_payload


def sample_telemetry(seq: int) -> bytes:
    """Message `seq` (a minute apart): one good and one bad reading, a loop and an output."""
    return telemetry_payload(
        seq=seq, wall_ts=0, t_s=60.0 * seq,
        readings={"temperature_c": (37.02, "degC", "good"), "ph": (math.nan, "pH", "bad")},
        setpoints={"temperature": 37.0}, outputs={"heater_pct": 11.0},
        modes={"temperature": "auto"})
