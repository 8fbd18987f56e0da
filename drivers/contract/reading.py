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


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """Immutable: one reading is shared by the judge, the loops, the alarms and the records.

    Made some twenty times a tick, so `__init__` sets the slots through their descriptors:
    the frozen dataclass's own goes through `object.__setattr__` by name, twice as slow.
    """

    value: float
    unit: str
    timestamp_s: float
    """Clock time (seconds since the run's epoch) at which the value was true."""
    quality: Quality

    def __init__(self, value: float, unit: str, timestamp_s: float,
                 quality: Quality = Quality.GOOD) -> None:
        _set_value(self, value)
        _set_unit(self, unit)
        _set_timestamp(self, timestamp_s)
        _set_quality(self, quality)

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD

    def judged(self, quality: Quality) -> Reading:
        """The same reading with another verdict (`dataclasses.replace` is four times slower)."""
        return Reading(self.value, self.unit, self.timestamp_s, quality)


# The slots' member descriptors, which mypy cannot express: it types `Reading.value` as the
# field's float (attr-defined: no `__set__`) and refuses class access to a slot (misc).
_set_value = Reading.value.__set__  # type: ignore[attr-defined, misc]
_set_unit = Reading.unit.__set__  # type: ignore[attr-defined, misc]
_set_timestamp = Reading.timestamp_s.__set__  # type: ignore[attr-defined, misc]
_set_quality = Reading.quality.__set__  # type: ignore[attr-defined, misc]
