"""Interlocks: hard limits that override the loops and the schedule, outside the PID code path.

They act on the judged readings (an interlock never trips on a bad value, and never resets on
one either) after the loops and the schedule have computed their outputs, and before anything
is written. Two kinds: hard limits on a reading (`Interlock`: over-temperature, volume, pH far
out; the table is data in controller/config/hard_limits.py, which the config check reads
too) and lost gas supplies recognised from the device's readbacks or, when those are not
GOOD, from their loop (`SupplyLost`), whose reactions are
applied first so the hard limits overrule them. Precedence of actuator states, highest first:
shutdown safe state (runtime), the device's own comm-loss safe state (device side), interlocks
(here), a loop's reaction to bad input (hold or safe output, loop.py), normal control
(docs/architecture.md, "Precedence of safe states"). The reactor makes each loop follow what
the interlocks applied, so no integral winds up against an override.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.config import ReactorConfig
from controller.config.hard_limits import Interlock
from drivers.contract.reading import Quality, Reading

_GOOD = Quality.GOOD
"""An enum member read through its class costs a metaclass lookup (~0.15 us in 3.11), and the
tick compares qualities several times: read once, here."""

SATURATION_BAND = 0.05
"""A loop within this fraction of its output range from the maximum counts as saturated."""
SATURATION_GRACE_S = 60.0
"""A saturated loop dipping below the band for up to this long (noise) keeps the wait going."""


@dataclass(frozen=True)
class SupplyLost:
    """A gas supply that has stopped delivering. Seen first from the device's readbacks,
    independently of the probes: the supply pressure (`<gas>_supply_kpa`) below
    `min_supply_kpa`, or the mass-flow readback (`<gas>_flow_pct`) more than `flow_tolerance`
    below the output written, for `readback_for_s`. While neither readback is GOOD (or only
    one is and it shows nothing wrong), from its loop, as the fallback: the loop asks for all
    the gas it can (`output` at or above
    `saturated_at`) and yet its PV stays more than `margin` on the wrong side of the setpoint
    (`below`: DO under it; else pH over it) without coming back by `recovery`, for `for_s`.
    A working supply that is merely slow moves the PV back and restarts the wait. Resets once
    the PV is back within `reset_margin` of the setpoint: the gas is flowing again.

    While tripped, `overrides` are applied to the outputs (before the hard limits, which win).
    """

    name: str
    channel: str
    output: str
    saturated_at: float
    below: bool
    margin: float
    for_s: float
    recovery: float
    reset_margin: float
    overrides: tuple[tuple[str, float], ...]
    min_supply_kpa: float = 100.0
    flow_tolerance: float = 1.0
    readback_for_s: float = 60.0
    priority: str = "high"
    """Of the alarm raised when it trips: the culture is in danger and only people can fix it."""
    latched: bool = False
    """Stays tripped once the PV is back, until an operator resets it (InterlockSet.reset)."""

    @functools.cached_property
    def pressure_channel(self) -> str:
        """The supply pressure input of this gas (read every tick: worked out once)."""
        return self.output.replace("_pct", "_supply_kpa")

    @functools.cached_property
    def flow_channel(self) -> str:
        """The mass-flow readback input of this gas."""
        return self.output.replace("_pct", "_flow_pct")

    def beyond(self, value: float, setpoint: float) -> bool:
        return value < setpoint - self.margin if self.below else value > setpoint + self.margin

    def back(self, value: float, setpoint: float) -> bool:
        if self.below:
            return value >= setpoint - self.reset_margin
        return value <= setpoint + self.reset_margin

    def better(self, value: float, than: float) -> float:
        """How far `value` is back towards the setpoint from `than` (negative: further off)."""
        return value - than if self.below else than - value


def supply_interlocks(config: ReactorConfig) -> list[SupplyLost]:
    """The enabled `[reactor.interlocks.*_supply_lost]` whose gas a loop drives (without that
    loop nothing shows the supply is gone, so there is nothing to detect it with).

    Reactions, measured through the whole controller on the emulator (supply lost on day 3 of
    the default culture, 7-day runs; viable cells in the chamber at the end as % of the clean
    run's 1.08e6/mL; every alternative in docs/faults.md):

    - O2: fresh medium is roughly air-saturated (0.2 mM O2), so once the mixer delivers N2 the
      perfusion is the only O2 the cells get. Stopping the feed to "cut demand" starves them
      (demand is per cell, not per feed): 28.2 %; no interlock (loop wound up at 60 % O2,
      schedule 1-2 mL/h): 34.3 %; 7 mL/h: 57.1 %; 20 mL/h: 15.8 % (the harvest washes cells
      out). So: perfusion 7 mL/h and the gas at 21 % O2 (air), with the DO loop following it,
      so a returning supply gives air rather than the wound-up 60 % O2.
    - CO2: the base only pushes the pH up: stopped. Fresh medium brings 36 mM bicarbonate and
      only 1.07 mM CO2, which the N2 strips at kLa 3.6 /h: at any perfusion the pumps reach the
      pH stays above 8.2, so perfusion only adds wash-out. Stopped: 2.54 %; no interlock:
      1.85 %; 10 mL/h: 0.37 %. The cells' lactate cannot take 30 mM of bicarbonate down within
      days: without CO2 they die at the full pH-stress rate whatever is done; the CO2 supply
      back or a HEPES-buffered feed (crew, hardware) would save them. The CO2 stays with the
      loop, at its maximum, so a returning supply pulls the pH straight back.
    """
    by_mv = {loop.mv: loop for loop in config.loops.values()}
    out = []
    for name, gas in (("o2_supply_lost", "o2_pct"), ("co2_supply_lost", "co2_pct")):
        cfg = getattr(config.interlocks, name)
        loop = by_mv.get(gas)
        if not cfg.enabled or loop is None:
            continue
        # Base (bicarbonate) only raises the pH: never while the pH cannot be brought down.
        overrides: list[tuple[str, float]] = [("base_ml_per_h", 0.0)] if gas == "co2_pct" else []
        if cfg.perfusion_ml_per_h is not None:
            overrides += [("feed_ml_per_h", cfg.perfusion_ml_per_h),
                          ("harvest_ml_per_h", cfg.perfusion_ml_per_h)]
        if cfg.hold_output is not None:
            overrides.append((gas, cfg.hold_output))
        # At its maximum, give or take 5 % of its range: held there by the anti-windup, a
        # saturated PI still dips with the noise on its P term (pH: 40 %/pH x 0.004 pH x 3).
        saturated_at = loop.output_max - SATURATION_BAND * (loop.output_max - loop.output_min)
        # A gas that raises its PV (O2: DO) leaves it low when lost; CO2 lowers the pH: high.
        out.append(SupplyLost(name, loop.pv, gas, saturated_at, loop.output_raises_pv,
                              cfg.margin, cfg.for_s, cfg.recovery, cfg.reset_margin,
                              tuple(overrides), cfg.min_supply_kpa, cfg.flow_tolerance_pct,
                              cfg.readback_for_s, latched=cfg.latched))
    return out


@dataclass(frozen=True)
class Trip:
    name: str
    t_s: float
    tripped: bool
    """True while tripped (it trips, or its condition cleared but it is latched), False when
    it resets."""
    value: float
    priority: str | None = None
    """Set for interlocks that raise an alarm of their own (no alarm-board alarm covers them)."""
    cleared: bool = False
    """A latched interlock whose condition has cleared: still tripped, waiting for a reset."""
    by: str | None = None
    """The operator who reset it (None: it reset by itself)."""
    reason: str = ""
    """The operator's reason for the reset."""

    @property
    def event(self) -> str:
        """tripped, cleared (condition gone, still latched) or reset."""
        return "reset" if not self.tripped else "cleared" if self.cleared else "tripped"


LOST, PENDING, DELIVERING, UNKNOWN = "lost", "pending", "delivering", "unknown"
"""What a supply's readbacks say: lost (for readback_for_s), lost but not for long enough,
delivering (every readback GOOD and in range), or nothing (a readback not GOOD: the loop
decides)."""


class ResetRefused(ValueError):
    """An operator's reset that may not happen now: not tripped, or the condition persists, or
    the reading that would show it gone is not GOOD."""


class InterlockSet:
    def __init__(self, interlocks: list[Interlock], safe_state: Mapping[str, float],
                 supplies: list[SupplyLost] | None = None,
                 setpoint: Callable[[str], float] | None = None) -> None:
        """`setpoint(channel)` gives the setpoint of the loop measuring `channel` now (an
        operator may change it); needed only with `supplies`."""
        self.interlocks = interlocks
        self.safe_state = dict(safe_state)
        self.supplies = list(supplies or [])
        if self.supplies and setpoint is None:
            raise ValueError("supply interlocks need setpoint(channel) to compare with")
        self._setpoint = setpoint
        self._waiting: dict[str, tuple[float, float]] = {}
        """Supply interlocks whose condition holds: (since when, worst PV since then)."""
        self._saturated_t: dict[str, float] = {}
        """When each supply's loop was last seen at its maximum."""
        self._short_since: dict[str, float] = {}
        """Supplies whose readbacks show them lost: since when."""
        self._written: Mapping[str, float] = {}
        """The outputs as last applied: what the mass-flow readbacks should show."""
        self.tripped: set[str] = set()
        self.cleared: set[str] = set()
        """Latched and tripped, but the condition has cleared: only an operator resets them."""
        self.latched = {lock.name for lock in interlocks if lock.latched} | {
            supply.name for supply in self.supplies if supply.latched}
        self._readings: Mapping[str, Reading] = {}
        """The judged readings of the last tick, which a reset is checked against."""
        self.history: list[Trip] = []
        # The band inside which no interlock can trip, per channel: the fast path of the tick.
        quiet: dict[str, tuple[float, float]] = {}
        for lock in interlocks:
            low, high = quiet.get(lock.channel, (float("-inf"), float("inf")))
            if lock.high:
                high = min(high, lock.trip_at)
            else:
                low = max(low, lock.trip_at)
            quiet[lock.channel] = (low, high)
        self._quiet: tuple[tuple[str, float, float], ...] = tuple(
            (channel, low, high) for channel, (low, high) in quiet.items())
        """(channel, low, high) flat: read every tick, so no tuple is unpacked twice."""
        self._supply_readbacks = tuple(
            (supply, supply.name, supply.pressure_channel, supply.flow_channel,
             supply.min_supply_kpa, supply.output, supply.flow_tolerance)
            for supply in self.supplies)
        """Per supply, what `_watch_supplies` reads every tick to recognise the usual case
        (untripped, every readback GOOD and in range), looked up once here."""

    def apply(self, readings: Mapping[str, Reading], outputs: dict[str, float],
              t_s: float) -> list[Trip]:
        """Update the trip states from good readings, then override `outputs` in place."""
        self._readings = readings
        changes = self._watch_supplies(readings, outputs, t_s) if self.supplies else []
        if not self.tripped:
            for name, low, high in self._quiet:
                reading = readings.get(name)
                if reading is not None and not low < reading.value < high:
                    break
            else:
                if changes:
                    self.history += changes
                self._written = outputs  # see _note_written
                return changes  # nothing tripped and nothing near a limit
        for lock in self.interlocks:
            reading = readings.get(lock.channel)
            if reading is None or reading.quality is not _GOOD:
                continue  # neither trip nor reset on a value we do not trust
            value = reading.value
            name = lock.name
            if name not in self.tripped:
                if lock.trips(value):
                    self.tripped.add(name)
                    changes.append(Trip(name, t_s, True, value))
            elif name in self.cleared:
                if lock.trips(value):  # back while still latched: tripped again
                    self.cleared.discard(name)
                    changes.append(Trip(name, t_s, True, value))
            elif lock.resets(value):
                changes.append(self._condition_cleared(name, t_s, value))
        self.history += changes
        if self.tripped:
            self._override(outputs)
        self._note_written(outputs)
        return changes

    def _note_written(self, outputs: Mapping[str, float]) -> None:
        """Keep this tick's outputs (a new mapping every tick, not changed after the
        interlocks): next tick's readbacks are compared with them."""
        self._written = outputs

    def _readbacks(self, supply: SupplyLost, readings: Mapping[str, Reading],
                   t_s: float) -> tuple[str, float]:
        """What the device's readbacks say of `supply` (LOST, PENDING, DELIVERING, UNKNOWN),
        with the value that shows it (the pressure, else the flow)."""
        both_good, shortfall = self._shortfall(supply, readings)
        if shortfall is not None:
            since = self._short_since.setdefault(supply.name, t_s)
            return (LOST if t_s - since >= supply.readback_for_s else PENDING), shortfall
        self._short_since.pop(supply.name, None)
        return (DELIVERING if both_good else UNKNOWN), float("nan")

    def _shortfall(self, supply: SupplyLost,
                   readings: Mapping[str, Reading]) -> tuple[bool, float | None]:
        """Whether both readbacks are GOOD, and the GOOD value that shows the supply short now
        (the pressure below its minimum, else the flow below the output written; None: none)."""
        pressure = readings.get(supply.pressure_channel)
        flow = readings.get(supply.flow_channel)
        good_pressure = pressure is not None and pressure.quality is _GOOD
        good_flow = flow is not None and flow.quality is _GOOD
        if good_pressure and pressure.value < supply.min_supply_kpa:  # type: ignore[union-attr]
            return good_pressure and good_flow, pressure.value  # type: ignore[union-attr]
        written = self._written.get(supply.output)
        if good_flow and written is not None and (
                written - flow.value > supply.flow_tolerance):  # type: ignore[union-attr]
            return good_pressure, flow.value  # type: ignore[union-attr]
        return good_pressure and good_flow, None

    def _readbacks_refusal(self, supply: SupplyLost) -> str | None:
        """Why the readbacks forbid a reset of `supply` now (None: they allow it)."""
        for chan in (supply.pressure_channel, supply.flow_channel):
            reading = self._readings.get(chan)
            if reading is not None and reading.quality is not _GOOD:
                return (f"interlock {supply.name!r}: {chan} has a {reading.quality.name} "
                        "reading; a reset needs the readbacks GOOD and showing the gas back")
        _, value = self._shortfall(supply, self._readings)
        if value is not None:
            return (f"interlock {supply.name!r}: condition persists, the readbacks show the "
                    f"supply lost ({value:.4g}: {supply.pressure_channel} below "
                    f"{supply.min_supply_kpa:g} kPa or {supply.flow_channel} more than "
                    f"{supply.flow_tolerance:g} % below the {self._written.get(supply.output)}"
                    " written)")
        return None

    def _watch_supplies(self, readings: Mapping[str, Reading], outputs: Mapping[str, float],
                        t_s: float) -> list[Trip]:
        """Trip or reset the supply interlocks; cheap while their loops are not saturated."""
        changes = []
        waiting = self._waiting
        all_tripped = self.tripped
        short_since = self._short_since
        written = self._written
        for (supply, name, pressure_channel, flow_channel, min_supply_kpa, output,
             flow_tolerance) in self._supply_readbacks:
            tripped = name in all_tripped
            if not tripped:
                # The usual tick, inline: both readbacks GOOD and showing the gas delivered
                # (what `_readbacks` would call DELIVERING) leaves an untripped supply as it is
                # but for its shortfall timer, which restarts.
                pressure = readings.get(pressure_channel)
                flow = readings.get(flow_channel)
                if (pressure is not None and pressure.quality is _GOOD
                        and not pressure.value < min_supply_kpa
                        and flow is not None and flow.quality is _GOOD):
                    written_pct = written.get(output)
                    if written_pct is None or not written_pct - flow.value > flow_tolerance:
                        if short_since:
                            short_since.pop(name, None)
                        continue
            state, shown = self._readbacks(supply, readings, t_s)
            if state is not UNKNOWN:
                if tripped:
                    if name in self.cleared and state is LOST:  # lost again while latched
                        self.cleared.discard(name)
                        changes.append(Trip(name, t_s, True, shown, supply.priority))
                    elif name not in self.cleared and state is DELIVERING:
                        changes.append(self._condition_cleared(
                            name, t_s, readings[supply.flow_channel].value, supply.priority))
                elif state is LOST:
                    waiting.pop(name, None)
                    self.tripped.add(name)
                    changes.append(Trip(name, t_s, True, shown, supply.priority))
                continue  # the readbacks decide; the loop is only the fallback
            if not tripped:
                if outputs.get(supply.output, 0.0) >= supply.saturated_at:
                    self._saturated_t[name] = t_s
                else:
                    # The loop has gas to spare: the supply delivers (unless it is a dip).
                    if waiting and t_s - self._saturated_t.get(name, t_s) > SATURATION_GRACE_S:
                        waiting.pop(name, None)
                    continue
            reading = readings.get(supply.channel)
            if reading is None or reading.quality is not _GOOD:
                continue  # keep the state and the wait: decide on trusted values only
            value = reading.value
            setpoint = self._setpoint(supply.channel)  # type: ignore[misc]
            if tripped:
                if name in self.cleared:
                    if supply.beyond(value, setpoint):  # lost again while still latched
                        self.cleared.discard(name)
                        changes.append(Trip(name, t_s, True, value, supply.priority))
                elif supply.back(value, setpoint):
                    changes.append(self._condition_cleared(name, t_s, value, supply.priority))
                continue
            if not supply.beyond(value, setpoint):
                waiting.pop(name, None)
                continue
            since, worst = waiting.get(name, (t_s, value))
            if supply.better(value, worst) >= supply.recovery:
                waiting[name] = (t_s, value)  # coming back: the gas works, just slowly
            elif t_s - since >= supply.for_s:
                waiting.pop(name, None)
                self.tripped.add(name)
                changes.append(Trip(name, t_s, True, value, supply.priority))
            else:
                waiting[name] = (since, value if supply.better(value, worst) < 0 else worst)
        return changes

    def _condition_cleared(self, name: str, t_s: float, value: float,
                           priority: str | None = None) -> Trip:
        """The condition of a tripped interlock is gone: it resets, unless it latches."""
        if name in self.latched:
            self.cleared.add(name)
            return Trip(name, t_s, True, value, priority, cleared=True)
        self.tripped.discard(name)
        return Trip(name, t_s, False, value, priority)

    @property
    def names(self) -> list[str]:
        return [lock.name for lock in self.interlocks] + [s.name for s in self.supplies]

    def reset(self, name: str, t_s: float, by: str, reason: str) -> Trip:
        """An operator's reset of a tripped interlock, checked against the last tick's judged
        reading of its channel: refused (ResetRefused) unless it is tripped, that reading is
        GOOD and the value is back past the reset point. A supply interlock on a device that
        reports its readbacks is checked against those instead: every one GOOD and showing the
        gas back (the PV may take hours to follow). KeyError for an unknown name."""
        lock = next((i for i in self.interlocks if i.name == name), None)
        supply = next((s for s in self.supplies if s.name == name), None)
        if lock is None and supply is None:
            raise KeyError(name)
        if name not in self.tripped:
            raise ResetRefused(f"interlock {name!r} is not tripped")
        if supply is not None and self._readbacks_shown(supply):
            refusal = self._readbacks_refusal(supply)
            if refusal is not None:
                raise ResetRefused(refusal)
            return self._reset(name, t_s, self._readings[supply.flow_channel].value,
                               supply.priority, by, reason)
        chan = lock.channel if lock is not None else supply.channel  # type: ignore[union-attr]
        reading = self._readings.get(chan)
        if reading is None or reading.quality is not _GOOD:
            quality = "no reading" if reading is None else f"a {reading.quality.name} reading"
            raise ResetRefused(f"interlock {name!r}: {chan} has {quality}; a reset needs a "
                               "GOOD value that shows the condition gone")
        value = reading.value
        if lock is not None:
            if not lock.resets(value):
                side = "below" if lock.high else "above"
                raise ResetRefused(f"interlock {name!r}: condition persists, {chan} = "
                                   f"{value:.4g}, not yet {side} its reset point "
                                   f"{lock.reset_at:g}")
            priority = None
        else:
            assert supply is not None
            setpoint = self._setpoint(chan)  # type: ignore[misc]
            if not supply.back(value, setpoint):
                point = (setpoint - supply.reset_margin if supply.below
                         else setpoint + supply.reset_margin)
                side = "above" if supply.below else "below"
                raise ResetRefused(f"interlock {name!r}: condition persists, {chan} = "
                                   f"{value:.4g}, not yet {side} its reset point {point:.4g} "
                                   f"(setpoint {setpoint:g} -+ {supply.reset_margin:g})")
            priority = supply.priority
        return self._reset(name, t_s, value, priority, by, reason)

    def _readbacks_shown(self, supply: SupplyLost) -> bool:
        """The device reports the supply's readbacks: they, not the loop's PV, decide a reset."""
        return any(chan in self._readings
                   for chan in (supply.pressure_channel, supply.flow_channel))

    def _reset(self, name: str, t_s: float, value: float, priority: str | None, by: str,
               reason: str) -> Trip:
        self.tripped.discard(name)
        self.cleared.discard(name)
        self._waiting.pop(name, None)
        trip = Trip(name, t_s, False, value, priority, by=by, reason=reason)
        self.history.append(trip)
        return trip

    def snapshot(self) -> dict[str, list[str]]:
        return {"tripped": sorted(self.tripped), "cleared": sorted(self.cleared)}

    def restore(self, state: list[str] | dict[str, list[str]]) -> None:
        """From `snapshot()` (or an older checkpoint's list of tripped names)."""
        if isinstance(state, list):
            state = {"tripped": state, "cleared": []}
        self.tripped = set(state["tripped"])
        self.cleared = set(state.get("cleared", [])) & self.tripped

    def _override(self, outputs: dict[str, float]) -> None:
        # Supply reactions first: the hard limits below overrule them (a volume limit stops a
        # pump whatever a lost gas supply asked of it).
        for supply in self.supplies:
            if supply.name in self.tripped:
                outputs.update(supply.overrides)
        for lock in self.interlocks:
            if lock.name not in self.tripped:
                continue
            if lock.to_safe_state:
                outputs.update(self.safe_state)
            for output, cap in lock.caps:
                outputs[output] = min(outputs.get(output, 0.0), cap)
