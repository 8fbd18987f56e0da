"""One reactor's probe standardisation at run time: the pure Standardiser
(controller/control/standardisation.py) on the tick, and what it says on record.

Every reference compared is a `standardisation` event (the estimate, its uncertainty, the
drift); every re-standardisation is an event and an audit row made by the system (operator
`system`, action `standardise`), so a reviewer sees why the pH the loop held moved; a failing
probe raises (and, once it passes again, clears) the outside alarm `<channel>_probe_failing`.
The applied correction and the estimate ride along in telemetry as `<channel>_correction` and
`<channel>_offset_est` readings.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from controller.config.standardisation import ProbeStandardisationConfig
from controller.control.standardisation import ReferenceResult, Standardiser, alarm_name
from controller.operator import audit
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from drivers.contract.reading import Quality, Reading

log = structlog.get_logger(__name__)


class ProbeStandards:
    def __init__(self, configs: dict[str, ProbeStandardisationConfig], journal: ReactorJournal,
                 outside: OutsideAlarms, wall_time: Callable[[], float],
                 on_change: Callable[[], None]) -> None:
        """`on_change` is called when the corrections changed (worth a checkpoint)."""
        self.standardiser = Standardiser(configs)
        self._journal = journal
        self._outside = outside
        self._wall_time = wall_time
        self._on_change = on_change
        self.restandardisations = dict.fromkeys(self.standardiser.probes, 0)
        outside.names.update(self.standardiser.alarm_names)
        self.telemetry: dict[str, Reading] = {}
        """`<channel>_correction` and `<channel>_offset_est` readings, for telemetry."""
        for name in self.standardiser.probes:
            self._publish(name, 0.0)

    @property
    def alarm_names(self) -> tuple[str, ...]:
        return self.standardiser.alarm_names

    def apply(self, readings: dict[str, Reading], now: float) -> None:
        """Learn from the judged raw readings, correct them in place, record what changed."""
        for result in self.standardiser.apply(readings, now):
            self._record(result, now)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per probe, for the run summary: the correction at the end, the estimate, how often
        it was re-standardised, whether it is failing."""
        out = {}
        for name, standard in self.standardiser.probes.items():
            out[name] = {
                "reference": standard.config.reference, "correction": standard.correction,
                "offset_est": standard.b, "offset_sd": standard.offset_sd,
                "drift_per_d": standard.r, "references": standard.references,
                "restandardisations": self.restandardisations[name],
                "failing": standard.failing}
        return out

    def snapshot(self) -> dict[str, Any]:
        """The corrections and estimators (a checkpoint's part; the probes' minute history is
        not kept: a reference drawn before a restart is not compared)."""
        return {"probes": {name: standard.snapshot()
                           for name, standard in self.standardiser.probes.items()},
                "restandardisations": dict(self.restandardisations)}

    def restore(self, state: Mapping[str, Any]) -> None:
        for name, probe_state in state["probes"].items():
            standard = self.standardiser.probes.get(name)
            if standard is not None:  # a channel switched off since is left off
                standard.restore(probe_state)
                self._publish(name, standard.estimate_at(standard.t_s or 0.0))
        for name, count in state["restandardisations"].items():
            if name in self.restandardisations:
                self.restandardisations[name] = int(count)

    def _record(self, r: ReferenceResult, now: float) -> None:
        standard = self.standardiser.probes[r.probe]
        unit = standard.unit
        data = {"probe": r.probe, "reference": standard.config.reference,
                "drawn_t_s": r.t_s, "reference_value": r.reference,
                "probe_value": r.probe_value, "innovation": r.innovation,
                "offset_est": r.offset, "offset_sd": r.offset_sd,
                "drift_per_d": r.drift_per_d, "drift_sd_per_d": r.drift_sd_per_d,
                "step": r.step, "correction": r.correction, "failing": r.failing,
                "reasons": list(r.reasons)}
        self._journal.event(now, "standardisation",
                            f"{r.probe}: reference {r.reference:.4g} {unit} against the probe's "
                            f"{r.probe_value:.4g}; offset estimated {r.offset:+.4g} +- "
                            f"{r.offset_sd:.2g} {unit}", data)
        self._publish(r.probe, r.offset)
        if r.restandardised:
            self.restandardisations[r.probe] += 1
            reason = (f"estimated offset {r.offset:+.4g} {unit} differs from the applied "
                      f"correction {r.old_correction:+.4g} by more than "
                      f"{standard.config.restandardise_above:g}")
            log.info("probe re-standardised", probe=r.probe, t_s=now,
                     old=r.old_correction, new=r.correction)
            self._journal.event(now, "standardisation",
                                f"{r.probe} re-standardised: correction {r.old_correction:+.4g} "
                                f"-> {r.correction:+.4g} {unit} ({reason})",
                                {**data, "restandardised": True,
                                 "old_correction": r.old_correction})
            self._journal.audit(audit.by_system(
                self._journal.reactor_id, now, self._wall_time(), "standardise",
                {"channel": r.probe, "reference": standard.config.reference,
                 "drawn_t_s": r.t_s}, {"correction": r.old_correction},
                {"correction": r.correction}, reason))
            self._on_change()
        name = alarm_name(r.probe)
        if r.failing != r.was_failing:
            text = "; ".join(r.reasons) if r.failing else "passes its reference check again"
            self._outside.set(now, name, active=r.failing,
                              priority=standard.config.priority,
                              message=f"{name}: {r.probe} probe {text}",
                              data={"correction": r.correction, "drift_per_d": r.drift_per_d})

    def _publish(self, probe: str, offset: float) -> None:
        standard = self.standardiser.probes[probe]
        unit, t = standard.unit, standard.t_s or 0.0
        self.telemetry[f"{probe}_correction"] = Reading(standard.correction, unit, t,
                                                        Quality.GOOD)
        self.telemetry[f"{probe}_offset_est"] = Reading(offset, unit, t, Quality.GOOD)
