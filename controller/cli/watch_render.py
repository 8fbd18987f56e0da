"""The watch screen as text: a pure function of the view state and the time now.

`now_s` is on the same clock as the arrival times in the state, so the data age shown keeps
growing while nothing arrives: a silent controller looks silent even before its will says `lost`.
Run times and ages are shown as `2d 03:14:05` (drivers/contract/durations.py).
"""
from __future__ import annotations

from controller.view.fleet_state import PRIORITIES, Alarm, FleetState, Note, ReactorView
from drivers.contract.datasheet import channel
from drivers.contract.durations import format_duration

MAX_ALARMS_SHOWN = 10


def render(state: FleetState, now_s: float) -> str:
    """The whole screen: per reactor its state and data age, its recipe's state and phase (when
    it runs one), readings, loops with units, outputs with units, the alarm board by priority,
    recent events and command replies."""
    lines: list[str] = []
    if not state.reactors:
        lines.append("waiting for bioreactor/... messages")
    for reactor_id in sorted(state.reactors):
        view = state.reactors[reactor_id]
        lines += _reactor(reactor_id, view, state.shown_state(view), now_s)
    if state.rejected:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(state.rejected.items()))
        lines.append(f"ignored messages: {counts}")
    lines.append(f"broker: {state.link}")
    return "\n".join(lines) + "\n"


def _reactor(reactor_id: str, view: ReactorView, shown_state: str, now_s: float) -> list[str]:
    head = f"== {reactor_id}  state={shown_state}"
    if shown_state != view.state:
        head += f" (node {view.node} lost)"
    if view.run_id:
        head += f"  run={view.run_id}"
    tel = view.telemetry
    if tel is None or view.telemetry_at_s is None:
        return [head + "  no telemetry yet", *_board(view), *_notes(view)]
    head += (f"  seq={_fmt(tel.seq)}  run time {_duration(tel.t_s)}"
             f"  data age {format_duration(max(now_s - view.telemetry_at_s, 0.0))}")
    if view.gaps:
        head += f"  GAPS={view.gaps}"
    lines = [head]
    if tel.recipe is not None:
        phase = f"phase {tel.recipe.phase}" if tel.recipe.phase is not None else "no phase"
        lines.append(f"  recipe {tel.recipe.state}, {phase}")
    for name in sorted(tel.readings):
        r = tel.readings[name]
        flag = "" if r.quality == "good" else f"  [{r.quality.upper()}]"
        lines.append(f"  {name:<24} {_fmt(r.value):>12} {r.unit:<10}{flag}")
    for loop in sorted(set(tel.setpoints) | set(tel.modes)):
        setpoint = f"{_fmt(tel.setpoints.get(loop))} {view.setpoint_unit(loop)}".strip()
        lines.append(f"  loop {loop:<19} setpoint {setpoint:<14} mode {tel.modes.get(loop, '?')}")
    if tel.outputs:
        lines.append("  outputs: " + "  ".join(
            f"{name}={_fmt(tel.outputs[name])}{_unit(name)}" for name in sorted(tel.outputs)))
    return lines + _board(view) + _notes(view)


def _board(view: ReactorView) -> list[str]:
    if not view.alarms:
        return ["  alarms: none"]
    ranked = sorted(view.alarms.values(), key=_rank)
    lines = [f"  alarms ({len(ranked)}):"]
    for alarm in ranked[:MAX_ALARMS_SHOWN]:
        lines.append(f"    {alarm.priority.upper():<8} {alarm.state:<14} {alarm.name}: "
                     f"{alarm.message}  (at {_duration(alarm.t_s)})")
    if len(ranked) > MAX_ALARMS_SHOWN:
        lines.append(f"    ... and {len(ranked) - MAX_ALARMS_SHOWN} more")
    return lines


def _rank(alarm: Alarm) -> tuple[bool, int, str]:
    """Active first, then by priority (critical first), then by name."""
    priority = PRIORITIES.index(alarm.priority) if alarm.priority in PRIORITIES else 99
    return (not alarm.active, priority, alarm.name)


def _notes(view: ReactorView) -> list[str]:
    lines: list[str] = []
    for title, notes in (("events", view.events), ("replies", view.replies)):
        if notes:
            lines.append(f"  recent {title}:")
            lines += [_note(note) for note in notes]
    return lines


def _note(note: Note) -> str:
    return f"    {_duration(note.t_s):>12}  {note.label}: {note.message}"


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None or seconds < 0 else format_duration(seconds)


def _unit(output: str) -> str:
    """An output's unit from the datasheet; an unknown name (a newer device) shows bare."""
    try:
        unit = channel(output).unit
    except KeyError:
        return ""
    return "" if unit == "-" else f" {unit}"


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
