"""Durations as people write them in configs and on the command line: `14d`, `36h`, `90m`, `30s`."""
from __future__ import annotations

import math
import re

_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$")


def parse_duration_s(value: str | float | int) -> float:
    """Seconds in `value`; a bare number is seconds. ValueError that shows the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is not a number or a string like '14d'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _PATTERN.match(value)
        if not match:
            raise ValueError(
                f"duration {value!r} not understood; use a number of seconds or e.g. "
                "'30s', '90m', '36h', '14d'"
            )
        seconds = float(match.group(1)) * _UNITS_S[match.group(2) or "s"]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {value!r} is not a finite number")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """`3d 04:05:06` style, for progress lines and tables."""
    days, rest = divmod(int(round(seconds)), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock
