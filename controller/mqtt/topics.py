"""The MQTT topic scheme under `bioreactor/<reactor_id>/` and its JSON payloads.

Pure functions over plain values (numbers, strings, mappings), never controller objects, so
the wire format is tested on its own and any consumer (Telegraf, Grafana, a notebook) can be
written from docs/mqtt.md alone. Payloads are compact UTF-8 JSON; non-finite numbers (a NaN
from a failed sensor) become `null` because JSON has no NaN and most parsers reject it.

Times: `wall_ts` is ISO-8601 UTC with milliseconds and a `Z` (readable and sortable as a
string); `t_s` is the simulated/run clock in seconds. The caller supplies both (the wall time
comes from an injected wall-clock callable, never from this module).
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

ROOT = "bioreactor"
NODE = "_node"
"""The segment under ROOT that holds the daemons' (nodes') own topics,
`bioreactor/_node/<node_id>/status`. A reactor id may not start with `_` (check_reactor_id), so
no reactor's topics can ever be a node's."""
STATES = ("init", "running", "paused", "stopping", "done", "lost")
MODES = ("auto", "manual")
SEVERITIES = ("info", "warning", "alarm", "critical")
SEVERITY_OF_PRIORITY = {"low": "info", "medium": "warning", "high": "alarm",
                        "critical": "critical"}
"""An alarm's priority (ISA-18.2, docs/alarms.md) as the wire's severity, one to one, so a
consumer tells a critical alarm from a low one without knowing the alarm configuration."""
LOST_PAYLOAD = b'{"state":"lost"}'
"""The last will: fixed bytes (no timestamp) because the broker sends it after we are gone."""


class ReadingValue(NamedTuple):
    """One reading as it goes on the wire: a plain (value, unit, quality) triple."""

    value: float | None
    unit: str
    quality: str = "good"


@dataclass(frozen=True)
class Topics:
    """All topics of one reactor. `Topics("r1").telemetry == "bioreactor/r1/telemetry"`."""

    reactor_id: str

    def __post_init__(self) -> None:
        check_reactor_id(self.reactor_id)

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.reactor_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def alarms(self) -> str:
        return f"{self.base}/alarms"

    @property
    def alarm_summary(self) -> str:
        """Retained: every alarm that needs attention, replaced whenever that changes."""
        return f"{self.base}/alarms/summary"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_reply(self) -> str:
        return f"{self.base}/cmd/reply"

    def setting(self, name: str) -> str:
        check_name("setting name", name)
        return f"{self.base}/settings/{name}"

    def setting_set(self, name: str) -> str:
        return f"{self.setting(name)}/set"

    @property
    def settings_set_filter(self) -> str:
        """Subscription filter for every setting write of this reactor."""
        return f"{self.base}/settings/+/set"


def check_name(what: str, name: str) -> None:
    """Reject names that would break the topic tree (separators and wildcards)."""
    if not name or any(c in name for c in "/+#\0") or name.startswith("$"):
        raise ValueError(f"{what} {name!r} must be non-empty without '/', '+', '#', NUL or a "
                         "leading '$'")


def check_reactor_id(reactor_id: str) -> None:
    """A topic-safe name that does not start with `_` (reserved for `bioreactor/_node/...`)."""
    check_name("reactor_id", reactor_id)
    if reactor_id.startswith("_"):
        raise ValueError(f"reactor_id {reactor_id!r} must not start with '_': "
                         f"'{ROOT}/{NODE}/...' holds the nodes' topics")


def node_status_topic(node_id: str) -> str:
    """A daemon's retained status (its connection's last will): `bioreactor/_node/<id>/status`."""
    check_name("node id", node_id)
    return f"{ROOT}/{NODE}/{node_id}/status"


def node_subscription() -> str:
    """The filter for every node's status (a watcher needs it to tell a lost node's reactors)."""
    return f"{ROOT}/{NODE}/+/status"


def subscription(reactor_id: str | None = None) -> str:
    """The filter for everything of one reactor, or of all reactors when None."""
    return f"{ROOT}/{reactor_id}/#" if reactor_id else f"{ROOT}/+/#"


def parse_topic(topic: str) -> tuple[str, str] | None:
    """Split `bioreactor/<id>/<rest>` into (id, rest); None for a topic outside the scheme."""
    parts = topic.split("/", 2)
    if len(parts) != 3 or parts[0] != ROOT or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def iso_utc(epoch_s: float) -> str:
    """Epoch seconds to ISO-8601 UTC with milliseconds, e.g. 2025-03-01T12:00:00.250Z."""
    dt = datetime.fromtimestamp(epoch_s, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def finite(x: Any) -> Any:
    """NaN/inf to None (JSON null); everything else unchanged."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _dumps(obj: Any) -> bytes:
    """Compact JSON. orjson, not the standard library: a telemetry message (about 45 readings)
    took 45 us to encode with `json.dumps`, 4 us with orjson, and a 1,000-reactor fleet sends
    1,000 a second from the event loop that ticks it. NumPy scalars and arrays are written as
    numbers; a value orjson cannot write raises TypeError, as `json.dumps` did."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _run(run_id: str | None) -> dict[str, str]:
    """The `run_id` member of a payload, when the caller knows the run."""
    return {} if run_id is None else {"run_id": run_id}


def status_payload(state: str, *, wall_ts: float | None = None, run_id: str | None = None,
                   detail: str | None = None, node: str | None = None,
                   reactors: Sequence[str] | None = None) -> bytes:
    """Retained lifecycle status of a reactor (naming its `node`, whose loss is the reactor's)
    or of a node (listing its `reactors`); `{"state": "lost"}` alone is the node's will."""
    if state not in STATES:
        raise ValueError(f"status state {state!r} not one of {', '.join(STATES)}")
    body: dict[str, Any] = {"state": state}
    if wall_ts is not None:
        body["wall_ts"] = iso_utc(wall_ts)
    if run_id is not None:
        body["run_id"] = run_id
    if node is not None:
        body["node"] = node
    if reactors is not None:
        body["reactors"] = list(reactors)
    if detail is not None:
        body["detail"] = detail
    return _dumps(body)


def node_birth(node_id: str, run_id: str, reactors: Sequence[str], stopped: Collection[str],
               wall_ts: float) -> list[tuple[str, bytes, bool]]:
    """A node's birth, all retained: the node's status `running` first (a consumer then knows
    the node is back, and which reactors it runs), then each reactor not stopped yet."""
    return [(node_status_topic(node_id),
             status_payload("running", wall_ts=wall_ts, run_id=run_id, reactors=reactors), True),
            *((Topics(rid).status,
               status_payload("running", wall_ts=wall_ts, run_id=run_id, node=node_id), True)
              for rid in reactors if rid not in stopped)]


def telemetry_payload(
    *,
    seq: int,
    wall_ts: float,
    t_s: float,
    readings: Mapping[str, tuple[float | None, str, str] | Mapping[str, Any]],
    setpoints: Mapping[str, float | None] | None = None,
    outputs: Mapping[str, float | None] | None = None,
    modes: Mapping[str, str] | None = None,
    run_id: str | None = None,
    recipe: Mapping[str, Any] | None = None,
) -> bytes:
    """One control tick. `seq` starts at 1 per run of a reactor and has no gaps: a consumer
    detects loss; `run_id` tells one run's seq 1 from the next run's (and from a replay of
    an older run's backlog).

    A reading is a (value, unit, quality) triple or a mapping with those keys. `recipe` is the
    procedure's `{"state": ..., "phase": ...}` for a reactor that runs one: it rides on every
    tick so a viewer that joins late sees where the recipe is without replaying its events;
    the key is absent for a reactor without a recipe.
    """
    if seq < 1:
        raise ValueError(f"telemetry seq starts at 1, got {seq}")
    wire_readings: dict[str, dict[str, Any]] = {}
    isfinite = math.isfinite
    for name, r in readings.items():
        # Every tick of every reactor: a triple's fast path first (an ABC's isinstance and a
        # call of `finite` per reading were a third of a 1,000-reactor fleet's payload time).
        if type(r) is tuple:
            value, unit, quality = r
        elif isinstance(r, Mapping):
            value, unit, quality = r["value"], r["unit"], r.get("quality", "good")
        else:
            value, unit, quality = r
        if type(value) is float and not isfinite(value):
            value = None
        wire_readings[name] = {"value": value, "unit": unit, "quality": quality}
    bad_modes = {k: v for k, v in (modes or {}).items() if v not in MODES}
    if bad_modes:
        raise ValueError(f"loop modes must be 'auto' or 'manual', got {bad_modes}")
    return _dumps({
        "seq": seq,
        **_run(run_id),
        "wall_ts": iso_utc(wall_ts),
        "t_s": finite(t_s),
        "readings": wire_readings,
        "setpoints": {k: finite(v) for k, v in (setpoints or {}).items()},
        "outputs": {k: finite(v) for k, v in (outputs or {}).items()},
        "modes": dict(modes or {}),
        **({} if recipe is None else {"recipe": dict(recipe)}),
    })


def setting_payload(*, value: Any, unit: str | None, minimum: float | None = None,
                    maximum: float | None = None, settable: bool = True,
                    description: str | None = None) -> bytes:
    """Retained, self-describing setting: a UI can render and validate a write from it alone."""
    body: dict[str, Any] = {"value": finite(value), "unit": unit, "min": finite(minimum),
                            "max": finite(maximum), "settable": settable}
    if description is not None:
        body["description"] = description
    return _dumps(body)


def alarm_payload(*, wall_ts: float, t_s: float, name: str, severity: str, active: bool,
                  message: str, value: float | None = None,
                  flood: Mapping[str, Any] | None = None, run_id: str | None = None) -> bytes:
    """An alarm raised (active=true) or cleared (active=false). A flood summary also carries
    `flood`: {"count": N, "alarms": [names]}, so a dashboard need not parse the message."""
    if severity not in SEVERITIES:
        raise ValueError(f"alarm severity {severity!r} not one of {', '.join(SEVERITIES)}")
    body = {**_run(run_id), "wall_ts": iso_utc(wall_ts), "t_s": finite(t_s), "name": name,
            "severity": severity, "active": active, "message": message, "value": finite(value)}
    if flood is not None:
        body["flood"] = dict(flood)
    return _dumps(body)


class SummaryAlarm(NamedTuple):
    """One alarm of the retained summary: its board state (`unack`, `acked`, `rtn_unack`,
    `latched`, `shelved`, `out_of_service`), whether its condition stands, since when."""

    name: str
    priority: str
    state: str
    active: bool
    message: str
    t_s: float | None


def alarm_summary_payload(*, wall_ts: float, t_s: float, alarms: Sequence[SummaryAlarm],
                          run_id: str | None = None) -> bytes:
    """Every alarm that needs attention as of `t_s`, each shaped like an alarm message (its
    `message` starting with its state), so a subscriber that connects late starts from the
    whole board and folds later alarm messages onto it."""
    for alarm in alarms:
        if alarm.priority not in SEVERITY_OF_PRIORITY:
            raise ValueError(f"alarm priority {alarm.priority!r} not one of "
                             f"{', '.join(SEVERITY_OF_PRIORITY)}")
    return _dumps({**_run(run_id), "wall_ts": iso_utc(wall_ts), "t_s": finite(t_s),
                   "alarms": [{"name": a.name, "severity": SEVERITY_OF_PRIORITY[a.priority],
                               "priority": a.priority, "active": a.active,
                               "message": f"{a.state}: {a.message}", "t_s": finite(a.t_s)}
                              for a in alarms]})


def event_payload(*, wall_ts: float, t_s: float, kind: str, message: str,
                  data: Mapping[str, Any] | None = None, run_id: str | None = None) -> bytes:
    """Something that happened once (phase change, feed, operator action applied)."""
    return _dumps({**_run(run_id), "wall_ts": iso_utc(wall_ts), "t_s": finite(t_s), "kind": kind,
                   "message": message,
                   "data": {k: finite(v) for k, v in (data or {}).items()}})
