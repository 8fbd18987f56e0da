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
