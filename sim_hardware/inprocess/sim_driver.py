"""The emulated chamber as an in-process driver (`sim://`): no transport, no watchdog.

A thin async adapter: the chamber core (`sim_hardware.chamber.core.Chamber`) does the physics on
the controller's `now()`; this class adds what the `Driver` contract asks of a connection
(connect/close, not-connected errors, the heartbeat record).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from drivers.contract.driver import Driver
from drivers.contract.errors import NotConnectedError
from drivers.contract.reading import Reading
from drivers.contract.status import DeviceStatus
from drivers.contract.urls import DeviceAddress
from sim_hardware.chamber.core import Chamber
from sim_hardware.faults.injection import FaultSet
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import ModelParameters


class SimDriver(Driver):
    """One emulated culture chamber, integrated lazily to the controller's clock."""

    in_process = True
    """No link: safe to run in virtual time."""

    def __init__(self, address: DeviceAddress, *, now: Callable[[], float], seed: int,
                 options: Mapping[str, Any], time_scale: float = 1.0) -> None:
        """`time_scale` is accepted for the factory contract; in-process there is no link."""
        self.address = address
        self._now = now
        self.chamber = Chamber(options, seed=seed, now=now)
        self.seed = seed
        self._connected = False
        self.last_heartbeat_s = math.nan

    @property
    def params(self) -> ModelParameters:
        return self.chamber.params

    @property
    def faults(self) -> FaultSet | None:
        return self.chamber.faults

    @property
    def model(self) -> ChamberModel:
        """The chamber itself (ground truth), for tests and reports."""
        if not self.chamber.started:
            raise NotConnectedError(f"{self.address.url}: not connected yet; call connect()")
        return self.chamber.model

    async def connect(self) -> None:
        """Seed the chamber at the first connect; a reconnect finds the culture where it was."""
        self.chamber.start()
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def _require_connected(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self.address.url}: not connected; call connect() first")

    async def read(self) -> dict[str, Reading]:
        if not self._connected:
            self._require_connected()
        return self.chamber.read()

    async def read_outputs(self) -> dict[str, float]:
        self._require_connected()
        self.chamber.check_link()
        return self.chamber.outputs()

    async def write(self, outputs: Mapping[str, float]) -> None:
        if not self._connected:
            self._require_connected()
        self.chamber.write(outputs)

    async def heartbeat(self) -> None:
        """Recorded only: in-process there is no link to lose, so no watchdog."""
        self._require_connected()
        self.chamber.check_link()
        self.last_heartbeat_s = self._now()

    async def read_status(self) -> DeviceStatus:
        """RUNNING once connected (with HEATER_CUTOUT while the cut-out is tripped): in-process
        there is no link and no watchdog, so the chamber never goes safe behind the controller's
        back (COMM_LOSS_SAFE cannot happen), and its outputs never limit silently (a write
        raises instead). A status, not None: the
        chamber is up and its physics runs, which is what RUNNING says."""
        self._require_connected()
        self.chamber.check_link()
        if self.chamber.cutout:
            return DeviceStatus.RUNNING | DeviceStatus.HEATER_CUTOUT
        return DeviceStatus.RUNNING

    async def reset_cutout(self) -> bool:
        self._require_connected()
        return self.chamber.reset_cutout()

    async def diagnostics(self) -> dict[str, float]:
        """Ground truth: the chamber's state, growth factors and the sensors' drawn errors."""
        self._require_connected()
        return self.chamber.diagnostics()
