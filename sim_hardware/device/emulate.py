"""`bioreactor emulate`: the emulated chamber served as a device over Modbus or a serial line.

The physics runs on the device's own clock at a speed factor; the wire servers answer requests
from it; a watchdog puts every actuator in its safe state when the controller's heartbeat stops.
Registered as a `bioreactor` subcommand through the `bioreactor.subcommands` entry point, so the
controller's command line offers it without ever importing `sim_hardware`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib
import secrets
import signal
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from drivers.contract.urls import parse_device_url
from sim_hardware.chamber.options import parse_options
from sim_hardware.device.served_chamber import DEFAULT_COMM_TIMEOUT_S, ServedChamber

SERVERS = {
    "modbus-tcp": "sim_hardware.device.modbus_server",
    "modbus-rtu": "sim_hardware.device.modbus_server",
    "serial": "sim_hardware.device.serial_server",
}
WATCHDOG_PERIOD_S = 0.05
DEFAULT_CONFIG = Path("configs/hsc_expansion.toml")


class DeviceClock:
    """The device's physics time: wall-clock seconds since start, times the speed factor."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0 or speed == float("inf"):
            raise ValueError(f"speed must be a positive finite number, got {speed!r}")
        self.speed = speed
        self._origin = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self.speed

    @staticmethod
    def wall() -> float:
        return time.monotonic()

    @staticmethod
    def timestamp() -> str:
        """The wall-clock time for a console line, as the controller's lines show it."""
        return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def say(text: str, stream: TextIO) -> None:
    """One console line, stamped: an operator lines it up with the controller's log."""
    print(f"{DeviceClock.timestamp()} {text}", file=stream, flush=True)


async def serve_chamber(
    chamber: ServedChamber, listen_url: str, ready: Callable[[str], None]
) -> None:
    """Serve `chamber` at `listen_url` until cancelled; `ready(url)` once clients can connect.

    `ready` gets the URL a controller should use (with the real port when port 0 was asked
    for, or the pty's path when `pty` was).
    """
    address = parse_device_url(listen_url)
    if address.scheme not in SERVERS:
        raise ValueError(f"cannot serve {listen_url!r}: scheme must be one of {sorted(SERVERS)}")
    server = importlib.import_module(SERVERS[address.scheme])
    await chamber.start()
    async with asyncio.TaskGroup() as group:
        group.create_task(server.serve(chamber, address, ready=ready))
        group.create_task(_watch(chamber))


async def _watch(chamber: ServedChamber) -> None:
    while True:
        chamber.scan()
        if chamber.check_watchdog():
            say(f"comm loss: no heartbeat for {chamber.comm_timeout_s:g} s; actuators in "
                "safe state", sys.stderr)
        await asyncio.sleep(WATCHDOG_PERIOD_S)


def chamber_from_config(path: Path, *, seed: int | None, clock: DeviceClock,
                        comm_timeout_s: float, faults: Sequence[str] = ()) -> ServedChamber:
    """The first reactor of a run config: its `chamber` table, `safe_state` and seed.

    Faults to inject: the chamber's own `faults` option, then the config's top-level
    `[[fault]]` tables, then `faults` (command-line `--fault` specs), in that order.
    """
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    reactors = data.get("reactor") or [{}]
    reactor: dict[str, Any] = reactors[0]
    run_seed = data.get("run", {}).get("seed", 1) if seed is None else seed
    chamber = dict(reactor.get("chamber", {}))
    tables = data.get("fault", [])
    if not isinstance(tables, list):
        raise ValueError(f"{path}: fault must be an array of tables ([[fault]]), got {tables!r}")
    injected = [*chamber.get("faults", []), *tables, *faults]
    if injected:
        chamber["faults"] = injected
    try:
        options = parse_options(chamber)
    except ValueError as exc:  # the controller's prefix for the same table
        raise ValueError(f"{path}: reactor[0].chamber: {exc}") from None
    return ServedChamber(
        options, seed=run_seed, now=clock.now, wall=clock.wall,
        comm_timeout_s=comm_timeout_s, safe_state=reactor.get("safe_state"),
        # A boot is a process start: the id must differ from the last one's, which a
        # seed-derived id would not (the physics stays seeded; only the identity is random).
        boot_id=secrets.randbelow(65536),
    )


def add_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulate", help="serve the emulated chamber as a Modbus or serial device")
    parser.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--listen", required=True,
                        help="modbus-tcp://HOST:PORT, modbus-rtu://socket://HOST:PORT, "
                             "modbus-rtu://pty, serial://socket://HOST:PORT, serial://pty, "
                             "or a serial device path after the scheme")
    parser.add_argument("--speed", type=float, default=1.0, help="physics speed factor")
    parser.add_argument("--seed", type=int, help="overrides [run].seed")
    parser.add_argument("--comm-timeout", type=float, default=DEFAULT_COMM_TIMEOUT_S,
                        help="wall seconds without a heartbeat before the safe state")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="inject a fault, NAME@TIME[:key=value,...] (e.g. "
                             "co2_supply_lost@3d, sensor_stuck@2d:channel=ph); repeatable; "
                             "added to the config's [[fault]] tables; see docs/faults.md")
    parser.set_defaults(func=run_emulate)


def run_emulate(args: argparse.Namespace) -> int:
    try:
        clock = DeviceClock(args.speed)
        chamber = chamber_from_config(args.config, seed=args.seed, clock=clock,
                                      comm_timeout_s=args.comm_timeout,
                                      faults=getattr(args, "fault", []))
        parse_device_url(args.listen)
    except ValueError as exc:
        say(f"error: {exc}", sys.stderr)
        return 2

    def ready(url: str) -> None:
        say(f"serving the emulated chamber at {url} (speed {args.speed:g}x, comm timeout "
            f"{args.comm_timeout:g} s)", sys.stdout)

    async def main() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        with contextlib.suppress(asyncio.CancelledError):
            await serve_chamber(chamber, args.listen, ready)

    asyncio.run(main())
    return 0
