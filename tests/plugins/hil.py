"""The emulated chamber served by `bioreactor emulate` in its own process, for the
hardware-in-the-loop tests."""
from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plugins.configs import REPO
from plugins.processes import BIN
from plugins.records import count_rows

EMULATOR_SPEED = 600
"""Simulated seconds per wall second on the emulated device."""


@contextmanager
def emulator(config: str, listen: str, comm_timeout_s: float = 2.0,
             speed: float = EMULATOR_SPEED) -> Iterator[tuple[subprocess.Popen, str]]:
    """A served chamber in its own process; yields it and the URL a controller should use.
    `speed` must match the controller's (both clocks run that many times the wall)."""
    proc = subprocess.Popen(
        [BIN / "bioreactor", "emulate", str(REPO / "configs" / config), "--listen", listen,
         "--speed", str(speed), "--comm-timeout", str(comm_timeout_s)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        match = re.search(r"serving the emulated chamber at (\S+)", line)
        assert match, (f"emulator did not start: {line!r} "
                       f"{proc.stderr.read() if proc.poll() is not None else ''}")  # type: ignore[union-attr]
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def ticks_recorded(tmp: Path) -> int:
    return count_rows(tmp / "run.sqlite", "SELECT COUNT(*) FROM ticks")


def controller(config: str, device: str, tmp: Path, duration: str) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "bioreactor", "run", str(REPO / "configs" / config), "--device", device,
         "--duration", duration, "--quiet", "--db", str(tmp / "run.sqlite"),
         "--summary-json", str(tmp / "summary.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
