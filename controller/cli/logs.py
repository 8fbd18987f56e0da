"""Console logging for both programs (`run` and `emulate`, which share the command line): one
format with a timestamp on every line, whoever logs.

Our own modules log through structlog; the standard `logging` records (libraries, the
emulator's servers) are handed to the same renderer. Library loggers speak to their own
developers: pymodbus writes `>>>>> send: ...` frame dumps, `Repeating....` and a warning per
failed connect, all of which the drivers already turn into counted, typed errors in our words.
So library records reach the console only at `--log-level debug`; handlers a driver attaches to
a library logger itself (to count what the library swallowed) still get every record.

A record carrying an exception (asyncio's "Exception in callback ..." for a library's callback
that failed, say) shows it as one `error=` field, not a traceback: an operator's console gets a
line that says what failed, and `--log-level debug` gives developers the whole traceback.
"""
from __future__ import annotations

import logging
import sys

import structlog

LIBRARY_LOGGERS = ("pymodbus", "mqtt")
"""Loggers of libraries we drive: pymodbus, and aiomqtt (which logs as "mqtt")."""


class _ToStructlog(logging.Handler):
    """Hands a standard `logging` record to structlog, so it is rendered like ours."""

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = structlog.get_logger(record.name)
            exc = record.exc_info[1] if record.exc_info else None
            if exc is None or self.tracebacks:
                logger.log(record.levelno, record.getMessage(), exc_info=record.exc_info or False)
            else:
                logger.log(record.levelno, " ".join(record.getMessage().split("\n")),
                           error=repr(exc))
        except Exception:  # a log line must never take the program down
            self.handleError(record)


class _NotLibraries(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(record.name == name or record.name.startswith(name + ".")
                       for name in LIBRARY_LOGGERS)


def configure_logging(level: str) -> None:
    """Logs are diagnostics for people: console lines on stderr, at `level` and above."""
    levelno = getattr(logging, level.upper())
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        # sys.stderr looked up at each use, not captured now: whoever swaps it later (a test
        # runner, a daemon manager) must not leave the logger writing to a closed file.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ToStructlog)]:
        root.removeHandler(handler)  # configured again (tests, benchmarks): one handler
    handler = _ToStructlog(tracebacks=levelno <= logging.DEBUG)
    if levelno > logging.DEBUG:
        handler.addFilter(_NotLibraries())
    root.addHandler(handler)
    root.setLevel(levelno)
