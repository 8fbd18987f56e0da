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
