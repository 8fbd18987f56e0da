"""PipeSender over a real socket pair: messages arrive whole and in order whether the socket
took them at once or the thread sent their rest, and nothing ever waits on a reader that
stopped reading (controller/child_process.py)."""
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest
from plugins.waiting import wait_until

from controller.child_process import PipeSender


@pytest.fixture
def pair() -> Iterator[tuple[Connection, Connection]]:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    ours, theirs = Connection(a.detach()), Connection(b.detach())
    yield ours, theirs
    ours.close()
    theirs.close()


def test_small_messages_go_at_once_and_arrive_whole(
        pair: tuple[Connection, Connection]) -> None:
    ours, theirs = pair
    sender = PipeSender(ours, "test-sender")
    for k in range(100):
        sender.send_bytes(f"message {k}".encode())
    assert not sender._thread_has_bytes  # the socket took every one: the thread was not used
    assert [theirs.recv_bytes() for _ in range(100)] == [
        f"message {k}".encode() for k in range(100)]
    assert sender.stop(abandon=False)


def test_what_the_socket_cannot_take_is_sent_by_the_thread_in_order(
        pair: tuple[Connection, Connection]) -> None:
    ours, theirs = pair
    sender = PipeSender(ours, "test-sender")
    big = bytes(range(256)) * 4096  # 1 MB: far more than the socket's buffers
    started = time.perf_counter()
    sender.send_bytes(big)
    sender.send_bytes(b"after")  # behind the big one's rest, not before it
    assert time.perf_counter() - started < 1.0  # neither waited for the reader
    assert sender._thread_has_bytes
    assert theirs.recv_bytes() == big
    assert theirs.recv_bytes() == b"after"
    wait_until(lambda: not sender._thread_has_bytes, 10, "the thread done")
    sender.send_bytes(b"at once again")
    assert theirs.recv_bytes() == b"at once again"
    assert sender.stop(abandon=False)


def test_a_reader_that_never_reads_costs_the_caller_nothing_and_stop_frees_the_thread(
        pair: tuple[Connection, Connection]) -> None:
    ours, _ = pair
    sender = PipeSender(ours, "test-sender")
    started = time.perf_counter()
    for _ in range(64):
        sender.send_bytes(b"x" * (64 << 10))  # 4 MB to a reader that is stuck
    assert time.perf_counter() - started < 1.0
    assert sender.error is None
    assert sender.stop(abandon=True, timeout_s=5.0)  # the thread's waiting send is shut down
    assert isinstance(sender.error, OSError)


def test_a_closed_reader_is_an_error_to_find_never_a_raise(
        pair: tuple[Connection, Connection]) -> None:
    ours, theirs = pair
    sender = PipeSender(ours, "test-sender")
    theirs.close()
    sender.send_bytes(b"to nobody")
    wait_until(lambda: sender.error is not None, 10, "the send's error kept")
    sender.send_bytes(b"and again")  # dropped, quietly: the caller's supervision acts
    assert isinstance(sender.error, (BrokenPipeError, ConnectionResetError))
    assert sender.stop(abandon=True)
