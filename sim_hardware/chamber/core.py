"""The emulated chamber itself: model, sensors, at-line sampling and faults, integrated lazily.

Nothing runs between calls. Each call integrates the chamber from the last call to `now()`, so
the chamber works unchanged on a virtual clock (14 days in seconds) or a wall clock, and costs
nothing while nobody asks. Every random draw derives from the run seed, so the same seed and the
same sequence of calls give the same run.

Synchronous and transport-free: the in-process `sim://` driver wraps it in the async `Driver`
interface, and the served device (Modbus, serial) calls it from its request handlers. Calls
that come over a link (`read`, `write`, `check_link`) meet the injected comm faults; `actuate`
is the device acting on itself (its watchdog's safe state), which a comm fault cannot stop.

Besides the culture it emulates what the device knows of its own hardware (issue 10): a heater
power relay in series with the heater drive, a device-local over-temperature cut-out on the
chamber's true temperature that opens the relay and latches until `reset_cutout`, pump
totalisers integrated from the flow the pumps really delivered, gas mass-flow readbacks and
supply pressures, and a boot id with the uptime since that boot; and (issue 12) the at-line
samples, each taking its volume from the culture, totalled in `sampled_ml`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from drivers.contract.datasheet import OUTPUTS, PUMPS, SAFE_STATE, channel
from drivers.contract.driver import validate_outputs
from drivers.contract.errors import DeviceError
from drivers.contract.reading import Quality, Reading
from sim_hardware.chamber.options import ChamberOptions, parse_options
from sim_hardware.faults.catalogue import FAULTS
from sim_hardware.faults.injection import FaultSet
from sim_hardware.model.actuators import ActuatorInputs, apply_outputs
from sim_hardware.model.culture import ChamberModel
from sim_hardware.model.parameters import ModelParameters
from sim_hardware.model.sensors import SensorBank

OUTPUT_NAMES = tuple(c.name for c in OUTPUTS)
_GOOD = Quality.GOOD
# The device's own channels' units, in the order `read` reports them.
(_O2_FLOW_UNIT, _CO2_FLOW_UNIT, _O2_SUPPLY_UNIT, _CO2_SUPPLY_UNIT, _CUTOUT_UNIT, _BOOT_ID_UNIT,
 _UPTIME_UNIT, _SAMPLED_UNIT, _FEED_TOTAL_UNIT, _HARVEST_TOTAL_UNIT, _BASE_TOTAL_UNIT) = (
    channel(name).unit for name in (
        "o2_flow_pct", "co2_flow_pct", "o2_supply_kpa", "co2_supply_kpa", "heater_cutout",
        "device_boot_id", "device_uptime_s", "sampled_ml", "feed_delivered_ml",
        "harvest_delivered_ml", "base_delivered_ml"))


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
    _pumped: ActuatorInputs
    """What the actuators deliver at their own end (what the totalisers count): the model's
    inputs unless a line between a pump and the chamber is disconnected."""

    def __init__(self, options: Any, *, seed: int, now: Callable[[], float],
                 boot_id: int | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        self._now = now
        self.seed = seed
        # A third child for the faults: the first two (and so a clean run) are unchanged.
        # Children are independent of how many are spawned: a clean run is unchanged by more.
        donor_seed, self._sensor_seed, fault_seed, boot_seed = (
            np.random.SeedSequence(seed).spawn(4))
        self._boot_rng = np.random.default_rng(boot_seed)
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
        self.boot_id = boot_id if boot_id is not None else self._new_boot_id()
        """Changes at every (emulated) reboot; a served device takes a random one per process."""
        self.cutout = False
        """The device-local over-temperature cut-out has tripped (latched): the relay is open."""
        self._boot_t = 0.0
        self._totals_ml = dict.fromkeys(PUMPS, 0.0)
        self._totals_t = 0.0
        self.sampled_ml = 0.0
        """Culture drawn by at-line sampling since the device booted (its totaliser)."""

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
        self._requested = self._pumped = m.inputs
        self._boot_t = self._totals_t = t0
        self.started = True
        # The samples due at seeding are drawn before anyone reads: the load cell shows the
        # chamber without them, as `sampled_ml` already counts them.
        self._draw_samples(t0)
        self._sensors.volume.equilibrate(m.volume_ml)

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
        """Every sensor's reading now (comm faults apply).

        Built as one dict display: the at-line results, the probes (in this order: they share
        one noise stream), then the device's own channels, without an intermediate dict or a
        per-channel unit look-up (this runs on every controller tick).
        """
        now = self._now()
        faults = self.faults
        if faults is not None:
            faults.check_comm(now)
        self._advance(now)
        m = self._model
        s = self._sensors
        u = m.inputs
        p = self.params
        o2_kpa, co2_kpa = p.o2_supply_kpa, p.co2_supply_kpa
        if faults is not None:
            if faults.supply_lost("o2_pct", now):
                o2_kpa = 0.0
            if faults.supply_lost("co2_pct", now):
                co2_kpa = 0.0
        dt_h = (now - self._totals_t) / 3600.0
        pumped = self._pumped
        totals = self._totals_ml
        readings = {
            **s.atline.readings,
            "temperature_c": s.temperature.read(m.temperature_c, now),
            "do_pct_air": s.do.read(m.do_mm * m.do_pct_per_mm, now),
            "ph": s.ph.read(m.ph, now),
            "total_cells_per_ml": s.total_cells.read(m.total_cells_per_ml, now),
            "volume_ml": s.volume.read(m.volume_ml, now),
            "o2_flow_pct": Reading(u.o2_pct, _O2_FLOW_UNIT, now, _GOOD),
            "co2_flow_pct": Reading(u.co2_pct, _CO2_FLOW_UNIT, now, _GOOD),
            "o2_supply_kpa": Reading(o2_kpa, _O2_SUPPLY_UNIT, now, _GOOD),
            "co2_supply_kpa": Reading(co2_kpa, _CO2_SUPPLY_UNIT, now, _GOOD),
            "heater_cutout": Reading(1.0 if self.cutout else 0.0, _CUTOUT_UNIT, now, _GOOD),
            "device_boot_id": Reading(float(self.boot_id), _BOOT_ID_UNIT, now, _GOOD),
            "device_uptime_s": Reading(now - self._boot_t, _UPTIME_UNIT, now, _GOOD),
            "sampled_ml": Reading(self.sampled_ml, _SAMPLED_UNIT, now, _GOOD),
            "feed_delivered_ml": Reading(
                totals["feed_ml_per_h"] + pumped.feed_ml_per_h * dt_h, _FEED_TOTAL_UNIT, now,
                _GOOD),
            "harvest_delivered_ml": Reading(
                totals["harvest_ml_per_h"] + pumped.harvest_ml_per_h * dt_h, _HARVEST_TOTAL_UNIT,
                now, _GOOD),
            "base_delivered_ml": Reading(
                totals["base_ml_per_h"] + pumped.base_ml_per_h * dt_h, _BASE_TOTAL_UNIT, now,
                _GOOD),
        }
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
        self._set_physical(inputs)

    # ----------------------------------------------------------------------------- device side
    def actuate(self, outputs: Mapping[str, float]) -> None:
        """Apply `outputs` on the device itself, not over the link (comm faults do not apply):
        the served device's watchdog uses this for its safe state."""
        validate_outputs(outputs)
        now = self._now()
        self._advance(now)  # the old inputs hold up to now
        self._requested = apply_outputs(self._requested, outputs, self.params)
        self._set_physical(self._requested)

    def outputs(self) -> dict[str, float]:
        """What was requested (after the hardware's limits), not what an actuator fault
        delivers: a stuck heater does not show in the setpoint registers."""
        requested = self._requested
        return {name: getattr(requested, name) for name in OUTPUT_NAMES}

    def scan(self) -> None:
        """Integrate to now on the device's side (no comm fault applies): what a device's own
        scan cycle does, so the cut-out trips with no controller asking."""
        if self.started:
            self._advance(self._now())

    def reset_cutout(self) -> bool:
        """Re-arm the cut-out (over the link: comm faults apply). True if it was tripped and is
        re-armed, False if it was not tripped; DeviceError while the chamber is still too hot.
        The relay then follows its command again."""
        self.check_link()
        now = self._now()
        self._advance(now)
        if not self.cutout:
            return False
        temperature_c = self._model.temperature_c
        limit_c = self.params.cutout_reset_below_c
        if temperature_c >= limit_c:
            raise DeviceError(f"cut-out reset refused: chamber at {temperature_c:.2f} C, "
                              f"it re-arms below {limit_c:g} C")
        self.cutout = False
        self._set_physical(self._requested)
        return True

    def reboot(self) -> None:
        """The device restarts now (device side): a new boot id, uptime and totalisers from 0,
        every output at its safe value until written again. The cut-out's latch is hardware: it
        survives. The culture, being physics, goes on."""
        now = self._now()
        self._advance(now)
        self._restart_device(now)

    def _restart_device(self, t_s: float) -> None:
        """`reboot` at the model's time `t_s` (also the `device_reboot` fault's transition)."""
        self.boot_id = self._new_boot_id()
        self._boot_t = self._totals_t = t_s
        self._totals_ml = dict.fromkeys(PUMPS, 0.0)
        self.sampled_ml = 0.0
        self._requested = apply_outputs(self._requested, SAFE_STATE, self.params)
        self._set_physical(self._requested)

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

    # ------------------------------------------------------------------------- device hardware
    def _new_boot_id(self) -> int:
        return int(self._boot_rng.integers(0, 65536))

    def _physical(self, requested: ActuatorInputs, t_s: float) -> ActuatorInputs:
        """What reaches the chamber at `t_s`: actuator faults, then the heater relay (open when
        commanded open or held open by the cut-out, unless its contacts are welded)."""
        faults = self.faults
        u = requested if faults is None else faults.physical(requested, t_s)
        if u.heater_pct > 0.0 and (u.heater_relay < 0.5 or self.cutout) and not (
                faults is not None and faults.relay_welded(t_s)):
            u = replace(u, heater_pct=0.0)
        return u

    def _set_physical(self, requested: ActuatorInputs) -> None:
        """Apply `requested` at the model's time. The totalisers integrate the old pump flows
        up to it only when a flow changes (most writes move the heater or the gas only): a
        reading adds the flow since then."""
        model = self._model
        t_s = model.t_s
        faults = self.faults
        pumped = (requested if faults is None
                  else faults.physical(requested, t_s, at_chamber=False))
        old = self._pumped
        if (pumped.feed_ml_per_h != old.feed_ml_per_h
                or pumped.harvest_ml_per_h != old.harvest_ml_per_h
                or pumped.base_ml_per_h != old.base_ml_per_h):
            self._totalise(t_s)
            self._pumped = pumped
        model.set_inputs(self._physical(requested, t_s))

    def _totalise(self, t_s: float) -> None:
        dt_h = (t_s - self._totals_t) / 3600.0
        if dt_h > 0.0:
            u = self._pumped  # at the pumps: a disconnected line's pump still counts
            totals = self._totals_ml
            for pump in PUMPS:
                totals[pump] += getattr(u, pump) * dt_h
            self._totals_t = t_s

    def _check_cutout(self) -> None:
        """The cut-out acts on the chamber's true temperature, on the device's own: it trips
        at whichever call (or device scan) first finds it at or above `cutout_c`, unless it has
        failed (fault `cutout_failed`)."""
        faults = self.faults
        if faults is not None and faults.cutout_failed(self._model.t_s):
            return
        if not self.cutout and self._model.temperature_c >= self.params.cutout_c:
            self.cutout = True
            self._set_physical(self._requested)

    # ------------------------------------------------------------------------------ integration
    def _advance(self, now: float) -> None:
        """Integrate to `now`, stopping at each at-line sample time to draw the sample."""
        atline = self._sensors.atline
        model = self._model
        if now >= self._fault_next_s:
            self._advance_faults(now)
        while now >= atline.next_draw_s:
            self._draw_samples(atline.next_draw_s)
        model.advance_to(now)
        if model.temperature_c >= self.params.cutout_c:
            self._check_cutout()
        if now >= atline.next_ready_s:
            atline.publish(now)

    def _draw_samples(self, t_s: float) -> None:
        """Integrate to `t_s` and draw the at-line samples due then: their volume leaves the
        chamber (booked in the model's ledger) and the `sampled_ml` totaliser counts it."""
        model = self._model
        model.advance_to(t_s)
        drawn_ml = self._sensors.atline.draw(t_s, model)
        if drawn_ml > 0.0:
            model.take_sample(drawn_ml)
            self.sampled_ml += drawn_ml

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
                self._draw_samples(atline.next_draw_s)
            # A fault due before the chamber started (a served device's clock may start past
            # `at`) acts at the start: the model cannot go back.
            model.advance_to(max(t, model.t_s))
            for contamination in faults.starts_at(t):
                contamination.inoculate(model)
            if faults.reboots_at(t):
                self._restart_device(t)  # the safe outputs, set physical
            else:
                self._set_physical(self._requested)
            self._fault_index += 1
            self._fault_next_s = (times[self._fault_index] if self._fault_index < len(times)
                                  else math.inf)
