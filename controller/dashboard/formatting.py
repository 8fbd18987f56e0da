"""How values read on the pages (Jinja filters); static/app.js formats live updates the same way.

States carry a symbol as well as a colour, so they are told apart without colour (and in a
black-and-white printout or by a colour-blind operator).
"""
from __future__ import annotations

import math

STATE_SYMBOLS = {"running": "▶", "connected": "▶", "done": "■", "stopped": "■", "lost": "✖",
                 "offline": "✖", "error": "✖", "starting": "…", "paused": "⏸", "?": "?"}


def num(value: float | None) -> str:
    """Three significant decimals at most; `–` for no value."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1000 else f"{value:.2f}"


def age(age_s: float | None) -> str:
    if age_s is None:
        return "no data yet"
    if age_s < 90:
        return f"{age_s:.0f} s ago"
    if age_s < 5400:
        return f"{age_s / 60:.0f} min ago"
    return f"{age_s / 3600:.1f} h ago"


def hours(t_s: float | None) -> str:
    """A run time as `12.50 h`."""
    return "–" if t_s is None else f"{t_s / 3600:.2f} h"


def state_symbol(state: str) -> str:
    return STATE_SYMBOLS.get(state, "•")


FILTERS = {"num": num, "age": age, "hours": hours, "state_symbol": state_symbol}
