"""A plain child interpreter running one of the controller's modules, with a pipe to it.

Plain, not multiprocessing: the caller's main module is never re-imported, and no fork happens
in a process that may have threads. The historian's writer (controller/runtime/writer_child.py)
and the node's MQTT publisher (controller/mqtt/publisher_process.py) run this way; each module
takes its end of the pipe as a file descriptor number, its only argument.
"""
from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection


def start_child(
    module: str, *, pass_fds: Sequence[int] = (), send_buffer_bytes: int | None = None,
) -> tuple[subprocess.Popen[bytes], Connection]:
    """`python -m module FD`, inheriting `pass_fds` too; the process and the parent's end.
    OSError if no process can be had."""
    parent_end, child_end = socket.socketpair()
    if send_buffer_bytes is not None:
        parent_end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, str(child_end.fileno())],
            pass_fds=[child_end.fileno(), *pass_fds], stdin=subprocess.DEVNULL)
    except OSError:
        parent_end.close()
        raise
    finally:
        child_end.close()
    return process, Connection(parent_end.detach())
