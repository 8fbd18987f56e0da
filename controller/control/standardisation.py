"""Probe standardisation: a continuous probe checked against an offline reference of the same
quantity (the blood-gas analyser's pH and pO2), its offset estimated over several references,
and a correction applied to its readings before loops, alarms and interlocks see them.

Real plants check their pH and DO probes against a blood-gas sample (daily or so) and
re-standardise the probe when the two differ by more than a set amount. A single blood-gas pH
is itself good to only ~+-0.02, so trusting the last reference alone would move the probe by
the reference's own error every day. Instead each probe's offset (probe - reference, in the
probe's unit) is estimated by a two-state Kalman filter, state x = [b, r]: the offset b at the
last reference's draw time and its drift rate r (probe unit per day). Between references,
dt days apart:

    predict   b <- b + r dt,   P <- F P F' + q [[dt^3/3, dt^2/2], [dt^2/2, dt]],
              F = [[1, dt], [0, 1]]
    measure   z = probe's one-minute mean at the draw time - reference x reference_to_probe,
              R = reference_sd^2 + (reference_cv x reference)^2
    update    S = P00 + R,  K = [P00, P10] / S,  x <- x + K (z - b),  P <- (I - K [1 0]) P

with q = drift_walk_sd_per_d^2 (the drift rate may wander: a white-noise-acceleration model)
and the prior b ~ N(0, initial_offset_sd^2), r ~ N(0, initial_drift_sd_per_d^2). With the
drift in the state the estimate follows a steadily drifting probe without lagging, and with
several references it is better than any one of them.

Re-standardisation: after each reference, the estimated offset now (b + r x the time since the
draw) replaces the applied correction if the two differ by more than `restandardise_above`.
The corrected reading is the probe's value minus the correction.

A probe is failing (alarm `<channel>_probe_failing`) while any of these holds:
- the applied correction exceeds `correction_max`;
- the drift estimate is beyond `drift_max_per_d` by more than three of its standard deviations;
- a step: the reference's offset is further from the prediction than `drift_max_per_d` x dt
  plus `step_sigmas` standard deviations of the prediction (sqrt S). The filter, which would
  otherwise take many references to believe a jump, is then re-centred on the new offset
  (b = z, P00 = R) and its drift's variance widened by (innovation / dt)^2, so the next
  reference teaches it the new rate. This is what catches a fast drift at the first reference
  after it starts (a DO probe drifting 0.5 % air/h is 12 % air off a day later).

Pure logic: given readings and times, no I/O and no clock (the runtime records what it says).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.standardisation import ProbeStandardisationConfig
from controller.control.quality import SAMPLED_STALE_AFTER_S, ProbeHistory
from drivers.contract.datasheet import channel
from drivers.contract.reading import Quality, Reading

S_PER_D = 86400.0
DRIFT_SIGMAS = 3.0
"""The drift estimate must be beyond its limit by this many of its standard deviations: two
references a day apart, each +-0.01 pH, say nothing sure about a rate of 0.015 pH a day."""
_GOOD = Quality.GOOD


def alarm_name(probe: str) -> str:
    """The outside alarm raised while the probe is failing."""
    return f"{probe}_probe_failing"


@dataclass(frozen=True, slots=True)
class ReferenceResult:
    """What one reference said about one probe: the filter's view after it, and what changed."""

    probe: str
    t_s: float
    """When the reference's sample was drawn."""
    reference: float
    """The reference in the probe's unit."""
    probe_value: float
    """The probe's one-minute mean at the draw time (uncorrected)."""
    innovation: float
    """The measured offset minus the predicted one."""
    offset: float
    """The estimated offset now (probe unit)."""
    offset_sd: float
    drift_per_d: float
    drift_sd_per_d: float
    step: bool
    old_correction: float
    correction: float
    """The correction applied from now on (== old_correction when not re-standardised)."""
    failing: bool
    reasons: tuple[str, ...]
    """Why the probe is failing (empty when it is not)."""
    was_failing: bool
    """The verdict before this reference: its alarm changes when the two differ."""

    @property
    def restandardised(self) -> bool:
        return self.correction != self.old_correction


class ProbeStandard:
    """One probe's offset estimate, its applied correction and its failing verdict."""

    def __init__(self, probe: str, config: ProbeStandardisationConfig) -> None:
        self.probe = probe
        self.config = config
        self.unit = channel(probe).unit
        self.history = ProbeHistory(SAMPLED_STALE_AFTER_S)
        self.correction = 0.0
        self.failing = False
        self.b = 0.0
        self.r = 0.0
        self.p = [[config.initial_offset_sd ** 2, 0.0], [0.0, config.initial_drift_sd_per_d ** 2]]
        self.references = 0
        """How many references have been compared."""
        self.t_s: float | None = None
        """The draw time of the last reference used (None before the first)."""
        self._reference_t = math.nan

    @property
    def offset_sd(self) -> float:
        return math.sqrt(self.p[0][0])

    def estimate_at(self, t_s: float) -> float:
        """The estimated offset at `t_s` (the drift extrapolated from the last reference)."""
        if self.t_s is None:
            return self.b
        return self.b + self.r * (t_s - self.t_s) / S_PER_D

    def observe(self, probe: Reading | None, reference: Reading | None,
                now_s: float) -> ReferenceResult | None:
        """Record the raw probe reading; use a new GOOD reference if there is one."""
        if probe is not None and probe.quality is _GOOD:
            self.history.record(probe.value, probe.timestamp_s)
        if reference is None or reference.timestamp_s == self._reference_t:
            return None
        return self.consider(reference, now_s)

    def consider(self, reference: Reading, now_s: float) -> ReferenceResult | None:
        """A reference result not seen before: compared if GOOD, newer than the last one used,
        and the probe has a good reading from its draw time."""
        if reference.quality is not _GOOD:
            return None  # a bad result is not taken as seen: a good one may follow it
        self._reference_t = drawn = reference.timestamp_s
        if self.t_s is not None and drawn <= self.t_s:
            return None  # an older sample than one already used
        probe_value = self.history.at(drawn)
        if probe_value is None:
            return None  # no good probe reading at that time: nothing to compare with
        return self.update(probe_value, reference.value * self.config.reference_to_probe,
                           drawn, now_s)

    def update(self, probe_value: float, reference: float, drawn_s: float,
               now_s: float) -> ReferenceResult:
        """One reference (already in the probe's unit) against the probe's value then."""
        cfg = self.config
        z = probe_value - reference
        r_var = cfg.reference_sd ** 2 + (cfg.reference_cv * reference) ** 2
        dt = 0.0 if self.t_s is None else (drawn_s - self.t_s) / S_PER_D
        b, r, p = self._predicted(dt)
        s = p[0][0] + r_var
        innovation = z - b
        step = (self.t_s is not None
                and abs(innovation) > cfg.drift_max_per_d * dt + cfg.step_sigmas * math.sqrt(s))
        if step:
            self.b, self.r = z, r
            self.p = [[r_var, 0.0], [0.0, p[1][1] + (innovation / dt) ** 2]]
        else:
            k0, k1 = p[0][0] / s, p[1][0] / s
            self.b, self.r = b + k0 * innovation, r + k1 * innovation
            self.p = [[(1.0 - k0) * p[0][0], (1.0 - k0) * p[0][1]],
                      [p[1][0] - k1 * p[0][0], p[1][1] - k1 * p[0][1]]]
        self.t_s = drawn_s
        self.references += 1
        offset = self.estimate_at(now_s)
        old = self.correction
        if abs(offset - old) > cfg.restandardise_above:
            self.correction = offset
        drift_sd = math.sqrt(max(self.p[1][1], 0.0))
        reasons = []
        if abs(self.correction) > cfg.correction_max:
            reasons.append(f"correction {self.correction:+.4g} {self.unit} beyond "
                           f"+-{cfg.correction_max:g}")
        if abs(self.r) - DRIFT_SIGMAS * drift_sd > cfg.drift_max_per_d:
            reasons.append(f"drifting {self.r:+.4g} +- {drift_sd:.2g} {self.unit}/d, beyond "
                           f"+-{cfg.drift_max_per_d:g}")
        if step:
            reasons.append(f"offset moved {innovation:+.4g} {self.unit} in {dt * 24:.3g} h, "
                           f"faster than {cfg.drift_max_per_d:g} {self.unit}/d")
        was_failing, self.failing = self.failing, bool(reasons)
        return ReferenceResult(
            probe=self.probe, t_s=drawn_s, reference=reference, probe_value=probe_value,
            innovation=innovation, offset=offset, offset_sd=self.offset_sd, drift_per_d=self.r,
            drift_sd_per_d=drift_sd, step=step, old_correction=old,
            correction=self.correction, failing=self.failing, reasons=tuple(reasons),
            was_failing=was_failing)

    def _predicted(self, dt: float) -> tuple[float, float, list[list[float]]]:
        (p00, p01), (p10, p11) = self.p
        q = self.config.drift_walk_sd_per_d ** 2
        # F P F' + Q, written out
        n00 = p00 + dt * (p10 + p01) + dt * dt * p11 + q * dt ** 3 / 3.0
        n01 = p01 + dt * p11 + q * dt * dt / 2.0
        n11 = p11 + q * dt
        return self.b + self.r * dt, self.r, [[n00, n01], [n01, n11]]

    def snapshot(self) -> dict[str, object]:
        """What a restarted controller needs to go on correcting (a checkpoint's part)."""
        return {"correction": self.correction, "failing": self.failing, "b": self.b,
                "r": self.r, "p": self.p, "t_s": self.t_s, "references": self.references,
                "reference_t": None if math.isnan(self._reference_t) else self._reference_t}

    def restore(self, state: Mapping[str, object]) -> None:
        self.correction = float(state["correction"])  # type: ignore[arg-type]
        self.failing = bool(state["failing"])
        self.b, self.r = float(state["b"]), float(state["r"])  # type: ignore[arg-type]
        self.p = [list(map(float, row)) for row in state["p"]]  # type: ignore[attr-defined]
        self.t_s = None if state["t_s"] is None else float(state["t_s"])  # type: ignore[arg-type]
        self.references = int(state["references"])  # type: ignore[call-overload]
        reference_t = state["reference_t"]
        self._reference_t = math.nan if reference_t is None else float(reference_t)  # type: ignore[arg-type]


class Standardiser:
    """All of a reactor's standardised probes: observe the raw readings, correct them."""

    def __init__(self, configs: Mapping[str, ProbeStandardisationConfig]) -> None:
        self.probes = {name: ProbeStandard(name, cfg)
                       for name, cfg in configs.items() if cfg.enabled}
        self._pairs = tuple((p.probe, p.config.reference, p) for p in self.probes.values())

    @property
    def alarm_names(self) -> tuple[str, ...]:
        return tuple(alarm_name(name) for name in self.probes)

    def apply(self, readings: dict[str, Reading],
              now_s: float) -> list[ReferenceResult]:
        """Learn from the raw readings, then correct each probe's reading in place; what each
        new reference said. Runs every tick: the common path (no new reference) is inlined."""
        results: list[ReferenceResult] = []
        get = readings.get
        for probe, reference_name, standard in self._pairs:
            raw = get(probe)
            if raw is not None and raw.quality is _GOOD:
                standard.history.record(raw.value, raw.timestamp_s)
            reference = get(reference_name)
            if reference is not None and reference.timestamp_s != standard._reference_t:
                result = standard.consider(reference, now_s)
                if result is not None:
                    results.append(result)
            correction = standard.correction
            if raw is not None and correction != 0.0:
                readings[probe] = Reading(raw.value - correction, raw.unit, raw.timestamp_s,
                                          raw.quality)
        return results
