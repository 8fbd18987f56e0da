"""A reading: what a sensor said, in which unit, when, and how far to trust it."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Quality(IntEnum):
    """Trust in a reading. Only GOOD readings may drive a control loop.

    Integer codes, so the historian stores them compactly and they sort from best to worst.
    """

    GOOD = 0
    STALE = 1
    OUT_OF_RANGE = 2
    BAD = 3
    COMM_ERROR = 4
    FROZEN = 5
    """No change beyond noise for too long: a stuck sensor (judged by the controller)."""
    IMPLAUSIBLE = 6
    """Changed faster than the process can: a spike or a glitch (judged by the controller)."""
    NOISY = 7
    """Scatters from sample to sample well beyond the probe's own noise: a failing probe,
    interference or a loose cable (judged by the controller)."""
    INCONSISTENT = 8
    """Disagrees with a reference measurement of the same quantity, e.g. the online cell
    count with the at-line count: a drifted or fouled probe, or something else in the
    medium (judged by the controller)."""


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    unit: str
    timestamp_s: float
    """Clock time (seconds since the run's epoch) at which the value was true."""
    quality: Quality = Quality.GOOD

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD
