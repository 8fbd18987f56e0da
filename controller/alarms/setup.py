"""A reactor's alarm board as its config says: the default alarms with `[[reactor.alarm]]` applied.

The reactor builds its one board with `alarm_board()`; the command bounds
(`operator/bounds.py: bounds_from_config`) read their shelving policy from that same board, so
what an operator is told before a command is applied cannot disagree with what the board does.
Pure functions over the alarm models; no I/O.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from controller.alarms.board import AlarmBoard
from controller.alarms.defaults import default_alarms
from controller.alarms.spec import AlarmBoardConfig, AlarmConfig, AlarmRemoval


def configured_alarms(defaults: Iterable[AlarmConfig],
                      entries: Iterable[AlarmConfig | AlarmRemoval]) -> list[AlarmConfig]:
    """The defaults in their order, each replaced by the configured alarm of the same name or
    dropped by an `enabled = false` entry, then the configured alarms that replace nothing, in
    config order.

    The config has already checked that names are unique and that every removal names a
    default; a removal naming no default is ignored here rather than guessed at.
    """
    entries = list(entries)
    by_name = {entry.name: entry for entry in entries}
    out: list[AlarmConfig] = []
    default_names: set[str] = set()
    for default in defaults:
        default_names.add(default.name)
        chosen = by_name.get(default.name, default)
        if isinstance(chosen, AlarmConfig):
            out.append(chosen)
    out += [e for e in entries if isinstance(e, AlarmConfig) and e.name not in default_names]
    return out


def board_options(board: AlarmBoardConfig) -> dict[str, Any]:
    """`AlarmBoard` keyword arguments from `[reactor.alarm_board]`."""
    return {"flood_threshold": board.flood_threshold, "flood_window_s": board.flood_window_s,
            "flood_exempt": tuple(board.flood_exempt), "max_shelve_s": board.max_shelve_s,
            "unshelvable": tuple(board.unshelvable_priorities)}


def alarm_board(loops: Mapping[str, Any], entries: Iterable[AlarmConfig | AlarmRemoval],
                board: AlarmBoardConfig) -> AlarmBoard:
    """The board a reactor runs: the default alarms of its `loops` (LoopConfigs by name), its
    `[[reactor.alarm]]` `entries`, its `[reactor.alarm_board]` options. Takes the pieces rather
    than the reactor's config so that alarms need not import the config (which imports alarms).

    The setpoints are not checked against the default limits here: the config has checked
    them against the limits in effect, defaults or their replacements
    (controller/config/safety_check.py)."""
    alarms = configured_alarms(default_alarms(loops, check_setpoints=False), entries)
    return AlarmBoard(alarms, **board_options(board))


__all__ = ["alarm_board", "board_options", "configured_alarms"]
