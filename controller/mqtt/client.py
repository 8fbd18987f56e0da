"""The project's MQTT client: aiomqtt's, with its write-registration race closed.

paho asks for write interest from whichever thread is sending; aiomqtt forwards that with
`call_soon_threadsafe(loop.add_writer, sock.fileno(), ...)`, reading the descriptor *when
asked*. When the broker drops the connection in between, paho closes the socket first and the
loop later calls `add_writer` on a closed descriptor: an `OSError(EBADF)` in a loop callback,
which asyncio prints with a traceback to the operator's console (seen in CI across a broker
restart). The connection is already being torn down and reconnected by the publisher, so the
right thing is to register nothing: here the descriptor is read when the loop gets to it, and a
closed socket (`fileno() == -1`) is skipped.
"""

from __future__ import annotations

from typing import Any

import aiomqtt
import paho.mqtt.client as paho


class Client(aiomqtt.Client):
    """aiomqtt.Client that registers a socket for writing only while it is still open."""

    def _on_socket_register_write(self, client: paho.Client, userdata: Any,
                                  sock: Any) -> None:
        def write() -> None:
            # As aiomqtt: a failed write means the connection broke; end the session with it.
            try:
                client.loop_write()
            except Exception as exc:  # handed to the session below, not swallowed
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            fd = sock.fileno()
            if fd < 0:  # closed between paho's request and now: nothing to write to
                return
            self._loop.add_writer(fd, write)

        self._loop.call_soon_threadsafe(register)
