"""The soft sensor inside a real Reactor on the emulator: its estimates join the tick's readings,
so telemetry carries them (with their SDs) and the historian keeps them."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from plugins.reactors import default_reactor

from controller import clock as clock_module
from controller.clock import Clock


class _Telemetry:
    """Stands in for the MQTT presence: keeps what each tick would publish."""

    seq = 0

    def __init__(self) -> None:
        self.readings: dict[str, Any] = {}

    def event(self, *_: Any, **__: Any) -> None:
        pass

    def alarm(self, *_: Any, **__: Any) -> None:
        pass

    def tick(self, t_s: float, readings: dict, *_: Any, **__: Any) -> None:
        self.readings = dict(readings)


async def _scenario(tmp_path: Path) -> dict[str, Any]:
    clock = Clock()
    reactor, historian = default_reactor(tmp_path / "run.sqlite", clock)
    await reactor.start()
    telemetry = _Telemetry()
    reactor.journal.presence = telemetry  # type: ignore[assignment]
    for _ in range(1300):  # two filter updates at 10 min
        await reactor.tick()
        await asyncio.sleep(1.0)
    await reactor.go_safe("test")
    historian.close()
    return telemetry.readings


def test_estimates_are_published_and_recorded(tmp_path: Path) -> None:
    readings = clock_module.run(_scenario(tmp_path), None)
    est = readings["est_viable_cells_per_ml"]
    assert est.unit == "cells/mL" and est.good
    assert 0.5e5 < est.value < 2e5  # seeded at 1e5 cells/mL
    assert readings["est_viable_cells_per_ml_sd"].value > 0.0
    assert readings["est_growth_rate_per_d"].unit == "1/d"
    with sqlite3.connect(tmp_path / "run.sqlite") as con:
        times = [t for (t,) in con.execute(
            "SELECT t_s FROM estimates WHERE name = 'est_growth_rate_per_d' ORDER BY t_s")]
    assert len(times) == 3  # initialised on the first density, then every 10 min
