"""What the soft sensor costs: on the tick (sampling, the filter's updates spread over the
ticks), one filter update, the re-run of a 2-day window for a late result, and the whole tick
of the default reactor with and without it (process time: less moved by a busy machine)."""
from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tick_parts import DEFAULT_CONFIG

from controller.clock import Clock, VirtualTimeEventLoop
from controller.config import load_config
from controller.config.soft_sensor import SoftSensorConfig
from controller.estimation.culture_model import CultureModel, Dilution, Observation
from controller.estimation.delayed_ekf import DelayedEKF
from controller.estimation.soft_sensor import SoftSensor
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.run import open_reactor_driver
from drivers.contract.reading import Reading


def _observe_per_tick_us(n: int) -> float:
    sensor = SoftSensor(SoftSensorConfig())
    base = {"total_cells_per_ml": Reading(1e5, "cells/mL", 0.0),
            "do_pct_air": Reading(25.0, "% air sat", 0.0),
            "o2_flow_pct": Reading(5.3, "% gas", 0.0),
            "volume_ml": Reading(50.0, "mL", 0.0),
            "feed_delivered_ml": Reading(1.0, "mL", 0.0)}
    started = time.process_time()
    for i in range(n):
        readings = dict(base)
        sensor.observe(readings, float(i))
    return (time.process_time() - started) / n * 1e6


def _filter_costs() -> dict[str, float]:
    config = SoftSensorConfig()
    model = CultureModel(config)
    x0, p0 = model.initial(1e5)
    ekf = DelayedEKF(model, x0, p0, 0.0, config.history_s)
    segments = int(config.history_s // config.update_period_s)
    started = time.process_time()
    for k in range(1, segments + 1):
        t = k * config.update_period_s
        ekf.step(t, Dilution(0.05, 0.5), [Observation("total_cells", t, 0.1),
                                          Observation("o2_uptake", t, 0.005)])
    update_us = (time.process_time() - started) / segments * 1e6
    started = time.process_time()
    ekf.add_late([Observation("viable_cells", config.update_period_s * 1.5, 0.1)])
    replay_ms = (time.process_time() - started) * 1e3
    return {"filter_update_us": update_us, "late_result_rerun_2d_ms": replay_ms}


async def _whole_tick_us(n: int, enabled: bool, db: Path) -> float:
    config = load_config(DEFAULT_CONFIG)
    rc = config.reactor[0].model_copy(
        update={"soft_sensor": SoftSensorConfig(enabled=enabled)})
    clock = Clock()
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeEventLoop)
    historian = Historian(db, RunInfo("bench", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    driver = open_reactor_driver(config, 0, clock.now)
    reactor = Reactor(rc, driver, clock, historian, control_period_s=1.0, stats_after_s=3600.0)
    await reactor.start()
    started = time.process_time()
    for i in range(n):
        loop._virtual_now += 1.0
        await reactor.tick()
        if i % 60 == 59:
            historian.flush()
    cost = (time.process_time() - started) / n * 1e6
    historian.close()
    return cost


def bench_soft_sensor(n: int = 100_000) -> dict[str, Any]:
    results = {"observe_per_tick_us": _observe_per_tick_us(n), **_filter_costs()}
    with tempfile.TemporaryDirectory() as tmp:
        for enabled in (False, True):
            with asyncio.Runner(loop_factory=VirtualTimeEventLoop) as runner:
                key = f"whole_tick_cpu_us_soft_sensor_{'on' if enabled else 'off'}"
                results[key] = runner.run(_whole_tick_us(n, enabled, Path(tmp) / f"{key}.db"))
    return {k: round(v, 2) for k, v in results.items()}


if __name__ == "__main__":
    print(json.dumps(bench_soft_sensor(), indent=2))
