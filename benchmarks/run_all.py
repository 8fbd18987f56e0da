"""`make bench`: every benchmark of the project, one after the other, printed as JSON.

`--quick` (`make bench ARGS=--quick`): the same measurements over short spans (a day instead of
14, an hour of the naive comparison, short fleets, 10 s of real time), for a look in two minutes
rather than a measurement; docs/benchmarks.md quotes only full runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import DEFAULT_CONFIG, bench_closed_loop
from fleet import bench_fleet
from hil_modbus import bench_jitter, bench_round_trip
from mqtt_throughput import bench_mqtt
from naive_vs_ours import bench_naive_vs_ours
from soft_sensor import bench_soft_sensor
from sweep_throughput import bench_sweep_throughput
from tick_parts import bench_tick_parts

from controller.cli.main import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short spans: a look, not a measure")
    parser.add_argument("--no-fleet", action="store_true",
                        help="skip the fleets (the longest part: 10-15 min)")
    parser.add_argument("--sweep", action="store_true", help="also the sweep throughput "
                        "(benchmarks/sweep_throughput.py: several minutes of both cores)")
    args = parser.parse_args()
    configure_logging("warning")
    quick = args.quick
    days = "1d" if quick else "14d"
    results = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine()},
        "quick": quick,
        f"closed_loop_{days}_1s": bench_closed_loop(DEFAULT_CONFIG, days),
        "naive_vs_ours": bench_naive_vs_ours(DEFAULT_CONFIG, "1h" if quick else "1d"),
        "tick_parts": bench_tick_parts(),
        "soft_sensor": bench_soft_sensor(),
        "modbus_tcp_round_trip": bench_round_trip(),
        "tick_jitter_1hz_modbus_tcp": bench_jitter(1.0, 10.0 if quick else 60.0),
        "tick_jitter_10hz_modbus_tcp": bench_jitter(0.1, 10.0 if quick else 60.0),
        "mqtt": bench_mqtt(),
    }
    if not args.no_fleet:
        results["fleet"] = bench_fleet(DEFAULT_CONFIG, quick=quick)
    if args.sweep:
        results["sweep_throughput"] = bench_sweep_throughput()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
