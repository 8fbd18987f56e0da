"""A real-time fleet run inside this process, to see where the controller's own time goes.

`benchmarks/fleet.py` measures a fleet as a user runs it (a child process, its CPU with its
children's). This one runs the same `Run` in-process, so it can report what that cannot:
- the controller process's own CPU (`getrusage(RUSAGE_SELF)`), apart from its children's (the
  historian's writer and, with `--mqtt`, the MQTT publisher child): what is left on the event
  loop's core;
- every garbage collection longer than 2 ms while the run ticks (`gc.callbacks`), with its
  generation;
- each period's largest tick lateness and how many ticks were more than 10 ms late, so a
  late worst reactor can be traced to a period (the start, or a periodic hand-off).

    python benchmarks/fleet_in_process.py --reactors 1000 --duration 30s [--mqtt URL]

With `--mqtt`, a broker must listen at URL (e.g. `mosquitto -c` with a loopback listener).
Prints one JSON object on the last line (the run's own log lines come before it).
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller import clock
from controller.cli.main import apply_overrides
from controller.config.fleet import fleet
from controller.config.loading import load_config
from controller.runtime import run as run_module
from controller.runtime.tick_groups import Tickable

REPO = Path(__file__).resolve().parents[1]


class _Watched:
    """A reactor whose lateness, as tick_forever records it, is also noted by period."""

    def __init__(self, reactor: Tickable, per_period: dict[int, list[float]],
                 period_s: float, now: Any) -> None:
        self.reactor, self.per_period, self.period_s, self.now = reactor, per_period, period_s, now
        self.counters = reactor.counters
        self.lateness_s = self

    def append(self, late_s: float) -> None:
        self.reactor.lateness_s.append(late_s)
        self.per_period.setdefault(int(self.now() // self.period_s), []).append(late_s)

    async def tick(self) -> None:
        await self.reactor.tick()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "hsc_expansion.toml")
    parser.add_argument("--reactors", type=int, default=1000)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--mqtt", default=None, help="broker URL (none: no MQTT)")
    args = parser.parse_args()

    per_period: dict[int, list[float]] = {}
    collections: list[tuple[float, int, float]] = []
    started: dict[str, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["t"] = time.perf_counter()
        elif "t" in started:
            collections.append((time.monotonic(), info["generation"],
                                (time.perf_counter() - started["t"]) * 1e3))

    original = run_module.tick_forever

    async def watched(clk: Any, reactors: Any, **kwargs: Any) -> None:
        period_s = kwargs["period_s"]
        await original(clk, [_Watched(r, per_period, period_s, clk.now) for r in reactors],
                       **kwargs)

    run_module.tick_forever = watched  # type: ignore[assignment]
    config = fleet(apply_overrides(load_config(args.config), duration=args.duration, speed="1",
                                   seed=None, mqtt=args.mqtt), args.reactors)
    gc.callbacks.append(on_gc)
    with tempfile.TemporaryDirectory() as tmp:
        options = run_module.RunOptions(config=config, config_text=args.config.read_text(),
                                        db_path=Path(tmp) / "fleet.sqlite")
        t0 = time.monotonic()
        summary = clock.run(run_module.Run(options).execute(), 1.0)
        t1 = time.monotonic()
    gc.callbacks.remove(on_gc)
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    p99_ms = sorted(r["tick_lateness_s"]["p99"] * 1e3 for r in summary["reactors"].values()
                    if r["tick_lateness_s"])
    print(json.dumps({
        "reactors": args.reactors, "duration": args.duration, "mqtt": args.mqtt is not None,
        "controller_cpu_s": round(own.ru_utime + own.ru_stime, 2),
        "children_cpu_s": round(children.ru_utime + children.ru_stime, 2),
        "wall_s": round(t1 - t0, 2),
        "p99_lateness_ms_worst_reactor": round(p99_ms[-1], 1),
        "p99_lateness_ms_median_reactor": round(statistics.median(p99_ms), 1),
        "gc_over_2ms_during_run": [{"at_s": round(t - t0, 2), "generation": g, "ms": round(d, 1)}
                                   for t, g, d in collections if d > 2 and t0 <= t <= t1],
        "periods": {p: {"max_ms": round(max(v) * 1e3, 1), "over_10ms": sum(x > 0.01 for x in v)}
                    for p, v in sorted(per_period.items())},
        "mqtt_summary": summary.get("mqtt"),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
