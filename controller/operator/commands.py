"""Signed operator commands: the protocol, its checks, and how a verified command is applied.

Pure logic, no I/O and no clock: the caller passes the wall time in. The runtime receives raw
bytes from MQTT, calls `verify()` at once (so a refusal is answered and audited straight away),
queues the verified `Command`, and calls `apply()` at the start of the next tick, because only
the tick may touch loops and the schedule. `apply()` is synchronous and cheap for that reason.

Why HMAC and per-operator keys: weeks of unattended culture are steered from a laptop over a
broker the controller does not own. Broker ACLs decide who may *publish*; the signature decides
who may *act*, and names them in the audit trail. A shared-secret MAC (not public-key
signatures) keeps the client a ten-line script in any language; the controller holds every key,
so the config file that lists them must be as protected as the reactors themselves.

Checks, in order (the first failure is the refusal code):

1. `malformed`: not UTF-8 JSON, not an object, larger than MAX_COMMAND_BYTES, duplicate keys,
   NaN/Infinity or a number too large for a float, a lone surrogate in a string.
2. `unsigned`: no `sig` field (or an empty one).
   `malformed` again: missing or extra fields, wrong types, a nonce that is not 16-128
   lower-case hex characters, a sig that is not 64.
3. `unknown_operator`: the operator has no key.
4. `bad_signature`: HMAC-SHA256 over the canonical body does not match (constant-time compare).
5. `stale`: |now - ts| > max_skew_s.
6. `replayed`: the nonce was accepted within the window. From here on the command is authentic
   and fresh, so its nonce is *consumed* even if a later check refuses it: a command refused
   now (say, `set_output` in auto mode) cannot be replayed later when it would succeed.
7. `unknown_target`: another reactor's command.
8. `unknown_action`, then `malformed` for the action's params (missing, extra, wrong type),
   `out_of_range` for a word outside its choices (a mode other than auto/manual).
9. `unknown_target` for an unknown loop or alarm (or an alarm raised outside the alarm board,
   for the shelve and service actions), `forbidden` for a shelf the board's policy never allows
   (an unshelvable priority), then `out_of_range` for a value outside the bounds the caller
   supplied (`CommandBounds`: setpoints, outputs, bolus volume, shelf duration).

`apply()` adds `wrong_mode` (`set_output` on a loop in auto mode) and `wrong_state` (unshelving
an alarm that is not shelved, shelving one that is out of service, ...), because only the tick
knows the loop's mode and the alarm's state at the moment of application.
"""
from __future__ import annotations

import heapq
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any, Protocol

from controller.alarms.setup import alarm_board
from controller.alarms.board import ShelvingForbidden
from controller.config import ReactorConfig

MAX_COMMAND_BYTES = 8192
"""Far above any real command; bounds what a peer can make the parser chew on."""
DEFAULT_MAX_SKEW_S = 30.0
FIELDS = frozenset({"operator", "reactor", "action", "params", "reason", "ts", "nonce", "sig"})
MODES = ("auto", "manual")
BOLUS_CHANNELS = ("feed_ml_per_h", "base_ml_per_h")

_NONCE = re.compile(r"[0-9a-f]{16,128}")
_SIG = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
"""Names of operators, reactors, loops, alarms: a superset of what the config allows for each."""

# Refusal codes (reason_code of CommandRefused, `code` of a reply, `outcome` in the audit).
MALFORMED = "malformed"
UNSIGNED = "unsigned"
UNKNOWN_OPERATOR = "unknown_operator"
BAD_SIGNATURE = "bad_signature"
STALE = "stale"
REPLAYED = "replayed"
OUT_OF_RANGE = "out_of_range"
UNKNOWN_ACTION = "unknown_action"
UNKNOWN_TARGET = "unknown_target"
WRONG_MODE = "wrong_mode"
WRONG_STATE = "wrong_state"
FORBIDDEN = "forbidden"
APPLIED = "applied"

NUMBER = "number"
NAME = "name"
ACTIONS: Mapping[str, Mapping[str, str | tuple[str, ...]]] = {
    "set_setpoint": {"loop": NAME, "value": NUMBER},
    "set_mode": {"loop": NAME, "mode": MODES},
    "set_output": {"loop": NAME, "value": NUMBER},
    "bolus": {"volume_ml": NUMBER, "channel": BOLUS_CHANNELS},
    "pause_schedule": {},
    "resume_schedule": {},
    "ack_alarm": {"alarm": NAME},
    "shelve_alarm": {"alarm": NAME, "duration_s": NUMBER},
    "unshelve_alarm": {"alarm": NAME},
    "remove_alarm_from_service": {"alarm": NAME},
    "return_alarm_to_service": {"alarm": NAME},
}
"""Each action's params: NUMBER (finite int/float, carried as float), NAME (a short identifier),
or a tuple of the allowed strings."""


class CommandRefused(Exception):
    """A command that will not be applied; `code` is machine-readable, `message` for people.

    `claimed` holds what the sender *said* (operator, action, nonce, ...) as far as it could be
    read, so a refusal can be audited and answered with the sender's nonce; none of it is
    authenticated unless the code comes after `bad_signature` in the check order.
    """

    def __init__(self, code: str, message: str, claimed: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.claimed: dict[str, Any] = dict(claimed or {})


@dataclass(frozen=True)
class Command:
    """A verified command: authentic, fresh, not replayed, within bounds."""

    operator: str
    reactor: str
    action: str
    params: Mapping[str, Any]
    reason: str
    ts: float
    nonce: str


@dataclass(frozen=True)
class Change:
    """What a command changed, as JSON-able dicts, for the reply and the audit trail."""

    old: dict[str, Any] | None
    new: dict[str, Any] | None


@dataclass(frozen=True)
class LoopBounds:
    setpoint_min: float
    setpoint_max: float
    output_min: float
    output_max: float


BOARD_ACTIONS = frozenset({"shelve_alarm", "unshelve_alarm", "remove_alarm_from_service",
                           "return_alarm_to_service"})
"""Actions on the alarm board's alarms only (not on alarms raised outside it, like a full
outbox, which can only be acknowledged)."""


@dataclass(frozen=True)
class AlarmLimits:
    """What an operator may do to one alarm of the board: the board's shelving policy."""

    shelvable: bool
    max_shelve_s: float
    priority: str


@dataclass(frozen=True)
class CommandBounds:
    """What an operator may ask of one reactor. Built by the runtime from its config.

    `alarms`: every alarm name `ack_alarm` accepts; `alarm_limits`: the board's alarms, the
    only ones the shelve and service actions accept.
    """

    reactor_id: str
    loops: Mapping[str, LoopBounds]
    bolus_max_ml: float
    alarms: frozenset[str] = field(default_factory=frozenset)
    alarm_limits: Mapping[str, AlarmLimits] = field(default_factory=dict)


# --- the target the runtime implements ---------------------------------------------------------
class PidTarget(Protocol):
    """The part of controller.control.pid.Pid a command touches."""

    setpoint: float
    output: float

    def set_manual(self, output: float) -> None: ...
    def set_auto(self) -> None: ...
    def track(self, output: float) -> None: ...


class LoopTarget(Protocol):
    """controller.control.control_loop.ControlLoop satisfies this as it is."""

    @property
    def setpoint(self) -> float: ...
    @property
    def mode(self) -> str: ...
    @property
    def pid(self) -> PidTarget: ...


class ScheduleTarget(Protocol):
    """controller.control.schedule.FeedSchedule satisfies this as it is."""

    paused: bool


class CommandTarget(Protocol):
    """What `apply()` needs from a reactor; ReactorRuntime implements it.

    - `loop(name)`: the named loop; raises KeyError if there is none.
    - `schedule`: the feed schedule; `paused` stops every pump the schedule drives.
    - `add_bolus(volume_ml, channel, at_s)`: a one-off bolus due at clock time `at_s`.
    - `ack_alarm(name, operator, t_s)`: acknowledge an alarm; True if it was waiting for one.
    - `shelve_alarm(name, operator, t_s, until_s, why)`, `unshelve_alarm(name, operator, t_s,
      why)`, `remove_alarm_from_service(...)`, `return_alarm_to_service(...)`: the board's
      operator actions; each returns the alarm's (old, new) state value and raises KeyError
      for an alarm not on the board, `alarms.ShelvingForbidden` for a shelf the board's policy
      refuses, ValueError for an action the alarm's state does not allow. `why` is the
      command's reason, for the alarm journal.
    """

    def loop(self, name: str) -> LoopTarget: ...
    @property
    def schedule(self) -> ScheduleTarget: ...
    def add_bolus(self, volume_ml: float, channel: str, at_s: float) -> None: ...
    def ack_alarm(self, name: str, operator: str, t_s: float) -> bool: ...
    def shelve_alarm(self, name: str, operator: str, t_s: float, until_s: float,
                     why: str) -> tuple[str, str]: ...
    def unshelve_alarm(self, name: str, operator: str, t_s: float,
                       why: str) -> tuple[str, str]: ...
    def remove_alarm_from_service(self, name: str, operator: str, t_s: float,
                                  why: str) -> tuple[str, str]: ...
    def return_alarm_to_service(self, name: str, operator: str, t_s: float,
                                why: str) -> tuple[str, str]: ...


# --- signing -----------------------------------------------------------------------------------
def canonical(body: Mapping[str, Any]) -> bytes:
    """The signed bytes: every field except `sig`, keys sorted at every level, no whitespace,
    UTF-8 (non-ASCII characters as themselves, not \\u escapes)."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def signature(body: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical(body), sha256).hexdigest()


def sign(body: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """The body with its `sig` added (any old `sig` is replaced); for the client."""
    return {**{k: v for k, v in body.items() if k != "sig"}, "sig": signature(body, key)}


def parse_key(text: str) -> bytes:
    """An operator key written as hex (whitespace ignored); at least 16 bytes (128 bits)."""
    try:
        key = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise ValueError("an operator key must be hex digits") from None
    if len(key) < 16:
        raise ValueError(f"an operator key must be at least 16 bytes, got {len(key)}")
    return key


# --- replay protection -------------------------------------------------------------------------
class ReplayGuard:
    """Nonces accepted within the skew window, so a captured command cannot be sent again.

    A command older than `max_skew_s` is refused as stale anyway, so a nonce only needs keeping
    until its command's `ts + max_skew_s` has passed: memory is bounded by the number of
    commands accepted in one window (and only authenticated commands get here).

    A restart forgets the nonces; the timestamp window still bounds a replay to commands signed
    in the last `max_skew_s` seconds. To close even that gap, the runtime reloads the nonces of
    recently accepted commands from the audit trail with `seed()` at start. Time is the wall
    clock (the sender's `ts` is wall time too): a wall-clock step larger than the window opens
    or shuts it accordingly.
    """

    def __init__(self, max_skew_s: float = DEFAULT_MAX_SKEW_S) -> None:
        if not max_skew_s > 0:
            raise ValueError(f"max_skew_s must be > 0, got {max_skew_s}")
        self.max_skew_s = float(max_skew_s)
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    @property
    def remembered(self) -> int:
        """How many nonces are held (not __len__: an empty guard must not be falsy)."""
        return len(self._expiry)

    def fresh(self, ts: float, now_wall_s: float) -> bool:
        return abs(now_wall_s - ts) <= self.max_skew_s

    def remember(self, nonce: str, ts: float, now_wall_s: float) -> bool:
        """Record `nonce`; False if it was already recorded (a replay)."""
        self._evict(now_wall_s)
        if nonce in self._expiry:
            return False
        expiry = ts + self.max_skew_s
        self._expiry[nonce] = expiry
        heapq.heappush(self._heap, (expiry, nonce))
        return True

    def seed(self, nonces: Iterable[str], now_wall_s: float) -> None:
        """Remember nonces from before a restart for one full window from now (conservative:
        their commands' exact `ts` does not matter, a nonce kept too long costs nothing)."""
        for nonce in nonces:
            self.remember(nonce, now_wall_s, now_wall_s)

    def _evict(self, now_wall_s: float) -> None:
        heap = self._heap
        while heap and heap[0][0] < now_wall_s:
            expiry, nonce = heapq.heappop(heap)
            if self._expiry.get(nonce) == expiry:
                del self._expiry[nonce]


# --- verification ------------------------------------------------------------------------------
def verify(
    raw: bytes,
    keys: Mapping[str, bytes],
    replay: ReplayGuard,
    now_wall_s: float,
    bounds: CommandBounds,
) -> Command:
    """The command in `raw`, checked (see the module docstring); raises CommandRefused."""
    body = _parse(raw)
    claimed = _claimed(body)
    if not body.get("sig"):
        raise CommandRefused(UNSIGNED, "the command has no signature", claimed)
    _check_fields(body, claimed)
    key = keys.get(body["operator"])
    if key is None:
        raise CommandRefused(UNKNOWN_OPERATOR, f"no key for operator {body['operator']!r}",
                             claimed)
    if not hmac.compare_digest(signature(body, key), body["sig"]):
        raise CommandRefused(BAD_SIGNATURE, "the signature does not match the body", claimed)
    ts = float(body["ts"])
    if not replay.fresh(ts, now_wall_s):
        raise CommandRefused(
            STALE, f"ts {ts} is {now_wall_s - ts:+.1f} s from the controller's wall clock "
            f"(allowed: within {replay.max_skew_s:g} s); check the sender's clock", claimed)
    if not replay.remember(body["nonce"], ts, now_wall_s):
        raise CommandRefused(REPLAYED, f"nonce {body['nonce']} was already used", claimed)
    if body["reactor"] != bounds.reactor_id:
        raise CommandRefused(UNKNOWN_TARGET, f"command for reactor {body['reactor']!r} "
                             f"received by {bounds.reactor_id!r}", claimed)
    params = _check_params(body["action"], body["params"], claimed)
    _check_bounds(body["action"], params, bounds, claimed)
    return Command(body["operator"], body["reactor"], body["action"], params, body["reason"],
                   ts, body["nonce"])


def _parse(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRefused(MALFORMED, f"{len(raw)} bytes; at most {MAX_COMMAND_BYTES}")
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constants, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CommandRefused(MALFORMED, f"not JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise CommandRefused(MALFORMED, f"a command is a JSON object, got {type(body).__name__}")
    try:
        canonical(body)  # what cannot be signed (a lone surrogate, a huge int) cannot be stored
    except (ValueError, OverflowError) as exc:
        raise CommandRefused(MALFORMED, f"not canonicalisable: {exc}"[:300]) from None
    return body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A duplicate key means two parsers may read two different commands: refuse it."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a float")
    return value


def _claimed(body: Mapping[str, Any]) -> dict[str, Any]:
    """The sender's own words, where they have the right shape, for the refusal's audit row."""
    claimed: dict[str, Any] = {}
    for key in ("operator", "reactor", "action", "reason", "nonce"):
        if isinstance(body.get(key), str):
            claimed[key] = body[key][:256]
    if isinstance(body.get("params"), dict):
        claimed["params"] = body["params"]
    if _is_number(body.get("ts")):
        claimed["ts"] = float(body["ts"])
    return claimed


def _check_fields(body: Mapping[str, Any], claimed: Mapping[str, Any]) -> None:
    missing, extra = FIELDS - body.keys(), body.keys() - FIELDS
    if missing or extra:
        raise CommandRefused(MALFORMED, "; ".join(
            part for part in (f"missing: {sorted(missing)}" if missing else "",
                              f"unexpected: {sorted(extra)}" if extra else "") if part
        ), claimed)
    for key in ("operator", "reactor", "action"):
        if not isinstance(body[key], str) or not _NAME.fullmatch(body[key]):
            raise CommandRefused(MALFORMED, f"{key} must be a name of 1-64 characters "
                                 f"[A-Za-z0-9_.@:-], got {body[key]!r:.80}", claimed)
    if not isinstance(body["reason"], str) or not body["reason"].strip():
        raise CommandRefused(MALFORMED, "reason must be a non-empty string: every action is "
                             "on record with why", claimed)
    if len(body["reason"]) > 1000:
        raise CommandRefused(MALFORMED, "reason is longer than 1000 characters", claimed)
    if not isinstance(body["params"], dict):
        raise CommandRefused(MALFORMED, "params must be an object", claimed)
    if not _is_number(body["ts"]):
        raise CommandRefused(MALFORMED, f"ts must be epoch seconds, got {body['ts']!r:.80}",
                             claimed)
    if not isinstance(body["nonce"], str) or not _NONCE.fullmatch(body["nonce"]):
        raise CommandRefused(MALFORMED, "nonce must be 16-128 lower-case hex characters",
                             claimed)
    if not isinstance(body["sig"], str) or not _SIG.fullmatch(body["sig"]):
        raise CommandRefused(MALFORMED, "sig must be 64 lower-case hex characters", claimed)


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _check_params(action: str, params: Mapping[str, Any],
                  claimed: Mapping[str, Any]) -> dict[str, Any]:
    spec = ACTIONS.get(action)
    if spec is None:
        raise CommandRefused(UNKNOWN_ACTION, f"unknown action {action!r} "
                             f"(known: {', '.join(ACTIONS)})", claimed)
    missing, extra = spec.keys() - params.keys(), params.keys() - spec.keys()
    if missing or extra:
        raise CommandRefused(MALFORMED, f"{action} takes params {sorted(spec) or 'none'}; "
                             f"missing {sorted(missing)}, unexpected {sorted(extra)}", claimed)
    out: dict[str, Any] = {}
    for name, kind in spec.items():
        value = params[name]
        if kind == NUMBER:
            if not _is_number(value):
                raise CommandRefused(MALFORMED, f"{name} must be a number, got {value!r:.80}",
                                     claimed)
            out[name] = float(value)
        elif kind == NAME:
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise CommandRefused(MALFORMED, f"{name} must be a name, got {value!r:.80}",
                                     claimed)
            out[name] = value
        else:
            if not isinstance(value, str):
                raise CommandRefused(MALFORMED, f"{name} must be a string, got {value!r:.80}",
                                     claimed)
            if value not in kind:
                raise CommandRefused(OUT_OF_RANGE, f"{name} = {value!r:.80} not allowed "
                                     f"(allowed: {', '.join(kind)})", claimed)
            out[name] = value
    return out


def _check_bounds(action: str, params: Mapping[str, Any], bounds: CommandBounds,
                  claimed: Mapping[str, Any]) -> None:
    if "loop" in params:
        loop = bounds.loops.get(params["loop"])
        if loop is None:
            raise CommandRefused(UNKNOWN_TARGET, f"no loop {params['loop']!r} on reactor "
                                 f"{bounds.reactor_id} (loops: {', '.join(bounds.loops)})",
                                 claimed)
        if action == "set_setpoint":
            _within("value", params["value"], loop.setpoint_min, loop.setpoint_max, claimed)
        elif action == "set_output":
            _within("value", params["value"], loop.output_min, loop.output_max, claimed)
    elif action == "bolus":
        value = params["volume_ml"]
        if not 0.0 < value <= bounds.bolus_max_ml:
            raise CommandRefused(OUT_OF_RANGE, f"volume_ml = {value:g} outside the allowed "
                                 f"range 0 < volume_ml <= {bounds.bolus_max_ml:g}", claimed)
    elif action == "ack_alarm" and params["alarm"] not in bounds.alarms:
        raise CommandRefused(UNKNOWN_TARGET, f"no alarm {params['alarm']!r} (known: "
                             f"{', '.join(sorted(bounds.alarms)) or 'none'})", claimed)
    elif action in BOARD_ACTIONS:
        _check_board_alarm(action, params, bounds, claimed)


def _check_board_alarm(action: str, params: Mapping[str, Any], bounds: CommandBounds,
                       claimed: Mapping[str, Any]) -> None:
    name = params["alarm"]
    limits = bounds.alarm_limits.get(name)
    if limits is None:
        if name in bounds.alarms:
            raise CommandRefused(UNKNOWN_TARGET, f"alarm {name!r} is raised outside the alarm "
                                 f"board: it can only be acknowledged ({action} is for the "
                                 "board's alarms)", claimed)
        raise CommandRefused(UNKNOWN_TARGET, f"no alarm {name!r} on the alarm board (known: "
                             f"{', '.join(sorted(bounds.alarm_limits)) or 'none'})", claimed)
    if action != "shelve_alarm":
        return
    if not limits.shelvable:
        raise CommandRefused(FORBIDDEN, f"alarm {name!r} is {limits.priority} priority, which "
                             "this reactor's alarm board does not let anyone shelve "
                             "(unshelvable_priorities); remove_alarm_from_service is the "
                             "deliberate way to silence it", claimed)
    duration = params["duration_s"]
    if not 0.0 < duration <= limits.max_shelve_s:
        raise CommandRefused(OUT_OF_RANGE, f"duration_s = {duration:g} outside the allowed "
                             f"range 0 < duration_s <= {limits.max_shelve_s:g} for alarm "
                             f"{name!r}", claimed)


def _within(name: str, value: float, low: float, high: float,
            claimed: Mapping[str, Any]) -> None:
    if not low <= value <= high:
        raise CommandRefused(OUT_OF_RANGE, f"{name} = {value:g} outside the allowed range "
                             f"[{low:g}, {high:g}]", claimed)


# --- application -------------------------------------------------------------------------------
def apply(command: Command, target: CommandTarget, now_s: float) -> Change:
    """Carry out a verified command on the tick at clock time `now_s`; what changed.

    Raises CommandRefused(`wrong_mode`) for `set_output` on a loop in auto mode, and
    (`unknown_target`) if the target has lost a loop the bounds still listed.
    """
    p = command.params
    action = command.action
    if "loop" in p:
        try:
            loop = target.loop(p["loop"])
        except KeyError:
            raise CommandRefused(UNKNOWN_TARGET, f"no loop {p['loop']!r}",
                                 _claimed_of(command)) from None
        if action == "set_setpoint":
            old = loop.setpoint
            loop.pid.setpoint = p["value"]
            return Change({"setpoint": old}, {"setpoint": loop.setpoint})
        if action == "set_mode":
            old_mode = loop.mode
            if p["mode"] == "manual" and old_mode != "manual":
                loop.pid.set_manual(loop.pid.output)  # hold what the actuator does: bumpless
            elif p["mode"] == "auto" and old_mode != "auto":
                loop.pid.set_auto()
            return Change({"mode": old_mode, "output": loop.pid.output},
                          {"mode": loop.mode, "output": loop.pid.output})
        if action == "set_output":
            if loop.mode != "manual":
                raise CommandRefused(WRONG_MODE, f"loop {p['loop']!r} is in {loop.mode} mode; "
                                     "set_mode manual first", _claimed_of(command))
            old_output = loop.pid.output
            loop.pid.track(p["value"])
            return Change({"output": old_output}, {"output": loop.pid.output})
    if action in BOARD_ACTIONS:
        return _apply_board_action(command, target, now_s)
    schedule = target.schedule
    if action == "bolus":
        target.add_bolus(p["volume_ml"], p["channel"], now_s)
        return Change(None, {"volume_ml": p["volume_ml"], "channel": p["channel"], "at_s": now_s,
                             "schedule_paused": schedule.paused})
    if action in ("pause_schedule", "resume_schedule"):
        old_paused = schedule.paused
        schedule.paused = action == "pause_schedule"
        return Change({"paused": old_paused}, {"paused": schedule.paused})
    if action == "ack_alarm":
        was_active = target.ack_alarm(p["alarm"], command.operator, now_s)
        return Change({"alarm": p["alarm"], "unacknowledged": was_active},
                      {"alarm": p["alarm"], "unacknowledged": False})
    raise CommandRefused(UNKNOWN_ACTION, f"unknown action {action!r}", _claimed_of(command))


def _apply_board_action(command: Command, target: CommandTarget, now_s: float) -> Change:
    """Shelve, unshelve, remove from or return to service: the alarm's state before and after
    (and a shelf's expiry on the run clock, `shelved_until_s`)."""
    name, who, why = command.params["alarm"], command.operator, command.reason
    until_s = None
    try:
        if command.action == "shelve_alarm":
            until_s = now_s + command.params["duration_s"]
            old, new = target.shelve_alarm(name, who, now_s, until_s, why)
        elif command.action == "unshelve_alarm":
            old, new = target.unshelve_alarm(name, who, now_s, why)
        elif command.action == "remove_alarm_from_service":
            old, new = target.remove_alarm_from_service(name, who, now_s, why)
        else:
            old, new = target.return_alarm_to_service(name, who, now_s, why)
    except KeyError:
        raise CommandRefused(UNKNOWN_TARGET, f"no alarm {name!r} on the alarm board",
                             _claimed_of(command)) from None
    except ShelvingForbidden as exc:
        raise CommandRefused(FORBIDDEN, str(exc), _claimed_of(command)) from None
    except ValueError as exc:  # the alarm's state does not allow it (now, at the tick)
        raise CommandRefused(WRONG_STATE, str(exc), _claimed_of(command)) from None
    after: dict[str, Any] = {"alarm": name, "state": new}
    if until_s is not None:
        after["shelved_until_s"] = until_s
    return Change({"alarm": name, "state": old}, after)


def _claimed_of(command: Command) -> dict[str, Any]:
    return {"operator": command.operator, "reactor": command.reactor, "action": command.action,
            "reason": command.reason, "nonce": command.nonce, "params": dict(command.params),
            "ts": command.ts}


# --- replies -----------------------------------------------------------------------------------
def build_reply(
    nonce: str | None,
    *,
    ok: bool,
    code: str,
    message: str,
    t_s: float,
    old: Any = None,
    new: Any = None,
) -> dict[str, Any]:
    """The payload published on bioreactor/<ID>/cmd/reply. `nonce` is the sender's (None when
    the command was too malformed to carry one), `t_s` the controller's clock time."""
    return {"nonce": nonce, "ok": ok, "code": code, "message": message, "old": old, "new": new,
            "t_s": t_s}


def applied_reply(command: Command, change: Change, t_s: float) -> dict[str, Any]:
    return build_reply(command.nonce, ok=True, code=APPLIED, message=f"{command.action} applied",
                       t_s=t_s, old=change.old, new=change.new)


def refused_reply(refused: CommandRefused, t_s: float) -> dict[str, Any]:
    return build_reply(refused.claimed.get("nonce"), ok=False, code=refused.code,
                       message=refused.message, t_s=t_s)


def bounds_from_config(
    reactor: ReactorConfig, *, bolus_max_ml: float, alarms: Iterable[str] = ()
) -> CommandBounds:
    """Bounds for a reactor from its config: each loop's `setpoint_min`/`setpoint_max` (default:
    the PV's datasheet range, which a config should narrow: 0-60 degC lets a typo through that
    35-39 would not) and its output limits; the alarm board's shelving policy per alarm (from
    a board built as the reactor builds its own, `alarm_setup.alarm_board`)."""
    loops = {
        name: LoopBounds(lc.min_setpoint, lc.max_setpoint, lc.output_min, lc.output_max)
        for name, lc in reactor.loops.items()
    }
    board = alarm_board(reactor.loops, reactor.alarm, reactor.alarm_board)
    limits = {name: AlarmLimits(board.may_shelve(name), board.max_shelve_s_for(name),
                                board[name].priority) for name in board.alarms}
    return CommandBounds(reactor.id, loops, bolus_max_ml, frozenset(alarms), limits)
