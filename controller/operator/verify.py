"""Verification of a raw command, in the order the protocol documents
(controller/operator/protocol.py): the first failed check is the refusal."""
from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Any

from controller.operator.bounds import BOARD_ACTIONS, CommandBounds
from controller.operator.protocol import (
    ACTIONS,
    BAD_SIGNATURE,
    FIELDS,
    FORBIDDEN,
    MALFORMED,
    MAX_COMMAND_BYTES,
    NAME,
    NAME_PATTERN,
    NONCE_PATTERN,
    NUMBER,
    OUT_OF_RANGE,
    REPLAYED,
    RETAINED,
    SIG_PATTERN,
    STALE,
    UNKNOWN_ACTION,
    UNKNOWN_OPERATOR,
    UNKNOWN_TARGET,
    UNSIGNED,
    WRONG_TOPIC,
    Command,
    CommandRefused,
    canonical,
    signature,
)
from controller.operator.replay import ReplayGuard


def verify(
    raw: bytes,
    keys: Mapping[str, bytes],
    replay: ReplayGuard,
    now_wall_s: float,
    bounds: CommandBounds,
    *,
    setting: str | None = None,
    retained: bool = False,
) -> Command:
    """The command in `raw`, checked (see the module docstring); raises CommandRefused.

    `setting`: the setting whose `settings/<name>/set` topic the command arrived on (None: the
    `cmd` topic); `retained`: the broker's retain flag on the message."""
    body = _parse(raw)
    claimed = _claimed(body)
    if retained:
        raise CommandRefused(RETAINED, "a retained message is never a command: the broker "
                             "would deliver it again on every reconnect; publish commands "
                             "without the retain flag", claimed)
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
    if setting is not None:
        _check_setting(setting, body["action"], params, claimed)
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
        if not isinstance(body[key], str) or not NAME_PATTERN.fullmatch(body[key]):
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
    if not isinstance(body["nonce"], str) or not NONCE_PATTERN.fullmatch(body["nonce"]):
        raise CommandRefused(MALFORMED, "nonce must be 16-128 lower-case hex characters",
                             claimed)
    if not isinstance(body["sig"], str) or not SIG_PATTERN.fullmatch(body["sig"]):
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
            if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
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


SETPOINT_SUFFIX = ".setpoint"
"""A loop's setpoint is published as setting `<loop>.setpoint` (runtime/reactor.py)."""


def _check_setting(setting: str, action: str, params: Mapping[str, Any],
                   claimed: Mapping[str, Any]) -> None:
    """A command on `settings/<setting>/set` must write that setting and nothing else."""
    if action == "set_setpoint" and setting == f"{params['loop']}{SETPOINT_SUFFIX}":
        return
    wanted = (f"set_setpoint of loop {setting.removesuffix(SETPOINT_SUFFIX)!r}"
              if setting.endswith(SETPOINT_SUFFIX) else "nothing: it is not a writable setting")
    raise CommandRefused(WRONG_TOPIC, f"{action} {dict(params)} arrived on settings/"
                         f"{setting:.80}/set, which takes {wanted}; send other commands on "
                         "the cmd topic", claimed)


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
    elif action == "reset_interlock" and params["interlock"] not in bounds.interlocks:
        raise CommandRefused(UNKNOWN_TARGET, f"no interlock {params['interlock']!r} (known: "
                             f"{', '.join(sorted(bounds.interlocks)) or 'none'})", claimed)


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
