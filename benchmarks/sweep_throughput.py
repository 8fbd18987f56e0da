"""Sweep throughput (issue #14's Done-when): a sweep of 8 two-day cultures of the default
config (4 seeds x microgravity off/on) with 1 and 2 local workers and on a two-worker Dask
cluster on loopback, against the same 8 cultures as single `bioreactor run` commands, one
after the other (each a fresh process, as a user runs them): the target is at most 1.2x the
singles' time divided by 2 (two cores). Also checks that the 2-worker pool and the cluster
give the same metrics (results.csv, every column but wall_seconds).

    .venv/bin/python benchmarks/sweep_throughput.py [--duration 2d] [--seeds 4]

Several minutes of both cores: not part of `make bench` unless asked
(`benchmarks/run_all.py --sweep`). Times are wall seconds of the whole command, start-up
included; the cluster's own start-up (scheduler and workers) is not.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from plugins.configs import DEFAULT_CONFIG_PATH
from plugins.dask_cluster import dask_cluster
from plugins.processes import BIN
from plugins.sweeps import METRICS, read_results, sweep_command, write_sweep

GRAVITY_LINE = "microgravity = false"


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _singles(folder: Path, duration: str, seeds: int) -> float:
    text = DEFAULT_CONFIG_PATH.read_text()
    assert GRAVITY_LINE in text
    configs = {False: DEFAULT_CONFIG_PATH, True: folder / "microgravity.toml"}
    configs[True].write_text(text.replace(GRAVITY_LINE, "microgravity = true"))
    total = 0.0
    for seed in range(1, seeds + 1):
        for micro in (False, True):
            total += _timed([str(BIN / "bioreactor"), "run", str(configs[micro]), "--duration",
                             duration, "--speed", "max", "--seed", str(seed), "--quiet",
                             "--db", str(folder / f"single-{seed}-{micro}.sqlite")])
    return total


def bench_sweep_throughput(duration: str = "2d", seeds: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sweep = write_sweep(folder, f"seed = {list(range(1, seeds + 1))}\n"
                                    '"reactor.chamber.microgravity" = [false, true]\n',
                            duration=duration)
        runs = 2 * seeds
        singles_s = _singles(folder, duration, seeds)
        local_1_s = _timed(sweep_command(sweep, folder / "w1", "--workers", "1", "--quiet"))
        local_2_s = _timed(sweep_command(sweep, folder / "w2", "--workers", "2", "--quiet"))
        with dask_cluster(folder / "cluster", workers=2) as address:
            dask_s = _timed(sweep_command(sweep, folder / "dask", "--scheduler", address,
                                          "--quiet"))
        same = ([{m: r[m] for m in METRICS} for r in read_results(folder / "w2")]
                == [{m: r[m] for m in METRICS} for r in read_results(folder / "dask")])
        target_s = singles_s / 2
    return {
        "runs": runs, "duration": duration,
        "single_runs_in_turn_s": round(singles_s, 1),
        "target_1_2x_singles_over_2_s": round(1.2 * target_s, 1),
        "sweep_1_worker_s": round(local_1_s, 1),
        "sweep_2_workers_s": round(local_2_s, 1),
        "sweep_dask_2_workers_s": round(dask_s, 1),
        "ratio_2_workers_to_singles_over_2": round(local_2_s / target_s, 3),
        "ratio_dask_to_singles_over_2": round(dask_s / target_s, 3),
        "same_metrics_local_and_dask": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="2d")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(bench_sweep_throughput(args.duration, args.seeds), indent=2))


if __name__ == "__main__":
    main()
