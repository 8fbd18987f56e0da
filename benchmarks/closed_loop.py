"""Benchmark: the default 14-day closed-loop culture at a 1 s control period, in virtual time.

Reports simulated time over wall time, microseconds per tick, and in the same process the cost
of a bare virtual-clock tick (the floor: one `sleep_until` per tick and nothing else), so the
ratio shows how much of a tick is our work rather than the event loop's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from controller import clock
from controller.cli.main import apply_overrides
from controller.clock import Clock
from controller.config import load_config
from controller.runtime.run import Run, RunOptions

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "hsc_expansion.toml"


async def _bare_ticks(n: int) -> float:
    c = Clock()
    started = time.perf_counter()
    t = 0.0
    for _ in range(n):
        t += 1.0
        await c.sleep_until(t)
    return time.perf_counter() - started


def bench_closed_loop(config_path: Path, duration: str) -> dict[str, Any]:
    config = apply_overrides(load_config(config_path), duration=duration, speed="max", seed=None)
    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(config=config, config_text=config_path.read_text(),
                             db_path=Path(tmp) / "bench.sqlite")
        summary = clock.run(Run(options).execute(), None)
    ticks = summary["ticks"]
    floor_s = clock.run(_bare_ticks(ticks), None)
    us_per_tick = summary["wall_seconds"] / ticks * 1e6
    floor_us = floor_s / ticks * 1e6
    return {
        "duration": duration,
        "ticks": ticks,
        "wall_seconds": round(summary["wall_seconds"], 2),
        "sim_over_wall": round(summary["simulated_seconds"] / summary["wall_seconds"]),
        "us_per_tick": round(us_per_tick, 2),
        "floor_us_per_tick": round(floor_us, 2),
        "ratio_to_floor": round(us_per_tick / floor_us, 2),
        "within_band": {k: round(v["within_band_fraction"], 4)
                        for k, v in summary["loops"].items()},
        "fold_expansion": summary["fold_expansion"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--duration", default="14d")
    args = parser.parse_args()
    print(json.dumps(bench_closed_loop(args.config, args.duration), indent=2))


if __name__ == "__main__":
    main()
