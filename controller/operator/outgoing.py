"""A command as an operator's client makes it: params typed by the action's spec, the body signed.

`bioreactor cmd` and the dashboard both build commands here, so what the controller verifies
(docs/mqtt-commands.md) is signed one way, whichever client an operator uses.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from controller.operator.protocol import ACTIONS, NAME, NAME_PATTERN, NUMBER, sign
from drivers.contract.durations import parse_duration_s


def parse_params(action: str, items: Sequence[str]) -> dict[str, Any]:
    """`["loop=ph", "value=7.2"]` to `{"loop": "ph", "value": 7.2}`, typed by the action's spec.

    Raises ValueError for what the controller would refuse as malformed, so a typo is caught
    before anything is signed or sent.
    """
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"params are k=v, got {item!r}")
        if name not in spec:
            raise ValueError(f"unknown param {name} for {action} (takes: "
                             f"{', '.join(spec) or 'none'})")
        kind = spec[name]
        if kind == NUMBER and name.endswith("_s"):
            # A time: `duration_s=2h` as well as `duration_s=7200`; sent as seconds.
            params[name] = parse_duration_s(text, name)
        elif kind == NUMBER:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {text!r}") from None
            if not math.isfinite(value):  # the controller refuses NaN/infinity as malformed
                raise ValueError(f"{name} must be a finite number, got {text!r}")
            params[name] = value
        elif kind == NAME:
            if not NAME_PATTERN.fullmatch(text):  # as the controller checks it
                raise ValueError(f"{name} must be a name of 1-64 characters "
                                 f"[A-Za-z0-9_.@:-], got {text!r:.80}")
            params[name] = text
        elif text in kind:
            params[name] = text
        else:
            raise ValueError(f"{name} must be one of {', '.join(kind)}, got {text!r}")
    missing = [name for name in spec if name not in params]
    if missing:
        raise ValueError(f"{action}: missing {', '.join(missing)}")
    return params


def build_command(
    *,
    operator: str,
    reactor: str,
    action: str,
    params: Mapping[str, Any],
    reason: str,
    key: bytes,
    now_wall_s: float,
    nonce: str,
) -> dict[str, Any]:
    """The signed command, ready to publish as JSON."""
    body = {"operator": operator, "reactor": reactor, "action": action, "params": dict(params),
            "reason": reason, "ts": now_wall_s, "nonce": nonce}
    return sign(body, key)
