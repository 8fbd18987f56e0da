"""Logging must survive its stream being swapped and closed (pytest, daemon managers do this)."""
from __future__ import annotations

import io
import sys

import structlog

from controller.cli.main import configure_logging


def test_logs_follow_sys_stderr_even_after_the_old_stream_is_closed(monkeypatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("warning")
    structlog.get_logger("t").warning("one")
    assert "one" in first.getvalue()
    first.close()  # what pytest does to a test's captured stream when the test ends
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    structlog.get_logger("t").warning("two")  # must not raise 'I/O operation on closed file'
    assert "two" in second.getvalue()
    structlog.get_logger("t").info("filtered out")
    assert "filtered out" not in second.getvalue()


def test_library_lines_stay_off_the_console_unless_debugging(monkeypatch) -> None:
    """pymodbus's frame dumps and per-connect warnings are the drivers' business (they turn
    them into typed, counted errors); the emulator's own `logging` lines show, stamped."""
    import logging
    import re

    from controller.cli.logs import configure_logging as configure

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure("warning")
    logging.getLogger("pymodbus.logging").warning("Failed to connect [Errno 111]")
    logging.getLogger("pymodbus.logging").error("Repeating....")
    logging.getLogger("mqtt").error("aiomqtt says")
    logging.getLogger("sim_hardware.device.modbus_server").error("register action failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", lines[0])
    assert "register action failed" in lines[0]

    debugging = io.StringIO()
    monkeypatch.setattr(sys, "stderr", debugging)
    configure("debug")
    logging.getLogger("pymodbus.logging").debug(">>>>> send: 0x0 0x1")
    assert ">>>>> send" in debugging.getvalue()
    configure("warning")  # one handler, however often configured
    assert sum(type(h).__name__ == "_ToStructlog" for h in logging.getLogger().handlers) == 1


def test_an_exception_in_a_library_callback_is_one_line_unless_debugging(monkeypatch) -> None:
    """asyncio logs a failed callback with its traceback; an operator gets one line naming the
    error (CI once saw aiomqtt's EBADF race print a whole traceback across a broker restart)."""
    import asyncio
    import logging

    from controller.cli.logs import configure_logging as configure

    def failing_callback_logged(stream: io.StringIO) -> str:
        monkeypatch.setattr(sys, "stderr", stream)
        loop = asyncio.new_event_loop()
        try:
            loop.call_soon(lambda: (_ for _ in ()).throw(OSError(9, "Bad file descriptor")))
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
        return stream.getvalue()

    configure("warning")
    shown = failing_callback_logged(io.StringIO())
    assert "Exception in callback" in shown
    assert "error=\"OSError(9, 'Bad file descriptor')\"" in shown
    assert "Traceback" not in shown and len(shown.strip().splitlines()) == 1

    configure("debug")
    assert "Traceback" in failing_callback_logged(io.StringIO())
    configure("warning")
    assert logging.getLogger().level == logging.WARNING
