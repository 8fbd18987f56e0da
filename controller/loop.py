"""A control loop: a PID bound to a sensor and an actuator, with the rules for trusting its input
and the running statistics of how well it holds its setpoint."""
from __future__ import annotations

from dataclasses import dataclass

from controller.config import LoopConfig
from controller.pid import Pid, PidTuning
from drivers.reading import Quality, Reading


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


class Loop:
    def __init__(self, name: str, config: LoopConfig, *, stats_after_s: float) -> None:
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

    def take_over(self, device_output: float) -> None:
        """Start from what the actuator is doing now, unless the config says where to start."""
        if not self._configured_start and not self.pid.manual:
            self.pid.track(device_output)

    @property
    def setpoint(self) -> float:
        return self.pid.setpoint

    @property
    def mode(self) -> str:
        return "manual" if self.pid.manual else "auto"

    def step(self, readings: dict[str, Reading], now_s: float) -> float:
        """The output for this tick. A bad or stale input holds the output and freezes the loop;
        it acts again only after `resume_after_good` good samples in a row, bumplessly."""
        reading = readings.get(self.pv)
        dt_s = now_s - self._last_t if self._last_t is not None else 0.0
        self._last_t = now_s
        if (
            reading is None
            or reading.quality is not Quality.GOOD
            or now_s - reading.timestamp_s > self.stale_after_s
        ):
            self.pid.hold()
            self._good_streak = 0
            self.stats.add_blind(now_s)
            return self.pid.output
        self._good_streak += 1
        if self._good_streak < self.resume_after_good:
            # Trust comes back slowly: a sensor that just recovered may relapse.
            self.stats.add(self.pid.setpoint - reading.value, now_s, dt_s)
            return self.pid.output
        output = self.pid.update(reading.value, reading.timestamp_s)
        self.stats.add(self.pid.setpoint - reading.value, now_s, dt_s)
        return output
