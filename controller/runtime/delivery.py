"""Verified delivery: what the pumps were told against what their totalisers measured.

Each tick the totalisers' growth (controller/control/totalisers.py) is what the schedule books
(the feed ledger credits measured millilitres, not commanded ones). Here the runtime acts on it:

- `feed_delivery_mismatch` (high priority): a bolus judged off its commanded volume (the
  schedule's `mismatch`), or a pump whose measured mL over a window (`window_s`) is off its
  commanded mL beyond the tolerance. High: a feed that did not arrive (or arrived twice) changes
  the culture and the record, and only an operator can find out why (a clogged line, worn
  tubing, a failed totaliser). It stays active while a bolus it names is short or a pump's last
  window was off; the detection needs nothing but the totalisers.
- `device_rebooted` (medium priority): the boot id changed (or a totaliser went backwards). The
  controller has already done what is needed (totalisers re-baselined, every output written
  afresh on the same tick), so nothing is urgent; but a device that restarts by itself spent
  a moment in its safe state and lost its record of what its pumps gave since the last reading,
  so an operator must look.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import structlog

from controller.config.schedule import DeliveryConfig
from controller.control.schedule import BolusState
from controller.control.totalisers import TotaliserBaseline
from controller.runtime.journal import ReactorJournal
from controller.runtime.outside_alarms import OutsideAlarms
from drivers.contract.datasheet import PUMPS
from drivers.contract.reading import Reading

log = structlog.get_logger(__name__)

MISMATCH = "feed_delivery_mismatch"
REBOOTED = "device_rebooted"


class DeliveryMonitor:
    def __init__(self, config: DeliveryConfig, journal: ReactorJournal,
                 outside: OutsideAlarms, on_reboot: Callable[[], None]) -> None:
        """`on_reboot` makes every output be written afresh (the device came up safe)."""
        self._config = config
        self._journal = journal
        self._outside = outside
        self._on_reboot = on_reboot
        self.baseline = TotaliserBaseline()
        self.commanded_rates: dict[str, float] = dict.fromkeys(PUMPS, 0.0)
        """The pump outputs of the last tick (mL/h): what stood until this tick's reading."""
        self.totals_ml: dict[str, list[float]] = {pump: [0.0, 0.0] for pump in PUMPS}
        """Run-long [commanded, measured] mL per pump (carried across a crash)."""
        self.fresh = False
        """This tick's totaliser readings were all good."""
        self.outage_pending = False
        """Restored from a checkpoint: the first measurement is what was given while down."""
        self._window_start_ml: dict[str, tuple[float, ...]] = {}
        self._window_end_s = float("inf")
        self._last_s: float | None = None
        self._causes: dict[str, str] = {}
        """What keeps `feed_delivery_mismatch` active: "bolus <id>" or "pump <name>" -> text."""

    def measure(self, readings: Mapping[str, Reading], now: float) -> dict[str, float]:
        """mL each pump delivered since the last tick's reading (what the schedule books)."""
        baseline = self.baseline
        if baseline.measure(readings):
            self._rebooted(readings, now)
        measured = baseline.measured_ml
        self.fresh = baseline.fresh
        last_s = self._last_s
        self._last_s = now
        if last_s is None or self.outage_pending:
            self._window_from(now)
            return measured
        dt_h = (now - last_s) / 3600.0
        rates = self.commanded_rates
        for pump, total in self.totals_ml.items():
            total[0] += rates[pump] * dt_h
            total[1] += measured[pump]
        if now >= self._window_end_s and self.fresh:
            self._judge_window(now)
        return measured

    def booked_outage(self, measured: Mapping[str, float]) -> None:
        """The outage's delivery was booked: count it measured and commanded (the device
        carried out the last command)."""
        for pump in PUMPS:
            self.totals_ml[pump][0] += measured[pump]
            self.totals_ml[pump][1] += measured[pump]
        self.outage_pending = False

    def commanded(self, outputs: Mapping[str, float]) -> None:
        """This tick's pump outputs, to be judged against the next reading."""
        rates = self.commanded_rates
        for pump in PUMPS:
            rates[pump] = outputs[pump]

    def bolus_event(self, now: float, what: str, bolus: BolusState) -> None:
        """The schedule's verdicts that concern the alarm: a mismatch raises it, a bolus that
        ends done no longer holds it."""
        cause = f"bolus {bolus.id}"
        if what == "mismatch":
            self._raise(now, cause, bolus.channel, bolus.commanded_ml, bolus.delivered_ml)
        elif what == "done" and cause in self._causes and bolus.delivered_ml >= (
                bolus.commanded_ml - self._config.tolerance(bolus.commanded_ml)):
            self._clear(now, cause)

    def _judge_window(self, now: float) -> None:
        """Each pump's commanded and measured mL since the window began (run-long totals
        less their values then: nothing to add up on the other ticks)."""
        tolerance = self._config.tolerance
        for pump, (commanded_total, measured_total) in self.totals_ml.items():
            commanded_before, measured_before = self._window_start_ml[pump]
            commanded_ml = commanded_total - commanded_before
            measured_ml = measured_total - measured_before
            cause = f"pump {pump}"
            if abs(measured_ml - commanded_ml) > tolerance(commanded_ml):
                self._raise(now, cause, pump, commanded_ml, measured_ml)
            elif cause in self._causes:
                self._clear(now, cause)
        self._window_from(now)

    def _window_from(self, now: float) -> None:
        self._window_start_ml = {pump: tuple(total) for pump, total in self.totals_ml.items()}
        self._window_end_s = now + self._config.window_s

    def _raise(self, now: float, cause: str, pump: str, commanded_ml: float,
               measured_ml: float) -> None:
        text = (f"{cause}: {pump} commanded {commanded_ml:.3f} mL, measured {measured_ml:.3f} "
                "mL by its totaliser")
        self._causes[cause] = text
        log.warning("feed delivery mismatch", reactor=self._journal.reactor_id, t_s=now,
                    cause=cause, commanded_ml=commanded_ml, measured_ml=measured_ml)
        self._outside.set(now, MISMATCH, active=True, priority="high",
                          message=f"{MISMATCH}: {text}",
                          data={"pump": pump, "cause": cause, "commanded_ml": commanded_ml,
                                "measured_ml": measured_ml})

    def _clear(self, now: float, cause: str) -> None:
        del self._causes[cause]
        if not self._causes:
            self._outside.set(now, MISMATCH, active=False,
                              message=f"{MISMATCH}: cleared ({cause} delivers as commanded)")

    def _rebooted(self, readings: Mapping[str, Reading], now: float) -> None:
        boot_id = readings["device_boot_id"].value
        log.warning("device rebooted", reactor=self._journal.reactor_id, t_s=now,
                    boot_id=boot_id)
        self._journal.event(
            now, "device", f"device rebooted (boot id {boot_id:g}): totalisers re-baselined, "
            "every output written afresh", {"boot_id": boot_id,
                                            "uptime_s": readings["device_uptime_s"].value})
        self._outside.set(now, REBOOTED, active=True, priority="medium",
                          message=f"{REBOOTED}: the device restarted (boot id {boot_id:g}, up "
                                  f"{readings['device_uptime_s'].value:.0f} s); it came up in "
                                  "its safe state")
        self._on_reboot()
        self._window_from(now)

    def snapshot(self) -> dict[str, Any]:
        return {"baseline": self.baseline.snapshot(), "commanded_rates": self.commanded_rates,
                "totals_ml": self.totals_ml}

    def restore(self, state: Mapping[str, Any]) -> None:
        self.baseline.restore(state["baseline"])
        self.commanded_rates = dict(state["commanded_rates"])
        self.totals_ml = {pump: list(state["totals_ml"][pump]) for pump in PUMPS}
        self.outage_pending = True
