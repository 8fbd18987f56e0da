"""Benchmark: the dashboard's feed (controller/dashboard/feed.py) folding telemetry for a full
fleet: messages folded per second with listeners attached, and how much the process's peak
resident memory grew once every reactor's trend ring is full.

Payloads are the controller's own (`telemetry_payload`) with the default config's reading
names, so each message costs what a real one costs. Pure CPU in one process: no broker.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from controller.dashboard.feed import Feed
from controller.mqtt.link import MqttSettings
from controller.mqtt.topics import Topics, telemetry_payload
from controller.view.fleet_state import MAX_REACTORS, TREND_POINTS

READINGS = (
    "base_delivered_ml", "bga_pco2_mmhg", "bga_ph", "bga_po2_mmhg", "cd34_cd90_pct", "cd34_pct",
    "co2_flow_pct", "co2_supply_kpa", "device_boot_id", "device_uptime_s", "do_pct_air",
    "do_pct_air_correction", "do_pct_air_offset_est", "est_growth_rate_per_d",
    "est_growth_rate_per_d_sd", "est_inhibitor_ng_per_ml", "est_inhibitor_ng_per_ml_sd",
    "est_primitive_fraction", "est_primitive_fraction_sd", "est_viable_cells_per_ml",
    "est_viable_cells_per_ml_sd", "feed_delivered_ml", "glucose_mm", "harvest_delivered_ml",
    "heater_cutout", "lactate_mm", "o2_flow_pct", "o2_supply_kpa", "ph", "ph_correction",
    "ph_offset_est", "sampled_ml", "temperature_c", "total_cells_per_ml", "viability_pct",
    "viable_cells_per_ml", "volume_ml",
)
"""The default config's 37 telemetry readings."""


def _payload(seq: int) -> bytes:
    return telemetry_payload(
        seq=seq, wall_ts=1.7e9 + seq, t_s=float(seq), run_id="bench",
        readings=dict.fromkeys(READINGS, (1.0 + seq * 1e-06, "u", "good")),
        setpoints={"temperature": 37.0, "do": 25.0, "ph": 7.3},
        outputs={"heater": 50.0, "o2_flow": 5.0, "co2_flow": 10.0, "feed": 0.1,
                 "harvest": 0.1, "base": 0.0},
        modes={"temperature": "auto", "do": "auto", "ph": "auto"},
        recipe={"state": "running", "phase": "seed"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reactors", type=int, default=MAX_REACTORS)
    parser.add_argument("--listeners", type=int, default=50)
    args = parser.parse_args()
    feed = Feed(MqttSettings.from_url("mqtt://127.0.0.1:1"))
    for _ in range(args.listeners):
        feed.listen()
    topics = [Topics(f"r-{i:04d}").telemetry for i in range(args.reactors)]
    payloads = [_payload(seq) for seq in range(1, TREND_POINTS + 1)]
    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for seq, payload in enumerate(payloads, start=1):
        for topic in topics:
            feed.fold(topic, payload, float(seq))
    elapsed = time.perf_counter() - started
    rss_after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    messages = len(payloads) * len(topics)
    print(json.dumps({"reactors": args.reactors, "listeners": args.listeners,
                      "messages": messages, "messages_per_s": round(messages / elapsed),
                      "trend_points_per_reactor": TREND_POINTS,
                      "peak_rss_growth_mb": round((rss_after_kb - rss_before_kb) / 1e3, 1)}))


if __name__ == "__main__":
    main()
