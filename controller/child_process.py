"""A plain child interpreter running one of the controller's modules, with a pipe to it.

Plain, not multiprocessing: the caller's main module is never re-imported, and no fork happens
in a process that may have threads. The historian's writer (controller/runtime/writer_child.py)
and the node's MQTT publisher (controller/mqtt/publisher_process.py) run this way; each module
takes its end of the pipe as a file descriptor number, its only argument.
"""
from __future__ import annotations

import contextlib
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
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


class PipeSender:
    """Sends on a child's pipe without ever waiting for the child: what the socket cannot take
    now is sent by a thread of its own, so the caller never waits on a child that stopped
    reading (stopped, or stuck on a disk that no longer answers).

    Why: a send waits once the socket's buffers are full, and a caller waiting there cannot
    run the supervision that would find the child silent and replace it. The historian's
    writer of a 1,000-reactor fleet fills 4 MB in about 6 s, so its ticks stopped, for good,
    behind a stuck writer. Now the bytes queue here meanwhile (the caller keeps them anyway
    until the child confirms them), and the caller's supervision goes on.

    Why not always the thread: each hand-over to it costs the caller forced switches of the
    GIL, measured at 4-10 % of a one-day run. So a send is tried at once without waiting
    (MSG_DONTWAIT), and only its rest, and what comes while the thread holds bytes, goes to
    the thread. The framing is `Connection.send_bytes`'s, so the child reads with `recv`.
    A failed send is kept in `error` for the caller to find; nothing more is sent.
    """

    def __init__(self, pipe: Connection, name: str) -> None:
        # A socket object of our own over the same socket, for its flags per call (the file's
        # own stay blocking: Connection.recv reads a message in pieces and needs them so).
        self._socket = socket.socket(fileno=os.dup(pipe.fileno()))
        self._queue: queue.SimpleQueue[list[memoryview] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread_has_bytes = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._send_forever, name=name, daemon=True)
        self._thread.start()

    def send_bytes(self, data: bytes) -> None:
        """Send `data` as one message (`Connection.send_bytes`'s framing); never waits."""
        size = len(data)
        header = (struct.pack("!i", size) if size <= 0x7FFFFFFF
                  else struct.pack("!iQ", -1, size))
        pieces = [memoryview(header), memoryview(data)]
        with self._lock:
            if self.error is not None:
                return
            if not self._thread_has_bytes:
                try:
                    pieces = _rest(pieces, self._socket.sendmsg(pieces, (), socket.MSG_DONTWAIT))
                except BlockingIOError:
                    pass
                except OSError as exc:  # the child's end is closed
                    self.error = exc
                    return
                if not pieces:
                    return
                self._thread_has_bytes = True
            self._queue.put(pieces)

    def stop(self, *, abandon: bool, timeout_s: float = 5.0) -> bool:
        """Stop the thread: after what it holds is sent, or (`abandon`) at once, the socket
        shut down under a send that waits. Whether the thread ended; the pipe itself is the
        caller's to close."""
        if abandon:
            with contextlib.suppress(OSError):  # already shut by the child's end
                self._socket.shutdown(socket.SHUT_RDWR)
        self._queue.put(None)
        self._thread.join(timeout_s)
        ended = not self._thread.is_alive()
        if ended:
            self._socket.close()
        return ended

    def _send_forever(self) -> None:
        while (pieces := self._queue.get()) is not None:
            try:
                for piece in pieces:
                    self._socket.sendall(piece)
            except OSError as exc:
                with self._lock:
                    self.error = exc
                return
            with self._lock:
                if self._queue.empty():
                    self._thread_has_bytes = False


def _rest(pieces: list[memoryview], sent: int) -> list[memoryview]:
    """What is left of `pieces` after their first `sent` bytes."""
    for i, piece in enumerate(pieces):
        if sent < len(piece):
            return [piece[sent:], *pieces[i + 1:]]
        sent -= len(piece)
    return []
