"""`[reactor.volume_balance]`: the chamber's mass balance, checked by the controller from the
device's totalisers, pumps and at-line sampling (controller/control/volume_balance.py).
Defaults and why: docs/alarms.md."""
from __future__ import annotations

from pydantic import Field

from controller.alarms.spec import Priority
from drivers.contract.validation import Seconds, StrictModel

BALANCE_WINDOW_S = 7200.0
"""Two hours: a leak of 0.5 mL/h (the `volume_rate` alarm's limit) adds up to the tolerance."""
BALANCE_TOLERANCE_ML = 1.0
"""Twice the worst gap a clean chamber shows: the volume moves in 60 s steps of the model's
bio step while the totalisers count continuously (a 30 mL/h bolus: up to 0.5 mL), plus the
load cell's noise (0.05 mL a read, 0.07 mL on a difference); its bias cancels."""


class VolumeBalanceConfig(StrictModel):
    """Measured volume change against totalised net inflow (feed + base - harvest - sampled)."""

    enabled: bool = True
    window_s: Seconds = Field(default=BALANCE_WINDOW_S, ge=600, le=7 * 86400,
                              description="the span each comparison covers")
    tolerance_ml: float = Field(default=BALANCE_TOLERANCE_ML, gt=0, le=100,
                                description="|volume change - net inflow| beyond this alarms")
    sample_period_s: Seconds = Field(default=60.0, ge=1, le=3600,
                                     description="how often a sample is taken")
    settle_s: Seconds = Field(default=30.0, ge=0, le=600,
                              description="after the sampling totaliser moves (an at-line "
                              "sample drawn), wait this long for the load cell before a sample")
    priority: Priority = Field(default="high", description="medium or lower only if a spill "
                               "of culture is no biosafety event here")
