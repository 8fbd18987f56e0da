"""Fuzzing what a form can post to an action: any action, params, reason and reactor (seeded,
repeatable). Each is refused before signing (`forbidden` or `malformed`, never another error,
which would be a 500) or becomes a command the controller's own checks take as well-formed."""
from __future__ import annotations

import json
import random

from plugins.hostile import SEED

from controller.dashboard.accounts import Account, Role
from controller.dashboard.acting import ActionRefused, prepare
from controller.operator.bounds import CommandBounds
from controller.operator.outgoing import build_command
from controller.operator.protocol import (
    ACTIONS,
    FORBIDDEN,
    OUT_OF_RANGE,
    UNKNOWN_TARGET,
    CommandRefused,
)
from controller.operator.replay import ReplayGuard
from controller.operator.verify import verify

CASES = 4000
CONTENT_CODES = (UNKNOWN_TARGET, OUT_OF_RANGE, FORBIDDEN)
"""A well-formed command may still name a loop this reactor lacks, or ask too much: the
controller's answer about its content, not its form."""
KEY = bytes(range(16))
HASH = ("$argon2id$v=19$m=8,t=1,p=1$QHhn4Xm+F2cS5ti/dMbt0A$"
        "EORIXya/M6qjcvRA0eIwmTjnTUlbR+OqKmZvBLOGiOc")
WORDS = ("ph", "do_low", "temperature", "7.2", "-1", "1e999", "nan", "inf", "2h", "90m", "0x10",
         "auto", "manual", "feed_ml_per_h", "", " ", "a" * 65, "a b", "ü", "\x1b[31m", "\n",
         "\ud800", "=", "1_000", "١٢")


def any_text(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(WORDS)
    return "".join(chr(rng.randrange(0, 0x2FFF)) for _ in range(rng.randrange(0, 80)))


def any_form(rng: random.Random) -> tuple[str, dict[str, str], str, str]:
    action = rng.choice([*ACTIONS, "fly", "", "ACK_ALARM"])
    names = [*ACTIONS.get(action, {}), "duration_s", "value", "csrf_token", "x"]
    params = {rng.choice(names): any_text(rng) for _ in range(rng.randrange(0, 4))}
    if rng.random() < 0.5:  # every param the action takes, often a plausible value
        params |= {name: rng.choice([*(kind if isinstance(kind, tuple) else ()), "ph",
                                     "7.2", "2h", "1e3", any_text(rng)])
                   for name, kind in ACTIONS.get(action, {}).items()}
    reason = rng.choice(["why", "why", "why", "", "   ", "x" * 1001, "ok\nforged row",
                         any_text(rng)])
    reactor = rng.choice(["hsc-1"] * 5 + ["_node", "a/b", "#", "+", "", any_text(rng)])
    return action, params, reason, reactor


def test_any_form_is_refused_cleanly_or_signed_well_formed() -> None:
    rng = random.Random(SEED)
    signed = 0
    for case in range(CASES):
        role = rng.choice(list(Role))
        account = Account(name="alice", key_hex=KEY.hex(), role=role, password_hash=HASH)
        action, params, reason, reactor = any_form(rng)
        try:
            typed, clean_reason = prepare(account, reactor=reactor, action=action,
                                          params=params, reason=reason)
        except ActionRefused as exc:
            assert exc.code in ("forbidden", "malformed"), (case, exc.code)
            continue
        except Exception as exc:  # name the case so a failure reproduces from the seed
            raise AssertionError(f"case {case}: {action!r} {params!r} {reason!r} "
                                 f"{reactor!r}") from exc
        command = build_command(operator="alice", reactor=reactor, action=action,
                                params=typed, reason=clean_reason, key=KEY, now_wall_s=1.0,
                                nonce="ab" * 16)
        raw = json.dumps(command, allow_nan=False).encode()
        bounds = CommandBounds(reactor_id=reactor, loops={}, bolus_max_ml=10.0)
        try:
            verify(raw, {"alice": KEY}, ReplayGuard(30.0), 1.0, bounds)
        except CommandRefused as exc:
            assert exc.code in CONTENT_CODES, (
                f"case {case}: signed, but the controller refuses its form: {exc.code}: {exc}")
        signed += 1
    assert signed > CASES // 20  # the fuzz reaches the signing path, not only the refusals
