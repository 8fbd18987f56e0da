"""The chamber's mass balance, checked from the device's totalisers: over a window, the measured
volume change must equal feed + base - harvest - sampled as the totalisers measured them (the
at-line samples' `sampled_ml` counts as an outflow like the harvest).

Independent of the feed ledger (which books what was commanded or delivered) and of the volume
alarms (which see only the volume): a leak, a line delivering onto the floor or a pump feeding
the wrong vessel shows as a gap, whatever the schedule does. Pure logic: given readings and
times, no I/O and no clock. Defaults: controller/config/volume_balance.py; docs/alarms.md.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from controller.config.volume_balance import VolumeBalanceConfig
from drivers.contract.reading import Quality, Reading

ALARM = "volume_balance"
_INFLOWS = ("feed_delivered_ml", "base_delivered_ml")
_OUTFLOWS = ("harvest_delivered_ml", "sampled_ml")
_CHANNELS = ("volume_ml", "device_boot_id", *_INFLOWS, *_OUTFLOWS)
_SAMPLED_INDEX = (*_INFLOWS, *_OUTFLOWS).index("sampled_ml")


@dataclass(frozen=True, slots=True)
class BalanceSample:
    t_s: float
    volume_ml: float
    net_inflow_ml: float
    """feed + base - harvest - sampled, totalised since the device booted."""
    totals_ml: tuple[float, ...]
    boot_id: float


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """The alarm raised (`active`) or cleared, with the numbers that decided it."""

    active: bool
    gap_ml: float
    window_s: float
    message: str


class VolumeBalance:
    """One reactor's running mass balance: samples every `sample_period_s`, compares the newest
    with the one a window earlier, raises when the gap exceeds the tolerance and clears when it
    is back within half of it (so a gap at the edge does not chatter).

    Only GOOD readings make a sample. A new boot id or a totaliser going backwards (the device
    restarted, its totalisers from 0) restarts the window: no comparison spans a reboot.
    """

    def __init__(self, config: VolumeBalanceConfig) -> None:
        self.config = config
        self.active = False
        self.gap_ml: float | None = None
        """The gap of the latest full window (None until a window has been filled)."""
        self._samples: deque[BalanceSample] = deque()
        self._next_sample_s = float("-inf")
        self._sampled_ml: float | None = None
        self._sampled_changed_s = float("-inf")

    def observe(self, readings: Mapping[str, Reading], t_s: float) -> BalanceChange | None:
        """Take a sample if one is due; a change of the alarm if this sample makes one."""
        if not self.config.enabled or t_s < self._next_sample_s:
            return None
        sample = _sample(readings, t_s)
        if sample is None or self._settling(sample, t_s):
            return None
        self._next_sample_s = t_s + self.config.sample_period_s
        samples = self._samples
        if samples and _rebooted(samples[-1], sample):
            samples.clear()
            self.gap_ml = None
        samples.append(sample)
        window_start = t_s - self.config.window_s
        while len(samples) > 1 and samples[1].t_s <= window_start:
            samples.popleft()
        reference = samples[0]
        if reference.t_s > window_start:
            return None  # the window is not filled yet
        return self._judge(reference, sample)

    def _settling(self, sample: BalanceSample, t_s: float) -> bool:
        """True within `settle_s` of the sampling totaliser moving: an
        at-line sample leaves in a moment and `sampled_ml` counts it at once, while the load
        cell's filter shows the drop over seconds, so a balance sample taken then would see a
        gap of up to one sample's volume. The sample is taken once the reading has settled."""
        sampled_ml = sample.totals_ml[_SAMPLED_INDEX]
        if sampled_ml != self._sampled_ml:
            if self._sampled_ml is not None:  # not the first sight: a sample was drawn
                self._sampled_changed_s = t_s
            self._sampled_ml = sampled_ml
        return t_s - self._sampled_changed_s < self.config.settle_s

    def _judge(self, reference: BalanceSample, sample: BalanceSample) -> BalanceChange | None:
        volume_change_ml = sample.volume_ml - reference.volume_ml
        inflow_ml = sample.net_inflow_ml - reference.net_inflow_ml
        gap_ml = volume_change_ml - inflow_ml
        self.gap_ml = gap_ml
        tolerance_ml = self.config.tolerance_ml
        if self.active == (abs(gap_ml) > (tolerance_ml / 2 if self.active else tolerance_ml)):
            return None
        self.active = not self.active
        span_s = sample.t_s - reference.t_s
        where = "more than" if gap_ml > 0 else "less than"
        verdict = (f"volume {where} the totalisers account for" if self.active
                   else "back within tolerance")
        return BalanceChange(
            self.active, gap_ml, span_s,
            f"{ALARM}: {verdict}: gap {gap_ml:+.2f} mL over {span_s / 3600:.3g} h (volume "
            f"{volume_change_ml:+.2f} mL, totalised net inflow {inflow_ml:+.2f} mL; tolerance "
            f"{tolerance_ml:g} mL)")


def _sample(readings: Mapping[str, Reading], t_s: float) -> BalanceSample | None:
    values = {}
    for name in _CHANNELS:
        reading = readings.get(name)
        if reading is None or reading.quality is not Quality.GOOD:
            return None
        values[name] = reading.value
    return BalanceSample(
        t_s, values["volume_ml"],
        sum(values[n] for n in _INFLOWS) - sum(values[n] for n in _OUTFLOWS),
        tuple(values[n] for n in (*_INFLOWS, *_OUTFLOWS)), values["device_boot_id"])


def _rebooted(previous: BalanceSample, sample: BalanceSample) -> bool:
    return sample.boot_id != previous.boot_id or any(
        now < before for now, before in zip(sample.totals_ml, previous.totals_ml, strict=True))
