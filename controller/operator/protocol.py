"""Signed operator commands: the message, its signature, refusal codes and replies.

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

1. `malformed`: larger than MAX_COMMAND_BYTES (checked before anything is parsed), not UTF-8
   JSON, not an object, duplicate keys, NaN/Infinity or a number too large for a float, a lone
   surrogate in a string.
   `retained`: the message came as a retained one: the broker would hand it over again on
   every reconnect, so a command is never taken from a retained message.
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
   `wrong_topic`: a command on `settings/<name>/set` that is not the write of that setting
   (`<loop>.setpoint` takes `set_setpoint` of that loop only): the topic names the target.
9. `unknown_target` for an unknown loop, alarm or interlock (or an alarm raised outside the
   alarm board, for the shelve and service actions), `forbidden` for a shelf the board's
   policy never allows (an unshelvable priority), then `out_of_range` for a value outside
   the bounds the caller supplied (`CommandBounds`: setpoints, outputs, bolus volume, shelf
   duration).

`apply()` adds `wrong_mode` (`set_output` on a loop in auto mode) and `wrong_state` (unshelving
an alarm that is not shelved, shelving one that is out of service, resetting an interlock that
is not tripped, whose condition persists or whose reading is not GOOD, a recipe command the
procedure's state does not allow), because only the tick knows the loop's mode and the alarm's
and the procedure's state at the moment of application; `unknown_target` for a recipe command
to a reactor without a recipe.
"""
from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

MAX_COMMAND_BYTES = 8192
FIELDS = frozenset({"operator", "reactor", "action", "params", "reason", "ts", "nonce", "sig"})
MODES = ("auto", "manual")
BOLUS_CHANNELS = ("feed_ml_per_h", "base_ml_per_h")
RECIPE_ACTIONS = frozenset({"start", "hold", "restart", "stop", "abort", "confirm"})

NONCE_PATTERN = re.compile(r"[0-9a-f]{16,128}")
SIG_PATTERN = re.compile(r"[0-9a-f]{64}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
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
RETAINED = "retained"
WRONG_TOPIC = "wrong_topic"
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
    "reset_interlock": {"interlock": NAME},
    # The recipe's procedure (docs/recipes.md, "States and commands").
    "start": {},
    "hold": {},
    "restart": {},
    "stop": {},
    "abort": {},
    "confirm": {},
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


def claimed_of(command: Command) -> dict[str, Any]:
    return {"operator": command.operator, "reactor": command.reactor, "action": command.action,
            "reason": command.reason, "nonce": command.nonce, "params": dict(command.params),
            "ts": command.ts}


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
