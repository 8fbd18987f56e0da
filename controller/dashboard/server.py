"""`bioreactor dashboard`: the web server and the MQTT subscriber on one asyncio loop.

uvicorn is started programmatically (`uvicorn.Server.serve()` as a task), not through its CLI,
so the feed that folds MQTT messages and the routes that read it share one loop and one
FleetState with no locks, and both stop together: SIGINT/SIGTERM make uvicorn finish (open
live feeds are cut after GRACE_S), then the feed task is cancelled.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import structlog
import uvicorn

from controller.dashboard.accounts import DashboardConfig
from controller.dashboard.app import DashboardOptions, create_app
from controller.dashboard.feed import Feed
from controller.dashboard.gate import Gate
from controller.mqtt.link import MqttSettings
from controller.view.fleet_state import MAX_REACTORS

log = structlog.get_logger(__name__)
GRACE_S = 2.0


class ServeError(Exception):
    """The server cannot start (port in use, TLS files unreadable): one line for the user."""


@dataclass(frozen=True)
class ServeOptions:
    mqtt: MqttSettings
    host: str
    port: int
    app: DashboardOptions
    config: DashboardConfig | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_reactors: int = MAX_REACTORS


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so a busy port is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"--http {host}:{port}: the port is in use") from None
        raise ServeError(f"--http {host}:{port}: cannot listen there ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(options: ServeOptions, announce: Callable[[str], object] = print) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation); `announce` gets the URL once the port
    and the TLS files are known good."""
    tls = options.tls_cert is not None
    for name, path in (("--tls-cert", options.tls_cert), ("--tls-key", options.tls_key)):
        if path is not None and not path.is_file():
            raise ServeError(f"{name} {path}: no such file")
    sock = bind(options.host, options.port)
    loop = asyncio.get_running_loop()
    feed = Feed(options.mqtt, max_reactors=options.max_reactors)
    gate = Gate(options.config, options.host, tls, now_s=loop.time)
    app = create_app(feed, gate, options.app)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off",
        timeout_graceful_shutdown=int(GRACE_S), server_header=False,
        ssl_certfile=str(options.tls_cert) if tls else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None)
    try:
        config.load()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        sock.close()
        raise ServeError(f"--tls-cert/--tls-key: cannot load them ({exc})") from None
    server = _Server(config, lambda: loop.call_soon_threadsafe(feed.close))
    scheme = "https" if tls else "http"
    mode = "read-only" if options.config is None else "login"
    announce(f"dashboard: {scheme}://{options.host}:{options.port}/ ({mode})")
    feed_task = asyncio.create_task(feed.run_forever(), name="dashboard-feed")
    try:
        await server.serve(sockets=[sock])
    finally:
        feed_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed_task
        sock.close()
        app.state.reports.close()


class _Server(uvicorn.Server):
    """uvicorn's server, telling the feed when a signal asks it to stop: open live feeds end
    at once instead of being cut after the grace period."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)

