"""The emulated chamber itself: model, sensors, at-line sampling and faults, integrated lazily.

Nothing runs between calls. Each call integrates the chamber from the last call to `now()`, so
the chamber works unchanged on a virtual clock (14 days in seconds) or a wall clock, and costs
nothing while nobody asks. Every random draw derives from the run seed, so the same seed and the
same sequence of calls give the same run.

Synchronous and transport-free: the in-process `sim://` driver wraps it in the async `Driver`
interface, and the served device (Modbus, serial) calls it from its request handlers. Calls
that come over a link (`read`, `write`, `check_link`) meet the injected comm faults; `actuate`
is the device acting on itself (its watchdog's safe state), which a comm fault cannot stop.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from drivers.contract.datasheet import OUTPUTS
from drivers.contract.driver import validate_outputs
from drivers.contract.reading import Reading
from sim_hardware.chamber.options import ChamberOptions, parse_options
from sim_hardware.faults.catalogue import FAULTS
from sim_hardware.faults.injection import FaultSet
from sim_hardware.model.actuators import ActuatorInputs, apply_outputs
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import ModelParameters
from sim_hardware.model.sensors import SensorBank

OUTPUT_NAMES = tuple(c.name for c in OUTPUTS)


class Chamber:
    """One emulated culture chamber on the caller's clock `now` (seconds).

    `options` is the `[reactor.chamber]` table (a mapping, checked here) or already checked
    `ChamberOptions`. The culture is seeded at `start()`, at the clock's time then.
    """

    _model: ChamberModel
    _sensors: SensorBank
    _requested: ActuatorInputs
    """What the controller asked for, after the hardware's limits (= the model's inputs unless
    an actuator fault is active)."""

    def __init__(self, options: Any, *, seed: int, now: Callable[[], float]) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        self._now = now
        self.seed = seed
        # A third child for the faults: the first two (and so a clean run) are unchanged.
        donor_seed, self._sensor_seed, fault_seed = np.random.SeedSequence(seed).spawn(3)
        checked = options if isinstance(options, ChamberOptions) else parse_options(options)
        params = ModelParameters.from_checked(checked.parameters)
        if checked.donor_variability:
            params = params.with_donor_variability(np.random.default_rng(donor_seed))
        self.params: ModelParameters = params
        self.microgravity: bool = checked.microgravity
        self.initial = checked.initial_conditions()
        specs = checked.faults
        self.faults: FaultSet | None = FaultSet(specs, fault_seed, params) if specs else None
        """None without faults: the fast path tests only this."""
        self._fault_times = self.faults.transition_times if self.faults else ()
        self._fault_next_s = self._fault_times[0] if self._fault_times else math.inf
        self._fault_index = 0
        self.started = False
        """The culture exists (seeded at the first `start`)."""

    def start(self) -> None:
        """Seed the culture at the clock's time; later calls find it where it was."""
        if self.started:
            return
        t0 = float(self._now())
        self._model = m = ChamberModel(self.params, microgravity=self.microgravity,
                                       initial=self.initial, t0_s=t0)
        self._sensors = SensorBank(
            self.params, self._sensor_seed,
            {"temperature_c": m.temperature_c, "do_pct_air": m.do_pct_air, "ph": m.ph,
             "total_cells_per_ml": m.total_cells_per_ml, "volume_ml": m.volume_ml},
            t0)
        self._requested = m.inputs
        self.started = True

    @property
    def model(self) -> ChamberModel:
        """The culture itself (ground truth), for tests and reports; after `start()`."""
        return self._model

    # ------------------------------------------------------------------------------- link side
    def check_link(self) -> None:
        """Raise the error of an active comm fault: the start of every call over the link."""
        if self.faults is not None:
            self.faults.check_comm(self._now())

    def read(self) -> dict[str, Reading]:
        """Every sensor's reading now (comm faults apply)."""
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

    def write(self, outputs: Mapping[str, float]) -> None:
        """Apply `outputs` from now on, as the controller requests them (comm faults apply).

        Validated against the datasheet (ChannelError/OutOfRangeError); the hardware's limits
        then apply (`outputs()` shows what it holds).
        """
        faults = self.faults
        if faults is not None:
            faults.check_comm(self._now())
            self.actuate(outputs)
            return
        validate_outputs(outputs)  # the fast path: actuate() inlined, without faults
        self._advance(self._now())  # the old inputs hold up to now
        self._requested = inputs = apply_outputs(self._requested, outputs, self.params)
        self._model.set_inputs(inputs)

    # ----------------------------------------------------------------------------- device side
    def actuate(self, outputs: Mapping[str, float]) -> None:
        """Apply `outputs` on the device itself, not over the link (comm faults do not apply):
        the served device's watchdog uses this for its safe state."""
        validate_outputs(outputs)
        now = self._now()
        self._advance(now)  # the old inputs hold up to now
        requested = self._requested = apply_outputs(self._requested, outputs, self.params)
        faults = self.faults
        self._model.set_inputs(requested if faults is None else faults.physical(requested, now))

    def outputs(self) -> dict[str, float]:
        """What was requested (after the hardware's limits), not what an actuator fault
        delivers: a stuck heater does not show in the setpoint registers."""
        requested = self._requested
        return {name: getattr(requested, name) for name in OUTPUT_NAMES}

    def snapshot(self) -> dict[str, float]:
        """The culture's true state as of the last call (integrating here would change the
        steps a run takes, so looking would change what is seen)."""
        return self._model.snapshot()

    def diagnostics(self) -> dict[str, float]:
        """Ground truth: the chamber's state, growth factors and the sensors' drawn errors."""
        self._advance(self._now())
        m = self._model
        out = m.snapshot()
        out.update({f"growth_factor_{k}": v for k, v in m.growth_factors().items()})
        out.update(self._sensors.errors())
        out.update(self.faults.flags(m.t_s) if self.faults is not None
                   else {f"fault_{name}_active": 0.0 for name in FAULTS})
        return out

    # ------------------------------------------------------------------------------ integration
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
            for contamination in faults.starts_at(t):
                contamination.inoculate(model)
            model.set_inputs(faults.physical(self._requested, t))
            self._fault_index += 1
            self._fault_next_s = (times[self._fault_index] if self._fault_index < len(times)
                                  else math.inf)
