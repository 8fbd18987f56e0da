"""Reading a message that anyone with publish rights may have written, for a fleet view.

`watch` subscribes to every topic of a reactor, including the operator-writable `cmd` and
`settings/+/set`, and a retained message there greets every new viewer. So a payload is hostile
until shown otherwise: its size is checked before anything reads it, its JSON nesting before the
parser recurses into it (an 8,000-level message made `json.loads` raise RecursionError), and each
field is taken only if it has the expected type. Strings are stripped of control characters so a
message cannot move the cursor or clear the operator's screen.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_PAYLOAD_BYTES = 64 * 1024
"""Far above any message the controller sends (a telemetry message is under 2 KB)."""
MAX_DEPTH = 16
"""The controller's deepest message (an event's data, a reply's old/new) is 3 levels deep."""
MAX_TEXT_CHARS = 160

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class PayloadRejected(ValueError):
    """Why a message was not read; `reason` is a short code the view counts by."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def decode_object(payload: bytes) -> dict[str, Any]:
    """The JSON object in `payload`, or PayloadRejected naming why not.

    Checks run cheapest first and each bounds the next: size, UTF-8, nesting depth, then parse.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadRejected("too_large", f"{len(payload):,} bytes > {MAX_PAYLOAD_BYTES:,}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadRejected("not_utf8", str(exc)) from None
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise PayloadRejected("too_deep", f"JSON nested {depth} levels > {MAX_DEPTH}")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: in case the scan missed one
        raise PayloadRejected("not_json", str(exc)[:MAX_TEXT_CHARS]) from None
    if not isinstance(body, dict):
        raise PayloadRejected("not_object", f"a JSON {type(body).__name__}, not an object")
    return body


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside JSON strings (a bracket inside a string is text).

    Linear in the text and never recursive; for malformed JSON it may over-count, which only
    rejects a message the parser would have rejected too.
    """
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub('""', text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def number(value: Any) -> float | None:
    """A finite number, else None (a bool is not a number here; NaN/Infinity are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A printable, bounded string, else None: control characters become `?`."""
    if not isinstance(value, str):
        return None
    clean = "".join(c if c.isprintable() else "?" for c in value[:limit + 1])
    return clean if len(clean) <= limit else clean[:limit - 1] + "…"


def mapping(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else empty: a wrong type shows as nothing, not a crash."""
    return value if isinstance(value, dict) else {}
