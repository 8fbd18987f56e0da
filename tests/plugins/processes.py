"""What tests need to run the project's commands as a user would: where they are installed,
and a free loopback port for a server."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
"""The virtualenv's bin/: the installed `bioreactor` command."""
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now; each xdist worker gets its own from the kernel."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The process ids whose parent is `pid` now (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
