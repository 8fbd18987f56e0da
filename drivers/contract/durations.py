"""Durations as people write them in configs, fault specs and on the command line: `14d`, `36h`,
`90m` (or `90min`), `30s`, or a bare number of seconds; and the `3d 04:05:06` display form.

It lives in `drivers` because both sides need the same reading of a time: the controller (run
duration, schedule points, alarm delays) and the emulated device (fault start times and
durations), and `sim_hardware` must not import `controller`. One parser, so `90min` or `1.5h`
cannot mean something on one side and be refused on the other.
"""
from __future__ import annotations

import math
import re

_UNITS_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
# No exponents and no signs: nobody writes `1e3` for a duration, and `-5s` is a typo. `min`
# before `m` in the alternation so `90min` is not read as `90m` followed by junk.
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(min|[smhd]?)\s*$")
FORMS = "'30s', '90m' (or '90min'), '36h', '14d'"
"""The accepted forms, as error messages show them."""


def parse_duration_s(value: str | float | int, what: str = "duration") -> float:
    """Seconds in `value`; a bare number (or a string of one) is seconds.

    `what` names the value in errors (e.g. `fault co2_supply_lost: at`), so a bad time in a
    long config or fault list points at its key. Raises ValueError showing the accepted forms;
    negative, non-finite (TOML's `nan`/`inf`) and boolean values are refused: `at = nan` would
    otherwise pass every `< 0` check and silently never come due.
    """
    if isinstance(value, bool):  # an int subclass: `duration = true` is a mistake, not 1 s
        raise ValueError(f"{what} {value!r} is not a number or a string like '14d'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _PATTERN.match(value)):
        seconds = float(match.group(1)) * _UNITS_S[match.group(2) or "s"]
    else:
        raise ValueError(f"{what} {value!r} not understood; use a number of seconds or e.g. "
                         f"{FORMS}")
    if not math.isfinite(seconds):
        raise ValueError(f"{what} {value!r} is not a finite number")
    if seconds < 0:
        raise ValueError(f"{what} {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """`3d 04:05:06` style, for progress lines and tables."""
    days, rest = divmod(round(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock
