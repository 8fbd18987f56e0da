"""The write-registration race behind a CI traceback across a broker restart (see client.py)."""

from __future__ import annotations

import asyncio
import socket

import aiomqtt

from controller.mqtt.client import Client


async def _register_then(close: bool, client_class: type[aiomqtt.Client]) -> list[dict]:
    """Ask for write interest as paho does, optionally close the socket before the loop acts."""
    loop = asyncio.get_running_loop()
    errors: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    client = client_class(hostname="127.0.0.1")
    ours, theirs = socket.socketpair()
    try:
        client._on_socket_register_write(client._client, None, ours)
        if close:
            ours.close()  # the broker dropped us; paho closed the socket first
        for _ in range(3):
            await asyncio.sleep(0)
        if not close:
            assert loop._selector.get_key(ours.fileno()).events & 2  # registered for writing
            loop.remove_writer(ours.fileno())
    finally:
        ours.close()
        theirs.close()
        loop.set_exception_handler(None)
    return errors


async def test_a_socket_closed_before_the_loop_registers_it_is_skipped_quietly() -> None:
    assert await _register_then(close=True, client_class=Client) == []


async def test_an_open_socket_is_registered_for_writing() -> None:
    assert await _register_then(close=False, client_class=Client) == []


async def test_the_stock_client_still_has_the_race() -> None:
    """If aiomqtt fixes it upstream, this fails, and client.py can go."""
    errors = await _register_then(close=True, client_class=aiomqtt.Client)
    assert [type(e.get("exception")) for e in errors] == [OSError]
