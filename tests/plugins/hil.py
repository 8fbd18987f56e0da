"""The emulated chamber served by `bioreactor emulate` in its own process, for the
hardware-in-the-loop tests."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from plugins.configs import REPO
from plugins.processes import BIN

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
