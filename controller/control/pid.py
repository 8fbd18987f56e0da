"""A PID controller for process loops, as an engineer would want it on a bioreactor.

- Ideal (ISA) form in output units: u = P + I + D, with P = kp*e, dI = kp/ti*e*dt,
  D = -kp*td*d(pv)/dt. Derivative acts on the measurement (no kick on a setpoint step) through a
  first-order low-pass filter (noise on a pH probe would otherwise shake the CO2 valve).
- The integral is kept in output units, so a tuning change or a manual->auto switch is bumpless:
  the integral is re-based so the output does not jump.
- Anti-windup by tracking: whenever the applied output differs from the unconstrained one
  (limits, rate limit, manual mode), the integral is re-based onto the applied output, so it never
  winds up beyond what the actuator does.
- dt is the measured time between updates, not the nominal period, so a late tick is honest.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PidTuning:
    kp: float
    ti_s: float
    td_s: float = 0.0
    d_filter_s: float = 0.0


class Pid:
    """One loop's arithmetic; pure logic with no I/O and no clock of its own."""

    __slots__ = (
        "tuning", "setpoint", "out_min", "out_max", "rate_limit_per_s", "_sign", "manual",
        "output", "_integral", "_last_pv", "_last_t", "_dpv_filtered", "_last_p", "_last_d",
        "_fresh",
        "_last_error",
    )

    def __init__(
        self,
        tuning: PidTuning,
        setpoint: float,
        out_min: float,
        out_max: float,
        *,
        output_raises_pv: bool = True,
        rate_limit_per_s: float | None = None,
        initial_output: float | None = None,
    ) -> None:
        if out_min >= out_max:
            raise ValueError(f"out_min {out_min} must be below out_max {out_max}")
        if tuning.ti_s <= 0:
            raise ValueError(f"ti_s must be > 0, got {tuning.ti_s}")
        self.tuning = tuning
        self.setpoint = setpoint
        self.out_min = out_min
        self.out_max = out_max
        self.rate_limit_per_s = rate_limit_per_s
        self._sign = 1.0 if output_raises_pv else -1.0
        self.manual = False
        start = out_min if initial_output is None else min(max(initial_output, out_min), out_max)
        self.output = start
        self._integral = start
        self._last_pv: float | None = None
        self._last_t: float | None = None
        self._dpv_filtered = 0.0
        self._last_p = 0.0
        self._last_d = 0.0
        self._last_error = 0.0
        self._fresh = False

    def update(self, pv: float, t_s: float) -> float:
        """Take a good measurement taken at `t_s` and return the new output."""
        last_t = self._last_t
        if last_t is None:
            # First sample (or first after a hold): no derivative history, no integration.
            self._last_pv, self._last_t, self._dpv_filtered = pv, t_s, 0.0
            if self._fresh:
                return self._first_fresh_output(pv)
            self._rebase(pv)
            return self.output
        dt = t_s - last_t
        if dt <= 0.0:
            return self.output
        tuning = self.tuning
        kp = tuning.kp
        error = self._sign * (self.setpoint - pv)
        dpv = (pv - self._last_pv) / dt  # type: ignore[operator]
        if tuning.d_filter_s > 0.0:
            self._dpv_filtered += (dpv - self._dpv_filtered) * (dt / (tuning.d_filter_s + dt))
        else:
            self._dpv_filtered = dpv
        self._last_pv, self._last_t = pv, t_s
        p = kp * error
        d = -self._sign * kp * tuning.td_s * self._dpv_filtered
        self._last_p, self._last_d, self._last_error = p, d, error
        if self.manual:
            self._integral = self.output - p - d
            return self.output
        integral = self._integral + kp * dt / tuning.ti_s * error
        wanted = p + integral + d
        # `_limit` inline (a call per loop per tick): each test is the min/max it replaces,
        # keeping the first argument unless the other compares beyond it, so NaN stays NaN.
        applied = wanted
        bound = self.out_min
        if bound > applied:
            applied = bound
        bound = self.out_max
        if bound < applied:
            applied = bound
        rate = self.rate_limit_per_s
        if rate is not None:
            step = rate * dt
            bound = self.output - step
            if bound > applied:
                applied = bound
            bound = self.output + step
            if bound < applied:
                applied = bound
        self._integral = integral if applied == wanted else applied - p - d
        self.output = applied
        return applied

    def hold(self) -> None:
        """The input is not trustworthy: keep the output, freeze the integral, forget history.

        The next good sample starts afresh (no derivative across the gap, no integral for the
        time the loop was blind), so resuming is bumpless.
        """
        self._last_t = None
        self._last_pv = None

    def track(self, output: float) -> None:
        """Adopt an output set elsewhere (the device's current value, an operator's) bumplessly."""
        self.output = min(max(output, self.out_min), self.out_max)
        self._integral = self.output - self._last_p - self._last_d

    def restart(self, output: float) -> None:
        """Start afresh from the process, not from an output this PID applied before: the
        integral is `output` (what the actuator does now) and, at the next good sample, the
        proportional action on that measurement adds to it at once instead of being absorbed
        into the integral (the bumpless re-base of `hold`). For a controller taking over a
        process that moved while nobody controlled it (docs/recovery.md)."""
        self.output = min(max(output, self.out_min), self.out_max)
        self._integral = self.output
        self._last_p = self._last_d = 0.0
        self.hold()
        self._fresh = True

    def _first_fresh_output(self, pv: float) -> float:
        self._fresh = False
        self._last_error = error = self._sign * (self.setpoint - pv)
        self._last_p = p = self.tuning.kp * error
        self._last_d = 0.0
        if self.manual:
            self._integral = self.output - p
            return self.output
        # A rate limit still holds (no time has passed: the output stays); the integral is kept.
        self.output = self._limit(p + self._integral, 0.0)
        return self.output

    def set_manual(self, output: float) -> None:
        self.manual = True
        self.track(output)

    def set_auto(self) -> None:
        """Bumpless: the integral already tracks the manual output."""
        self.manual = False

    def set_tuning(self, tuning: PidTuning) -> None:
        """Bumpless: re-base the integral so P+I+D is unchanged at this instant."""
        if tuning.ti_s <= 0:
            raise ValueError(f"ti_s must be > 0, got {tuning.ti_s}")
        new_p = tuning.kp * self._last_error
        new_d = -self._sign * tuning.kp * tuning.td_s * self._dpv_filtered
        self._integral += (self._last_p - new_p) + (self._last_d - new_d)
        self._last_p, self._last_d = new_p, new_d
        self.tuning = tuning

    def _rebase(self, pv: float) -> None:
        self._last_error = self._sign * (self.setpoint - pv)
        self._last_p = self.tuning.kp * self._last_error
        self._last_d = 0.0
        self._integral = self.output - self._last_p

    def _limit(self, wanted: float, dt: float) -> float:
        value = min(max(wanted, self.out_min), self.out_max)
        rate = self.rate_limit_per_s
        if rate is not None:
            step = rate * dt
            value = min(max(value, self.output - step), self.output + step)
        return value
