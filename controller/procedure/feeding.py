"""A phase's feeding strategy: the perfusion rates it asks for, tick by tick.

Each strategy turns judged readings into base pump rates (mL/h) for the feed schedule, which
adds boluses on top and books what the totalisers measured (controller/control/schedule.py).
Rates change at most once per `UPDATE_PERIOD_S` and in steps of `RATE_RESOLUTION_ML_PER_H`:
a pump is not rewritten every second for a change no peristaltic pump can make.

A strategy never acts on a value that is not GOOD: the rate it last asked for stands (and the
dilution loop's integral is frozen) until the reading is good again.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.config.recipe import CellSpecificFeed, FeedStrategy, FixedFeed
from controller.control.pid import Pid, PidTuning
from drivers.contract.reading import Quality, Reading

UPDATE_PERIOD_S = 60.0
RATE_RESOLUTION_ML_PER_H = 0.01
ML_PER_NL = 1e-6


class Feeding:
    """The rates of one phase's strategy: fixed, cell-specific or inhibitor dilution."""

    def __init__(self, config: FeedStrategy) -> None:
        self.config = config
        self._next_update_s = float("-inf")
        self._pid: Pid | None = None
        if isinstance(config, FixedFeed):
            harvest = config.feed_ml_per_h if config.harvest_ml_per_h is None \
                else config.harvest_ml_per_h
            self.rates = {"feed_ml_per_h": config.feed_ml_per_h, "harvest_ml_per_h": harvest,
                          "base_ml_per_h": config.base_ml_per_h}
            return
        self.rates = self._perfusion(config.min_ml_per_h)
        if not isinstance(config, CellSpecificFeed):
            # Reverse acting: more perfusion washes out more inhibitor.
            self._pid = Pid(PidTuning(config.kp_ml_per_h, config.ti_s), config.setpoint,
                            config.min_ml_per_h, config.max_ml_per_h, output_raises_pv=False,
                            initial_output=config.min_ml_per_h)

    @staticmethod
    def _perfusion(rate_ml_per_h: float) -> dict[str, float]:
        rate = round(rate_ml_per_h / RATE_RESOLUTION_ML_PER_H) * RATE_RESOLUTION_ML_PER_H
        return {"feed_ml_per_h": rate, "harvest_ml_per_h": rate, "base_ml_per_h": 0.0}

    def step(self, readings: Mapping[str, Reading], now_s: float) -> dict[str, float]:
        """The rates for this tick (the same dict until they change)."""
        config = self.config
        if isinstance(config, FixedFeed) or now_s < self._next_update_s:
            return self.rates
        self._next_update_s = now_s + UPDATE_PERIOD_S
        source = readings.get(config.source)
        good = source is not None and source.quality is Quality.GOOD
        if isinstance(config, CellSpecificFeed):
            volume = readings.get("volume_ml")
            if good and volume is not None and volume.quality is Quality.GOOD:
                assert source is not None
                wanted = (config.nl_per_cell_per_d * ML_PER_NL * source.value * volume.value
                          / 24.0)
                self._set(min(max(wanted, config.min_ml_per_h), config.max_ml_per_h))
            return self.rates
        pid = self._pid
        assert pid is not None
        if good:
            assert source is not None
            self._set(pid.update(source.value, now_s))
        else:
            pid.hold()
        return self.rates

    def pause(self) -> None:
        """The phase stopped running: the dilution loop freezes its integral (no integration
        over the time it did not act) and the next step recomputes at once."""
        if self._pid is not None:
            self._pid.hold()
        self._next_update_s = float("-inf")

    def _set(self, rate_ml_per_h: float) -> None:
        rates = self._perfusion(rate_ml_per_h)
        if rates != self.rates:
            self.rates = rates

    def snapshot(self) -> dict[str, Any]:
        """The rate in force and the dilution loop's output (its integral re-bases on it)."""
        return {"rates": dict(self.rates),
                "output": None if self._pid is None else self._pid.output}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.rates = {name: float(v) for name, v in state["rates"].items()}
        if self._pid is not None and state.get("output") is not None:
            self._pid.track(float(state["output"]))
            self._pid.hold()  # the next good sample re-bases the integral: bumpless
