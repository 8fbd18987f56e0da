"""A controller restarted while a one-shot alarm stands: it still stands after the restart.

A real Reactor in virtual time over the in-process chamber. The chamber reboots (a new boot id,
totalisers from 0), the reactor raises `device_rebooted`, then the controller dies and a new
one continues from its checkpoint over the same, still running, device. Nothing would raise the
alarm again (the boot id is the one the checkpoint knows), so only the checkpoint can keep it.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from plugins.configs import DEFAULT_CONFIG_PATH

from controller import clock as clock_module
from controller.clock import Clock
from controller.config import load_config
from controller.runtime.alarm_summary import needing_attention
from controller.runtime.command_desk import standing_now
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.recovery import ReactorCheckpoint
from controller.runtime.run import open_reactor_driver
from sim_hardware.inprocess.sim_driver import SimDriver


async def _ticks(reactor: Reactor, clock: Clock, n: int) -> None:
    for _ in range(n):
        await reactor.tick()
        await clock.sleep_until(clock.now() + 1.0)


def _standing_names(reactor: Reactor) -> list[str]:
    alarms, _ = standing_now(reactor.alarms, reactor.outside_alarms, reactor.interlocks)
    return [name for name, _ in alarms]


async def _restart_after_a_reboot(tmp_path: Path) -> dict[str, object]:
    config = load_config(DEFAULT_CONFIG_PATH)
    clock = Clock()
    historian = Historian(tmp_path / "run.sqlite",
                          RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    driver = open_reactor_driver(config, 0, clock.now)
    assert isinstance(driver, SimDriver)
    first = Reactor(config.reactor[0], driver, clock, historian, control_period_s=1.0,
                    stats_after_s=0.0)
    await first.start()
    await _ticks(first, clock, 5)
    driver.chamber.reboot()
    await _ticks(first, clock, 5)
    before = _standing_names(first)
    state = json.loads(json.dumps(first.checkpoints.state()))  # as the historian keeps it
    # The controller dies here; the device runs on. A new controller continues the run.
    second = Reactor(config.reactor[0], driver, clock, historian, control_period_s=1.0,
                     stats_after_s=0.0)
    await second.start(restore=ReactorCheckpoint("hsc-1", clock.now(), time.time(), state))
    await _ticks(second, clock, 10)
    after = _standing_names(second)
    summary = {a.name: (a.state, a.active) for a in needing_attention(second.alarms,
                                                                      second.outside_alarms)}
    second.commands.ack_alarm("device_rebooted", "alice", clock.now())
    acknowledged = _standing_names(second)
    await second.go_safe("test")
    historian.close()
    return {"before": before, "after": after, "summary": summary, "acknowledged": acknowledged}


def test_a_device_reboot_alarm_stands_across_a_controller_restart(tmp_path: Path) -> None:
    out = clock_module.run(_restart_after_a_reboot(tmp_path), None)
    assert "device_rebooted" in out["before"]
    assert "device_rebooted" in out["after"]  # a recipe's phase would still see it
    assert out["summary"]["device_rebooted"] == ("unack", True)  # and the retained summary
    assert "device_rebooted" not in out["acknowledged"]
