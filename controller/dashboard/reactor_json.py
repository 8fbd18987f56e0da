"""One reactor's view as plain JSON: what `/api/reactors/{id}`, the SSE feed and the templates
all show, built in one place so the first render and the live updates can never disagree.

Pure: the caller passes the loop time `now_s`; ages are differences on that one clock. The page
adds the time since it received the message, so the age keeps counting without the browser's
clock having to agree with the server's.
"""
from __future__ import annotations

from typing import Any

from controller.view.fleet_state import PRIORITIES, FleetState, ReactorView

STALE_AFTER_S = 30.0
"""Telemetry older than this is marked stale (the controller publishes every control period)."""

KEY_LOOPS = ("temperature", "do", "ph")
"""Key readings come first, in this order; then any other loop's."""

PRIORITY_SYMBOL = {"critical": "!!!", "high": "!!", "medium": "!", "low": "i", "?": "?"}
"""Priorities are told apart by text and symbol, not colour alone."""

TREND_LIMIT = 600
"""Live trend points sent with a reactor's first view; later ones come one per message."""


def _priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


def reactor_json(fleet: FleetState, reactor_id: str, now_s: float, *,
                 trend_points: int = 0) -> dict[str, Any]:
    """The view of one known reactor (KeyError when unknown)."""
    view = fleet.reactors[reactor_id]
    t = view.telemetry
    age_s = None if view.telemetry_at_s is None else max(now_s - view.telemetry_at_s, 0.0)
    readings = {} if t is None else {
        name: {"value": r.value, "unit": r.unit, "quality": r.quality}
        for name, r in sorted(t.readings.items())}
    body: dict[str, Any] = {
        "id": reactor_id,
        "state": fleet.shown_state(view),
        "run_id": view.run_id,
        "node": view.node,
        "age_s": age_s,
        "stale": age_s is None or age_s > STALE_AFTER_S,
        "t_s": None if t is None else t.t_s,
        "seq": None if t is None else t.seq,
        "gaps": view.gaps,
        "recipe": None if t is None or t.recipe is None else
        {"state": t.recipe.state, "phase": t.recipe.phase},
        "key_readings": {} if t is None else key_readings(view),
        "readings": readings,
        "setpoints": {} if t is None else dict(t.setpoints),
        "modes": {} if t is None else dict(t.modes),
        "outputs": {} if t is None else dict(t.outputs),
        "settings": {name: {"value": v, "unit": u} for name, (v, u) in view.settings.items()},
        "alarms": alarms_json(view),
        "events": [_note(n) for n in view.events],
        "replies": [_note(n) for n in view.replies],
        "link": fleet.link,
    }
    if trend_points:
        points = list(view.trend)[-trend_points:]
        body["trend"] = [{"t_s": p.t_s, "values": p.values} for p in points]
    elif view.trend:
        last = view.trend[-1]
        body["point"] = {"t_s": last.t_s, "values": last.values}
    return body


def alarms_json(view: ReactorView) -> list[dict[str, Any]]:
    """Alarms needing attention, most urgent first."""
    alarms = sorted(view.alarms.values(), key=lambda a: (_priority_rank(a.priority), a.name))
    return [{"name": a.name, "priority": a.priority,
             "symbol": PRIORITY_SYMBOL.get(a.priority, "?"), "state": a.state,
             "active": a.active, "message": a.message, "t_s": a.t_s} for a in alarms]


def fleet_json(fleet: FleetState, now_s: float) -> dict[str, Any]:
    return {"link": fleet.link, "nodes": dict(fleet.nodes),
            "reactors": [reactor_json(fleet, rid, now_s) for rid in sorted(fleet.reactors)],
            "max_reactors": fleet.max_reactors,
            "rejected": dict(sorted(fleet.rejected.items()))}


def loop_reading(view: ReactorView, loop: str) -> str | None:
    """The reading a loop controls (its PV), by name: telemetry does not say which it is.

    The loop's own name if a reading has it (`ph`), else the shortest reading named
    `<loop>_...` (`temperature_c`, `do_pct_air`, not `do_pct_air_correction`), preferring one
    in the unit of the loop's retained setpoint setting.
    """
    readings = view.telemetry.readings if view.telemetry else {}
    if loop in readings:
        return loop
    named = sorted((n for n in readings if n.startswith(f"{loop}_")), key=lambda n: (len(n), n))
    unit = view.setpoint_unit(loop)
    same_unit = [n for n in named if unit and readings[n].unit == unit]
    candidates = same_unit or named
    return candidates[0] if candidates else None


def key_readings(view: ReactorView) -> dict[str, dict[str, Any]]:
    """Each loop's measurement, keyed by loop name, the key loops first."""
    t = view.telemetry
    if t is None:
        return {}
    loops = sorted(t.setpoints, key=lambda n: (KEY_LOOPS.index(n) if n in KEY_LOOPS
                                               else len(KEY_LOOPS), n))
    shown: dict[str, dict[str, Any]] = {}
    for loop in loops:
        name = loop_reading(view, loop)
        if name is not None:
            r = t.readings[name]
            shown[loop] = {"pv": name, "value": r.value, "unit": r.unit, "quality": r.quality}
    return shown


def _note(note: Any) -> dict[str, Any]:
    return {"t_s": note.t_s, "label": note.label, "message": note.message}
