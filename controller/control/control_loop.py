"""A control loop: a PID bound to a sensor and an actuator, with the rules for trusting its input
and the running statistics of how well it holds its setpoint."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from controller.config import ConfigError, LoopConfig, default_safe_state
from controller.control.pid import Pid, PidTuning
from drivers.contract.reading import Quality, Reading

_GOOD = Quality.GOOD
"""Read once: an enum member read through its class costs a metaclass lookup every tick."""


@dataclass(slots=True)
class LoopStats:
    """How well the loop held its setpoint, counted once the start-up transient is over."""

    band: float
    after_s: float
    ticks: int = 0
    in_band: int = 0
    iae: float = 0.0
    max_abs_error: float = 0.0
    held: int = 0

    def add(self, error: float, t_s: float, dt_s: float) -> None:
        if t_s < self.after_s:
            return
        magnitude = abs(error)
        self.ticks += 1
        if magnitude <= self.band:
            self.in_band += 1
        self.iae += magnitude * dt_s
        if magnitude > self.max_abs_error:
            self.max_abs_error = magnitude

    def add_blind(self, t_s: float) -> None:
        """A tick without a trustworthy measurement counts as off target."""
        if t_s >= self.after_s:
            self.ticks += 1
            self.held += 1

    @property
    def within_band_fraction(self) -> float | None:
        """None until a tick has been counted (a run shorter than the start-up window)."""
        return self.in_band / self.ticks if self.ticks else None


_STATS_FIELDS = tuple(f.name for f in fields(LoopStats))
"""(dataclasses.asdict deep-copies: 5x slower, and this runs at every checkpoint.)"""


class ControlLoop:
    """One PID loop and its input trust rules.

    On bad input (not GOOD, or older than `stale_after_s`) the loop holds its last output with
    the integral frozen (`on_bad_input = "hold"`), or, with `"safe"`, goes to `safe_output`
    once the input has been bad for `safe_after_s`: a probe that is gone for good should not
    leave, say, the heater at 80 %. Either way it acts again only after `resume_after_good`
    good samples, starting from the output it was applying (the PID tracks it), so resuming
    is bumpless. Higher safe states override both (docs/architecture.md, "Precedence").
    """

    def __init__(self, name: str, config: LoopConfig, *, stats_after_s: float,
                 safe_state: Mapping[str, float] | None = None) -> None:
        self.name = name
        self.pv = config.pv
        self.mv = config.mv
        self.stale_after_s = config.stale_after_s
        self.pid = Pid(
            PidTuning(config.kp, config.ti_s, config.td_s, config.d_filter_s),
            config.setpoint,
            config.output_min,
            config.output_max,
            output_raises_pv=config.output_raises_pv,
            rate_limit_per_s=config.rate_limit_per_s,
            initial_output=config.initial_output,
        )
        if config.mode == "manual":
            self.pid.set_manual(
                config.manual_output if config.manual_output is not None else self.pid.output
            )
        self.stats = LoopStats(config.band, stats_after_s)
        self.resume_after_good = config.resume_after_good
        self._good_streak = 0
        self._last_t: float | None = None
        self._configured_start = config.initial_output is not None
        self.safe_output = self._resolve_safe_output(config, safe_state)
        """None when the loop holds on bad input."""
        self.safe_after_s = config.safe_after_s
        self.ramp: tuple[float, float] | None = None
        """(target, rate per second): the setpoint moving toward a target (a recipe phase's
        `ramp_per_h`), so the process can follow it and no deviation alarm stands meanwhile."""
        self._ramp_sp = 0.0
        self._blind_since: float | None = None
        """When the input went bad, until the loop acts again (a flicker of good samples too
        few to resume does not restart the count)."""

    def _resolve_safe_output(self, config: LoopConfig,
                             safe_state: Mapping[str, float] | None) -> float | None:
        if config.on_bad_input == "hold":
            return None
        if config.safe_output is not None:
            return config.safe_output  # checked against the loop's range by LoopConfig
        state = safe_state if safe_state is not None else default_safe_state()
        value = state[self.mv]
        if not self.pid.out_min <= value <= self.pid.out_max:
            raise ConfigError(
                f"loops.{self.name}.safe_output: on_bad_input = 'safe' defaults to "
                f"[reactor.safe_state] {self.mv} = {value}, outside the loop's output range "
                f"[{self.pid.out_min}, {self.pid.out_max}]: set safe_output in that range")
        return value

    def take_over(self, device_output: float) -> None:
        """Start from what the actuator is doing now, unless the config says where to start."""
        if not self._configured_start and not self.pid.manual:
            self.pid.track(device_output)

    def resume_after_outage(self, device_output: float, went_safe: bool) -> None:
        """After `restore`, from what the device says of the outage: regulate from the process
        if it went to its safe state (`restart_from_process`), else hold what it holds
        (`resume_at`). The one rule for a device there at the restart and one that answers
        later (docs/recovery.md)."""
        if went_safe:
            self.restart_from_process(device_output)
        else:
            self.resume_at(device_output)

    def resume_at(self, device_output: float) -> None:
        """After `restore`, when the device kept its outputs through the outage: hold what it
        holds now, which the crashed controller wrote after its last checkpoint (up to a
        checkpoint interval newer), rather than the checkpointed output: a restart must not
        move the actuator. A loop in manual keeps the operator's output."""
        if not self.pid.manual:
            self.pid.track(device_output)

    def restart_from_process(self, device_output: float) -> None:
        """After `restore`, when the device went to its safe state while nobody controlled it:
        forget the checkpointed output and integral and regulate from the process as it is now,
        the integral starting from what the actuator does (`device_output`) and the PID's
        proportional action on the first trusted measurement applied at once. A loop in manual
        keeps the operator's output."""
        if not self.pid.manual:
            self.pid.restart(device_output)

    def follow(self, applied: float) -> None:
        """Something above the loop (an interlock) overrode its output: adopt what is applied,
        so the integral does not wind up against the override and the loop carries on from
        there once it lifts. A loop in manual keeps the operator's output for that moment."""
        if applied != self.pid.output and not self.pid.manual:
            self.pid.track(applied)

    def snapshot(self) -> dict[str, Any]:
        """What a restart needs to carry on bumplessly: setpoint and mode (an operator's changes
        included), the output the loop was applying, and the running statistics."""
        stats = self.stats
        return {"setpoint": self.pid.setpoint, "mode": self.mode, "output": self.pid.output,
                "stats": {name: getattr(stats, name) for name in _STATS_FIELDS},
                "ramp": None if self.ramp is None else list(self.ramp)}

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `snapshot()`: the loop applies the checkpointed output until its input
        has been good for `resume_after_good` samples, then the integral takes over from there
        (the PID re-bases it on the first sample), so the actuator does not jump."""
        self.pid.setpoint = float(state["setpoint"])
        self.pid.manual = state["mode"] == "manual"
        self.pid.track(float(state["output"]))
        self.pid.hold()
        self._good_streak = 0
        self.stats = LoopStats(**state["stats"])
        ramp = state.get("ramp")  # absent in a checkpoint written before ramps existed
        if ramp is not None:
            self.ramp_to(float(ramp[0]), float(ramp[1]))

    @property
    def setpoint(self) -> float:
        return self.pid.setpoint

    @property
    def mode(self) -> str:
        return "manual" if self.pid.manual else "auto"

    def ramp_to(self, target: float, rate_per_s: float) -> None:
        """Move the setpoint to `target` at `rate_per_s`, a step each tick. A setpoint set
        by anyone else meanwhile (an operator's command) ends the ramp: theirs stands."""
        self.ramp = (target, rate_per_s)
        self._ramp_sp = self.pid.setpoint

    def _move_setpoint(self, dt_s: float) -> None:
        pid = self.pid
        target, rate = self.ramp  # type: ignore[misc]
        if pid.setpoint != self._ramp_sp:  # set by someone else since the last step
            self.ramp = None
            return
        step = rate * dt_s
        sp = pid.setpoint
        sp = min(sp + step, target) if target > sp else max(sp - step, target)
        pid.setpoint = self._ramp_sp = sp
        if sp == target:
            self.ramp = None

    def step(self, readings: dict[str, Reading], now_s: float) -> float:
        """The output for this tick. A bad or stale input holds the output and freezes the loop
        (or, configured so, takes it to the safe output); it acts again only after
        `resume_after_good` good samples in a row, bumplessly."""
        reading = readings.get(self.pv)
        last_t = self._last_t
        dt_s = now_s - last_t if last_t is not None else 0.0
        self._last_t = now_s
        if self.ramp is not None:
            self._move_setpoint(dt_s)
        pid = self.pid
        if (
            reading is None
            or reading.quality is not _GOOD
            or now_s - reading.timestamp_s > self.stale_after_s
        ):
            pid.hold()
            self._good_streak = 0
            self.stats.add_blind(now_s)
            if self._blind_since is None:
                self._blind_since = now_s
            if (self.safe_output is not None and not pid.manual
                    and now_s - self._blind_since >= self.safe_after_s):
                # Tracked, not just returned: the PID resumes from what the actuator does.
                pid.track(self.safe_output)
            return pid.output
        self._good_streak += 1
        value = reading.value
        if self._good_streak < self.resume_after_good:
            # Trust comes back slowly: a sensor that just recovered may relapse.
            self.stats.add(pid.setpoint - value, now_s, dt_s)
            return pid.output
        self._blind_since = None
        output = pid.update(value, reading.timestamp_s)
        self.stats.add(pid.setpoint - value, now_s, dt_s)
        return output
