"""Sweep throughput (issue #14's Done-when): a sweep of 8 two-day cultures of the default
config (4 seeds x microgravity off/on) with 1 and 2 local workers and on a two-worker Dask
cluster on loopback, against the same 8 cultures as single `bioreactor run` commands, one
after the other (each a fresh process, as a user runs them): the target is at most 1.2x the
singles' time divided by 2 (two cores). Also checks that the 2-worker pool and the cluster
give the same metrics (results.csv, every column but wall_seconds).

    .venv/bin/python benchmarks/sweep_throughput.py [--duration 2d] [--seeds 4] [--rounds 2]

Each round measures the singles and then the sweeps right after them, and each ratio is taken
against its own round's singles, so a machine that gets busier or quieter between rounds moves
both sides of a ratio; the spread over rounds is reported. Every measure also gives the load
average before it and the CPU seconds of the command and its children (for the Dask cluster,
whose workers are not its children, and for the local sweep, whose runs are its forkserver's
children, only the `bioreactor sweep` process): CPU well under
the wall time of a single run means the machine was shared.

Several minutes of both cores a round: not part of `make bench` unless asked
(`benchmarks/run_all.py --sweep`). Times are wall seconds of the whole command, start-up
included; the cluster's own start-up (scheduler and workers) is not. The cluster is started
as docs/sweeps.md tells a user to (`dask worker --nworkers 2 --nthreads 1`, the worker's
profiler off).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(commands: list[list[str]]) -> dict[str, float]:
    """Wall and CPU seconds of `commands` run one after the other, and the load before."""
    load = os.getloadavg()[0]
    cpu = _children_cpu_s()
    started = time.perf_counter()
    for command in commands:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return {"wall_s": round(time.perf_counter() - started, 1),
            "cpu_s": round(_children_cpu_s() - cpu, 1), "load_before": round(load, 2)}


def _single_commands(folder: Path, duration: str, seeds: int) -> list[list[str]]:
    text = DEFAULT_CONFIG_PATH.read_text()
    assert GRAVITY_LINE in text
    configs = {False: DEFAULT_CONFIG_PATH, True: folder / "microgravity.toml"}
    configs[True].write_text(text.replace(GRAVITY_LINE, "microgravity = true"))
    return [[str(BIN / "bioreactor"), "run", str(configs[micro]), "--duration", duration,
             "--speed", "max", "--seed", str(seed), "--quiet",
             "--db", str(folder / f"single-{seed}-{micro}.sqlite")]
            for seed in range(1, seeds + 1) for micro in (False, True)]


def _round(folder: Path, sweep: Path, duration: str, seeds: int) -> dict[str, Any]:
    """Singles, then the sweeps: 2 workers, the cluster, 1 worker (the target's pair first)."""
    measured: dict[str, Any] = {"singles": _timed(_single_commands(folder, duration, seeds))}
    measured["workers_2"] = _timed([sweep_command(sweep, folder / "w2", "--workers", "2",
                                                  "--quiet")])
    with dask_cluster(folder / "cluster", workers=2) as address:
        measured["dask_2"] = _timed([sweep_command(sweep, folder / "dask", "--scheduler",
                                                   address, "--quiet")])
    measured["workers_1"] = _timed([sweep_command(sweep, folder / "w1", "--workers", "1",
                                                  "--quiet")])
    half_s = measured["singles"]["wall_s"] / 2
    measured["ratio_workers_2"] = round(measured["workers_2"]["wall_s"] / half_s, 3)
    measured["ratio_dask_2"] = round(measured["dask_2"]["wall_s"] / half_s, 3)
    measured["same_metrics_local_and_dask"] = (
        [{m: r[m] for m in METRICS} for r in read_results(folder / "w2")]
        == [{m: r[m] for m in METRICS} for r in read_results(folder / "dask")])
    return measured


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": round(statistics.median(values), 3),
            "max": max(values)}


def bench_sweep_throughput(duration: str = "2d", seeds: int = 4,
                           rounds: int = 2) -> dict[str, Any]:
    results = []
    for index in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            sweep = write_sweep(folder, f"seed = {list(range(1, seeds + 1))}\n"
                                        '"reactor.chamber.microgravity" = [false, true]\n',
                                duration=duration)
            results.append({"round": index + 1, **_round(folder, sweep, duration, seeds)})
    return {
        "runs": 2 * seeds, "duration": duration, "target_ratio": 1.2,
        "ratio_workers_2_to_singles_over_2": _spread([r["ratio_workers_2"] for r in results]),
        "ratio_dask_2_to_singles_over_2": _spread([r["ratio_dask_2"] for r in results]),
        "same_metrics_local_and_dask": all(r["same_metrics_local_and_dask"] for r in results),
        "rounds": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="2d")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(bench_sweep_throughput(args.duration, args.seeds, args.rounds), indent=2))


if __name__ == "__main__":
    main()
