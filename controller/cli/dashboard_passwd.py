"""`bioreactor dashboard-passwd`: an argon2id hash for a dashboard account's `password_hash`.

The password is read from stdin: typed without echo (twice, to catch a typo) at a terminal,
or the first line of a pipe (`pass show dashboard/alice | bioreactor dashboard-passwd`). It is
never a command-line argument, which `ps` and the shell history would show.
"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any, TextIO

from controller.dashboard.passwords import hash_password


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `dashboard-passwd` to the `bioreactor` subparsers (controller/cli/main.py)."""
    parser = sub.add_parser(
        "dashboard-passwd", help="hash a dashboard password (argon2id) for the config",
        description="Read a password from stdin (no echo at a terminal) and print its argon2id "
                    "hash for an [[account]]'s password_hash. See docs/dashboard-security.md.")
    parser.set_defaults(func=run)
    return parser


def read_password(stdin: TextIO) -> str:
    """The password: prompted twice without echo at a terminal, else the first line of stdin.

    ValueError when it is empty or the two typed differ.
    """
    if stdin.isatty():
        password = getpass.getpass("Password: ")
        if password and getpass.getpass("Again: ") != password:
            raise ValueError("the passwords differ")
    else:
        password = stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ValueError("empty password refused")
    return password


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Print the hash (exit 0); exit 2 with one line when the password is refused."""
    try:
        password = read_password(stdin or sys.stdin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (EOFError, KeyboardInterrupt):
        print("error: no password given", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
