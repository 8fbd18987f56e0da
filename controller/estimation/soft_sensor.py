"""The soft sensor on the tick: samples the readings, runs the filter every update period and
hands its estimates out as readings (`est_*`, with `est_*_sd`), like any other channel.

The tick's cost is one comparison except every `SAMPLE_PERIOD_S`, when the continuous signals
are added to the running means of the present segment; the filter itself runs once per
`update_period_s` (docs/benchmarks.md has the cost).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from controller.alarms.estimate_channels import ESTIMATE_CHANNELS
from controller.config.soft_sensor import SoftSensorConfig
from controller.estimation.culture_model import (
    FS,
    INH,
    MU,
    XV,
    CultureModel,
    Dilution,
    Observation,
)
from controller.estimation.delayed_ekf import S_PER_D, DelayedEKF
from drivers.contract.reading import Quality, Reading

SAMPLE_PERIOD_S = 10.0
"""How often the tick's readings are sampled into the segment's means."""
S_PER_H = 3600.0
AIR_O2_PCT = 20.95

ESTIMATES: dict[str, tuple[int, float, str]] = {
    # name: (state index, scale to the reading's unit, unit)
    name: (index, scale, ESTIMATE_CHANNELS[name].unit) for name, index, scale in (
        ("est_viable_cells_per_ml", XV, 1e6),
        ("est_growth_rate_per_d", MU, 1.0),
        ("est_inhibitor_ng_per_ml", INH, 1.0),
        ("est_primitive_fraction", FS, 1.0))}
"""The estimates the soft sensor publishes; each also as `<name>_sd`, its standard deviation
(names, units and ranges: controller/alarms/estimate_channels.py, where alarms find them)."""

LATE_CHANNELS: dict[str, str] = {
    "viable_cells_per_ml": "viable_cells",
    "viability_pct": "viability",
    "cd34_pct": "cd34",
    "cd34_cd90_pct": "primitive",
}
"""At-line channels the filter takes, at their draw time, -> the model's observation kind."""
_PUMPS = ("feed_delivered_ml", "base_delivered_ml", "harvest_delivered_ml")

EstimatesListener = Callable[[float, Mapping[str, tuple[float, float]]], None]
"""on_update(t_s, {name: (value, sd)}) after every filter update (the historian's row)."""


@dataclass(slots=True)
class _Segment:
    """Running sums of the present update period."""

    total_sum: float = 0.0
    total_n: int = 0
    uptake_sum: float = 0.0
    uptake_n: int = 0
    do_first: tuple[float, float] | None = None
    do_last: tuple[float, float] | None = None
    volume_ml: float | None = None


class SoftSensor:
    def __init__(self, config: SoftSensorConfig,
                 on_update: EstimatesListener | None = None) -> None:
        self.config = config
        self.model = CultureModel(config)
        self.on_update = on_update
        self.filter: DelayedEKF | None = None
        self.estimates: dict[str, Reading] = {}
        self.updates = 0
        self._next_sample_s = float("-inf")
        self._next_update_s = float("-inf")
        self._segment = _Segment()
        self._pumps_start: dict[str, float] = {}
        self._pumps_last: dict[str, float] = {}
        self._seen_t_s: dict[str, float] = {}
        self._late: list[Observation] = []
        self._dilution_now = Dilution()
        self._measured_s = float("-inf")
        """When a measurement last reached the filter."""
        sat = config.do_air_sat_mm
        self._o2_mm_per_gas_pct = sat / AIR_O2_PCT
        self._do_mm_per_pct = sat / 100.0
        self._fingerprint = hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]
        self._snapshot: str | None = None
        """The state as of the last filter update, as JSON: made once per update, not on every
        checkpoint (a 48 h window is a few hundred segments)."""

    # --- on the tick --------------------------------------------------------------------------
    def observe(self, readings: dict[str, Reading], now: float) -> None:
        """Sample `readings` when due, run the filter when due, and add the estimates to
        `readings` (in place: the judged readings are this tick's own dict)."""
        if now >= self._next_sample_s:
            self._next_sample_s = now + SAMPLE_PERIOD_S
            self._sample(readings, now)
            if now >= self._next_update_s or self.filter is None:  # start on the first density
                self._next_update_s = now + self.config.update_period_s
                self._update(now)
        if self.estimates:
            readings.update(self.estimates)

    def _sample(self, readings: Mapping[str, Reading], now: float) -> None:
        seg = self._segment
        total = readings.get("total_cells_per_ml")
        if total is not None and total.quality is Quality.GOOD:
            seg.total_sum += total.value
            seg.total_n += 1
        do = readings.get("do_pct_air")
        o2 = readings.get("o2_flow_pct")
        if do is not None and o2 is not None and do.quality is Quality.GOOD \
                and o2.quality is Quality.GOOD:
            self._sample_uptake(seg, do.value, o2.value, now)
        volume = readings.get("volume_ml")
        if volume is not None and volume.quality is Quality.GOOD and volume.value > 0.0:
            seg.volume_ml = volume.value
        for name in _PUMPS:
            r = readings.get(name)
            if r is not None and r.quality is Quality.GOOD:
                self._pumps_start.setdefault(name, r.value)
                self._pumps_last[name] = r.value
        for name, kind in LATE_CHANNELS.items():
            r = readings.get(name)
            if r is None or r.quality is not Quality.GOOD \
                    or r.timestamp_s == self._seen_t_s.get(name):
                continue
            self._seen_t_s[name] = r.timestamp_s
            self._late.append(Observation(kind, r.timestamp_s, r.value))

    def _sample_uptake(self, seg: _Segment, do_pct: float, o2_gas_pct: float,
                       now: float) -> None:
        """The gas balance: transfer kLa (C* - C) in mM/h; its mean minus the DO's own change
        over the segment is the uptake (the feed's O2 is neglected: < 3 % of the transfer)."""
        do_mm = do_pct * self._do_mm_per_pct
        seg.uptake_sum += self.config.kla_o2_per_h * (o2_gas_pct * self._o2_mm_per_gas_pct - do_mm)
        seg.uptake_n += 1
        if seg.do_first is None:
            seg.do_first = (now, do_mm)
        seg.do_last = (now, do_mm)

    # --- every update period ------------------------------------------------------------------
    def _update(self, now: float) -> None:
        seg = self._segment
        self._segment = _Segment()
        observations: list[Observation] = []
        total = seg.total_sum / seg.total_n if seg.total_n else None
        if self.filter is None:
            if total is None:
                return
            x0, p0 = self.model.initial(total)
            self.filter = DelayedEKF(self.model, x0, p0, now, self.config.history_s)
            self._pumps_start = dict(self._pumps_last)
            self._measured_s = now
            self._publish(now, seg.volume_ml)
            return
        ekf = self.filter
        if total is not None:
            observations.append(Observation("total_cells", now, total / 1e6))
        uptake = self._uptake(seg)
        if uptake is not None and ekf.x[XV] * 1e6 >= self.config.our_min_cells_per_ml:
            observations.append(Observation("o2_uptake", now, uptake))
        if observations or self._late:
            self._measured_s = now
        self._dilution_now = self._dilution(seg, (now - ekf.t_s) / S_PER_D)
        ekf.step(now, self._dilution_now, observations)
        if self._late:
            late = [Observation(o.kind, o.t_s, o.value / 1e6 if o.kind == "viable_cells"
                                else o.value) for o in self._late]
            self._late = []
            ekf.add_late(late)
        self._publish(now, seg.volume_ml)

    def _uptake(self, seg: _Segment) -> float | None:
        if seg.uptake_n == 0 or seg.do_first is None or seg.do_last is None:
            return None
        accumulation = 0.0
        dt_h = (seg.do_last[0] - seg.do_first[0]) / S_PER_H
        if dt_h > 0.0:
            accumulation = (seg.do_last[1] - seg.do_first[1]) / dt_h
        return seg.uptake_sum / seg.uptake_n - accumulation

    def _dilution(self, seg: _Segment, dt_d: float) -> Dilution:
        """From the pump totalisers over the segment (what the pumps measured, not what was
        asked); a totaliser that went back (a device reboot) counts as nothing pumped."""
        delivered = {}
        for name in _PUMPS:
            start, last = self._pumps_start.get(name), self._pumps_last.get(name)
            delivered[name] = max(0.0, last - start) if start is not None and last is not None \
                else 0.0
        self._pumps_start = dict(self._pumps_last)
        if seg.volume_ml is None or dt_d <= 0.0:
            return Dilution()
        v = seg.volume_ml
        inflow = (delivered["feed_delivered_ml"] + delivered["base_delivered_ml"]) / v / dt_d
        harvest = delivered["harvest_delivered_ml"] / v / dt_d
        return Dilution(cells_per_d=max(0.0, inflow - self.config.harvest_cell_retention
                                        * harvest),
                        liquid_per_d=inflow)

    def _publish(self, now: float, volume_ml: float | None) -> None:
        ekf = self.filter
        assert ekf is not None
        self.updates += 1
        rows = self._hand_out(ekf, now)
        if self.on_update is not None:
            self.on_update(now, rows)
        self._snapshot = json.dumps({
            "config": self._fingerprint, "filter": ekf.snapshot(), "updates": self.updates,
            "next_update_s": self._next_update_s, "measured_s": self._measured_s,
            "seen_t_s": self._seen_t_s, "pumps_start": self._pumps_start,
            "volume_ml": volume_ml,
            "dilution_now": [self._dilution_now.cells_per_d, self._dilution_now.liquid_per_d]})

    def _hand_out(self, ekf: DelayedEKF, now: float) -> dict[str, tuple[float, float]]:
        """The filter's present estimates as this tick's readings, stamped with the filter's
        time; STALE once no measurement has reached it for `stale_after_s`."""
        x, sd = ekf.x, np.sqrt(np.clip(np.diag(ekf.p), 0.0, None))
        rows: dict[str, tuple[float, float]] = {}
        estimates: dict[str, Reading] = {}
        t_s = ekf.t_s
        quality = Quality.GOOD if now - self._measured_s <= self.config.stale_after_s \
            else Quality.STALE
        for name, (i, scale, unit) in ESTIMATES.items():
            value, spread = float(x[i] * scale), float(sd[i] * scale)
            rows[name] = (value, spread)
            estimates[name] = Reading(value, unit, t_s, quality)
            estimates[f"{name}_sd"] = Reading(spread, unit, t_s, quality)
        self.estimates = estimates
        return rows

    # --- checkpoints --------------------------------------------------------------------------
    def snapshot(self) -> str | None:
        """The state as of the last filter update (JSON), or None before the filter started.
        What was sampled since that update is not kept: after a restart the next update
        covers the outage with what the pump totalisers say was delivered meanwhile."""
        return self._snapshot

    def restore(self, snapshot: str, now: float) -> bool:
        """Carry on from `snapshot`; False (and nothing changed) if it was made under another
        soft-sensor configuration, whose filter this one cannot continue; ValueError, KeyError
        or TypeError (and nothing changed) if it is not a snapshot."""
        state = json.loads(snapshot)
        if state["config"] != self._fingerprint:
            return False
        # Everything read before anything is changed: a snapshot that fails half-way leaves
        # the sensor as it was.
        ekf = DelayedEKF.restored(self.model, state["filter"], self.config.history_s)
        updates, next_update_s = int(state["updates"]), float(state["next_update_s"])
        measured_s = float(state["measured_s"])
        seen_t_s = {str(k): float(v) for k, v in state["seen_t_s"].items()}
        pumps_start = {str(k): float(v) for k, v in state["pumps_start"].items()}
        volume_ml = None if state["volume_ml"] is None else float(state["volume_ml"])
        dilution_now = Dilution(*(float(v) for v in state["dilution_now"]))
        self.filter = ekf
        self.updates, self._next_update_s, self._measured_s = updates, next_update_s, measured_s
        self._seen_t_s, self._pumps_start = seen_t_s, pumps_start
        self._pumps_last = dict(pumps_start)
        self._segment = _Segment(volume_ml=volume_ml)
        self._dilution_now = dilution_now
        self._snapshot = snapshot
        self._hand_out(ekf, now)
        return True

    def current(self, now: float) -> dict[str, float] | None:
        """The estimates and their SDs (`<name>_sd`) carried forward to `now` (no measurement),
        for scoring against truth."""
        ekf = self.filter
        if ekf is None:
            return None
        x, p = self.model.propagate(ekf.x.copy(), ekf.p, (now - ekf.t_s) / S_PER_D,
                                    self._dilution_now)
        sd = np.sqrt(np.clip(np.diag(p), 0.0, None))
        values = {name: float(x[i] * scale) for name, (i, scale, _) in ESTIMATES.items()}
        values.update({f"{name}_sd": float(sd[i] * scale)
                       for name, (i, scale, _) in ESTIMATES.items()})
        return values
