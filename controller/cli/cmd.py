"""`bioreactor cmd`: sign an operator command, publish it, wait for the controller's reply.

The pure half (`parse_params`, `build_command`: controller/operator/outgoing.py) is separate
from the MQTT half (`send_command`: controller/mqtt/command_sender.py) so what gets signed is
tested without a broker; the dashboard uses both too.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from controller.mqtt.command_sender import send_command
from controller.mqtt.link import ACCEPTED_FORM, MqttSettings
from controller.mqtt.topics import Topics
from controller.operator.outgoing import build_command, parse_params
from controller.operator.protocol import ACTIONS, parse_key

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


def read_key(args: argparse.Namespace) -> bytes:
    """The operator key from --key or --key-file; warns when the file is readable by others."""
    if args.key is not None:
        return parse_key(args.key)
    path = Path(args.key_file)
    try:
        if os.name == "posix" and path.stat().st_mode & 0o077:
            print(f"warning: {path} is readable by other users; chmod 600 it", file=sys.stderr)
        return parse_key(path.read_text(encoding="ascii"))
    except (OSError, ValueError) as exc:  # as a config's key_file says it (config/remote.py)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ValueError(f"--key-file {path}: cannot read a hex key ({why})") from None


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
