"""The emulated chamber as an in-process driver (`sim://`): no transport, lazy physics.

Nothing runs between calls. Each `read` or `write` integrates the chamber from the last call to
the controller's `now()`, so the driver works unchanged on a virtual clock (14 days in seconds)
or a wall clock, and costs nothing while the controller is idle. Every random draw derives from
the run seed, so the same seed and the same sequence of calls give the same run.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from drivers.contract.datasheet import OUTPUTS
from drivers.contract.driver import Driver, validate_outputs
from drivers.contract.errors import NotConnectedError
from drivers.contract.reading import Reading
from drivers.contract.urls import DeviceAddress
from sim_hardware.model.actuators import ActuatorInputs, apply_outputs
from sim_hardware.faults.catalogue import FAULTS, FaultSet, parse_faults
from sim_hardware.model.culture import ChamberModel, InitialConditions
from sim_hardware.model.parameters import INITIAL_CONDITION_TABLE, ModelParameters
from sim_hardware.model.sensors import SensorBank

_INITIAL_SPECS = {s.name: s for s in INITIAL_CONDITION_TABLE}
OUTPUT_NAMES = tuple(c.name for c in OUTPUTS)
OPTION_KEYS = ("microgravity", "donor_variability", "parameters", "faults", *_INITIAL_SPECS)


def parse_options(options: Mapping[str, Any], seed_sequence: np.random.SeedSequence
                  ) -> tuple[ModelParameters, bool, InitialConditions]:
    """The `[reactor.chamber]` table as (parameters, microgravity, initial conditions).

    Every error is a ValueError that names the key, the value and what is allowed, because the
    person reading it is editing a TOML file.
    """
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise ValueError(f"unknown chamber option(s) {', '.join(unknown)}; known options: "
                         f"{', '.join(OPTION_KEYS)}")
    flags = {}
    for key in ("microgravity", "donor_variability"):
        value = options.get(key, False)
        if not isinstance(value, bool):
            raise ValueError(f"chamber option {key}={value!r} must be true or false")
        flags[key] = value
    overrides = options.get("parameters", {})
    if not isinstance(overrides, Mapping):
        raise ValueError(f"chamber option parameters={overrides!r} must be a table of "
                         "parameter = value")
    params = ModelParameters.from_options(overrides)
    parse_faults(options.get("faults"))  # a bad fault spec is an error here, naming it
    if flags["donor_variability"]:
        params = params.with_donor_variability(np.random.default_rng(seed_sequence))
    init = {name: spec.check(options[name]) for name, spec in _INITIAL_SPECS.items()
            if name in options}
    fields = {"initial_volume_ml": "volume_ml", "seeding_cells_per_ml": "seeding_cells_per_ml",
              "initial_temperature_c": "temperature_c", "initial_o2_pct": "o2_pct",
              "initial_co2_pct": "co2_pct"}
    initial = InitialConditions(**{fields[name]: value for name, value in init.items()})
    return params, flags["microgravity"], initial


class SimDriver(Driver):
    """One emulated culture chamber, integrated lazily to the controller's clock."""

    in_process = True
    """No link: safe to run in virtual time."""

    _model: ChamberModel
    _sensors: SensorBank

    def __init__(self, address: DeviceAddress, *, now: Callable[[], float], seed: int,
                 options: Mapping[str, Any], time_scale: float = 1.0) -> None:
        """`time_scale` is accepted for the factory contract; in-process there is no link."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        self.address = address
        self._now = now
        self.seed = seed
        # A third child for the faults: the first two (and so a clean run) are unchanged.
        donor_seed, self._sensor_seed, fault_seed = np.random.SeedSequence(seed).spawn(3)
        self.params, self.microgravity, self.initial = parse_options(options, donor_seed)
        specs = parse_faults(options.get("faults"))
        self.faults: FaultSet | None = FaultSet(specs, fault_seed, self.params) if specs else None
        """None without faults: the fast path tests only this."""
        self._fault_times = self.faults.transition_times if self.faults else ()
        self._fault_next_s = self._fault_times[0] if self._fault_times else math.inf
        self._fault_index = 0
        self._commanded: ActuatorInputs  # what the controller asked for (= model.inputs
        # unless an actuator fault is active)
        self._started = False  # _model and _sensors exist once the first connect seeded them
        self._connected = False
        self.last_heartbeat_s = math.nan

    # --------------------------------------------------------------------------- lifecycle
    async def connect(self) -> None:
        """Seed the chamber at the first connect; a reconnect finds the culture where it was."""
        if not self._started:
            t0 = float(self._now())
            self._model = ChamberModel(self.params, microgravity=self.microgravity,
                                       initial=self.initial, t0_s=t0)
            m = self._model
            self._sensors = SensorBank(
                self.params, self._sensor_seed,
                {"temperature_c": m.temperature_c, "do_pct_air": m.do_pct_air, "ph": m.ph,
                 "total_cells_per_ml": m.total_cells_per_ml, "volume_ml": m.volume_ml},
                t0)
            self._commanded = m.inputs
            self._started = True
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    @property
    def model(self) -> ChamberModel:
        """The chamber itself (ground truth), for tests and reports."""
        if not self._started:
            raise NotConnectedError(f"{self.address.url}: not connected yet; call connect()")
        return self._model

    def _require_connected(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self.address.url}: not connected; call connect() first")

    # ------------------------------------------------------------------------------- ticks
    def _advance(self, now: float) -> None:
        """Integrate to `now`, stopping at each at-line sample time to draw the sample."""
        atline = self._sensors.atline
        model = self._model
        if now >= self._fault_next_s:
            self._advance_faults(now)
        while now >= atline.next_draw_s:
            t = atline.next_draw_s
            model.advance_to(t)
            atline.draw(t, model)
        model.advance_to(now)
        if now >= atline.next_ready_s:
            atline.publish(now)

    def _advance_faults(self, now: float) -> None:
        """Integrate through each fault transition up to `now`, in time order with the
        at-line draws, changing the chamber's physical inputs (or inoculating) there."""
        atline = self._sensors.atline
        model = self._model
        faults = self.faults
        assert faults is not None
        times = self._fault_times
        while now >= self._fault_next_s:
            t = self._fault_next_s
            while t >= atline.next_draw_s:
                td = atline.next_draw_s
                model.advance_to(td)
                atline.draw(td, model)
            model.advance_to(t)
            for spec in faults.starts_at(t):
                model.contaminate(**spec.params)
            model.set_inputs(faults.physical(self._commanded, t))
            self._fault_index += 1
            self._fault_next_s = (times[self._fault_index] if self._fault_index < len(times)
                                  else math.inf)

    async def read(self) -> dict[str, Reading]:
        return self.read_now()

    def read_now(self) -> dict[str, Reading]:
        """`read()` for synchronous callers (the served device's protocol handlers)."""
        if not self._connected:
            self._require_connected()
        now = self._now()
        faults = self.faults
        if faults is not None:
            faults.check_comm(now)
        self._advance(now)
        m = self._model
        s = self._sensors
        readings = dict(s.atline.readings)
        readings["temperature_c"] = s.temperature.read(m.temperature_c, now)
        readings["do_pct_air"] = s.do.read(m.do_mm * m.do_pct_per_mm, now)
        readings["ph"] = s.ph.read(m.ph, now)
        readings["total_cells_per_ml"] = s.total_cells.read(m.total_cells_per_ml, now)
        readings["volume_ml"] = s.volume.read(m.volume_ml, now)
        if faults is not None:
            return faults.apply_readings(readings, now)
        return readings

    async def read_outputs(self) -> dict[str, float]:
        if self.faults is not None:
            self._require_connected()
            self.faults.check_comm(self._now())
        return self.outputs_now()

    def outputs_now(self) -> dict[str, float]:
        """What was commanded (after the hardware's limits), not what an actuator fault
        delivers: a stuck heater does not show in the setpoint registers."""
        self._require_connected()
        inputs = self._commanded
        return {name: getattr(inputs, name) for name in OUTPUT_NAMES}

    async def write(self, commands: Mapping[str, float]) -> None:
        self.write_now(commands)

    def write_now(self, commands: Mapping[str, float]) -> None:
        """`write()` for synchronous callers (the served device's protocol handlers)."""
        if not self._connected:
            self._require_connected()
        faults = self.faults
        if faults is not None:
            faults.check_comm(self._now())
            self.actuate(commands)
            return
        validate_outputs(commands)  # the fast path: actuate() inlined, without faults
        self._advance(self._now())  # the old inputs hold up to now
        self._commanded = inputs = apply_outputs(self._commanded, commands, self.params)
        self._model.set_inputs(inputs)

    def actuate(self, commands: Mapping[str, float]) -> None:
        """Apply commands on the device side, not over the link (comm faults do not apply):
        the served device's own watchdog uses this for its safe state."""
        if not self._connected:
            self._require_connected()
        validate_outputs(commands)
        now = self._now()
        self._advance(now)  # the old inputs hold up to now
        m = self._model
        commanded = self._commanded = apply_outputs(self._commanded, commands, self.params)
        faults = self.faults
        m.set_inputs(commanded if faults is None else faults.physical(commanded, now))

    async def heartbeat(self) -> None:
        """Recorded only: in-process there is no link to lose, so no watchdog."""
        self._require_connected()
        now = self._now()
        if self.faults is not None:
            self.faults.check_comm(now)
        self.last_heartbeat_s = now

    async def diagnostics(self) -> dict[str, float]:
        """Ground truth: the chamber's state, growth factors and the sensors' drawn errors."""
        self._require_connected()
        self._advance(self._now())
        m = self._model
        out = m.snapshot()
        out.update({f"growth_factor_{k}": v for k, v in m.growth_factors().items()})
        out.update(self._sensors.errors())
        out.update(self.faults.flags(m.t_s) if self.faults is not None
                   else {f"fault_{name}_active": 0.0 for name in FAULTS})
        return out
