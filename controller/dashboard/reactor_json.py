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

KEY_READINGS = ("temperature", "do", "ph")
"""Shown first on the overview; any other readings follow."""

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
        for name, r in sorted(t.readings.items(), key=lambda kv: _reading_order(kv[0]))}
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
            "reactors": [reactor_json(fleet, rid, now_s) for rid in sorted(fleet.reactors)]}


def _reading_order(name: str) -> tuple[int, str]:
    return (KEY_READINGS.index(name) if name in KEY_READINGS else len(KEY_READINGS), name)


def _note(note: Any) -> dict[str, Any]:
    return {"t_s": note.t_s, "label": note.label, "message": note.message}
