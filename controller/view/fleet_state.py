"""What a subscriber (`bioreactor watch`, the dashboard) knows of each reactor, folded from
MQTT messages one at a time.

Every field is normalised when the message arrives (types checked, strings made printable,
collections bounded), so the renderer formats plain values and can never meet a wrong type. A
message that cannot be read is counted by reason and changes nothing else. Times of arrival come
from the caller (`now_s`, the watch's loop clock): the data age is a difference of two of them.
"""
from __future__ import annotations

import math
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.mqtt.topics import NODE, parse_topic
from controller.view.payload import (
    PayloadRejected,
    decode_object,
    integer,
    mapping,
    number,
    text,
)

log = structlog.get_logger(__name__)

MAX_REACTORS = 64
"""Reactors kept by default (`watch`'s screen); the dashboard sets its own (--max-reactors). A
publisher may invent reactor ids: the cap bounds the memory they can take; messages of
reactors beyond it are counted in `rejected` as `too_many_reactors`."""
MAX_NODES = 64
MAX_ENTRIES = 64
"""Per reactor: readings, loops, outputs, settings and alarms kept (a peer may invent names)."""
RECENT = 5
"""Events and command replies shown."""
TREND_POINTS = 900
"""Per reactor: recent telemetry points kept for live trends (the dashboard's; the historian
holds the rest), so a subscriber's memory stays bounded however long it runs."""
PRIORITIES = ("critical", "high", "medium", "low")
_PRIORITY_OF_SEVERITY = {"critical": "critical", "alarm": "high", "warning": "medium",
                         "info": "low"}
BOARD_STATES = ("unack", "acked", "rtn_unack", "latched", "normal", "shelved", "out_of_service")


@dataclass(frozen=True)
class Reading:
    value: float | None
    unit: str
    quality: str


@dataclass(frozen=True)
class Alarm:
    name: str
    priority: str
    """One of PRIORITIES, or `?` when the message named none."""
    state: str
    """The alarm-board state the message starts with, else `active`/`cleared`."""
    active: bool
    message: str
    t_s: float | None


@dataclass(frozen=True)
class Note:
    """An event or a command reply, as one line."""

    t_s: float | None
    label: str
    message: str


@dataclass(frozen=True)
class RecipeStatus:
    """Where a reactor's recipe is, from its latest telemetry."""

    state: str
    """The procedure's state (`running`, `held`, ...), or `?` when the message named none."""
    phase: str | None
    """The running phase's name; None between phases (before `start`, after the last)."""


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One telemetry message's numbers, flat: readings, `sp.<loop>`, `out.<output>`.

    Stored compactly (the names tuple shared with the previous point when they are the same,
    the numbers in a float array, NaN for none): a full fleet's rings stay tens of MB."""

    t_s: float
    names: tuple[str, ...]
    data: array

    @property
    def values(self) -> dict[str, float | None]:
        return {n: None if math.isnan(v) else v for n, v in zip(self.names, self.data,
                                                                  strict=True)}


@dataclass
class Telemetry:
    seq: int | None = None
    t_s: float | None = None
    wall_ts: str | None = None
    run_id: str | None = None
    readings: dict[str, Reading] = field(default_factory=dict)
    setpoints: dict[str, float | None] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, float | None] = field(default_factory=dict)
    recipe: RecipeStatus | None = None
    """None for a reactor without a recipe (its telemetry has no `recipe`)."""


@dataclass
class ReactorView:
    state: str = "?"
    """As the reactor's own retained status says; `FleetState.shown_state` applies its node's."""
    run_id: str | None = None
    node: str | None = None
    """The daemon (node) whose connection carries this reactor, from its status."""
    telemetry: Telemetry | None = None
    telemetry_at_s: float | None = None
    """When the last telemetry arrived, on the watch's clock: the data age is measured from it."""
    settings: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    alarms_run_id: str | None = None
    """The run the last alarm summary was of: a new run's board starts empty, so a summary
    left on the broker by an earlier run of this reactor id is dropped once the new run is
    known (whichever of the two retained messages arrives first)."""
    events: deque[Note] = field(default_factory=lambda: deque(maxlen=RECENT))
    replies: deque[Note] = field(default_factory=lambda: deque(maxlen=RECENT))
    gaps: int = 0
    """Telemetry seq numbers skipped (a lost message would show here)."""
    trend: deque[TrendPoint] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))
    """Recent telemetry, oldest first, for live trends."""

    def setpoint_unit(self, loop: str) -> str:
        """A loop's unit, from its retained setting (telemetry carries setpoints bare)."""
        return self.settings.get(f"{loop}.setpoint", (None, ""))[1]


@dataclass
class FleetState:
    reactors: dict[str, ReactorView] = field(default_factory=dict)
    max_reactors: int = MAX_REACTORS
    nodes: dict[str, str] = field(default_factory=dict)
    """Each node's state, from `bioreactor/_node/<node>/status` (`lost`: its will)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Messages not read, by reason (too_large, not_utf8, too_deep, not_json, ...)."""
    link: str = "connecting to the broker"
    """The watch's own broker connection: without it every age grows and nothing says why."""

    def update(self, topic: str, payload: bytes, now_s: float) -> bool:
        """Fold one message in; True when the view changed (a redraw point)."""
        parsed = parse_topic(topic)
        if parsed is None:
            return False
        reactor_id, rest = parsed
        if reactor_id == NODE:
            return self._node_status(rest, payload)
        if rest == "cmd" or rest.endswith("/set"):
            return False  # operators' requests: the controller's replies and settings tell
        try:
            body = decode_object(payload)
        except PayloadRejected as exc:
            self.rejected[exc.reason] += 1
            log.info("watch.rejected", topic=text(topic, 200), reason=exc.reason, error=str(exc))
            return True
        view = self._view(reactor_id)
        if view is None:
            self.rejected["too_many_reactors"] += 1
            return True
        if rest == "status":
            view.state = text(body.get("state"), 20) or "?"
            view.run_id = text(body.get("run_id"), 40) or view.run_id
            view.node = text(body.get("node"), 64) or view.node
            _drop_other_runs_alarms(view)
        elif rest == "telemetry":
            self._telemetry(view, body, now_s)
        elif rest == "alarms":
            _fold_alarm(view.alarms, body)
        elif rest == "alarms/summary":
            view.alarms = _summary(body)
            view.alarms_run_id = text(body.get("run_id"), 40)
            _drop_other_runs_alarms(view)
        elif rest == "events":
            view.events.append(Note(number(body.get("t_s")), text(body.get("kind"), 20) or "?",
                                    text(body.get("message")) or ""))
        elif rest == "cmd/reply":
            view.replies.append(_reply(body))
        elif rest.startswith("settings/") and len(view.settings) < MAX_ENTRIES:
            name = text(rest.removeprefix("settings/"), 40) or "?"
            view.settings[name] = (number(body.get("value")), text(body.get("unit"), 16) or "")
        else:
            return False
        return True

    def shown_state(self, view: ReactorView) -> str:
        """The reactor's state as a user should read it: `lost` when its node is lost (the
        node's will speaks for all its reactors, Sparkplug's NDEATH), unless the reactor had
        finished (`done`) before; otherwise its own status."""
        if view.node is not None and self.nodes.get(view.node) == "lost" and view.state != "done":
            return "lost"
        return view.state

    def _node_status(self, rest: str, payload: bytes) -> bool:
        node, _, leaf = rest.partition("/")
        if leaf != "status" or not node:
            return False
        try:
            body = decode_object(payload)
        except PayloadRejected as exc:
            self.rejected[exc.reason] += 1
            return True
        name = text(node, 64) or "?"
        if name not in self.nodes and len(self.nodes) >= MAX_NODES:
            self.rejected["too_many_nodes"] += 1
            return True
        self.nodes[name] = text(body.get("state"), 20) or "?"
        return True

    def _view(self, reactor_id: str) -> ReactorView | None:
        name = text(reactor_id, 40) or "?"
        if name not in self.reactors and len(self.reactors) >= self.max_reactors:
            return None
        return self.reactors.setdefault(name, ReactorView())

    @staticmethod
    def _telemetry(view: ReactorView, body: dict[str, Any], now_s: float) -> None:
        seq = integer(body.get("seq"))
        last = view.telemetry.seq if view.telemetry else None
        if last is not None and seq is not None and seq > last + 1:
            view.gaps += seq - last - 1
        view.telemetry = Telemetry(
            seq=seq, t_s=number(body.get("t_s")), wall_ts=text(body.get("wall_ts"), 32),
            run_id=text(body.get("run_id"), 40),
            readings={name: _reading(r) for name, r in _bounded(body.get("readings"))},
            setpoints={name: number(v) for name, v in _bounded(body.get("setpoints"))},
            modes={name: text(m, 12) or "?" for name, m in _bounded(body.get("modes"))},
            outputs={name: number(v) for name, v in _bounded(body.get("outputs"))},
            recipe=_recipe(body["recipe"]) if "recipe" in body else None)
        view.telemetry_at_s = now_s
        if view.telemetry.t_s is not None:
            view.trend.append(_trend_point(view.telemetry,
                                           view.trend[-1].names if view.trend else ()))
        if view.telemetry.run_id:
            view.run_id = view.telemetry.run_id
            _drop_other_runs_alarms(view)


def _trend_point(t: Telemetry, previous: tuple[str, ...]) -> TrendPoint:
    """Only what a loop's trend draws: the readings named after a loop (`ph`, `temperature_c`,
    `do_pct_air...`), the setpoints and the outputs; a point of all 40-odd readings would make
    a 64-reactor fleet's rings hundreds of MB."""
    loops = tuple(t.setpoints)
    values: dict[str, float | None] = {
        name: r.value for name, r in t.readings.items()
        if any(name == loop or name.startswith(f"{loop}_") for loop in loops)}
    values.update({f"sp.{name}": v for name, v in t.setpoints.items()})
    values.update({f"out.{name}": v for name, v in t.outputs.items()})
    names = tuple(values)
    return TrendPoint(t.t_s or 0.0, previous if names == previous else names,
                      array("d", (math.nan if v is None else v for v in values.values())))


def _bounded(value: Any) -> list[tuple[str, Any]]:
    """The first MAX_ENTRIES items of a JSON object, names made printable."""
    items = list(mapping(value).items())[:MAX_ENTRIES]
    return [(text(name, 40) or "?", item) for name, item in items]


def _recipe(value: Any) -> RecipeStatus:
    """A `recipe` of the wrong type still says the reactor has one, in an unknown state."""
    r = mapping(value)
    phase = r.get("phase")
    return RecipeStatus(text(r.get("state"), 20) or "?",
                        None if phase is None else text(phase, 40) or "?")


def _reading(value: Any) -> Reading:
    r = mapping(value)
    return Reading(number(r.get("value")), text(r.get("unit"), 16) or "",
                   text(r.get("quality"), 16) or "?")


def _drop_other_runs_alarms(view: ReactorView) -> None:
    if view.alarms_run_id is not None and view.run_id is not None \
            and view.alarms_run_id != view.run_id:
        view.alarms = {}
        view.alarms_run_id = None


def _summary(body: dict[str, Any]) -> dict[str, Alarm]:
    """The retained summary replaces what was known: it is the whole board at its `t_s`, and
    alarm messages after it fold onto it (the controller sends both on one connection, in
    order). Entries that are not objects are skipped."""
    board: dict[str, Alarm] = {}
    entries = body.get("alarms")
    for entry in entries[:MAX_ENTRIES] if isinstance(entries, list) else ():
        if isinstance(entry, dict):
            _fold_alarm(board, entry)
    return board


def _fold_alarm(board: dict[str, Alarm], body: dict[str, Any]) -> None:
    """Keep what still needs attention: active alarms and those latched or unacknowledged."""
    name = text(body.get("name"), 40) or "?"
    active = body.get("active") is True
    message = text(body.get("message")) or ""
    head, _, rest = message.partition(": ")
    state = head if head in BOARD_STATES else ("active" if active else "cleared")
    priority = text(body.get("priority"), 12)
    if priority not in PRIORITIES:
        priority = _PRIORITY_OF_SEVERITY.get(text(body.get("severity"), 12) or "", "?")
    if state in ("normal", "cleared") and not active:
        board.pop(name, None)
        return
    if name in board or len(board) < MAX_ENTRIES:
        board[name] = Alarm(name, priority, state, active,
                            rest if head in BOARD_STATES else message, number(body.get("t_s")))


def _reply(body: dict[str, Any]) -> Note:
    ok = body.get("ok") is True
    code = text(body.get("code"), 24) or ("applied" if ok else "?")
    return Note(number(body.get("t_s")), f"{'ok' if ok else 'REFUSED'} {code}",
                text(body.get("message")) or "")
