"""`[reactor.standardisation.<channel>]`: a continuous probe checked against an offline
reference (the blood-gas analyser) and re-standardised when they part
(controller/control/standardisation.py; docs/alarms.md, "Probe standardisation").

`ph` and `do_pct_air` are standardised by default, with the defaults below; a table for one of
them replaces only the keys it sets, a table for any other input channel must name its
`reference` and `reference_to_probe`, and `enabled = false` switches a channel off.
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from controller.alarms.spec import Priority
from drivers.contract.datasheet import Direction, Kind, channel
from drivers.contract.validation import StrictModel, check_channel

PO2_MMHG_PER_PCT_AIR = 1.494
"""pO2 (mmHg) of water in equilibrium with air, per % air saturation, at 37 C and sea level:
(760 - 47 mmHg water vapour) x 20.95 % O2 = 149.4 mmHg at 100 % air saturation. A blood-gas
pO2 divided by this is the DO probe's % air saturation."""


class ProbeStandardisationConfig(StrictModel):
    """One probe against its reference: how good the reference is, how the probe's offset may
    move (the estimator's priors), when to re-standardise and when the probe is failing."""

    enabled: bool = True
    reference: str = Field(description="the SAMPLED input channel measuring the same quantity")
    reference_to_probe: float = Field(
        gt=0, le=1e6, description="the probe's unit per reference unit (1 for pH; "
        "1 / PO2_MMHG_PER_PCT_AIR for a pO2 in mmHg against % air saturation)")
    reference_sd: float = Field(default=0.0, ge=0, le=1e6, description="the reference's "
                                "absolute error (standard deviation, probe unit)")
    reference_cv: float = Field(default=0.0, ge=0, le=0.5, description="the reference's "
                                "relative error (standard deviation / value)")
    initial_offset_sd: float = Field(gt=0, le=1e6, description="how far off the probe may be "
                                     "at the first reference (standard deviation, probe unit)")
    initial_drift_sd_per_d: float = Field(gt=0, le=1e6, description="how fast a healthy probe "
                                          "may drift (standard deviation, probe unit per day)")
    drift_walk_sd_per_d: float = Field(
        default=0.0, ge=0, le=1e6, description="how much the drift rate itself may change "
        "(probe unit per day, per square root of a day)")
    restandardise_above: float = Field(
        gt=0, le=1e6, description="re-standardise when the estimated offset differs from the "
        "applied correction by more than this (probe unit)")
    correction_max: float = Field(gt=0, le=1e6, description="a probe needing a larger "
                                  "correction is failing (probe unit)")
    drift_max_per_d: float = Field(
        gt=0, le=1e6, description="a probe whose offset changes faster than this is failing "
        "(probe unit per day): its drift estimate confidently beyond it, or its offset at one "
        "reference further from the prediction than this rate and the noise allow")
    step_sigmas: float = Field(default=4.0, ge=2, le=10, description="how many standard "
                               "deviations of the prediction a reference must be off to count "
                               "as a step")
    priority: Priority = Field(default="high", description="of the `<channel>_probe_failing` "
                               "alarm")

    @field_validator("reference")
    @classmethod
    def _reference_is_sampled(cls, name: str) -> str:
        check_channel(name, Direction.INPUT)
        if channel(name).kind is not Kind.SAMPLED:
            raise ValueError(f"{name!r} is a continuous channel; the reference must be a "
                             "sampled (at-line or offline) result")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> ProbeStandardisationConfig:
        if self.reference_sd == 0.0 and self.reference_cv == 0.0:
            raise ValueError("reference_sd together with reference_cv = 0 makes the reference "
                             "exact, and no reference is (allowed: reference_sd > 0 or "
                             "reference_cv > 0)")
        if self.correction_max <= self.restandardise_above:
            raise ValueError("correction_max must exceed "
                             f"restandardise_above ({self.restandardise_above}), or the probe "
                             "is failing before it is ever corrected")
        return self


DEFAULT_STANDARDISATION: dict[str, dict[str, Any]] = {
    # [est] pH: the blood-gas reference's sd 0.02 (the sheet: two offline methods agree within
    # +-0.02 in only ~41 % of samples, i.e. an sd of ~0.026 each; the emulated analyser's
    # 0.02); probes +-0.02 fresh, up to +-0.1 by the end of a batch
    # (vendor guide: 0.01-0.05 per week), so 0.15 is failing and more than 0.1 per week is a
    # probe going, not ageing. Re-standardised at 0.008: the true pH then stays within ~0.03 of
    # the setpoint (estimate error + this + a day's drift).
    "ph": {"reference": "bga_ph", "reference_to_probe": 1.0, "reference_sd": 0.02,
           "initial_offset_sd": 0.05, "initial_drift_sd_per_d": 0.01,
           "drift_walk_sd_per_d": 0.002, "restandardise_above": 0.008, "correction_max": 0.15,
           "drift_max_per_d": 0.015},
    # [est] DO: the blood-gas pO2 95 % within +-7.5 % (sheet: ABL800), so a CV of 3.5 %;
    # optical spots are +-1.5 % air after calibration and drift well under 1 % air a week, so
    # 6 % air off, or 1.2 % air a day (0.05 % air/h), is a failing probe.
    "do_pct_air": {"reference": "bga_po2_mmhg", "reference_to_probe": 1.0 / PO2_MMHG_PER_PCT_AIR,
                   "reference_cv": 0.035, "initial_offset_sd": 3.0,
                   "initial_drift_sd_per_d": 0.3, "drift_walk_sd_per_d": 0.1,
                   "restandardise_above": 1.0, "correction_max": 6.0, "drift_max_per_d": 1.2},
}
"""Per channel, the keys a `[reactor.standardisation.<channel>]` table does not set."""


def merged_standardisation(tables: Any) -> Any:
    """The default channels' tables under the configured ones, key by key (before validation,
    so an error still names the key the file set)."""
    if not isinstance(tables, dict):
        return tables  # pydantic says what is wrong with it
    merged: dict[str, Any] = {name: dict(keys) for name, keys in DEFAULT_STANDARDISATION.items()}
    for name, table in tables.items():
        merged[name] = ({**merged.get(name, {}), **table} if isinstance(table, dict)
                        else table)
    return merged


def check_standardised_channels(
        tables: dict[str, ProbeStandardisationConfig]) -> dict[str, ProbeStandardisationConfig]:
    """Each table's key is a continuous input (what a loop or an alarm may act on)."""
    for name in tables:
        check_channel(name, Direction.INPUT)
        if channel(name).kind is not Kind.CONTINUOUS:
            raise ValueError(f"{name}: only a continuous probe is standardised (allowed: a "
                             "continuous input channel, e.g. ph or do_pct_air)")
    return tables
