"""`bioreactor dashboard`: the web dashboard (docs/dashboard.md).

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 usage error (bad --mqtt or --http, port in use,
unreadable TLS files, bad CONFIG), each as one line on stderr.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import signal
import sys
from pathlib import Path
from typing import Any

from controller.mqtt.link import ACCEPTED_FORM

DEFAULT_HTTP = "127.0.0.1:8080"
DEFAULT_MAX_REACTORS = 256
MAX_MAX_REACTORS = 10_000


def add_dashboard_parser(sub: Any) -> None:
    """Add `dashboard` to the `bioreactor` subparsers (`dashboard-passwd`: dashboard_passwd.py)."""
    dash = sub.add_parser(
        "dashboard", help="web dashboard of every reactor publishing on MQTT",
        description="Serve the web dashboard (docs/dashboard.md). Without CONFIG it is "
                    "read-only and open to anyone who can reach it, like `watch`.")
    dash.add_argument("--mqtt", required=True, metavar="URL", help=ACCEPTED_FORM)
    dash.add_argument("--ca-file", type=Path, help="CA bundle for an mqtts:// broker")
    dash.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                      help=f"where to serve (default {DEFAULT_HTTP})")
    dash.add_argument("--runs", type=Path, metavar="DIR",
                      help="folder of run files (RUN_ID.sqlite): history, audit, export, report")
    dash.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this "
                      "certificate (PEM); operator actions off a loopback bind need it")
    dash.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    dash.add_argument("--max-reactors", type=int, default=DEFAULT_MAX_REACTORS, metavar="N",
                      help=f"reactors kept and shown (default {DEFAULT_MAX_REACTORS}, at most "
                           f"{MAX_MAX_REACTORS}; about 0.3 MB each with their trends)")
    dash.add_argument("config", nargs="?", type=Path, metavar="CONFIG",
                      help="accounts ([[account]]: name, key_hex|key_file, role, password_hash)")
    dash.set_defaults(func=run_dashboard)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run_dashboard(args: argparse.Namespace) -> int:
    from controller.dashboard.accounts import DashboardConfigError, load_dashboard_config
    from controller.dashboard.acting import transport_allows_actions
    from controller.dashboard.app import DashboardOptions
    from controller.dashboard.run_files import RunFiles
    from controller.dashboard.server import ServeError, ServeOptions, serve
    from controller.mqtt.link import MqttSettings
    from drivers.contract.urls import split_host_port

    try:
        settings = MqttSettings.from_url(args.mqtt, ca_file=args.ca_file)
    except ValueError as exc:
        return _error(f"--mqtt: {exc}")
    try:
        host, port = split_host_port(args.http, default_port=8080)
    except ValueError as exc:
        return _error(f"--http: {exc}; expected HOST:PORT, e.g. {DEFAULT_HTTP}")
    if not 1 <= args.max_reactors <= MAX_MAX_REACTORS:
        return _error(f"--max-reactors {args.max_reactors}: must be between 1 and "
                      f"{MAX_MAX_REACTORS}")
    if (args.tls_cert is None) != (args.tls_key is None):
        return _error("--tls-cert and --tls-key go together: give both or neither")
    if args.runs is not None and not args.runs.is_dir():
        return _error(f"--runs {args.runs}: no such folder")
    config = None
    if args.config is not None:
        try:
            config = load_dashboard_config(args.config)
        except DashboardConfigError as exc:
            return _error(str(exc))
    if config is not None and args.tls_cert is None and not transport_allows_actions(host, False):
        return _error(f"--http {args.http}: with accounts, plain HTTP off loopback would send "
                      "passwords and session cookies in clear: give --tls-cert/--tls-key, or "
                      "bind to loopback (127.0.0.1; a TLS proxy in front for other hosts)")
    options = ServeOptions(mqtt=settings, host=host, port=port,
                           app=DashboardOptions(runs=RunFiles(args.runs)), config=config,
                           tls_cert=args.tls_cert, tls_key=args.tls_key,
                           max_reactors=args.max_reactors)
    # SIGTERM stops it like Ctrl-C: uvicorn finishes, then re-raises the signal it caught.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(options, functools.partial(print, flush=True)))
    except ServeError as exc:
        return _error(str(exc))
    return 0
