"""A real Reactor of the default config on the in-process device, with its historian file, for
tests that drive ticks and commands themselves."""
from __future__ import annotations

from pathlib import Path

from controller.clock import Clock
from controller.config import Config, load_config
from controller.runtime.historian import Historian, RunInfo
from controller.runtime.reactor import Reactor
from controller.runtime.run import open_reactor_driver
from plugins.configs import DEFAULT_CONFIG_PATH


def default_reactor(db_path: Path, clock: Clock) -> tuple[Reactor, Historian]:
    """Reactor hsc-1 (not started) recording to a new historian at `db_path`: close it."""
    return first_reactor(load_config(DEFAULT_CONFIG_PATH), db_path, clock)


def first_reactor(config: Config, db_path: Path, clock: Clock) -> tuple[Reactor, Historian]:
    """The first reactor of `config` (not started), recording to a new historian: close it."""
    historian = Historian(db_path, RunInfo("t", "now", 1, 1.0, "", [("hsc-1", "sim://")]))
    reactor = Reactor(config.reactor[0], open_reactor_driver(config, 0, clock.now), clock,
                      historian, control_period_s=1.0, stats_after_s=0.0)
    return reactor, historian
