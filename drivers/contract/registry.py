"""Device addresses as URLs, and the lookup of a driver by the URL's scheme.

Drivers register under the `bioreactor.drivers` entry-point group, keyed by scheme (`sim`,
`modbus-tcp`, ...), so a third party adds a backend by packaging it, without editing the
controller.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from urllib.parse import parse_qsl, urlsplit

from drivers.contract.driver import Driver
from drivers.contract.errors import DriverNotFoundError

ENTRY_POINT_GROUP = "bioreactor.drivers"


@dataclass(frozen=True)
class DeviceAddress:
    url: str
    scheme: str
    location: str
    """Everything between `scheme://` and `?`: host:port, a device path, or nested URL."""
    params: dict[str, str] = field(default_factory=dict)


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


def available_schemes() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def driver_factory(scheme: str) -> Callable[..., Driver]:
    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not matches:
        known = ", ".join(available_schemes()) or "none installed"
        raise DriverNotFoundError(f"no driver for scheme {scheme!r}; available: {known}")
    try:
        return matches[0].load()
    except ImportError as exc:
        raise DriverNotFoundError(
            f"driver for scheme {scheme!r} ({matches[0].value}) cannot be loaded: {exc}"
        ) from exc

