"""Device addresses as URLs, and the one parser of everything inside them.

A device URL is `scheme://location[?key=value&...]`. The location is a `HOST:PORT`, a device
path, a nested `socket://HOST:PORT` (a serial line carried over TCP) or a word such as `pty`.
Drivers and device servers read their settings from the same URL, so they share one parser:
a URL the emulator serves is then a URL the controller opens, and every mistake in one is
reported the same way, naming the parameter, its value and what is allowed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")

SOCKET_PREFIX = "socket://"
"""A nested URL that carries a serial line over TCP (what pyserial's `socket://` speaks)."""

MAX_PORT = 65535


@dataclass(frozen=True)
class DeviceAddress:
    url: str
    scheme: str
    location: str
    """Everything between `scheme://` and `?`: host:port, a device path, or nested URL."""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def query(self) -> str:
        """The query as written (without `?`), so a server can hand it back in its own URL."""
        return self.url.partition("?")[2]

    def fail(self, problem: str) -> ValueError:
        """A ValueError that starts with the URL, so a config typo is found by its text."""
        return ValueError(f"{self.url!r}: {problem}")

    def require_known(self, known: Iterable[str]) -> None:
        """Refuse query keys nobody reads: a misspelt `timeout` must not be silently ignored."""
        known = tuple(known)
        unknown = sorted(set(self.params) - set(known))
        if unknown:
            raise self.fail(f"unknown parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(known) or 'none'}")

    def get(self, param: QueryParam[T], default: T) -> T:
        """The parameter's typed value, or `default` when the URL does not set it."""
        if param.key not in self.params:
            return default
        return param.parse_text(self.params[param.key], self)

    def host_port(self, *, default_port: int | None = None,
                  free_port_ok: bool = False) -> tuple[str, int]:
        """The location as `HOST:PORT` (an IPv6 host in brackets)."""
        try:
            return split_host_port(self.location, default_port=default_port,
                                   free_port_ok=free_port_ok)
        except ValueError as exc:
            raise self.fail(str(exc)) from None

    def socket_host_port(self, *, free_port_ok: bool = False) -> tuple[str, int] | None:
        """HOST and PORT of a nested `socket://HOST:PORT` location; None for any other."""
        if not self.location.startswith(SOCKET_PREFIX):
            return None
        try:
            return split_host_port(self.location[len(SOCKET_PREFIX):], free_port_ok=free_port_ok)
        except ValueError as exc:
            raise self.fail(str(exc)) from None


def parse_device_url(url: str) -> DeviceAddress:
    """Split `scheme://location[?k=v&...]`; a ValueError that shows the expected form otherwise."""
    if "://" not in url:
        raise ValueError(
            f"device URL {url!r} has no scheme; expected e.g. 'sim://' or 'modbus-tcp://HOST:PORT'"
        )
    scheme, rest = url.split("://", 1)
    if not scheme:
        raise ValueError(f"device URL {url!r} has an empty scheme")
    location, _, query = rest.partition("?")
    # A nested URL (serial://socket://host:port) keeps its own scheme inside the location.
    params = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    urlsplit(url)  # raises ValueError on malformed ports/brackets
    return DeviceAddress(url=url, scheme=scheme.lower(), location=location, params=params)


def split_host_port(text: str, *, default_port: int | None = None,
                    free_port_ok: bool = False) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` as (host, port); HOST alone when a default port is given.

    `free_port_ok` lets a server be asked for port 0 (the OS picks a free one).
    """
    lowest = 0 if free_port_ok else 1
    form = (f"HOST:PORT (PORT {lowest}-{MAX_PORT}"
            f"{', 0 picks a free one' if free_port_ok else ''})")
    host, _, port = text.rpartition(":")
    if ":" not in text.rpartition("]")[2]:  # no port (an IPv6 host is in brackets)
        if default_port is None:
            raise ValueError(f"expected {form}, got {text!r}: missing :PORT")
        host, port = text, str(default_port)
    if not host.strip("[]"):
        raise ValueError(f"expected {form}, got {text!r}: missing HOST")
    bracketed = host[:1] == "[" and host[-1:] == "]" and host.count("[") == host.count("]") == 1
    if ("[" in host or "]" in host) and not bracketed:
        raise ValueError(f"expected {form}, got {text!r}: unbalanced brackets (an IPv6 host "
                         f"is written in brackets, e.g. [::1]:PORT)")
    if not (port.isascii() and port.isdigit() and lowest <= int(port) <= MAX_PORT):
        raise ValueError(f"expected {form}, got {text!r}: port {port!r} is not an integer "
                         f"{lowest}-{MAX_PORT}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class QueryParam(Generic[T]):
    """One typed query parameter: how its text is read and which values are allowed."""

    key: str
    parse: Callable[[str], T]
    ok: Callable[[T], bool]
    allowed: str
    """What is allowed, in words, for the error message."""

    def parse_text(self, text: str, address: DeviceAddress) -> T:
        try:
            value: T | None = self.parse(text)
        except ValueError:
            value = None
        if value is None or not self.ok(value):
            raise address.fail(f"{self.key}={text!r} must be {self.allowed}")
        return value


def wall_seconds(key: str) -> QueryParam[float]:
    """A duration in wall seconds (links run on the wall, whatever the controller's speed)."""
    return QueryParam(key, float, lambda v: 0 < v < math.inf, "a positive number of seconds")


def integer(key: str, low: int, high: int) -> QueryParam[int]:
    return QueryParam(key, int, lambda v: low <= v <= high, f"{low}-{high}")


def _parity(text: str) -> str:
    return {"NONE": "N", "EVEN": "E", "ODD": "O"}.get(text.upper(), text.upper())


TIMEOUT = wall_seconds("timeout")
"""How long to wait for each reply, wall seconds."""
RETRIES = integer("retries", 0, 10)
"""Resends after a failed attempt (a timeout, a garbled reply)."""
BAUD = integer("baud", 50, 4_000_000)
PARITY = QueryParam("parity", _parity, lambda v: v in ("N", "E", "O"), "N, E or O")
STOPBITS = QueryParam("stopbits", int, lambda v: v in (1, 2), "1 or 2")
BYTESIZE = QueryParam("bytesize", int, lambda v: v in (7, 8), "7 or 8")
SERIAL_LINE: tuple[QueryParam[Any], ...] = (BAUD, PARITY, STOPBITS, BYTESIZE)
"""The settings of a serial port, for whoever opens one."""


def modbus_unit(rtu: bool) -> QueryParam[int]:
    """The Modbus unit id: 1-247 on an RTU bus (0 is broadcast, 248+ reserved); a TCP device
    answers any byte, so 0-255 there."""
    return integer("unit", 1, 247) if rtu else integer("unit", 0, 255)
