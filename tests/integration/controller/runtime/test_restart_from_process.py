"""A restart after the device went safe: the loops regulate from the process, not from the
checkpoint (docs/recovery.md, "How a restart continues").

A real Reactor in virtual time over the in-process chamber, wrapped so that the device reports a
chosen status and a chamber that cooled to 25 C while its heater was held at its safe 0 %. The
checkpoint says the heater loop was applying 54 %.
"""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from plugins.configs import DEFAULT_CONFIG_PATH

from controller import clock as clock_module
from controller.clock import Clock
from controller.config import load_config
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.recovery import ReactorCheckpoint
from controller.runtime.run import open_reactor_driver
from drivers.contract.driver import Driver
from drivers.contract.errors import CommTimeoutError, ConnectionLostError
from drivers.contract.reading import Quality, Reading
from drivers.contract.status import DeviceStatus

COLD_C = 25.0
WENT_SAFE = "device went to its safe state during the outage"


class CooledDevice(Driver):
    """The in-process chamber, its heater at the safe 0 %, its temperature probe at 25 C, and
    a status of our choosing (an Exception: the status read fails)."""

    def __init__(self, inner: Driver, status: DeviceStatus | Exception | None,
                 absent_reads: int = 0) -> None:
        self.inner = inner
        self.status = status
        self.absent_reads = absent_reads
        """Reads (and connects) that fail before the device comes up: a device not there yet."""
        self.writes: list[dict[str, float]] = []
        self.writes_while_absent = 0

    async def connect(self) -> None:
        if self.absent_reads > 0:
            raise ConnectionLostError("sim://: cannot connect")
        await self.inner.connect()
        await self.inner.write({"heater_pct": 0.0})  # what the watchdog did

    async def close(self) -> None:
        await self.inner.close()

    async def read(self) -> dict[str, Reading]:
        if self.absent_reads > 0:
            self.absent_reads -= 1
            if self.absent_reads == 0:  # it comes up now: this read gets through
                await self.inner.connect()
                await self.inner.write({"heater_pct": 0.0})
            else:
                raise ConnectionLostError("sim://: link down (cannot connect)")
        readings = await self.inner.read()
        t = readings["temperature_c"]
        readings["temperature_c"] = Reading(COLD_C, t.unit, t.timestamp_s, Quality.GOOD)
        return readings

    async def read_outputs(self) -> dict[str, float]:
        return await self.inner.read_outputs()

    async def write(self, outputs: Mapping[str, float]) -> None:
        if self.absent_reads > 0:
            self.writes_while_absent += 1
        self.writes.append(dict(outputs))
        await self.inner.write(outputs)

    async def heartbeat(self) -> None:
        await self.inner.heartbeat()

    async def read_status(self) -> DeviceStatus | None:
        if isinstance(self.status, Exception):
            raise self.status
        return self.status


async def _restart(tmp_path: Path, status: DeviceStatus | Exception | None,
                   absent_reads: int = 0) -> dict[str, Any]:
    config = load_config(DEFAULT_CONFIG_PATH)
    clock = Clock()
    historian = Historian(tmp_path / "run.sqlite",
                          RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    first = Reactor(config.reactor[0], open_reactor_driver(config, 0, clock.now), clock,
                    historian, control_period_s=1.0, stats_after_s=0.0)
    await first.start()
    state = first.checkpoints.state()
    state["loops"]["temperature"]["output"] = 54.0  # what the loop applied before the crash
    state["counters"]["ticks"] = 1234
    await first.go_safe("crash")
    device = CooledDevice(open_reactor_driver(config, 0, clock.now), status, absent_reads)
    reactor = Reactor(config.reactor[0], device, clock, historian, control_period_s=1.0,
                      stats_after_s=0.0)
    await reactor.start(restore=ReactorCheckpoint("hsc-1", 0.0, time.time(), state))
    t = 0.0
    for _ in range(10):
        await reactor.tick()
        t += 1.0
        await clock.sleep_until(t)
    heater = [w["heater_pct"] for w in device.writes if "heater_pct" in w]
    ticks = reactor.counters.ticks
    await reactor.go_safe("test")
    historian.close()
    with sqlite3.connect(tmp_path / "run.sqlite") as db:
        events = [(m, json.loads(d) if d else None) for m, d in db.execute(
            "SELECT message, data_json FROM events WHERE kind = 'run' ORDER BY rowid")]
    return {"heater": heater, "events": events, "ticks": ticks,
            "writes_while_absent": device.writes_while_absent}


def test_after_the_device_went_safe_the_heater_loop_restarts_from_the_measurement(
        tmp_path: Path) -> None:
    out = clock_module.run(_restart(tmp_path, DeviceStatus.RUNNING
                                    | DeviceStatus.COMM_LOSS_SAFE), None)
    # 25 C against 37 C with kp 30: the fresh PID output is the loop's maximum, not 54 %.
    assert out["heater"][0] == 100.0
    assert 54.0 not in out["heater"][:-1]  # (the last write is go_safe's 0 %)
    assert out["ticks"] == 1234 + 10  # the rest of the checkpoint is restored as ever
    went_safe = [data for message, data in out["events"] if message.startswith(WENT_SAFE)]
    assert len(went_safe) == 1
    assert went_safe[0]["device_outputs"]["heater_pct"] == 0.0
    assert went_safe[0]["device_status"] & DeviceStatus.COMM_LOSS_SAFE
    restarted = [data for message, data in out["events"]
                 if message.startswith("reactor restarted")]
    assert restarted[0]["loop_outputs"]["heater_pct"] == 0.0


@pytest.mark.parametrize("status", [None, CommTimeoutError("no reply")],
                         ids=["no-status", "read-fails"])
def test_without_a_status_the_checkpointed_output_is_restored(
        tmp_path: Path, status: DeviceStatus | Exception | None) -> None:
    out = clock_module.run(_restart(tmp_path, status), None)
    assert out["heater"][0] == 54.0
    assert not [m for m, _ in out["events"] if m.startswith(WENT_SAFE)]


def test_a_device_that_kept_its_outputs_is_resumed_at_what_it_holds(tmp_path: Path) -> None:
    """RUNNING without COMM_LOSS_SAFE: the device holds what the crashed controller last wrote
    (here 0 %), which may be newer than the checkpoint's 54 %: the loop holds the device's
    value, so the restart does not move the actuator."""
    out = clock_module.run(_restart(tmp_path, DeviceStatus.RUNNING), None)
    assert 54.0 not in out["heater"]
    assert not [m for m, _ in out["events"] if m.startswith(WENT_SAFE)]
    restarted = [data for message, data in out["events"]
                 if message.startswith("reactor restarted")]
    assert restarted[0]["loop_outputs"]["heater_pct"] == 0.0


def test_a_device_absent_at_the_restart_is_taken_over_by_its_status_once_it_answers(
        tmp_path: Path) -> None:
    """`run --run-id` with the device not up yet: the run goes on (checkpointed outputs stand,
    nothing is written); when the device answers, its status decides as at any restart: it
    went safe, so the heater loop restarts from the cold measurement, not from 54 %."""
    out = clock_module.run(_restart(tmp_path, DeviceStatus.RUNNING | DeviceStatus.COMM_LOSS_SAFE,
                                    absent_reads=4), None)
    messages = [m for m, _ in out["events"]]
    assert "device reachable: control taken over" in messages
    assert out["heater"][0] == 100.0  # the first write at all, on the take-over tick
    assert 54.0 not in out["heater"][:-1]
    assert out["writes_while_absent"] == 0  # nothing sent before the device answered
    assert len([m for m in messages if m.startswith(WENT_SAFE)]) == 1
