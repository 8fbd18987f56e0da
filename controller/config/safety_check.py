"""What the config check says about safety, beyond each table's own rules: a safe state that
is not safe and a setpoint the limits would fight (a loop's or one a recipe phase sets) are
errors; a safety function switched off, a schedule entry the run never reaches, an alarm on the
wrong side of its setpoint, a recipe phase with no time fallback and a hold that does not keep
the volume are warnings (docs/alarms.md, "What the config check refuses and warns about").

Each line reads like the tables' own errors (drivers/contract/validation.py): the key, the
value, what is wrong and what is allowed. The thresholds are read from where they are defined:
the hard limits from `hard_limits.default_interlocks`, the alarm limits from the alarms in
effect (the defaults with `[[reactor.alarm]]` applied), the pump names from the datasheet.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from controller.alarms.defaults import LIMIT_ALARMS, default_alarms
from controller.alarms.setup import configured_alarms
from controller.alarms.spec import AlarmConfig, AlarmRemoval
from controller.config.conditions import CLOCKS, comparisons
from controller.config.hard_limits import default_interlocks
from controller.config.reactor import ReactorConfig
from controller.config.recipe import RecipeConfig
from controller.config.schedule import Bolus, PerfusionPoint
from drivers.contract.datasheet import PUMPS
from drivers.contract.durations import format_duration

SAFE_GAS_PCT: dict[str, tuple[float, float]] = {"o2_pct": (5.0, 40.0), "co2_pct": (2.0, 10.0)}
"""The gas mix a safe state may hold the culture at, unattended for hours (docs/alarms.md):
O2 5-40 % of the gas (below ~5 % the dissolved O2 falls under what the cells consume within
hours, hypoxia; above ~40 % oxidative stress harms stem cells; air is 21 %). CO2 2-10 % (the
bicarbonate buffer: with the medium's bicarbonate, 5 % CO2 holds the pH near 7.3; below 2 %
the medium turns alkaline, above 8.0, and above 10 % acidic, below 7.0)."""
HEATER = "heater_pct"
RELAY = "heater_relay"
SUPPLY_INTERLOCKS = ("o2_supply_lost", "co2_supply_lost")


def safe_state_errors(prefix: str, safe_state: dict[str, float]) -> list[str]:
    """`[reactor.safe_state]` holds the culture when nothing controls it: heater off, every
    pump stopped (a harvest pump running unattended drains the chamber, a feed or base pump
    overfills it or drives the pH up), the heater relay open (a safe state cuts the heater's
    power, not only its drive, which a stuck heater ignores), the gas inside SAFE_GAS_PCT."""
    out = []
    for name in (HEATER, RELAY, *sorted(PUMPS)):
        value = safe_state.get(name, 0.0)
        if value > 0:
            what = ("the heater must be off" if name == HEATER
                    else "the heater relay must be open" if name == RELAY
                    else "every pump must be stopped")
            out.append(f"{prefix}.safe_state.{name} = {value!r}: not safe: {what} in the "
                       "safe state, which holds the culture unattended (allowed: value = 0)")
    for name, (low, high) in SAFE_GAS_PCT.items():
        pct = safe_state.get(name)
        if pct is not None and not low <= pct <= high:
            out.append(f"{prefix}.safe_state.{name} = {pct!r}: not safe: outside the gas "
                       f"range that keeps cells alive (allowed: {low:g} <= value <= {high:g})")
    return out


def _in_effect(reactor: ReactorConfig) -> list[AlarmConfig]:
    return configured_alarms(default_alarms(reactor.loops, check_setpoints=False),
                             reactor.alarm)


def setpoint_errors(prefix: str, reactor: ReactorConfig) -> list[str]:
    """A setpoint at or beyond a hard limit's trip point, or outside an absolute-limit alarm
    in effect: the interlock would override the loop all run, or the alarm stand all run. The
    loops' own setpoints and every setpoint a recipe phase sets on its entry."""
    out = []
    alarms = [a for a in _in_effect(reactor) if a.name in LIMIT_ALARMS]
    for name, loop in reactor.loops.items():
        settings = [(f"{prefix}.loops.{name}.setpoint", loop.setpoint)]
        if reactor.recipe is not None:
            settings += [(f"{prefix}.recipe.phase[{i}] ({phase.name}).loops.{name}.setpoint",
                          setting.setpoint)
                         for i, phase in enumerate(reactor.recipe.phase)
                         if (setting := phase.loops.get(name)) is not None
                         and setting.setpoint is not None]
        for key, sp in settings:
            line = _beyond_a_limit(loop.pv, sp, alarms)
            if line:
                out.append(f"{key} = {sp!r}: at or beyond a safety limit: {line}")
    return out


def _beyond_a_limit(pv: str, sp: float, alarms: list[AlarmConfig]) -> str:
    """Why `sp` fights a hard limit or an absolute-limit alarm on `pv`, and what is allowed;
    empty if it does not."""
    low, high = float("-inf"), float("inf")
    reasons = []
    for lock in default_interlocks():
        if lock.channel != pv:
            continue
        if lock.high:
            high = min(high, lock.trip_at)
        else:
            low = max(low, lock.trip_at)
        if lock.trips(sp):
            reasons.append(f"the {lock.name} interlock trips at {lock.trip_at:g}")
    for alarm in alarms:
        if alarm.channel != pv or alarm.limit is None:
            continue
        if alarm.kind == "high":
            high = min(high, alarm.limit)
            if sp >= alarm.limit:
                reasons.append(f"the {alarm.name} alarm stands above {alarm.limit:g}")
        elif alarm.kind == "low":
            low = max(low, alarm.limit)
            if sp <= alarm.limit:
                reasons.append(f"the {alarm.name} alarm stands below {alarm.limit:g}")
    if not reasons:
        return ""
    allowed = " ".join(p for p in (f"{low:g} <" if low > float("-inf") else "", "value",
                                   f"< {high:g}" if high < float("inf") else "") if p)
    return f"{'; '.join(reasons)} (allowed: {allowed})"


def reactor_warnings(prefix: str, reactor: ReactorConfig, duration_s: float) -> list[str]:
    """Safety functions switched off, schedule entries the run never reaches, alarms on the
    wrong side of their loop's setpoint: allowed, but said out loud and recorded."""
    out = []
    for name in SUPPLY_INTERLOCKS:
        if not getattr(reactor.interlocks, name).enabled:
            out.append(f"{prefix}.interlocks.{name}.enabled = False: a safety interlock is "
                       "disabled; a lost gas supply will not be recognised or reacted to")
    has_temperature_loop = any(loop.pv == "temperature_c" for loop in reactor.loops.values())
    for i, entry in enumerate(reactor.alarm):
        if isinstance(entry, AlarmRemoval) and entry.name == "temperature_high" \
                and has_temperature_loop:
            out.append(f"{prefix}.alarm[{i}].enabled = False: the critical temperature_high "
                       "alarm is removed; an overheating chamber raises no alarm")
    end = format_duration(duration_s)
    timetables: tuple[tuple[str, Sequence[PerfusionPoint | Bolus]], ...] = (
        ("perfusion", reactor.schedule.perfusion), ("bolus", reactor.schedule.bolus))
    for kind, entries in timetables:
        for i, timed in enumerate(entries):
            if timed.at >= duration_s:
                out.append(f"{prefix}.schedule.{kind}[{i}].at = {format_duration(timed.at)}: "
                           f"at or after the run's end ({end}); it never happens "
                           f"(allowed: value < {end})")
    if reactor.recipe is not None:
        out += recipe_warnings(f"{prefix}.recipe", reactor.recipe)
    setpoints = {loop.pv: loop.setpoint for loop in reactor.loops.values()}
    for i, entry in enumerate(reactor.alarm):
        if not isinstance(entry, AlarmConfig) or entry.name in LIMIT_ALARMS \
                or entry.channel not in setpoints or entry.limit is None:
            continue
        sp = setpoints[entry.channel]
        if entry.kind == "high" and entry.limit <= sp:
            out.append(f"{prefix}.alarm[{i}].limit = {entry.limit!r}: a high alarm at or "
                       f"below its loop's setpoint {sp:g} stands all run "
                       f"(expected: value > {sp:g})")
        elif entry.kind == "low" and entry.limit >= sp:
            out.append(f"{prefix}.alarm[{i}].limit = {entry.limit!r}: a low alarm at or "
                       f"above its loop's setpoint {sp:g} stands all run "
                       f"(expected: value < {sp:g})")
    return out


def recipe_warnings(prefix: str, recipe: RecipeConfig) -> list[str]:
    """A recipe that can leave an unattended culture stuck: a phase whose exits all wait on the
    culture (no time fallback: if the cells never get there, the phase never ends), a hold
    that pumps in more than it takes out or the reverse (a long hold over- or under-fills
    the chamber until the volume interlocks act)."""
    out = []
    for i, phase in enumerate(recipe.phase):
        where = f"{prefix}.phase[{i}] ({phase.name})"
        timed = any(c.operand in CLOCKS for e in phase.exit for c in comparisons(e.condition))
        if not timed:
            out.append(f"{where}.exit: no exit on phase_time or run_time: if the culture never "
                       "meets its conditions the phase never ends (add a time fallback exit)")
        hold = phase.hold
        net_ml_per_h = hold.feed_ml_per_h + hold.base_ml_per_h - hold.harvest_ml_per_h
        if net_ml_per_h != 0.0:
            verb = "fills" if net_ml_per_h > 0 else "drains"
            out.append(f"{where}.hold: holding {verb} the chamber at {abs(net_ml_per_h):g} "
                       "mL/h (feed + base - harvest); a long hold reaches the volume "
                       "interlocks (expected: harvest_ml_per_h = feed + base)")
    return out


def safety_errors(config: Any) -> list[str]:
    """Every reason `config` (a Config; loading.py calls this, so not imported here) may not
    run, one line each; empty if none."""
    out = []
    for index, reactor in enumerate(config.reactor):
        prefix = f"reactor[{index}]"
        out += safe_state_errors(prefix, reactor.safe_state)
        out += setpoint_errors(prefix, reactor)
    return out


def safety_warnings(config: Any) -> list[tuple[int, str]]:
    """(reactor index, warning) for each thing `config` allows but should not go unsaid; read
    after the command line's overrides (the run's end is `--duration`'s)."""
    return [(index, line) for index, reactor in enumerate(config.reactor)
            for line in reactor_warnings(f"reactor[{index}]", reactor, config.run.duration)]
