"""Channels no device has: the soft sensor's estimates (controller/estimation/), declared here so
that an alarm may watch them like any input (`[[reactor.alarm]] channel = "est_..."`).

Each estimate `est_X` comes with `est_X_sd`, its standard deviation, in the same unit.
"""
from __future__ import annotations

from drivers.contract.datasheet import Channel, Direction, channel

_ESTIMATES = (
    ("est_viable_cells_per_ml", "cells/mL", 2.0e7, "soft sensor: viable cell density"),
    ("est_growth_rate_per_d", "1/d", 5.0, "soft sensor: net specific growth rate"),
    ("est_inhibitor_ng_per_ml", "ng/mL", 1000.0, "soft sensor: secreted inhibitor (model)"),
    ("est_primitive_fraction", "-", 1.0, "soft sensor: CD34+CD90+ share of viable cells"),
)
ESTIMATE_CHANNELS: dict[str, Channel] = {}
for _name, _unit, _max, _text in _ESTIMATES:
    _low = -_max if _unit == "1/d" else 0.0
    ESTIMATE_CHANNELS[_name] = Channel(_name, _unit, _low, _max, Direction.INPUT,
                                       description=_text)
    ESTIMATE_CHANNELS[f"{_name}_sd"] = Channel(f"{_name}_sd", _unit, 0.0, _max, Direction.INPUT,
                                               description=f"{_text}: standard deviation")


def input_channel(name: str) -> Channel:
    """A device input or an estimate called `name`; a ValueError naming the known ones."""
    if name in ESTIMATE_CHANNELS:
        return ESTIMATE_CHANNELS[name]
    try:
        ch = channel(name)
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]}, and the estimates {', '.join(ESTIMATE_CHANNELS)}") \
            from None
    if ch.direction is not Direction.INPUT:
        raise ValueError(f"channel {name!r} is an {ch.direction.value}, expected an input")
    return ch
