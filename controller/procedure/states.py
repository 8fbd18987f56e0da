"""The procedure's state model: PackML's states for a batch procedure, with its transition table.

    idle --start--> running --(last phase ends)--> complete
    running --hold--> holding ~~> held --restart--> restarting ~~> running
    running | holding | held | restarting --stop--> stopping ~~> stopped
    any state but the final ones and aborting --abort--> aborting ~~> aborted

`~~>` is a state that completes by itself at the next tick, once the tick of the command has put
the outputs in that state's shape (PackML's "state complete"): an acting state is visible for
one tick in telemetry, so a subscriber sees the command taken before its result. complete,
stopped and aborted are final: a procedure runs once per run (a new run starts a new one).

Why these and not fewer: `hold` and `stop` differ in that a held procedure can go on where it
was, a stopped one cannot; `abort` differs from `stop` in what the outputs do on the way (the
safe pump rates at once, not the phase's declared hold outputs) and that an alarm may ask for it.
"""
from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    HOLDING = "holding"
    HELD = "held"
    RESTARTING = "restarting"
    COMPLETE = "complete"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ABORTING = "aborting"
    ABORTED = "aborted"


TRANSITIONS: dict[str, dict[State, State]] = {
    "start": {State.IDLE: State.RUNNING},
    "hold": {State.RUNNING: State.HOLDING, State.RESTARTING: State.HOLDING},
    "restart": {State.HELD: State.RESTARTING},
    "stop": dict.fromkeys((State.RUNNING, State.HOLDING, State.HELD, State.RESTARTING),
                          State.STOPPING),
    "abort": dict.fromkeys((State.IDLE, State.RUNNING, State.HOLDING, State.HELD,
                            State.RESTARTING, State.STOPPING), State.ABORTING),
}
"""command -> {state it is allowed in: state it leads to}. Anything else is refused."""

SETTLES: dict[State, State] = {
    State.HOLDING: State.HELD,
    State.RESTARTING: State.RUNNING,
    State.STOPPING: State.STOPPED,
    State.ABORTING: State.ABORTED,
}
"""An acting state and the state it completes to at the next tick."""

ADVANCING = frozenset({State.RUNNING})
"""The states in which the phase's time runs, its exits are watched and its boluses given."""
PAUSED = frozenset({State.HOLDING, State.HELD, State.STOPPING, State.STOPPED, State.COMPLETE})
"""The states in which the pumps take the phase's declared hold outputs."""


def target(command: str, state: State) -> State:
    """The state `command` leads to from `state`; a ValueError saying why not and where it is
    allowed."""
    allowed = TRANSITIONS[command]
    if state in allowed:
        return allowed[state]
    where = ", ".join(s.value for s in allowed)
    raise ValueError(f"{command} is not allowed while the recipe is {state.value} "
                     f"(allowed in: {where})")
