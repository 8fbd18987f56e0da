"""`bioreactor cmd`: sign an operator command, publish it, wait for the controller's reply.

The pure half (`parse_params`, `build_command`) is separate from the MQTT half
(`send_command`) so what gets signed is tested without a broker. The reply topic is shared by
every operator of a reactor; the client picks its own reply out by nonce.

Exit codes: 0 applied, 1 refused by the controller, 2 usage error, bad key, broker
unreachable or no reply within --timeout (the command may still have been applied: check the
audit trail or the reactor's status before sending it again with a new nonce).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from controller.mqtt.client import Client
from controller.mqtt.link import ACCEPTED_FORM, MqttSettings
from controller.mqtt.topics import Topics
from controller.operator.protocol import ACTIONS, NAME, NUMBER, parse_key, sign
from drivers.contract.durations import parse_duration_s

DEFAULT_TIMEOUT_S = 15.0
"""Long enough for the next control tick at the default 1 s period, plus a slow broker."""


def add_cmd_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `cmd` to the `bioreactor` subparsers (controller/cli/main.py)."""
    actions = "; ".join(f"{name} {' '.join(f'{p}=...' for p in spec)}".strip()
                        for name, spec in ACTIONS.items())
    cmd = sub.add_parser(
        "cmd", help="send a signed operator command to a running reactor",
        description=f"Sign and send one operator command. Actions: {actions}. "
                    "See docs/mqtt-commands.md.",
    )
    cmd.add_argument("--mqtt", required=True, metavar="URL", help=ACCEPTED_FORM)
    cmd.add_argument("--ca-file", type=Path, help="CA bundle for an mqtts:// broker")
    cmd.add_argument("--reactor", required=True, metavar="ID")
    cmd.add_argument("--operator", required=True, metavar="NAME")
    key = cmd.add_mutually_exclusive_group(required=True)
    key.add_argument("--key-file", type=Path, metavar="FILE",
                     help="file holding the operator key as hex (keep it mode 600)")
    key.add_argument("--key", metavar="HEX",
                     help="the key as hex (visible in `ps` and shell history; prefer --key-file)")
    cmd.add_argument("--reason", required=True, help="why: recorded in the audit trail")
    cmd.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                     help=f"seconds to wait for the reply (default {DEFAULT_TIMEOUT_S:g})")
    cmd.add_argument("action", choices=sorted(ACTIONS))
    cmd.add_argument("params", nargs="*", metavar="k=v", help="the action's params")
    cmd.set_defaults(func=run_cmd)
    return cmd


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
                params[name] = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {text!r}") from None
        elif kind == NAME or text in kind:
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


async def send_command(settings: MqttSettings, command: Mapping[str, Any], *,
                       timeout_s: float) -> dict[str, Any]:
    """Publish `command` (QoS 1) and return the reply carrying its nonce.

    Subscribes before publishing, so a fast reply cannot be missed. Raises TimeoutError when no
    reply arrives in `timeout_s`, aiomqtt.MqttError when the broker cannot be reached.
    """
    topics = Topics(command["reactor"])
    async with asyncio.timeout(timeout_s):
        async with Client(**settings.client_kwargs()) as client:
            await client.subscribe(topics.cmd_reply, qos=1)
            await client.publish(topics.cmd, json.dumps(command).encode(), qos=1)
            async for message in client.messages:
                try:
                    reply = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    continue
                if isinstance(reply, dict) and reply.get("nonce") == command["nonce"]:
                    return reply
    raise TimeoutError("the broker closed the subscription")  # pragma: no cover


def read_key(args: argparse.Namespace) -> bytes:
    """The operator key from --key or --key-file; warns when the file is readable by others."""
    if args.key is not None:
        return parse_key(args.key)
    path = Path(args.key_file)
    if os.name == "posix" and path.stat().st_mode & 0o077:
        print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
    return parse_key(path.read_text())


def run_cmd(
    args: argparse.Namespace,
    *,
    wall_clock: Callable[[], float] = time.time,
    new_nonce: Callable[[], str] = lambda: secrets.token_hex(16),
) -> int:
    """`bioreactor cmd ...`: 0 applied, 1 refused, 2 usage/key/broker/timeout (see module)."""
    try:
        settings = MqttSettings.from_url(args.mqtt, ca_file=args.ca_file)
        key = read_key(args)
        params = parse_params(args.action, args.params)
        Topics(args.reactor)  # rejects ids that would break the topic tree
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = build_command(operator=args.operator, reactor=args.reactor, action=args.action,
                            params=params, reason=args.reason, key=key,
                            now_wall_s=wall_clock(), nonce=new_nonce())
    try:
        reply = asyncio.run(send_command(settings, command, timeout_s=args.timeout))
    except TimeoutError:
        print(f"error: no reply from {args.reactor} within {args.timeout:g} s (nonce "
              f"{command['nonce']}); it may still have been applied: check before resending",
              file=sys.stderr)
        return 2
    except aiomqtt.MqttError as exc:
        print(f"error: MQTT broker {settings.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(reply, sort_keys=True))
    if reply.get("ok") is True:
        return 0
    print(f"refused ({reply.get('code')}): {reply.get('message')}", file=sys.stderr)
    return 1
