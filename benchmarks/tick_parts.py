"""Where a control tick's time goes: the emulator's read and write, and the whole tick, timed
without the event loop's sleep (the floor, measured by closed_loop.py)."""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.clock import Clock, VirtualTimeEventLoop
from controller.config import load_config
from controller.procedure.procedure import Procedure
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.run import open_reactor_driver
from drivers.contract.datasheet import PUMPS

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "hsc_expansion.toml"


async def _measure(n: int, db: Path) -> dict[str, float]:
    config = load_config(DEFAULT_CONFIG)
    clock = Clock()
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeEventLoop)
    historian = Historian(db, RunInfo("bench", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    driver = open_reactor_driver(config, 0, clock.now)
    reactor = Reactor(config.reactor[0], driver, clock, historian,
                      control_period_s=1.0, stats_after_s=3600.0)
    await reactor.start()
    results = {}

    started = time.perf_counter()
    for _ in range(n):
        loop._virtual_now += 1.0  # advance the clock by one period without a timer
        await driver.read()
    results["driver_read_us"] = (time.perf_counter() - started) / n * 1e6

    outputs = await driver.read_outputs()
    started = time.perf_counter()
    for i in range(n):
        loop._virtual_now += 1.0
        await driver.write({"heater_pct": outputs["heater_pct"] + (i & 1) * 0.01,
                            "o2_pct": outputs["o2_pct"], "co2_pct": outputs["co2_pct"]})
    results["driver_write_3_outputs_us"] = (time.perf_counter() - started) / n * 1e6

    # The recipe's share of a tick: a fresh procedure of the default recipe (five timed phases,
    # one exit each) stepped on the emulator's readings; the reactor's own is left untouched.
    procedure = Procedure(config.reactor[0].recipe, dict.fromkeys(PUMPS, 0.0))  # type: ignore[arg-type]
    readings = await driver.read()
    started = time.perf_counter()
    for i in range(n):
        procedure.step(readings, float(i))
    results["recipe_step_us"] = (time.perf_counter() - started) / n * 1e6

    started = time.perf_counter()
    started_cpu = time.process_time()
    for i in range(n):
        loop._virtual_now += 1.0
        await reactor.tick()
        if i % 60 == 59:
            historian.flush()
    results["whole_tick_us"] = (time.perf_counter() - started) / n * 1e6
    # Process time: this process's CPU alone, less moved by other load on a shared VM.
    results["whole_tick_cpu_us"] = (time.process_time() - started_cpu) / n * 1e6
    historian.close()
    return {k: round(v, 2) for k, v in results.items()}


def bench_tick_parts(n: int = 200_000) -> dict[str, Any]:
    with (tempfile.TemporaryDirectory() as tmp,
          asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner):
        return runner.run(_measure(n, Path(tmp) / "parts.sqlite"))


if __name__ == "__main__":
    print(json.dumps(bench_tick_parts(), indent=2))
