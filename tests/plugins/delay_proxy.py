"""A TCP proxy on loopback that adds latency each way: a slow link between a controller and a
device, for the deadline tests. Bytes keep their order; each chunk is delivered `latency_s`
after it arrived, so a round trip costs twice the latency.

It runs its own event loop in a thread, so a test can put it between two other processes; it is
always stopped when the `with` block ends, even when the test fails.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                latency_s: Callable[[], float], delivered: Callable[[], None]) -> None:
    """Copy reader to writer, each chunk held `latency_s()` (read as it arrives), in order."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()
            delivered()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((loop.time() + latency_s(), data))
        queue.put_nowait((loop.time(), b""))
        await sender
    finally:
        sender.cancel()
        writer.close()


class DelayProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to `target_port`. A test may
    change `latency_s` while it runs: a link that turns slow."""

    def __init__(self, target_port: int, latency_s: float) -> None:
        self.target_port = target_port
        self.latency_s = latency_s
        self.port = 0
        self.chunks = 0
        """Chunks delivered either way so far: how far a conversation has got."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete,
                                        args=(self._serve(),), daemon=True)

    def _latency_s(self) -> float:
        return self.latency_s

    def _delivered(self) -> None:
        self.chunks += 1

    async def _serve(self) -> None:
        self._stop = asyncio.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                     self.target_port)
            except OSError:
                writer.close()
                return
            with contextlib.suppress(OSError):
                await asyncio.gather(_pump(reader, up_writer, self._latency_s, self._delivered),
                                     _pump(up_reader, writer, self._latency_s, self._delivered))

        server = await asyncio.start_server(connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        # Every task of this loop, not only the connections it knows of: a pump still
        # delivering held bytes would otherwise be torn down by the loop's close.
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the delaying proxy did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        self._loop.close()

