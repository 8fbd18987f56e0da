"""`make bench`: every benchmark of the project, one after the other, printed as JSON."""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import DEFAULT_CONFIG, bench_closed_loop
from hil_modbus import bench_jitter, bench_round_trip
from mqtt_throughput import bench_mqtt
from soft_sensor import bench_soft_sensor
from sweep_throughput import bench_sweep_throughput
from tick_parts import bench_tick_parts

from controller.cli.main import configure_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sweep", action="store_true", help="also the sweep throughput "
                        "(benchmarks/sweep_throughput.py: several minutes of both cores)")
    args = parser.parse_args()
    configure_logging("warning")
    results = {
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or
                    platform.machine()},
        "closed_loop_14d_1s": bench_closed_loop(DEFAULT_CONFIG, "14d"),
        "tick_parts": bench_tick_parts(),
        "soft_sensor": bench_soft_sensor(),
        "modbus_tcp_round_trip": bench_round_trip(),
        "tick_jitter_1hz_modbus_tcp": bench_jitter(1.0, 60.0),
        "tick_jitter_10hz_modbus_tcp": bench_jitter(0.1, 60.0),
        "mqtt": bench_mqtt(),
    }
    if args.sweep:
        results["sweep_throughput"] = bench_sweep_throughput()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
